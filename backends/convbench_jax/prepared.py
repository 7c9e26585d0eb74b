"""One case built in JAX: the state, the timed (jitted) step and its verification.

* inference: the lowered forward (batch norm on the running statistics);
* training: ``jax.value_and_grad`` of loss = sum(output * cotangent) with respect to the
  params and the inputs, then the SGD update ``p - 0.01 * grad``; batch norm uses batch
  statistics and its running statistics are updated, as in the other backends. The step
  is functional: it returns the new params and statistics, which become the state.

Execution: ``eager`` dispatches op by op (JAX's default without ``jit``); ``jit`` (and
``compiled``, its alias) is ``jax.jit`` of the whole step (one XLA program). Steps are dispatched asynchronously;
:meth:`JaxPrepared.sync` blocks until the last one is done.

Timing on a GPU: JAX has no device-event timer, so every case is timed by the host
wall clock around ``jax.block_until_ready`` (the core's host protocol, the same as every
host-timed backend; ``host_median`` = ``median``). Peak memory: XLA's ``peak_bytes_in_use``
is process-wide and cannot be reset, so a case reports it only when the peak rose while
it ran (it set the peak); otherwise None, with the reason in details. GPU preallocation
is off (:mod:`convbench_jax.backend`). None of the CUDA paths has run on a GPU.

This module imports jax; :mod:`convbench_jax.backend` imports it lazily.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from convbench_lowering.drive import LEARNING_RATE, compile_program
from convbench_lowering.layout import NHWC, plan_layouts, to_logical, to_physical

from convbench.backend import Prepared
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_jax.lower import OPS, Context, converter

DTYPES = {"float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}
#: What XLA's CPU compiler does with half types (seen in its optimized HLO, JAX 0.10).
XLA_CPU_HALF = "XLA's CPU backend converts half-precision convolutions and matmuls to float32 (converts around them); elementwise ops stay half"

State = dict[str, Any]


class JaxPrepared(Prepared):
    """A case lowered to jax.numpy / lax, run op by op or as one jitted function."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors, device: Any) -> None:
        self.case = case
        self.graph = graph
        self.training = case.mode == "training"
        self.device = device
        self._peak_before = _peak_in_use(device)
        self.dtype = DTYPES[case.dtype]
        self.jit = case.execution in ("compiled", "jit")
        self.plan = plan_layouts(graph, NHWC if case.layout == "nhwc" else None, None)
        self.program = compile_program(graph, self.plan, OPS, converter(), "jax")
        stats = set()
        for node in graph.of_op("batchnorm"):
            stats.update(i for i in node.inputs[3:] if graph[i].op == "const")
        put = self._put
        self.inputs = {n.name: put(tensors[n.name], n.name) for n in graph.inputs}
        self.params = {n.name: put(tensors[n.name], n.name) for n in graph.params}
        self.stats = {n.name: put(tensors[n.name], n.name) for n in graph.consts if self.training and n.name in stats}
        self.consts = {n.name: put(tensors[n.name], n.name) for n in graph.consts if n.name not in self.stats}
        self.cotangents = [put(cotangents[name], name) for name in graph.outputs]
        self._initial = (dict(self.params), dict(self.stats))
        self._details: dict[str, Any] = {
            "jax": jax.__version__,
            "device": str(device),
            "dtype": case.dtype,
            "execution": "jax.jit of the whole step" if self.jit else "op by op (no jit)",
            "layout_requested": case.layout,
            "layout_used": case.layout,
            "layout_note": "logical dimension order of the arrays; XLA assigns physical layouts itself",
            "precision": "lax.Precision.HIGHEST for float32 convs and matmuls",
        }
        if self.training:
            self._details["optimizer"] = f"SGD(lr={LEARNING_RATE}) as p - lr * grad"
        if case.dtype != "float32" and case.device == "cpu":
            self._details["half_precision"] = XLA_CPU_HALF
        if case.dtype != "float32" and graph.of_op("batchnorm"):
            self._details["batchnorm"] = f"statistics and normalization in float32, cast back to {case.dtype} (as Flax does)"
        body = self._train if self.training else self._forward
        if self.jit:
            self._fn = jax.jit(body)
            start = time.perf_counter()
            jax.block_until_ready(self._fn(*self._args()))
            self._details["compile_seconds"] = round(time.perf_counter() - start, 3)
        else:
            self._fn = body
        self._last: Any = None

    # -- data ----------------------------------------------------------------------------
    def _put(self, array: np.ndarray, name: str) -> Any:
        value = to_physical(np.asarray(array), self.plan.perms[name]).astype(np.float32)
        return jax.device_put(jnp.asarray(value, dtype=self.dtype), self.device)

    def _args(self) -> tuple[Any, ...]:
        if self.training:
            return (self.params, self.stats, self.inputs)
        return (self.params, self.inputs)

    # -- the step ------------------------------------------------------------------------
    def _forward(self, params: State, inputs: State) -> list[Any]:
        return self.program.run(Context(False), {**self.consts, **params, **inputs})

    def _train(self, params: State, stats: State, inputs: State) -> tuple[Any, ...]:
        consts, cotangents = self.consts, self.cotangents

        def loss_fn(params: State, inputs: State) -> tuple[Any, tuple[list[Any], State]]:
            ctx = Context(True)
            outs = self.program.run(ctx, {**consts, **stats, **params, **inputs})
            loss = sum(jnp.sum(o * c) for o, c in zip(outs, cotangents, strict=True))
            new_stats = dict(stats)
            for name, value, momentum in ctx.stat_updates:
                if name in new_stats:
                    old = new_stats[name]
                    new_stats[name] = (old * (1.0 - momentum) + jax.lax.stop_gradient(value) * momentum).astype(old.dtype)
            return loss, (outs, new_stats)

        (_, (outs, new_stats)), (gparams, ginputs) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, inputs)
        new_params = {k: p - LEARNING_RATE * gparams[k] for k, p in params.items()}
        return outs, new_params, new_stats, gparams, ginputs

    def _run(self) -> Any:
        result = self._fn(*self._args())
        if self.training:
            _, self.params, self.stats, _, _ = result
        return result

    def step(self) -> None:
        self._last = self._run()

    def sync(self) -> None:
        if self._last is not None:
            jax.block_until_ready(self._last)

    # -- the Prepared contract -------------------------------------------------------------
    def check(self) -> dict[str, np.ndarray]:
        if self.training:
            self.params, self.stats = dict(self._initial[0]), dict(self._initial[1])
        result = self._run()
        outs = result[0] if self.training else result
        got = {name: self._logical(o, name) for name, o in zip(self.graph.outputs, outs, strict=True)}
        if self.training:
            _, _, _, gparams, ginputs = result
            for name, g in [*ginputs.items(), *gparams.items()]:
                got[f"grad:{name}"] = self._logical(g, name)
        return got

    def _logical(self, value: Any, name: str) -> np.ndarray:
        return to_logical(np.asarray(value, dtype=np.float64), self.plan.perms[name])

    def peak_memory_bytes(self) -> int | None:
        """XLA's process-wide peak, when this case raised it (see the module docstring)."""
        peak = _peak_in_use(self.device)
        if peak is None:
            return None
        if self._peak_before is not None and peak <= self._peak_before:
            self._details["peak_memory"] = "not measured: an earlier case set the process-wide peak (JAX cannot reset it)"
            return None
        return peak

    def note_threads(self, threads: int | None, xla_flags: str) -> None:
        """Record the CPU threads the runtime started with, and its XLA_FLAGS."""
        self._details.update(cpu_threads=threads, xla_flags=xla_flags)

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self._last = None
        self._fn = None  # type: ignore[assignment]
        self.params, self.stats, self.inputs, self.consts = {}, {}, {}, {}


def _peak_in_use(device: Any) -> int | None:
    """``device.memory_stats()["peak_bytes_in_use"]``, or None where XLA does not say."""
    try:
        stats = device.memory_stats()
    except Exception:
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
