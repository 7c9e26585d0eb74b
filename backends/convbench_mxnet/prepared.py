"""One case as a Gluon ``HybridBlock``: imperative, or hybridized into one symbolic graph.

* inference: ``net(*inputs)`` outside ``autograd.record`` (batch norm on running stats);
* training: inputs ``attach_grad()``; under ``autograd.record(train_mode=True)``
  forward and loss = sum(output * cotangent); ``loss.backward()``;
  ``gluon.Trainer(SGD, learning_rate=0.01).step(1)``. Batch norm uses batch statistics
  and updates its running statistics (Gluon ``Constant`` parameters) in place.

``eager`` runs the block imperatively; ``compiled`` calls ``hybridize(static_alloc=True,
static_shape=True)`` (Gluon's fastest cached graph). MXNet queues work asynchronously:
:meth:`MxnetPrepared.sync` is ``mx.nd.waitall()``. MXNet's CPU convolutions are NCHW
only: an NHWC case converts its data once, outside the timed step, and ``details()``
records that NCHW ran.

This module imports mxnet; :mod:`convbench_mxnet.backend` imports it lazily.
"""

from __future__ import annotations

import time
from typing import Any

import mxnet as mx
import numpy as np
from convbench_lowering.drive import LEARNING_RATE, Program, compile_program
from convbench_lowering.layout import plan_layouts
from mxnet import autograd, gluon

from convbench.backend import Prepared
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_mxnet.lower import OPS, Context, converter


class GraphBlock(gluon.HybridBlock):
    """The lowered graph: params as Gluon Parameters, consts as Gluon Constants."""

    def __init__(self, graph: Graph, program: Program, tensors: Tensors, training: bool, dtype: str) -> None:
        super().__init__(prefix="convbench_")
        self._program = program
        self._training = training
        self.input_names = [n.name for n in graph.inputs]
        self.keys: dict[str, str] = {}  # graph param/const name -> attribute name
        with self.name_scope():
            for i, node in enumerate([*graph.params, *graph.consts]):
                key = f"{'p' if node.op == 'param' else 'c'}{i}"
                value = mx.nd.array(np.asarray(tensors[node.name]), dtype=dtype)
                if node.op == "param":
                    param = self.params.get(key, shape=node.shape, dtype=dtype, init=mx.init.Constant(value))
                else:
                    param = self.params.get_constant(key, value)
                setattr(self, key, param)
                self.keys[node.name] = key

    def hybrid_forward(self, F: Any, *inputs: Any, **params: Any) -> Any:  # noqa: N803 - Gluon's name
        sources = dict(zip(self.input_names, inputs, strict=True))
        sources.update({name: params[key] for name, key in self.keys.items()})
        outs = self._program.run(Context(F, self._training), sources)
        return outs[0] if len(outs) == 1 else tuple(outs)


class MxnetPrepared(Prepared):
    """A case built as a Gluon block, with its inputs, cotangents and trainer."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> None:
        self.case = case
        self.graph = graph
        self.training = case.mode == "training"
        self.ctx = mx.gpu(0) if case.device == "cuda" else mx.cpu()
        dtype = case.dtype
        program = compile_program(graph, plan_layouts(graph), OPS, converter(), "mxnet")
        self.net = GraphBlock(graph, program, tensors, self.training, dtype)
        self.net.initialize(ctx=self.ctx)
        self.params = {name: self.net.params[self.net.prefix + key] for name, key in self.net.keys.items()}
        self.param_names = [n.name for n in graph.params]
        self.inputs = [mx.nd.array(np.asarray(tensors[n.name]), ctx=self.ctx, dtype=dtype) for n in graph.inputs]
        self.cotangents = [mx.nd.array(np.asarray(cotangents[o]), ctx=self.ctx, dtype=dtype) for o in graph.outputs]
        self._initial = {name: p.data().copy() for name, p in self.params.items()}
        self.trainer = None
        if self.training:
            for x in self.inputs:
                x.attach_grad()
            trainable = {k: p for k, p in self.net.collect_params().items() if p.grad_req != "null"}
            if trainable:
                self.trainer = gluon.Trainer(trainable, "sgd", {"learning_rate": LEARNING_RATE}, kvstore=None)
        self._details: dict[str, Any] = {
            "mxnet": mx.__version__,
            "numpy": np.__version__,
            "device": str(self.ctx),
            "dtype": dtype,
            "execution": "hybridize(static_alloc=True, static_shape=True)" if case.execution in ("compiled", "hybridized") else "imperative Gluon",
            "layout_requested": case.layout,
            "layout_used": "nchw",
            "omp_threads": _omp_threads(),
        }
        if case.layout == "nhwc":
            self._details["layout_note"] = (
                "MXNet's CPU convolution has no NHWC kernel: ran NCHW, the data converted once at "
                "the boundary, outside the timed step"
            )
        if self.training:
            self._details["optimizer"] = f"gluon.Trainer sgd(learning_rate={LEARNING_RATE})" if self.trainer else "none (no parameters)"
        if case.execution in ("compiled", "hybridized"):
            self.net.hybridize(static_alloc=True, static_shape=True)
            start = time.perf_counter()
            self._run()
            mx.nd.waitall()
            self._details["compile_seconds"] = round(time.perf_counter() - start, 3)
            self._restore_initial()

    def _restore_initial(self) -> None:
        for name, p in self.params.items():
            p.set_data(self._initial[name])

    def _run(self) -> list[Any]:
        if not self.training:
            outs = self.net(*self.inputs)
            return list(outs) if isinstance(outs, (tuple, list)) else [outs]
        with autograd.record(train_mode=True):
            outs = self.net(*self.inputs)
            outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
            loss = mx.nd.add_n(*[(o * c).sum() for o, c in zip(outs, self.cotangents, strict=True)])
        loss.backward()
        if self.trainer is not None:
            self.trainer.step(1, ignore_stale_grad=True)  # a param may not reach the loss
        return outs

    def step(self) -> None:
        self._run()

    def sync(self) -> None:
        mx.nd.waitall()

    def check(self) -> dict[str, np.ndarray]:
        if self.training:
            self._restore_initial()
        outs = self._run()
        got = {name: o.asnumpy().astype(np.float64) for name, o in zip(self.graph.outputs, outs, strict=True)}
        if self.training:  # the SGD step replaced the weights; the gradients stay as computed
            for node, x in zip(self.graph.inputs, self.inputs, strict=True):
                got[f"grad:{node.name}"] = x.grad.asnumpy().astype(np.float64)
            for name in self.param_names:
                got[f"grad:{name}"] = self.params[name].grad(self.ctx).asnumpy().astype(np.float64)
        return got

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self.trainer = None
        self.inputs = []
        self.net = None  # type: ignore[assignment]
        mx.nd.waitall()


def _omp_threads() -> int | None:
    try:
        from convbench_mxnet.threads import current_threads

        return current_threads()
    except Exception:
        return None
