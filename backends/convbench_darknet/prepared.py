"""One case as a darknet network in libdarknet: parsed from its ``.cfg``, weights loaded.

Inference: the timed step is ``network_predict`` (darknet's own forward, ``train = 0``:
batchnorm uses the rolling statistics). Training: ``forward_network`` with ``train = 1``
(batch statistics), each output layer's ``delta`` set to ``-cotangent`` (darknet's
``delta`` is the negative gradient: its update adds ``learning_rate / batch x
*_updates``), ``backward_network`` (with ``net->delta`` pointing at a buffer of ours, so
layer 0 writes the input's gradient there), then ``update_network`` (SGD: the cfg sets
``learning_rate = 0.01 x batch``, momentum and decay 0). ``check()`` reloads the weights file first (it may follow timed steps) and reads the gradients
from each layer's ``weight_updates``, ``bias_updates`` and ``scale_updates`` before the
update. darknet's batchnorm in training differs from the IR's: its batch variance is the
unbiased one and its eps is added to sqrt(var) (forward) but inside it (backward); on
small planes that is a measurable difference and the case is a mismatch row.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from convbench_lowering.drive import LEARNING_RATE

from convbench.backend import Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_darknet.abi import Darknet, float_array, load
from convbench_darknet.lower import Lowered, lower

#: recorded in details() of a case asked for more than one thread
SINGLE_THREAD_NOTE = "Debian's libdarknet is built without OpenMP: it ran on one thread (the case asked {threads})"
#: cfg section -> darknet LAYER_TYPE name
TYPES = {"convolutional": "CONVOLUTIONAL", "connected": "CONNECTED", "maxpool": "MAXPOOL", "avgpool": "AVGPOOL", "route": "ROUTE", "shortcut": "SHORTCUT", "activation": "ACTIVE", "upsample": "UPSAMPLE"}


@contextmanager
def captured_output(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 into ``path`` (darknet prints its layer table while parsing)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        libc = ctypes.CDLL(None)
        libc.fflush(None)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def build(lowered: Lowered, batch: int, workdir: Path) -> tuple[Darknet, Any]:
    """Write the cfg and weights to ``workdir``, parse and load them; checks the layout."""
    dn = load()
    cfg, weights, log = workdir / "net.cfg", workdir / "net.weights", workdir / "darknet.log"
    cfg.write_text(lowered.cfg(batch, LEARNING_RATE))
    weights.write_bytes(lowered.weights())
    with captured_output(log):
        net = dn.lib.parse_network_cfg(str(cfg).encode())
        dn.lib.load_weights(net, str(weights).encode())
    check_layout(dn, net, lowered, batch)
    return dn, net


def check_layout(dn: Darknet, net: Any, lowered: Lowered, batch: int) -> None:
    """The parsed network has our layers with our shapes (else the ctypes layout is wrong)."""
    n = net.contents
    if n.n != len(lowered.layers) or n.batch != batch:
        raise UnsupportedCase(f"darknet: parsed {n.n} layers of batch {n.batch}, wrote {len(lowered.layers)} of batch {batch} (darknet.h does not match libdarknet?)")
    for i, layer in enumerate(lowered.layers):
        got = n.layers[i]
        want = TYPES[layer.kind]
        shape = layer.shape or lowered.graph.shape(layer.node)
        size = int(np.prod(shape[1:]))
        if got.type != dn.layer_type(want) or got.outputs != size or got.batch != batch:
            raise UnsupportedCase(
                f"darknet: layer {i} parsed as type {got.type} with {got.outputs} outputs, expected {want} with {size} ({layer.node})"
            )


class DarknetPrepared(Prepared):
    """The case's graph as a libdarknet network, input bound once."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> None:
        self.case = case
        self.graph = graph
        self.training = case.mode == "training"
        self.lowered = lower(graph, tensors, self.training)
        self._tmp = tempfile.TemporaryDirectory(prefix="convbench-darknet-")
        self.dn, self.net = build(self.lowered, graph.batch, Path(self._tmp.name))
        # The input lives in darknet's own net->input buffer (free_network frees net->input
        # and net->truth, and network_predict resets net->truth: restored in close()).
        n = self.net.contents
        self._owned = (n.input, n.truth)
        x = np.asarray(tensors[self.lowered.input], dtype=np.float32).reshape(-1)
        self._input = np.frombuffer(float_array(n.input, n.inputs * n.batch), dtype=np.float32)
        self._input[:] = x
        self._input_p = n.input
        self._delta = np.zeros_like(self._input)
        self._delta_p = self._delta.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        self._cot = {
            name: np.ascontiguousarray(-np.asarray(cotangents[name], dtype=np.float32).reshape(-1))
            for name in graph.outputs
        } if self.training else {}  # fmt: skip
        self._details: dict[str, Any] = {
            "darknet": str(self.dn.path),
            "layers": [layer.kind for layer in self.lowered.layers],
            "cfg": (Path(self._tmp.name) / "net.cfg").read_text(),
            "layout_used": "nchw",
            "threads_used": 1,
        }
        if case.threads is not None and case.threads > 1:
            self._details["threads_note"] = SINGLE_THREAD_NOTE.format(threads=case.threads)

    # -- steps ------------------------------------------------------------------------
    def _layer(self, i: int) -> Any:
        return self.net.contents.layers[i]

    def _forward_backward(self) -> None:
        n = self.net.contents
        n.input = self._input_p
        n.truth = None
        n.train = 1
        self._delta[:] = 0
        n.delta = self._delta_p
        self.dn.lib.forward_network(self.net)
        for name, at in self.lowered.outputs.items():
            layer = self._layer(at)
            ctypes.memmove(layer.delta, self._cot[name].ctypes.data, self._cot[name].nbytes)
        self.dn.lib.backward_network(self.net)

    def step(self) -> None:
        if self.training:
            self._forward_backward()
            self.dn.lib.update_network(self.net)
        else:
            self.dn.lib.network_predict(self.net, self._input_p)

    def _outputs(self) -> dict[str, np.ndarray]:
        got = {}
        for name, at in self.lowered.outputs.items():
            layer = self._layer(at)
            flat = np.frombuffer(float_array(layer.output, layer.outputs * layer.batch), dtype=np.float32)
            got[name] = flat.astype(np.float64).reshape(self.graph.shape(name))
        return got

    def check(self) -> dict[str, np.ndarray]:
        if not self.training:
            self.step()
            return self._outputs()
        self._restore()
        self._forward_backward()
        got = self._outputs()
        got[f"grad:{self.lowered.input}"] = -self._delta.astype(np.float64).reshape(self.graph.shape(self.lowered.input))
        value_grads: dict[str, np.ndarray] = {}
        fields = {"weights": "weight_updates", "biases": "bias_updates", "scales": "scale_updates"}
        for i, layer in enumerate(self.lowered.layers):
            raw = self._layer(i)
            for field, source in layer.sources.items():
                if field not in fields:
                    continue
                count = int(np.prod(self.graph.shape(source)))
                g = -np.frombuffer(float_array(getattr(raw, fields[field]), count), dtype=np.float32).astype(np.float64)
                g = g.reshape(self.graph.shape(source))
                value_grads[source] = value_grads[source] + g if source in value_grads else g
        for name, g in self.lowered.param_grads(value_grads).items():
            got[f"grad:{name}"] = g
        self.dn.lib.update_network(self.net)
        return got

    def _restore(self) -> None:
        """The initial weights and statistics again (check() may follow timed steps)."""
        workdir = Path(self._tmp.name)
        with captured_output(workdir / "darknet.log"):
            self.dn.lib.load_weights(self.net, str(workdir / "net.weights").encode())

    def weights(self) -> dict[str, np.ndarray]:
        """darknet's current weight buffers, by the graph value each holds (for tests)."""
        out = {}
        names = {"weights": "weights", "biases": "biases", "scales": "scales"}
        for i, layer in enumerate(self.lowered.layers):
            raw = self._layer(i)
            for field, source in layer.sources.items():
                if field in names:
                    count = int(np.prod(self.graph.shape(source)))
                    flat = np.frombuffer(float_array(getattr(raw, names[field]), count), dtype=np.float32)
                    out[source] = flat.astype(np.float64).reshape(self.graph.shape(source))
        return out

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        if self.net is not None:
            n = self.net.contents
            n.input, n.truth = self._owned
            n.delta = None
            self.dn.lib.free_network(self.net)
            self.net = None
        self._tmp.cleanup()
