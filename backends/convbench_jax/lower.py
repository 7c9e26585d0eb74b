"""JAX lowering of the IR: one function per op (:data:`OPS`), values are jax arrays.

Convolutions are ``lax.conv_general_dilated`` with ``feature_group_count`` (a depthwise
conv is groups = C), weights kept OIHW and activations NCHW or NHWC through the
dimension numbers. Pools are ``lax.reduce_window`` with explicit symmetric padding:
``maxpool`` pads with -inf (its init value), ``avgpool`` sums zeros and divides by a
constant count of the real elements in each window. Batch norm is written out
(batch statistics with the biased variance in training). Float32 convs and matmuls ask
for ``Precision.HIGHEST``, so GPUs do not round through TF32.

This module imports jax; :mod:`convbench_jax.backend` imports it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from convbench_lowering.drive import OpFn, Site
from convbench_lowering.layout import NHWC, Converter, physical_axis, physical_pads
from convbench_lowering.shift import shift_windows
from jax import lax

from convbench.graph import conv_output_hw

HIGHEST = lax.Precision.HIGHEST


@dataclass
class Context:
    """What op functions need besides their inputs."""

    training: bool
    #: batchnorm in training appends (running-stat node name, batch statistic, momentum).
    stat_updates: list[tuple[str, Any, float]] = field(default_factory=list)


def converter() -> Converter:
    return Converter(lambda x, perm: jnp.transpose(x, perm), lambda x, shape: jnp.reshape(x, shape))


def _channel_axis(perm: Any) -> int:
    return 3 if perm == NHWC else 1


def _spatial_axes(perm: Any) -> tuple[int, int]:
    return (1, 2) if perm == NHWC else (2, 3)


def conv2d(ctx: Context, site: Site, ins: list[Any]) -> Any:
    a = site.attrs
    spec = "NHWC" if site.in_perms[0] == NHWC else "NCHW"
    y = lax.conv_general_dilated(
        ins[0],
        ins[1],
        window_strides=tuple(a["stride"]),
        padding=[(int(p), int(p)) for p in a["padding"]],
        rhs_dilation=tuple(a["dilation"]),
        dimension_numbers=(spec, "OIHW", spec),
        feature_group_count=int(a["groups"]),
        precision=HIGHEST,
    )
    if len(ins) == 3:
        y = y + _per_channel(ins[2], 4, _channel_axis(site.in_perms[0]))
    return y


def _per_channel(v: Any, rank: int, axis: int) -> Any:
    shape = [1] * rank
    shape[axis] = -1
    return jnp.reshape(v, shape)


def batchnorm(ctx: Context, site: Site, ins: list[Any]) -> Any:
    x, gamma, beta, mean, var = ins
    rank = len(site.in_shapes[0])
    axis = _channel_axis(site.in_perms[0]) if rank == 4 else 1
    axes = tuple(i for i in range(rank) if i != axis)
    eps = float(site.attrs.get("eps", 1e-5))
    if x.dtype in (jnp.float16, jnp.bfloat16):  # statistics and normalization in float32, as Flax does
        y = batchnorm(ctx, site, [v.astype(jnp.float32) for v in ins])
        return y.astype(x.dtype)
    if ctx.training:
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - _per_channel(mean, rank, axis)), axis=axes)
        momentum = float(site.attrs.get("momentum", 0.1))
        ctx.stat_updates.append((site.node.inputs[3], mean, momentum))
        ctx.stat_updates.append((site.node.inputs[4], var, momentum))
    scale = gamma * lax.rsqrt(var + eps)
    return (x - _per_channel(mean, rank, axis)) * _per_channel(scale, rank, axis) + _per_channel(beta, rank, axis)


def _window(site: Site) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int]]]:
    a = site.attrs
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    if site.in_perms[0] == NHWC:
        return (1, kh, kw, 1), (1, sh, sw, 1), [(0, 0), (ph, ph), (pw, pw), (0, 0)]
    return (1, 1, kh, kw), (1, 1, sh, sw), [(0, 0), (0, 0), (ph, ph), (pw, pw)]


def _counts(site: Site) -> np.ndarray:
    """(OH, OW) number of real input elements in each pooling window."""
    a = site.attrs
    h, w = site.in_shapes[0][2:]
    out_hw = conv_output_hw((h, w), a["kernel"], a["stride"], a["padding"])
    counts = []
    for size, k, s, p, o in zip((h, w), a["kernel"], a["stride"], a["padding"], out_hw, strict=True):
        start = np.arange(o) * s - p
        counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
    return (counts[0][:, None] * counts[1][None, :]).astype(np.float64)


def avgpool(ctx: Context, site: Site, ins: list[Any]) -> Any:
    dims, strides, padding = _window(site)
    x = ins[0]
    total = lax.reduce_window(x, np.zeros((), x.dtype), lax.add, dims, strides, padding)  # a NumPy init: the differentiable sum
    counts = _counts(site)
    counts = counts[:, :, None] if site.in_perms[0] == NHWC else counts
    return total / jnp.asarray(counts, dtype=x.dtype)


def maxpool(ctx: Context, site: Site, ins: list[Any]) -> Any:
    dims, strides, padding = _window(site)
    x = ins[0]
    return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, dims, strides, padding)


def global_avgpool(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return jnp.mean(ins[0], axis=_spatial_axes(site.in_perms[0]), keepdims=True)


def flatten(ctx: Context, site: Site, ins: list[Any]) -> Any:
    n, c, *spatial = site.in_shapes[0]
    x = ins[0]
    if site.in_perms[0] is not None and c > 1 and int(np.prod(spatial)) > 1:
        x = jnp.transpose(x, np.argsort(site.in_perms[0]).tolist())  # back to NCHW order
    return jnp.reshape(x, (n, -1))


def linear(ctx: Context, site: Site, ins: list[Any]) -> Any:
    y = jnp.matmul(ins[0], ins[1].T, precision=HIGHEST)
    return y + ins[2] if len(ins) == 3 else y


def concat(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return jnp.concatenate(ins, axis=physical_axis(site.attrs["axis"], len(site.node.shape), site.out_perm))


def slice_(ctx: Context, site: Site, ins: list[Any]) -> Any:
    axis = physical_axis(site.attrs["axis"], len(site.node.shape), site.out_perm)
    return lax.slice_in_dim(ins[0], int(site.attrs["start"]), int(site.attrs["stop"]), axis=axis)


def pad(ctx: Context, site: Site, ins: list[Any]) -> Any:
    return jnp.pad(ins[0], physical_pads(site.attrs["pads"], site.out_perm))


def shift(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Zero-pad the plane once by the largest offset; take each run of channels (start,
    stop, dy, dx) from its window, ``out[h, w] = x[h - dy, w - dx]``; concatenate."""
    p, windows = shift_windows(site.attrs["offsets"])
    nhwc = site.in_perms[0] == NHWC
    h, w = site.in_shapes[0][2:]
    spatial = [(0, 0), (p, p), (p, p), (0, 0)] if nhwc else [(0, 0), (0, 0), (p, p), (p, p)]
    x = jnp.pad(ins[0], spatial) if p else ins[0]
    parts = [x[win.index(h, w, nhwc)] for win in windows]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=3 if nhwc else 1)


