"""TensorFlow lowering of the IR: one function per op (:data:`OPS`), values are tf tensors.

Layouts: activations are NHWC or NCHW (``site.in_perms`` says which; see
:mod:`convbench_lowering.layout`) and conv weights are HWIO, TensorFlow's filter format,
so a depthwise weight (C*m, 1, kh, kw) arrives as (kh, kw, 1, C*m) and is reshaped to
``depthwise_conv2d``'s (kh, kw, C, m): output channel c*m + j reads input channel c,
as in the IR. Padding is explicit and symmetric. Pools: TensorFlow's pools take only
SAME or VALID padding; where SAME pads exactly (p, p) it is used (TensorFlow's SAME
average pool already excludes the padding, its max pool ignores it); otherwise the input
is padded explicitly (zeros for avgpool, -inf for maxpool) and the average is rescaled by
a constant k*k / count, where count is the number of real elements in each window.
``reshape`` and ``transpose`` run on logical (NCHW) values; ``pad`` pads the physical
axes; ``shift`` pads H and W once and slices each run of channels sharing an offset; ``gather`` is ``tf.gather``;
``upsample`` is ``tf.repeat`` along the physical H and W axes; ``prelu`` is Keras's
``PReLU`` form, ``relu(x) + relu(-x) * (-a)`` with the slope on the physical channel axis.

This module imports tensorflow; :mod:`convbench_tensorflow.backend` imports it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from convbench_lowering.drive import OpFn, Site
from convbench_lowering.layout import NHWC, Converter, physical_axis, physical_pads
from convbench_lowering.shift import shift_windows

from convbench.graph import conv_output_hw


@dataclass
class Context:
    """What op functions need besides their inputs."""

    training: bool
    dtype: tf.DType
    #: run grouped (non-depthwise) convs as one conv per group, concatenated: TensorFlow
    #: has no gradient of grouped convolutions on CPU outside XLA
    split_groups: bool = False
    #: batchnorm in training appends (running-stat node name, batch statistic, momentum).
    stat_updates: list[tuple[str, Any, float]] = field(default_factory=list)


def converter() -> Converter:
    return Converter(lambda x, perm: tf.transpose(x, perm), lambda x, shape: tf.reshape(x, shape))


def _fmt(perm: Any) -> str:
    return "NHWC" if perm == NHWC else "NCHW"


def _spatial(values: tuple[int, int], fmt: str, fill: int) -> list[int]:
    a, b = int(values[0]), int(values[1])
    return [fill, a, b, fill] if fmt == "NHWC" else [fill, fill, a, b]


def _explicit(padding: tuple[int, int], fmt: str) -> list[list[int]]:
    ph, pw = int(padding[0]), int(padding[1])
    return [[0, 0], [ph, ph], [pw, pw], [0, 0]] if fmt == "NHWC" else [[0, 0], [0, 0], [ph, ph], [pw, pw]]


def conv2d(ctx: Context, site: Site, ins: list[Any]) -> Any:
    a = site.attrs
    fmt = _fmt(site.in_perms[0])
    c = site.in_shapes[0][1]
    o, cg, kh, kw = site.in_shapes[1]
    strides = _spatial(a["stride"], fmt, 1)
    dilations = _spatial(a["dilation"], fmt, 1)
    padding = _explicit(a["padding"], fmt)
    x, w = ins[0], ins[1]
    if cg == 1 and a["groups"] == c and c > 1:
        w = tf.reshape(w, (kh, kw, c, o // c))
        if tuple(a["stride"]) != (1, 1) and tuple(a["dilation"]) != (1, 1):
            # depthwise_conv2d refuses stride and dilation together: a grouped conv2d
            # (groups = C) with the HWIO weight (kh, kw, 1, C*m) computes the same
            y = _grouped(ctx, x, ins[1], int(a["groups"]), strides, padding, fmt, dilations)
        else:
            y = tf.nn.depthwise_conv2d(x, w, strides, padding, fmt, dilations[1:3] if fmt == "NHWC" else dilations[2:])
    else:
        y = _grouped(ctx, x, w, int(a["groups"]), strides, padding, fmt, dilations)
    if len(ins) == 3:
        y = tf.nn.bias_add(y, ins[2], data_format=fmt)
    return y


def _grouped(ctx: Context, x: Any, w: Any, groups: int, strides: list[int], padding: Any, fmt: str, dilations: list[int]) -> Any:
    """``tf.nn.conv2d`` with ``groups`` (the HWIO weight holds C/groups input channels), or,
    with ``ctx.split_groups``, one conv per group on channel slices, concatenated."""
    if groups == 1 or not ctx.split_groups:
        return tf.nn.conv2d(x, w, strides, padding, fmt, dilations)
    axis = 3 if fmt == "NHWC" else 1
    xs = tf.split(x, groups, axis=axis)
    ws = tf.split(w, groups, axis=3)
    return tf.concat([tf.nn.conv2d(xi, wi, strides, padding, fmt, dilations) for xi, wi in zip(xs, ws, strict=True)], axis=axis)


#: tf.nn.fused_batch_norm silently raises a smaller epsilon to this value.
FUSED_MIN_EPSILON = 1.001e-5


def batchnorm(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Inference: the fused kernel on the running statistics. Training: the fused kernel
    (batch statistics, biased variance) when the epsilon is one it accepts, else the
    batch moments written out (the IR's default 1e-5 is below the fused kernel's floor).
    Half types: the fused kernel takes float32 scale and statistics; written out, the
    normalization runs in float32 and its result is cast back."""
    x, gamma, beta, mean, var = ins
    eps = float(site.attrs.get("eps", 1e-5))
    momentum = float(site.attrs.get("momentum", 0.1))
    rank = len(site.in_shapes[0])
    if rank == 4 and (eps >= FUSED_MIN_EPSILON or not ctx.training):
        fmt = _fmt(site.in_perms[0])
        if x.dtype in (tf.float16, tf.bfloat16):  # the fused kernel's scale and statistics are float32
            gamma, beta, mean, var = (tf.cast(v, tf.float32) for v in (gamma, beta, mean, var))
        if ctx.training:
            y, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, None, None, eps, fmt, is_training=True)
        else:
            # the fused kernel raises epsilon to FUSED_MIN_EPSILON: fold the difference into
            # the variance, so sqrt(var' + eps') = sqrt(var + eps) exactly
            if eps < FUSED_MIN_EPSILON:
                var = var + (eps - FUSED_MIN_EPSILON)
            y, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean, var, max(eps, FUSED_MIN_EPSILON), fmt, is_training=False
            )
    elif x.dtype in (tf.float16, tf.bfloat16):  # written out in float32, as Keras does, cast back
        return tf.cast(batchnorm(ctx, site, [tf.cast(v, tf.float32) for v in ins]), x.dtype)
    else:  # batch moments written out (a rank other than 4, or an epsilon below the fused one)
        axis = 1 if rank != 4 or site.in_perms[0] != NHWC else 3
        axes = [i for i in range(rank) if i != axis]
        shape = [1] * rank
        shape[axis] = -1
        if ctx.training:
            batch_mean, batch_var = tf.nn.moments(x, axes)
        else:
            batch_mean, batch_var = mean, var
        y = tf.nn.batch_normalization(
            x, tf.reshape(batch_mean, shape), tf.reshape(batch_var, shape), tf.reshape(beta, shape), tf.reshape(gamma, shape), eps
        )
    if ctx.training:
        ctx.stat_updates.append((site.node.inputs[3], batch_mean, momentum))
        ctx.stat_updates.append((site.node.inputs[4], batch_var, momentum))
    return y


