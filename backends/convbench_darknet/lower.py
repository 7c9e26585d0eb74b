"""Lowering of the IR to a darknet network: a ``.cfg`` text and its binary weights file.

darknet networks are a sequence of layers, each reading the previous layer's output,
except ``[route]`` (channel concat of earlier layers) and ``[shortcut]`` (the previous
layer plus an earlier one). The graph is walked in order and each op becomes a layer:

* ``conv2d`` [-> ``batchnorm``] [-> ``relu`` | ``sigmoid``] (fused where each value has
  one consumer) -> ``[convolutional]`` with ``groups``, ``batch_normalize``,
  ``activation``; square kernels, one stride, symmetric ``padding``, no dilation (a 1x1
  conv of stride s is ``[maxpool] size=1 stride=s`` then stride 1: darknet's 1x1 path
  skips im2col and with it the stride; in training a 1x1 conv or an ``[activation]``
  reading a value other layers read too gets a ``[route]`` copy of it: their backward
  overwrites the input's delta where the others add to it);
* ``add`` -> ``[shortcut]`` (a following ``relu`` fused as its activation); ``concat`` on
  channels -> ``[route]``; ``relu``/``sigmoid`` alone -> ``[activation]``;
* ``maxpool`` -> ``[maxpool]`` (darknet's total ``padding`` is 2 x the IR's, pads -inf);
  ``global_avgpool`` and an ``avgpool`` whose window is the whole plane -> ``[avgpool]``;
* ``upsample`` with sh = sw -> ``[upsample] stride=s`` (YOLOv3's layer: nearest,
  ``out = x[h // s, w // s]``, its backward adds each block's sum to the input's delta);
* ``flatten`` -> nothing (darknet's buffers are flat); ``linear`` -> ``[connected]``.

Anything else (relu6, prelu, channel shuffle's reshape/transpose, slice, pad, shift, mul of
activations, a batchnorm not after a conv, non-global avgpool) raises
:class:`UnsupportedCase` naming it. Values computed from params and consts only (the
masked weights of ``diagonalwise``) are evaluated in float64 here, and their gradients
are chained back to the params by the reference's backward rules (:class:`Lowered`).

The weights file is darknet's layout (``load_weights``): int32 major, minor, revision,
then ``seen`` as uint64 (major 0, minor 2), then per layer in order: convolutional:
biases[n], [scales, rolling_mean, rolling_variance][n] when ``batch_normalize``,
weights[n x c/groups x size x size]; connected: biases[out], weights[out x in].

darknet normalizes by ``sqrt(var) + 1e-6`` where the IR has ``sqrt(var + eps)``: the
rolling variance written is ``(sqrt(var + eps) - 1e-6)^2``, so inference computes the
IR's function. A conv bias before a batchnorm (darknet's conv has none there) is folded
into the rolling mean.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convbench.backend import UnsupportedCase
from convbench.graph import SOURCE_OPS, Graph, Node
from convbench.reference import backward, forward

#: darknet adds this to sqrt(variance) in normalize_cpu
DARKNET_BN_EPS = 1e-6
HEADER = (0, 2, 0)  # major, minor, revision: ``seen`` is a size_t
ACTIVATIONS = {"relu": "relu", "sigmoid": "logistic"}
REASONS = {
    "relu6": "darknet has no ReLU6 activation (its activations: logistic, relu, relie, linear, ramp, tanh, plse, leaky, elu, loggy, stair, hardtan, lhtan, selu)",
    "reshape": "darknet has no reshape/transpose layer (what channel shuffles, ECA's 1-D conv across channels, cross-channel pooling and DiCE's dimension-wise convs are built from)",
    "transpose": "darknet has no reshape/transpose layer (what channel shuffles, ECA's 1-D conv across channels, cross-channel pooling and DiCE's dimension-wise convs are built from)",
    "slice": "darknet's [route] (2018) cannot take a channel slice of a layer",
    "pad": "darknet has no padding layer",
    "shift": "darknet has no shift layer",
    "mul": "darknet has no elementwise product of activations",
    "gather": "darknet's [route] (2018) concatenates whole layers; it cannot gather channels by an index list",
    "prelu": "darknet (2018) has no PReLU: its leaky activation has one fixed slope (0.1), not a learned slope per channel",
}


@dataclass
class Layer:
    """One darknet layer: its cfg section, its weight sources and what it computes."""

    kind: str  # cfg section name
    options: dict[str, Any]
    node: str  # the graph value this layer's output is
    #: darknet field -> graph value (weights, biases, scales, rolling_mean, rolling_variance)
    sources: dict[str, str] = field(default_factory=dict)
    bias_before_bn: str | None = None  # a conv bias folded into the rolling mean
    shape: tuple[int, ...] | None = None  # of a layer computing no graph value (else the node's)


@dataclass
class Lowered:
    """A graph as a darknet network: layers, the cfg text and the weights file writer."""

    graph: Graph
    layers: list[Layer]
    outputs: dict[str, int]  #: graph output -> layer index
    input: str
    weight_graph: Graph | None  #: the param/const-only values darknet takes as weights
    values: dict[str, np.ndarray]  #: every source and weight-graph value, float64

    def cfg(self, batch: int, learning_rate: float) -> str:
        """The ``.cfg`` text: a ``[net]`` section then one section per layer. darknet's SGD
        step is ``learning_rate / batch x updates``, so the cfg's rate is scaled by batch."""
        _, c, h, w = self.graph.shape(self.input)
        net = {
            "batch": batch, "subdivisions": 1, "height": h, "width": w, "channels": c,
            "learning_rate": learning_rate * batch, "momentum": 0, "decay": 0, "policy": "constant",
            "burn_in": 0, "max_batches": 1 << 30,
        }  # fmt: skip
        parts = [_section("net", net)]
        parts += [_section(layer.kind, layer.options) for layer in self.layers]
        return "\n".join(parts)

    def weights(self) -> bytes:
        """The weights file, darknet's layout (module docstring)."""
        out = [struct.pack("<3i", *HEADER), struct.pack("<Q", 0)]
        for layer in self.layers:
            if layer.kind not in ("convolutional", "connected"):
                continue
            for name in ("biases", "scales", "rolling_mean", "rolling_variance", "weights"):
                if name in layer.options.get("_fields", ()):
                    out.append(self.field(layer, name).astype("<f4").tobytes())
        return b"".join(out)

    def field(self, layer: Layer, name: str) -> np.ndarray:
        """The float64 values of darknet field ``name`` of ``layer``, flat."""
        if name == "biases" and "biases" not in layer.sources:
            return np.zeros(int(layer.options.get("filters", layer.options.get("output", 0))))
        value = np.asarray(self.values[layer.sources[name]], dtype=np.float64).reshape(-1)
        if name == "rolling_mean" and layer.bias_before_bn:
            value = value - self.values[layer.bias_before_bn].reshape(-1)
        if name == "rolling_variance":
            value = (np.sqrt(value + float(layer.options["_eps"])) - DARKNET_BN_EPS) ** 2
        return value

    def param_grads(self, value_grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradients of the graph's params from those of the values darknet holds as weights
        (params directly; computed weights through the weight graph's backward)."""
        grads: dict[str, np.ndarray] = {}
        computed = {}
        for name, g in value_grads.items():
            if self.graph[name].op == "param":
                grads[name] = grads[name] + g if name in grads else g
            else:
                computed[name] = g
        if computed and self.weight_graph is not None:
            sub = Graph(self.weight_graph.nodes, tuple(computed))
            values = forward(sub, self.values, training=False)
            for name, g in backward(sub, values, computed, training=False).items():
                if sub[name].op == "param":
                    grads[name] = grads[name] + g if name in grads else g
        for node in self.graph.params:
            grads.setdefault(node.name, np.zeros(node.shape))
        return grads


def _section(kind: str, options: Mapping[str, Any]) -> str:
    lines = [f"[{kind}]"] + [f"{k}={v}" for k, v in options.items() if not k.startswith("_")]
    return "\n".join(lines) + "\n"


def _dynamic(graph: Graph) -> set[str]:
    dyn: set[str] = set()
    for node in graph.nodes:
        if node.op == "input" or any(i in dyn for i in node.inputs):
            dyn.add(node.name)
    return dyn


def _square(value: Any, what: str, node: Node) -> int:
    a, b = (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))
    if a != b:
        raise UnsupportedCase(f"darknet: {node.op} {node.name!r} has {what} {a}x{b}; darknet's are square")
    return a


def lower(graph: Graph, tensors: Mapping[str, np.ndarray], training: bool = False) -> Lowered:
    """The darknet network of ``graph`` (UnsupportedCase naming what darknet cannot express);
    ``training``: its backward accumulates every gradient (see ``feed``)."""
    inputs = graph.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise UnsupportedCase("darknet: a network has exactly one NCHW input")
    dyn = _dynamic(graph)
    consumers: dict[str, list[Node]] = {n.name: [] for n in graph.nodes}
    for node in graph.nodes:
        for i in node.inputs:
            consumers[i].append(node)
    outputs = set(graph.outputs)

    weight_nodes = tuple(n for n in graph.nodes if n.name not in dyn)
    computed = [n for n in weight_nodes if n.op not in SOURCE_OPS]
    weight_graph = Graph(weight_nodes, tuple(n.name for n in computed)) if computed else None
    values = {n.name: np.asarray(tensors[n.name], dtype=np.float64) for n in graph.nodes if n.op in SOURCE_OPS}
    if weight_graph is not None:
        values.update(forward(weight_graph, values, training=False))

    layers: list[Layer] = []
    where: dict[str, int] = {inputs[0].name: -1}  # graph value -> layer index (-1: net input)
    done: set[str] = set()

    def sole(name: str, ops: tuple[str, ...]) -> Node | None:
        """The one consumer of ``name`` if it has one, of one of ``ops``, and is fusable."""
        cs = consumers[name]
        if len(cs) == 1 and cs[0].op in ops and name not in outputs:
            return cs[0]
        return None

    def feed(name: str, node: Node, overwrites: bool = False) -> None:
        """Make ``name`` the previous layer's output (a [route] when it is not). A layer whose
        backward ``overwrites`` its input's delta (darknet's 1x1 conv and [activation]) reads
        a shared value in training through a [route] of its own, whose delta it may overwrite."""
        at = where.get(name)
        if at is None:
            raise UnsupportedCase(f"darknet: {node.op} {node.name!r} reads {name!r}, which no darknet layer computes")
        copy = training and overwrites and at >= 0 and len(consumers[name]) > 1
        if at == len(layers) - 1 and not copy:
            return
        if at == -1:
            raise UnsupportedCase(f"darknet: {node.name!r} reads the network input after other layers; [route] cannot reach it")
        layers.append(Layer("route", {"layers": at}, name))

    def push(layer: Layer) -> None:
        layers.append(layer)
        where[layer.node] = len(layers) - 1

    def activation(name: str) -> tuple[str, str]:
        act = sole(name, tuple(ACTIVATIONS))
        if act is None:
            return "linear", name
        done.add(act.name)
        return ACTIVATIONS[act.op], act.name

    for node in graph.nodes:
        if node.name not in dyn or node.op in SOURCE_OPS or node.name in done:
            continue
        op = node.op
        if op == "conv2d":
            x, w = node.inputs[0], node.inputs[1]
            bias = node.inputs[2] if len(node.inputs) == 3 else None
            if w in dyn or (bias and bias in dyn):
                raise UnsupportedCase(f"darknet: conv2d {node.name!r} has a weight computed from the input")
            size = _square(graph.shape(w)[2:], "kernel", node)
            stride = _square(node.attrs["stride"], "stride", node)
            padding = _square(node.attrs["padding"], "padding", node)
            if tuple(int(d) for d in (node.attrs.get("dilation") or (1, 1))) != (1, 1):
                raise UnsupportedCase(f"darknet: conv2d {node.name!r} is dilated; darknet (2018) has no dilation")
            feed(x, node, overwrites=size == 1 and stride == 1)
            if size == 1 and stride > 1:
                # darknet (2018) skips im2col for 1x1 kernels, so it ignores their stride:
                # subsample first ([maxpool] size=1 picks every stride-th pixel), then stride 1
                if padding:
                    raise UnsupportedCase(f"darknet: conv2d {node.name!r}: a padded 1x1 conv with stride {stride} (darknet ignores a 1x1 conv's stride)")
                n, c = graph.shape(x)[:2]
                layers.append(Layer("maxpool", {"size": 1, "stride": stride, "padding": 0}, f"{node.name}:subsample", shape=(n, c, *node.shape[2:])))
                stride = 1
            opts: dict[str, Any] = {"filters": graph.shape(w)[0], "size": size, "stride": stride, "padding": padding, "groups": int(node.attrs["groups"])}
            sources = {"weights": w}
            end, before_bn = node.name, None
            bn = sole(node.name, ("batchnorm",))
            if bn is not None and bn.inputs[0] == node.name:
                done.add(bn.name)
                _, gamma, beta, mean, var = bn.inputs
                if any(s in dyn for s in (gamma, beta, mean, var)):
                    raise UnsupportedCase(f"darknet: batchnorm {bn.name!r} has statistics computed from the input")
                opts["batch_normalize"] = 1
                opts["_eps"] = float(bn.attrs.get("eps", 1e-5))
                sources.update(biases=beta, scales=gamma, rolling_mean=mean, rolling_variance=var)
                before_bn, end = bias, bn.name
                opts["_fields"] = ("biases", "scales", "rolling_mean", "rolling_variance", "weights")
            else:
                if bias:
                    sources["biases"] = bias
                opts["_fields"] = ("biases", "weights")
            opts["activation"], end = activation(end)
            push(Layer("convolutional", opts, end, sources, before_bn))
        elif op in ACTIVATIONS:
            feed(node.inputs[0], node, overwrites=True)
            push(Layer("activation", {"activation": ACTIVATIONS[op]}, node.name))
        elif op == "add":
            a, b = node.inputs
            if graph.shape(a) != graph.shape(b):
                raise UnsupportedCase(f"darknet: add {node.name!r} broadcasts; [shortcut] adds layers of one shape")
            if a not in dyn or b not in dyn:
                raise UnsupportedCase(f"darknet: add {node.name!r} of a constant; darknet adds layers only")
            last = len(layers) - 1
            first, other = (a, b) if where.get(a) == last else (b, a) if where.get(b) == last else (a, b)
            feed(first, node)
            if where.get(other, -1) < 0:
                raise UnsupportedCase(f"darknet: add {node.name!r}: [shortcut] cannot reach {other!r}")
            act, end = activation(node.name)
            push(Layer("shortcut", {"from": where[other], "activation": act}, end))
        elif op == "concat":
            if int(node.attrs["axis"]) % 4 != 1 or len(node.shape) != 4:
                raise UnsupportedCase(f"darknet: concat {node.name!r} is not on channels; [route] concatenates channels")
            idx = [where.get(i, -1) for i in node.inputs]
            if min(idx) < 0:
                raise UnsupportedCase(f"darknet: concat {node.name!r} reads a value [route] cannot reach")
            push(Layer("route", {"layers": ",".join(str(i) for i in idx)}, node.name))
        elif op == "maxpool":
            size = _square(node.attrs["kernel"], "kernel", node)
            stride = _square(node.attrs["stride"], "stride", node)
            padding = _square(node.attrs["padding"], "padding", node)
            feed(node.inputs[0], node)
            push(Layer("maxpool", {"size": size, "stride": stride, "padding": 2 * padding}, node.name))
        elif op in ("avgpool", "global_avgpool"):
            h, w = graph.shape(node.inputs[0])[2:]
            if op == "avgpool" and (node.shape[2:] != (1, 1) or tuple(node.attrs["kernel"]) != (h, w) or any(node.attrs["padding"])):
                raise UnsupportedCase(f"darknet: avgpool {node.name!r} is not global; darknet's [avgpool] averages the whole plane")
            feed(node.inputs[0], node)
            push(Layer("avgpool", {}, node.name))
        elif op == "upsample":
            stride = _square(node.attrs["scale"], "scale", node)
            feed(node.inputs[0], node)
            push(Layer("upsample", {"stride": stride}, node.name))
        elif op == "flatten":
            at = where.get(node.inputs[0])
            if at is None or at < 0:
                raise UnsupportedCase(f"darknet: flatten {node.name!r} of a value no layer computes")
            where[node.name] = at
        elif op == "linear":
            x, w = node.inputs[0], node.inputs[1]
            bias = node.inputs[2] if len(node.inputs) == 3 else None
            if w in dyn or (bias and bias in dyn):
                raise UnsupportedCase(f"darknet: linear {node.name!r} has a weight computed from the input")
            feed(x, node)
            sources = {"weights": w} | ({"biases": bias} if bias else {})
            act, end = activation(node.name)
            push(Layer("connected", {"output": graph.shape(w)[0], "activation": act, "_fields": ("biases", "weights")}, end, sources))
        elif op == "batchnorm":
            raise UnsupportedCase(f"darknet: batchnorm {node.name!r} does not follow a conv2d it can be fused into")
        else:
            raise UnsupportedCase(f"darknet: {op}: {REASONS.get(op, 'not lowered in this backend')}")

    outs: dict[str, int] = {}
    for name in graph.outputs:
        at = where.get(name)
        if at is None or at < 0:
            raise UnsupportedCase(f"darknet: output {name!r} is not a layer's output")
        outs[name] = at
    if not layers:
        raise UnsupportedCase("darknet: the graph has no layer")
    return Lowered(graph, layers, outs, inputs[0].name, weight_graph, values)

