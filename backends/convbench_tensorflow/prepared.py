"""One case built in TensorFlow: variables, the timed step and its verification.

* inference: the lowered forward (batch norm on the running statistics);
* training: under a ``GradientTape`` (watching the inputs too), forward, loss =
  sum(output * cotangent), gradients of inputs and params, SGD update
  ``param.assign_sub(0.01 * grad)``; batch norm uses batch statistics and updates its
  running statistics (non-trainable variables) as Keras does.

Execution forms: ``eager`` (op by op), ``graph`` (``tf.function``, a graph run by
TensorFlow's executor with Grappler's rewrites) and ``xla`` (``tf.function(jit_compile=
True)``). Layout: activations are NHWC where asked, and always on CPU outside XLA, since
TensorFlow's CPU kernels for pooling gradients (and, per its documentation, depthwise
conv) support only NHWC there; the NCHW data is then converted once, outside the timed
step, and ``details()`` records the layout actually used. Conv weights are HWIO.

This module imports tensorflow; :mod:`convbench_tensorflow.backend` imports it lazily.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf
from convbench_lowering.drive import LEARNING_RATE, compile_program
from convbench_lowering.layout import HWIO, NHWC, plan_layouts, to_logical, to_physical

from convbench.backend import Prepared
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_tensorflow.lower import FUSED_MIN_EPSILON, OPS, Context, converter

DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16, "float64": tf.float64}


class TensorflowPrepared(Prepared):
    """A case lowered to TensorFlow ops, run eagerly or as a (XLA-compiled) tf.function."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors, form: str, dtype: str) -> None:
        self.case = case
        self.graph = graph
        self.form = form
        self.training = case.mode == "training"
        self.dtype = DTYPES[dtype]
        self.device = "/GPU:0" if case.device == "cuda" else "/CPU:0"
        requested = NHWC if case.layout == "nhwc" else None
        activation = NHWC if case.device == "cpu" and form != "xla" else requested
        self.plan = plan_layouts(graph, activation, HWIO)
        self.program = compile_program(graph, self.plan, OPS, converter(), "tensorflow")
        self._details: dict[str, Any] = {
            "tensorflow": tf.__version__,
            "device": case.device,
            "dtype": dtype,
            "execution_form": {"eager": "eager", "graph": "tf.function", "xla": "tf.function(jit_compile=True)"}[form],
            "layout_requested": case.layout,
            "layout_used": "nhwc" if activation == NHWC else "nchw",
            "weight_layout": "HWIO",
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        }
        if activation != requested:
            self._details["layout_note"] = (
                "TensorFlow's CPU kernels outside XLA need NHWC (MaxPoolGrad, depthwise conv): "
                "ran NHWC, the NCHW data converted once at the boundary, outside the timed step"
            )
        grouped = any(
            n.attrs["groups"] > 1 and graph.shape(n.inputs[1])[1] > 1 for n in graph.of_op("conv2d")
        ) or any(n.attrs["groups"] > 1 and tuple(n.attrs["stride"]) != (1, 1) and tuple(n.attrs["dilation"]) != (1, 1) for n in graph.of_op("conv2d"))
        self._split_groups = self.training and case.device == "cpu" and form != "xla" and grouped
        if self._split_groups:
            self._details["grouped_conv"] = (
                "one conv per group, concatenated: TensorFlow has no gradient of grouped convolutions on CPU outside XLA"
            )
        if case.device == "cpu" and dtype != "float32" and form == "xla":
            self._details["half_precision"] = (
                "XLA's CPU backend converts half-precision convolutions and matmuls to float32 (converts around them)"
            )
        if case.device == "cuda" and dtype == "float32":
            tf.config.experimental.enable_tensor_float_32_execution(False)
            self._details["tf32"] = False

        stats = set()
        for node in graph.of_op("batchnorm"):
            stats.update(i for i in node.inputs[3:] if graph[i].op == "const")
        with tf.device(self.device):
            self.sources: dict[str, Any] = {}
            self.input_names = [n.name for n in graph.inputs]
            self.param_names = [n.name for n in graph.params]
            self.inputs = [self._constant(tensors[name], name) for name in self.input_names]
            self.sources.update(zip(self.input_names, self.inputs, strict=True))
            self.params = [tf.Variable(self._physical(tensors[name], name), name=_var_name(name)) for name in self.param_names]
            self.sources.update(zip(self.param_names, self.params, strict=True))
            self.stats: dict[str, tf.Variable] = {}
            for node in graph.consts:
                if self.training and node.name in stats:
                    var = tf.Variable(self._physical(tensors[node.name], node.name), trainable=False, name=_var_name(node.name))
                    self.stats[node.name] = var
                    self.sources[node.name] = var
                else:
                    self.sources[node.name] = self._constant(tensors[node.name], node.name)
            self.cotangents = [self._constant(cotangents[name], name) for name in graph.outputs]
        self._initial = [v.numpy().copy() for v in [*self.params, *self.stats.values()]]
        if self.training:
            self._details["optimizer"] = f"SGD(lr={LEARNING_RATE}) as Variable.assign_sub"
            small = [n.name for n in graph.of_op("batchnorm") if float(n.attrs.get("eps", 1e-5)) < FUSED_MIN_EPSILON]
            self._details["batchnorm"] = (
                "batch moments written out (tf.nn.moments): fused_batch_norm would raise epsilon "
                f"{graph[small[0]].attrs.get('eps', 1e-5)} to {FUSED_MIN_EPSILON}"
                if small
                else "fused_batch_norm"
            ) + "; batch statistics; running statistics updated"

        body = self._train if self.training else self._forward
        if form == "eager":
            self._fn = body
        else:
            self._fn = tf.function(body, jit_compile=form == "xla", autograph=False, reduce_retracing=False)
            start = time.perf_counter()
            with tf.device(self.device):
                _materialize(self._fn())
            self._details["compile_seconds"] = round(time.perf_counter() - start, 3)
            self._restore_initial()
        self._last: Any = None

    # -- data ----------------------------------------------------------------------------
    def _physical(self, array: np.ndarray, name: str) -> np.ndarray:
        return to_physical(np.asarray(array), self.plan.perms[name]).astype(self.dtype.as_numpy_dtype)

    def _constant(self, array: np.ndarray, name: str) -> tf.Tensor:
        return tf.constant(self._physical(array, name))

    def _restore_initial(self) -> None:
        for var, value in zip([*self.params, *self.stats.values()], self._initial, strict=True):
            var.assign(value)

    # -- the timed function --------------------------------------------------------------
    def _context(self) -> Context:
        return Context(self.training, self.dtype, split_groups=self._split_groups)

    def _forward(self) -> list[tf.Tensor]:
        return self.program.run(self._context(), self.sources)

    def _train(self) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        ctx = self._context()
        with tf.GradientTape() as tape:
            tape.watch(self.inputs)
            outs = self.program.run(ctx, self.sources)
            loss = tf.add_n([tf.reduce_sum(o * c) for o, c in zip(outs, self.cotangents, strict=True)])
        grads = tape.gradient(loss, [*self.inputs, *self.params], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        for var, grad in zip(self.params, grads[len(self.inputs) :], strict=True):
            var.assign_sub(LEARNING_RATE * grad)
        for name, stat, momentum in ctx.stat_updates:
            if name in self.stats:
                var = self.stats[name]
                var.assign(var * (1.0 - momentum) + tf.cast(stat, var.dtype) * momentum)
        return outs, grads

    def step(self) -> None:
        with tf.device(self.device):
            self._last = self._fn()

    def sync(self) -> None:
        if self.case.device == "cuda":
            tf.test.experimental.sync_devices()

    # -- the Prepared contract -------------------------------------------------------------
    def check(self) -> dict[str, np.ndarray]:
        if self.training:
            self._restore_initial()
        with tf.device(self.device):
            result = self._fn()
        outs = result[0] if self.training else result
        got = {name: self._logical(o, name) for name, o in zip(self.graph.outputs, outs, strict=True)}
        if self.training:
            for name, g in zip([*self.input_names, *self.param_names], result[1], strict=True):
                got[f"grad:{name}"] = self._logical(g, name)
        return got

    def _logical(self, value: tf.Tensor, name: str) -> np.ndarray:
        return to_logical(np.asarray(value.numpy(), dtype=np.float64), self.plan.perms[name])

    def peak_memory_bytes(self) -> int | None:
        if self.case.device != "cuda":
            return None
        try:
            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        except Exception:
            return None

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self._last = None
        self._fn = None  # type: ignore[assignment]
        self.sources = {}
        self.params = []
        self.stats = {}


def _var_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def _materialize(result: Any) -> None:
    """Wait for a step's result (its first tensor) so compilation is over."""
    first = result[0] if not isinstance(result, tuple) else result[0][0]
    first.numpy()
