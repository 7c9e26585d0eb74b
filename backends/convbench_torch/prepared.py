"""One case built in torch: the lowered module, its data, and the timed step.

:meth:`TorchPrepared.step` and :meth:`TorchPrepared.check` share one function, so what
is verified is exactly what is timed:

* inference: ``forward`` under ``torch.inference_mode()`` (batch norm on running stats);
* training: ``zero_grad(set_to_none=True)``, forward, loss = sum(out * cotangent),
  backward, ``torch.optim.SGD(lr=0.01, foreach=True).step()``.

Execution ``cudagraph`` (CUDA only): the eager step captured once as a CUDA graph and
replayed by step() (:meth:`TorchPrepared._capture`), the standard remedy for a
launch-bound step; check() verifies a replay.

Timing options (``options``, from :meth:`TorchBackend.configure`), recorded in details:
``autotune`` sets ``torch.backends.cudnn.benchmark`` on CUDA (check() and the warm-up run
the autotuning before any timing); ``cold_cache`` makes the CUDA event sampler overwrite a
buffer twice the L2 before every iteration and time iterations one by one (on a CPU
:meth:`cache_flusher` serves the host sampler); ``rotate_inputs`` = R keeps R copies of
the inputs and uses the next one in each iteration. The ``kernel`` variant swaps in the
Triton kernels (:mod:`convbench_torch.kernels.variant`). Peak memory (CUDA) is the case's
resident tensors (weights, statistics, inputs, cotangents) plus the most one step
allocates on top of them, measured on a step run when :meth:`peak_memory_bytes` is first
asked, which the worker does after the case's warm-up and timing: a first call's
cuDNN autotuning workspaces and compilation are not counted (the first call's figure
is kept in ``details["peak_memory_first_call"]``). The CUDA memory calls have run only
against fakes (tests/backends/torch), never on a GPU.

``torch._dynamo.reset()`` runs once per case group (:meth:`TorchBackend.configure`, at the
start of every group), not per case: the cases of an interleaved group keep each
other's compiled code, so none recompiles during another's warm-up.

This module imports torch; :mod:`convbench_torch.backend` imports it lazily.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from convbench.backend import Prepared
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_torch import probe
from convbench_torch.lower import DTYPES, Lowered, lower, to_numpy, to_torch

LEARNING_RATE = 0.01


class TorchPrepared(Prepared):
    """A case lowered to an ``fx.GraphModule``, with inputs, cotangents and optimizer."""

    def __init__(
        self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors, options: dict[str, Any] | None = None
    ) -> None:
        self.options = {"autotune": False, "cold_cache": False, "rotate_inputs": 1, **(options or {})}
        self._peak_memory: int | None = None
        self._flush: torch.Tensor | None = None
        self._turn = 0
        self.case = case
        self.graph = graph
        self.training = case.mode == "training"
        self.device = torch.device(case.device)
        self.dtype = DTYPES[case.dtype]
        self.channels_last = case.layout == "nhwc"
        self._details: dict[str, Any] = {
            "torch": str(torch.__version__),
            "device": case.device,
            "dtype": case.dtype,
            "layout_requested": case.layout,
            "memory_format_requested": "channels_last" if self.channels_last else "contiguous",
            "execution": case.execution,
            "lowering": "torch.fx GraphModule, torch.nn.functional per node",
            "threads": torch.get_num_threads(),
        }
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device.index or 0)
            torch.cuda.reset_peak_memory_stats()
            if case.dtype == "float32":
                self._details["cuda_fp32_precision"] = probe.set_strict_fp32()
            torch.backends.cudnn.benchmark = bool(self.options["autotune"])
            self._details["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
        elif self.options["autotune"]:
            self._details["autotune"] = "no effect on cpu (torch has no CPU kernel autotuning)"
        if self.options["cold_cache"]:
            from convbench_torch.device import flush_buffer

            self._flush = flush_buffer(self.device)
            how = "written (CUDA events around each iteration)" if self.device.type == "cuda" else "read and written"
            self._details["cold_cache"] = f"{self._flush.numel() * 4 >> 20} MiB {how} before each iteration, iterations timed one by one"

        self.lowered: Lowered = lower(
            graph,
            tensors,
            training=self.training,
            dtype=self.dtype,
            device=self.device,
            channels_last=self.channels_last,
        )
        self.module = self.lowered.module
        if "kernel" in case.variant.split("+"):
            from convbench_torch.kernels.variant import install

            self._details.update(install(self.module, graph, training=self.training, channels_last=self.channels_last, device=self.device))
        self.inputs = [self._convert(tensors[name]) for name in self.lowered.input_names]
        self.cotangents = [self._convert(cotangents[name]) for name in self.lowered.output_names]
        rotate = int(self.options["rotate_inputs"])
        self._input_sets = [self.inputs] + [[x.detach().clone() for x in self.inputs] for _ in range(rotate - 1)]
        if rotate > 1:
            self._details["rotate_inputs"] = f"{rotate} copies of the inputs, the next one each iteration"
        self.optimizer: torch.optim.Optimizer | None = None
        if self.training:
            for x in (x for inputs in self._input_sets for x in inputs):
                x.requires_grad_(True)
            params = list(self.module.parameters())
            if params:  # a shift layer has none: then the step is forward and backward only
                self.optimizer = torch.optim.SGD(params, lr=LEARNING_RATE, foreach=True)
            self._details["optimizer"] = (
                f"SGD(lr={LEARNING_RATE}, foreach=True)" if params else "none (no parameters)"
            )
            self._details["batchnorm_running_stats"] = "updated in place (module's own copies)"
        # Host copies of the initial weights and statistics: a training check() starts
        # from them, so it always matches the reference however many steps ran before.
        self._initial: dict[str, torch.Tensor] = {}
        if self.training:
            self._initial = {
                name: t.detach().to("cpu", copy=True)
                for name, t in [*self.module.named_parameters(), *self.module.named_buffers()]
            }

        self._forward: Callable[..., Any] = self.module
        self._train_inner: Callable[[], Sequence[torch.Tensor]] = self._train_body
        self._last_outputs: list[torch.Tensor] = []
        self._graph: Any = None  #: the captured CUDA graph (execution cudagraph)
        self._capture_bytes: int | None = None  #: what the capture allocated (its pool)
        self._static_outs: Sequence[torch.Tensor] = []
        if case.execution == "compiled":
            self._compile()
        if case.execution == "cudagraph":
            self._capture()

    # -- conversion --------------------------------------------------------------------
    def _convert(self, array: np.ndarray) -> torch.Tensor:
        return to_torch(array, self.dtype, self.device, self.channels_last)

    def _restore_initial(self) -> None:
        with torch.no_grad():
            for name, t in [*self.module.named_parameters(), *self.module.named_buffers()]:
                t.copy_(self._initial[name])

    # -- the timed function --------------------------------------------------------------
    def _train_body(self) -> Sequence[torch.Tensor]:
        """Forward, loss, backward and SGD update (gradients already cleared)."""
        outs = self._forward(*self.inputs)
        loss = outs[0].mul(self.cotangents[0]).sum()
        for out, cot in zip(outs[1:], self.cotangents[1:], strict=True):
            loss = loss + out.mul(cot).sum()
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        return outs

    def _run(self) -> Sequence[torch.Tensor]:
        """One iteration, as timed; returns the outputs."""
        if self._graph is not None:  # cudagraph: the captured step, replayed
            self._graph.replay()
            return self._static_outs
        return self._eager_run()

    def _eager_run(self) -> Sequence[torch.Tensor]:
        if len(self._input_sets) > 1:
            self._turn = (self._turn + 1) % len(self._input_sets)
            self.inputs = self._input_sets[self._turn]
        if not self.training:
            with torch.inference_mode():
                return self._forward(*self.inputs)
        with torch.enable_grad():
            if self.optimizer is not None:
                self.optimizer.zero_grad(set_to_none=True)
            for x in self.inputs:
                x.grad = None
            return self._train_inner()

    def step(self) -> None:
        self._run()

    # -- compilation -----------------------------------------------------------------------
    def _compile(self) -> None:
        """torch.compile the training step (or the forward), then warm up outside timing."""
        graphs, breaks = _dynamo_counts()  # dynamo's cache is reset per group, not here
        if self.training:
            self._train_inner = torch.compile(self._train_body, dynamic=False)
            target = "training step: forward, loss, backward, SGD update (zero_grad eager)"
        else:
            self._forward = torch.compile(self.module, dynamic=False)
            target = "forward"
        start = time.perf_counter()
        try:
            self._warm_up()
        except Exception as exc:
            if not self.training:
                raise
            # Fall back to compiling the module only: AOTAutograd still compiles its
            # backward; the optimizer step stays eager.
            self._restore_initial()
            self._details["compile_fallback_reason"] = f"{type(exc).__name__}: {exc}"[:500]
            self._train_inner = self._train_body
            self._forward = torch.compile(self.module, dynamic=False)
            target = "forward (and its AOTAutograd backward); SGD update eager"
            start = time.perf_counter()
            self._warm_up()
        self._details["compiled"] = target
        self._details["compile_seconds"] = round(time.perf_counter() - start, 3)
        self._details["compile_mode"] = "default"
        self._details["dynamo_reset"] = "once per case group (the group's cases keep each other's code)"
        graphs_after, breaks_after = _dynamo_counts()
        if graphs_after >= 0:
            self._details["dynamo_graphs"] = graphs_after - graphs
            self._details["dynamo_graph_breaks"] = breaks_after - breaks

    # -- CUDA graph -------------------------------------------------------------------------
    def _capture(self) -> None:
        """Capture one step as a CUDA graph (execution ``cudagraph``); step() replays it.

        As torch's documentation prescribes: a few eager steps on a side stream first
        (lazy initialisation, cuDNN autotuning, allocator warm-up), the gradients set to
        None, then one step captured, whose outputs and gradients are the graph's static
        tensors: every replay overwrites them in place (backward writes, not accumulates,
        into gradients that did not exist when capture began). Inputs are static: with
        ``rotate_inputs`` > 1 the copies are not used (details say so). Training restores
        the initial weights afterwards, so check() verifies a replay from them. Written
        for CUDA and exercised on a CPU only with a fake graph (tests/backends/torch/
        test_torch_gpu_paths.py): it has not run on a GPU.
        """
        if self.device.type != "cuda":
            raise RuntimeError("cudagraph execution needs a CUDA device")
        if len(self._input_sets) > 1:
            self._input_sets = [self.inputs]
            self._details["rotate_inputs"] = "ignored: a CUDA graph reads the inputs it was captured with"
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._eager_run()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.sync()
        if self.training:
            self._restore_initial()
        self._clear_grads()
        base = self._memory_baseline()
        self._graph, self._static_outs = capture_graph(self._captured_body, self.device)
        self.sync()
        if base is not None:  # the graph's private pool holds what one step allocates
            self._capture_bytes = int(torch.cuda.max_memory_allocated(self.device)) - base
        if self.training:
            self._restore_initial()  # capture ran the step once for real: undo its update
        self._details["cudagraph"] = "one step captured after 3 eager warm-up steps on a side stream; step() = replay()"

    def _captured_body(self) -> Sequence[torch.Tensor]:
        """The step as captured: no zero_grad (the replay overwrites the gradients)."""
        if not self.training:
            with torch.inference_mode():
                return self._forward(*self.inputs)
        with torch.enable_grad():
            return self._train_inner()

    def _clear_grads(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        for x in self.inputs:
            x.grad = None

    def _warm_up(self, iterations: int = 2) -> None:
        for _ in range(max(iterations, len(self._input_sets) + 1)):  # every input copy seen
            self._run()
        self.sync()
        if self.training:
            self._restore_initial()

    # -- the Prepared contract -------------------------------------------------------------
    def check(self) -> dict[str, np.ndarray]:
        if self.training:
            self._restore_initial()
        base = self._memory_baseline()
        outs = self._run()
        self.sync()
        if base is not None and "peak_memory_first_call" not in self._details:
            first = int(torch.cuda.max_memory_allocated(self.device)) - base + self._resident_bytes()
            self._details["peak_memory_first_call"] = first
        result = {
            name: to_numpy(t) for name, t in zip(self.lowered.output_names, outs, strict=True)
        }
        self._last_outputs = [t.detach() for t in outs]
        if self.training:
            for name, x in zip(self.lowered.input_names, self.inputs, strict=True):
                result[f"grad:{name}"] = self._grad(x)
            for name in self.lowered.param_names:
                result[f"grad:{name}"] = self._grad(self.lowered.parameter(name))
        return result

    @staticmethod
    def _grad(t: torch.Tensor) -> np.ndarray:
        if t.grad is None:  # not reached by the loss
            return np.zeros(tuple(t.shape))
        return to_numpy(t.grad)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def device_sampler(self) -> Callable[[int], float] | None:
        if self.device.type != "cuda":
            return None
        def sample(n: int) -> float:
            stream = torch.cuda.current_stream(self.device)
            if self._flush is None:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record(stream)
                for _ in range(n):
                    self._run()
                end.record(stream)
                end.synchronize()
                return start.elapsed_time(end) / 1000.0
            pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            for start, end in pairs:
                self._flush.zero_()
                start.record(stream)
                self._run()
                end.record(stream)
            pairs[-1][1].synchronize()
            return sum(start.elapsed_time(end) for start, end in pairs) / 1000.0

        return sample

    def cache_flusher(self) -> Callable[[], None] | None:
        """On a CPU: a read-modify-write of a buffer twice the last-level cache."""
        if self.device.type == "cuda" or self._flush is None:
            return None
        from convbench_torch import device as dev

        buffer = self._flush
        return lambda: dev.flush(buffer)

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory of one step (CUDA), measured on a step run at the first call.

        The worker asks after warm-up and timing, so autotuning workspaces and first-call
        allocations are left out; None on a CPU."""
        if self._peak_memory is None and self._capture_bytes is not None:
            self._peak_memory = self._capture_bytes + self._resident_bytes()
        if self._peak_memory is None:
            base = self._memory_baseline()
            if base is None:
                return None
            self._run()
            self.sync()
            self._peak_memory = int(torch.cuda.max_memory_allocated(self.device)) - base + self._resident_bytes()
        return self._peak_memory

    def _memory_baseline(self) -> int | None:
        """Device memory allocated before a measured step, its gradients freed (CUDA only)."""
        if self.device.type != "cuda":
            return None
        if self._graph is None:  # a captured graph's gradients are its own static tensors
            self._clear_grads()
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def _resident_bytes(self) -> int:
        """Bytes of the case's own tensors: parameters, buffers, every input copy, cotangents."""
        tensors = [*self.module.parameters(), *self.module.buffers(), *self.cotangents]
        tensors += [x for inputs in self._input_sets for x in inputs]
        return sum(t.untyped_storage().nbytes() for t in tensors)

    def profile(self, steps: int) -> list[dict[str, Any]]:
        from convbench_torch.profiling import profile

        return profile(self, steps)

    def details(self) -> dict[str, Any]:
        d = dict(self._details)
        outs, activations = self._diagnostic_forward()
        if self._last_outputs:
            outs = self._last_outputs
        out_formats = {
            name: _memory_format(t)
            for name, t in zip(self.lowered.output_names, outs, strict=True)
            if t.dim() == 4
        }
        d["output_memory_format"] = out_formats
        decided = [f for f in activations if f != "both"]
        d["activations_channels_last"] = (
            f"{decided.count('channels_last')}/{len(decided)} 4-D activations "
            "(not counting those where C or H*W is 1)"
        )
        d["layout_used"] = _layout_used(list(out_formats.values()) or activations)
        return d

    def _diagnostic_forward(self) -> tuple[list[torch.Tensor], list[str]]:
        """An untimed eager forward noting the memory format of every 4-D activation."""
        formats: list[str] = []

        class Recorder(torch.fx.Interpreter):
            def run_node(self, n: torch.fx.Node) -> Any:
                value = super().run_node(n)
                if n.op == "call_function" and isinstance(value, torch.Tensor) and value.dim() == 4:
                    formats.append(_memory_format(value))
                return value

        saved = {k: v.clone() for k, v in self.module.named_buffers()}
        with torch.no_grad():
            outs = Recorder(self.module).run(*[x.detach() for x in self.inputs])
            for k, v in self.module.named_buffers():  # batch norm may have updated them
                v.copy_(saved[k])
        return [t.detach() for t in outs], formats

    def close(self) -> None:
        self._graph = None
        self._static_outs = []
        self._last_outputs = []
        self.inputs = []
        self._input_sets = [[]]
        self._flush = None
        self.cotangents = []
        self.optimizer = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def capture_graph(body: Callable[[], Sequence[torch.Tensor]], device: torch.device) -> tuple[Any, Sequence[torch.Tensor]]:
    """(``torch.cuda.CUDAGraph`` of one call of ``body``, its static outputs)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = body()
    return graph, outs


def _dynamo_counts() -> tuple[int, int]:
    """Dynamo's process-wide (graphs compiled, graph breaks) so far; (-1, -1) if unknown."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))
    except Exception:
        return -1, -1


def _memory_format(t: torch.Tensor) -> str:
    """``contiguous`` (NCHW), ``channels_last`` (NHWC), ``both`` (C or H*W is 1) or ``strided``."""
    nchw = t.is_contiguous()
    nhwc = t.is_contiguous(memory_format=torch.channels_last)
    if nchw and nhwc:
        return "both"
    if nhwc:
        return "channels_last"
    return "contiguous" if nchw else "strided"


def _layout_used(formats: list[str]) -> str:
    """``nhwc``, ``nchw``, ``mixed``, ``both`` (undecidable) or ``n/a`` from 4-D memory formats."""
    kinds = {f for f in formats if f != "both"}
    if not kinds:
        return "both" if formats else "n/a"
    if kinds == {"channels_last"}:
        return "nhwc"
    if kinds == {"contiguous"}:
        return "nchw"
    return "mixed"