def gather(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """``jnp.take`` with the node's fixed index list (a constant of the traced function);
    JAX's gradient is the scatter-add."""
    axis = physical_axis(site.attrs["axis"], len(site.node.shape), site.out_perm)
    return jnp.take(ins[0], np.asarray(site.attrs["indices"], dtype=np.int32), axis=axis)


def upsample(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """Nearest upsampling: ``jnp.repeat`` along H and W (its gradient sums each block)."""
    h_axis, w_axis = _spatial_axes(site.in_perms[0])
    sh, sw = (int(s) for s in site.attrs["scale"])
    return jnp.repeat(jnp.repeat(ins[0], sh, axis=h_axis), sw, axis=w_axis)


def prelu(ctx: Context, site: Site, ins: list[Any]) -> Any:
    """``where(x > 0, x, a_c * x)``, the slope on the channel axis: its gradients are the
    IR's, x = 0 included (the slope's)."""
    x, a = ins
    rank = len(site.in_shapes[0])
    axis = _channel_axis(site.in_perms[0]) if rank == 4 else 1
    return jnp.where(x > 0, x, x * _per_channel(a, rank, axis))


#: The op table: every IR op this backend lowers.
OPS: dict[str, OpFn] = {
    "conv2d": conv2d,
    "batchnorm": batchnorm,
    "relu": lambda ctx, site, ins: jax.nn.relu(ins[0]),
    "relu6": lambda ctx, site, ins: jnp.minimum(jax.nn.relu(ins[0]), 6.0),
    "sigmoid": lambda ctx, site, ins: jax.nn.sigmoid(ins[0]),
    "add": lambda ctx, site, ins: ins[0] + ins[1],
    "mul": lambda ctx, site, ins: ins[0] * ins[1],
    "concat": concat,
    "slice": slice_,
    "avgpool": avgpool,
    "maxpool": maxpool,
    "global_avgpool": global_avgpool,
    "flatten": flatten,
    "linear": linear,
    "reshape": lambda ctx, site, ins: jnp.reshape(ins[0], tuple(int(d) for d in site.attrs["shape"])),
    "transpose": lambda ctx, site, ins: jnp.transpose(ins[0], [int(a) for a in site.attrs["perm"]]),
    "pad": pad,
    "shift": shift,
    "gather": gather,
    "upsample": upsample,
    "prelu": prelu,
}
