"""MXNet lowering of the IR: one function per op (:data:`OPS`), with Gluon's ``F``.

``F`` is ``mxnet.nd`` when the block runs imperatively and ``mxnet.sym`` once it is
hybridized, so the same functions build both. MXNet's CPU convolutions are NCHW only
(an NHWC convolution fails to create its oneDNN primitive), so every value is in
logical NCHW order. Ops: Convolution (``num_group``; depthwise is groups = C), BatchNorm
(``fix_gamma=False``; MXNet's momentum is the weight of the old running value, so it is
1 - the IR's), relu, clip(0, 6), sigmoid, broadcast_add/broadcast_mul (ranks aligned
with leading unit axes, as NumPy broadcasting does), concat, slice_axis, Pooling
(``count_include_pad=False`` for avg; MXNet's max pooling ignores the padding), mean
over H and W, Flatten, FullyConnected, reshape, transpose, pad (zeros concatenated) and
``shift`` (one padding, a slice per run of channels sharing an offset, concat) and
``gather`` (``take``, its index vector built from ``arange`` runs) and ``upsample``
(``repeat`` along H, then W: MXNet's ``UpSampling`` takes one scale for both) and
``prelu`` (``LeakyReLU(act_type="prelu")`` in inference, written out in training).

This module imports mxnet; :mod:`convbench_mxnet.backend` imports it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convbench_lowering.drive import OpFn, Site
from convbench_lowering.layout import Converter
from convbench_lowering.shift import shift_windows

from convbench.graph import index_runs


@dataclass
class Context:
    """``F`` (mx.nd or mx.sym) and whether batch norm uses batch statistics."""

    F: Any
    training: bool


def converter() -> Converter:
    """Never needed with every value in logical order; given for completeness."""
    return Converter(lambda x, perm: x.transpose(axes=perm), lambda x, shape: x.reshape(shape))


def conv2d(ctx: Context, site: Site, ins: list[Any]) -> Any:
    a = site.attrs
    o, _, kh, kw = site.in_shapes[1]
    return ctx.F.Convolution(
        *ins, kernel=(kh, kw), stride=tuple(a["stride"]), dilate=tuple(a["dilation"]), pad=tuple(a["padding"]),
        num_filter=o, num_group=int(a["groups"]), no_bias=len(ins) == 2, layout="NCHW",
    )  # fmt: skip


def batchnorm(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return ctx.F.BatchNorm(
        *ins, eps=float(site.attrs.get("eps", 1e-5)), momentum=1.0 - float(site.attrs.get("momentum", 0.1)),
        fix_gamma=False, use_global_stats=not ctx.training, axis=1,
    )  # fmt: skip


def _aligned(ctx: Context, site: Site, ins: list[Any]) -> list[Any]:
    rank = len(site.node.shape)
    out = []
    for x, shape in zip(ins, site.in_shapes, strict=True):
        if len(shape) < rank:
            x = ctx.F.reshape(x, shape=(1,) * (rank - len(shape)) + tuple(shape))
        out.append(x)
    return out


def add(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return ctx.F.broadcast_add(*_aligned(ctx, site, ins))


def mul(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return ctx.F.broadcast_mul(*_aligned(ctx, site, ins))


def _concat(ctx: Context, parts: list[Any], dim: int, rank: int) -> Any:
    """``concat``; in training followed by a copy (a broadcast multiply by one): MXNet
    1.9.1's oneDNN convolution backward dies with SIGFPE when its input derives from a
    concat of slices (an identity, a scalar multiply or a relu in between do not help
    once hybridized)."""
    y = ctx.F.concat(*parts, dim=dim)
    return ctx.F.broadcast_mul(y, ctx.F.ones((1,) * rank)) if ctx.training else y


def concat(ctx: Context, site: Site, ins: list[Any]) -> Any:
    rank = len(site.node.shape)
    return _concat(ctx, ins, int(site.attrs["axis"]) % rank, rank)


def slice_(ctx: Context, site: Site, ins: list[Any]) -> Any:
    a = site.attrs
    return ctx.F.slice_axis(ins[0], axis=int(a["axis"]), begin=int(a["start"]), end=int(a["stop"]))


def _pool(kind: str) -> OpFn:
    def fn(ctx: Context, site: Site, ins: list[Any]) -> Any:
        a = site.attrs
        extra = {"count_include_pad": False} if kind == "avg" else {}
        return ctx.F.Pooling(
            ins[0], kernel=tuple(a["kernel"]), stride=tuple(a["stride"]), pad=tuple(a["padding"]),
            pool_type=kind, pooling_convention="valid", **extra,
        )  # fmt: skip

    return fn


def linear(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return ctx.F.FullyConnected(*ins, num_hidden=site.in_shapes[1][0], no_bias=len(ins) == 2, flatten=False)


def pad(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Zeros concatenated before and after along each padded axis (MXNet's own ``pad``
    pads only the spatial axes of 4-D and 5-D tensors)."""
    x, shape = ins[0], list(site.in_shapes[0])
    for axis, (before, after) in enumerate(site.attrs["pads"]):
        parts = []
        for size in (int(before), None, int(after)):
            if size is None:
                parts.append(x)
            elif size:
                parts.append(ctx.F.zeros(shape=tuple(shape[:axis] + [size] + shape[axis + 1 :])))
        if len(parts) > 1:
            x = _concat(ctx, parts, axis, len(shape))
            shape[axis] += int(before) + int(after)
    return x