def _window_counts(site: Site) -> tuple[np.ndarray, tuple[int, int]]:
    a = site.attrs
    n, c, h, w = site.in_shapes[0]
    out_hw = conv_output_hw((h, w), a["kernel"], a["stride"], a["padding"])
    counts = []
    for size, k, s, p, o in zip((h, w), a["kernel"], a["stride"], a["padding"], out_hw, strict=True):
        start = np.arange(o) * s - p
        counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
    return counts[0][:, None] * counts[1][None, :], out_hw


def _same_matches(site: Site) -> bool:
    """Whether TensorFlow's SAME padding is exactly the IR's symmetric padding here."""
    a = site.attrs
    for size, k, s, p in zip(site.in_shapes[0][2:], a["kernel"], a["stride"], a["padding"], strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        if (total // 2, total - total // 2) != (p, p) or out != (size + 2 * p - k) // s + 1:
            return False
    return True


def _pool(kind: str) -> OpFn:
    def fn(ctx: Context, site: Site, ins: list[Any]) -> Any:
        a = site.attrs
        fmt = _fmt(site.in_perms[0])
        pool = tf.nn.avg_pool2d if kind == "avgpool" else tf.nn.max_pool2d
        ksize, strides = _spatial(a["kernel"], fmt, 1), _spatial(a["stride"], fmt, 1)
        if tuple(a["padding"]) == (0, 0):
            return pool(ins[0], ksize, strides, "VALID", fmt)
        if _same_matches(site):
            return pool(ins[0], ksize, strides, "SAME", fmt)
        fill = 0.0 if kind == "avgpool" else -np.inf
        x = tf.pad(ins[0], _explicit(a["padding"], fmt), constant_values=fill)
        y = pool(x, ksize, strides, "VALID", fmt)
        if kind == "avgpool":
            counts, _ = _window_counts(site)
            scale = (a["kernel"][0] * a["kernel"][1]) / counts
            shape = scale.shape + (1,) if fmt == "NHWC" else scale.shape
            y = y * tf.constant(scale.reshape(shape), dtype=y.dtype)
        return y

    return fn


def global_avgpool(ctx: Context, site: Site, ins: list[Any]) -> Any:
    axes = [1, 2] if _fmt(site.in_perms[0]) == "NHWC" else [2, 3]
    return tf.reduce_mean(ins[0], axis=axes, keepdims=True)


def flatten(ctx: Context, site: Site, ins: list[Any]) -> Any:
    n, c, *spatial = site.in_shapes[0]
    x = ins[0]
    if site.in_perms[0] is not None and c > 1 and int(np.prod(spatial)) > 1:
        x = tf.transpose(x, np.argsort(site.in_perms[0]).tolist())  # back to NCHW order
    return tf.reshape(x, (n, -1))


def linear(ctx: Context, site: Site, ins: list[Any]) -> Any:
    y = tf.matmul(ins[0], ins[1], transpose_b=True)
    return y + ins[2] if len(ins) == 3 else y


def concat(ctx: Context, site: Site, ins: list[Any]) -> Any:
    rank = len(site.node.shape)
    return tf.concat(ins, axis=physical_axis(site.attrs["axis"], rank, site.out_perm))


def slice_(ctx: Context, site: Site, ins: list[Any]) -> Any:
    rank = len(site.node.shape)
    index = [slice(None)] * rank
    index[physical_axis(site.attrs["axis"], rank, site.out_perm)] = slice(site.attrs["start"], site.attrs["stop"])
    return ins[0][tuple(index)]


def pad(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return tf.pad(ins[0], [list(p) for p in physical_pads(site.attrs["pads"], site.out_perm)])


def shift(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Zero-pad the plane once by the largest offset; take each run of channels (start,
    stop, dy, dx) from its window, ``out[h, w] = x[h - dy, w - dx]``; concatenate."""
    p, windows = shift_windows(site.attrs["offsets"])
    nhwc = site.in_perms[0] == NHWC
    h, w = site.in_shapes[0][2:]
    x = tf.pad(ins[0], _explicit((p, p), "NHWC" if nhwc else "NCHW")) if p else ins[0]
    parts = [x[win.index(h, w, nhwc)] for win in windows]
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=3 if nhwc else 1)


def gather(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """``tf.gather`` with the node's fixed index list (its gradient is TensorFlow's
    scatter of the gathered gradient, ``IndexedSlices`` summed into the input)."""
    axis = physical_axis(site.attrs["axis"], len(site.node.shape), site.out_perm)
    return tf.gather(ins[0], tf.constant([int(i) for i in site.attrs["indices"]], dtype=tf.int32), axis=axis)


def upsample(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Nearest upsampling: each row repeated sh times, each column sw times."""
    sh, sw = (int(s) for s in site.attrs["scale"])
    perm = site.in_perms[0]
    y = tf.repeat(ins[0], sh, axis=physical_axis(2, 4, perm)) if sh > 1 else ins[0]
    return tf.repeat(y, sw, axis=physical_axis(3, 4, perm)) if sw > 1 else y


def prelu(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """``relu(x) + relu(-x) * (-a)``, Keras's ``PReLU`` form, with the (C,) slope on the
    physical channel axis (as is when that axis is the last one, NHWC or (N, C)). The
    TFLite converter here does not fuse it into PRELU: litert runs RELU, NEG, MUL, ADD. At
    x = 0 exactly its input gradient is 0 where the IR's is the slope (ReLU's gradient at
    0 is 0 in TensorFlow): a measure-zero difference random data never meets."""
    x, a = ins
    rank = len(site.in_shapes[0])
    axis = physical_axis(1, rank, site.in_perms[0])
    neg_slope = -a
    if axis != rank - 1:
        shape = [1] * rank
        shape[axis] = -1
        neg_slope = tf.reshape(neg_slope, shape)
    return tf.nn.relu(x) + tf.nn.relu(-x) * neg_slope


#: The op table: every IR op this backend lowers.
OPS: dict[str, OpFn] = {
    "conv2d": conv2d,
    "batchnorm": batchnorm,
    "relu": lambda ctx, site, ins: tf.nn.relu(ins[0]),
    "relu6": lambda ctx, site, ins: tf.nn.relu6(ins[0]),
    "sigmoid": lambda ctx, site, ins: tf.math.sigmoid(ins[0]),
    "add": lambda ctx, site, ins: tf.add(ins[0], ins[1]),
    "mul": lambda ctx, site, ins: tf.multiply(ins[0], ins[1]),
    "concat": concat,
    "slice": slice_,
    "avgpool": _pool("avgpool"),
    "maxpool": _pool("maxpool"),
    "global_avgpool": global_avgpool,
    "flatten": flatten,
    "linear": linear,
    "reshape": lambda ctx, site, ins: tf.reshape(ins[0], tuple(int(d) for d in site.attrs["shape"])),
    "transpose": lambda ctx, site, ins: tf.transpose(ins[0], [int(a) for a in site.attrs["perm"]]),
    "pad": pad,
    "shift": shift,
    "gather": gather,
    "upsample": upsample,
    "prelu": prelu,
}