def shift(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Zero-pad H and W once by the largest offset; slice each run of channels (start,
    stop, dy, dx) from its window, ``out[h, w] = x[h - dy, w - dx]``; concatenate."""
    p, windows = shift_windows(site.attrs["offsets"])
    h, w = site.in_shapes[0][2:]
    F = ctx.F  # noqa: N806 - Gluon's name
    x = F.pad(ins[0], mode="constant", pad_width=(0, 0, 0, 0, p, p, p, p), constant_value=0) if p else ins[0]
    parts = [F.slice(x, begin=(None, *win.begin()), end=(None, *win.end(h, w))) for win in windows]
    return parts[0] if len(parts) == 1 else _concat(ctx, parts, 1, 4)


def gather(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """``take`` along the axis with the node's fixed index list. Neither ``mx.nd`` nor
    ``mx.sym`` has a literal here (a Gluon Constant would be the block's, in the case's
    float dtype), so the index vector is built in the graph from one ``arange`` per run of
    consecutive indices (:func:`convbench.graph.index_runs`), concatenated: a few tiny
    ops per run, which a sliding-channel gather with overlap has about one of per output
    channel. MXNet's gradient of ``take`` is the scatter-add.

    Measured (MXNet 1.9.1 CPU, hybridized, contended 2-core machine, indicative): the SCC
    gather of a (4, 128, 14, 14) input into 4,096 channels (144 runs) takes ~43 ms with
    ``take(axis=1)``, ~8 ms as transpose, ``take(axis=0)``, transpose, and ~3 ms as one
    ``slice_axis`` per run and a concat; building the index vector is ~1 ms of it. The
    issue asks for ``take``, so ``take`` on the node's axis it is: a row of this backend
    times MXNet's ``take``, not the fastest MXNet expression of the gather."""
    F = ctx.F  # noqa: N806 - Gluon's name
    runs = index_runs(site.attrs["indices"])
    parts = [F.arange(start, stop, dtype="int32") for start, stop in runs]
    index = parts[0] if len(parts) == 1 else F.concat(*parts, dim=0)
    return F.take(ins[0], index, axis=int(site.attrs["axis"]), mode="clip")


def prelu(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Inference: ``LeakyReLU(act_type="prelu")``, Gluon's ``nn.PReLU`` (the (C,) gamma on
    axis 1). Training: ``relu(x) - a * relu(-x)`` written out with a broadcast multiply,
    because MXNet 1.9.1's hybridized backward of ``LeakyReLU`` gives a wrong gamma
    gradient when a reshape/transpose follows it (a channel shuffle: 0.75 relative error
    on a conv, prelu, shuffle graph; right imperatively and without the shuffle)."""
    x, a = ins
    F = ctx.F  # noqa: N806 - Gluon's name
    if not ctx.training:
        return F.LeakyReLU(x, gamma=a, act_type="prelu")
    rank = len(site.in_shapes[0])
    slope = F.reshape(a, shape=(1, -1) + (1,) * (rank - 2))
    return F.broadcast_sub(F.relu(x), F.broadcast_mul(slope, F.relu(F.negative(x))))


#: The op table: every IR op this backend lowers.
OPS: dict[str, OpFn] = {
    "conv2d": conv2d,
    "batchnorm": batchnorm,
    "relu": lambda ctx, site, ins: ctx.F.relu(ins[0]),
    "relu6": lambda ctx, site, ins: ctx.F.clip(ins[0], 0.0, 6.0),
    "sigmoid": lambda ctx, site, ins: ctx.F.sigmoid(ins[0]),
    "add": add,
    "mul": mul,
    "concat": concat,
    "slice": slice_,
    "avgpool": _pool("avg"),
    "maxpool": _pool("max"),
    "global_avgpool": lambda ctx, site, ins: ctx.F.mean(ins[0], axis=(2, 3), keepdims=True),
    "flatten": lambda ctx, site, ins: ctx.F.flatten(ins[0]),
    "linear": linear,
    "reshape": lambda ctx, site, ins: ctx.F.reshape(ins[0], shape=tuple(int(d) for d in site.attrs["shape"])),
    "transpose": lambda ctx, site, ins: ctx.F.transpose(ins[0], axes=tuple(int(a) for a in site.attrs["perm"])),
    "pad": pad,
    "shift": shift,
    "gather": gather,
    "upsample": lambda ctx, site, ins: ctx.F.repeat(
        ctx.F.repeat(ins[0], repeats=int(site.attrs["scale"][0]), axis=2), repeats=int(site.attrs["scale"][1]), axis=3
    ),
    "prelu": prelu,
}
