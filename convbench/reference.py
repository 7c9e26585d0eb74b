"""The float64 NumPy reference: forward and backward of every op of the IR.

Every backend is verified against this module, so it favours exactness and clarity, but
it is vectorised (loops run over kernel taps only, never over pixels or channels) so that
MobileNet-sized layers run in seconds.

Conventions (those of :mod:`convbench.graph`):

* tensors are float64 NCHW; ``linear``/``flatten`` produce (N, F);
* ``conv2d`` is a cross-correlation with symmetric zero padding, floor-mode output size;
* ``avgpool`` divides by the number of *real* elements in each window (padding excluded);
  ``maxpool`` pads with -inf; a window lying entirely in the padding is an error;
* ``batchnorm`` inputs are (x, gamma, beta, running_mean, running_var). Inference uses the
  running statistics; training uses the batch statistics over every axis but 1, with the
  biased variance (PyTorch's train mode). Gradients flow through the batch statistics;
* ``reshape``, ``transpose``, ``pad``, ``shift`` and ``gather`` move data only; the
  gradient of each is its adjoint: reshape back, the inverse permutation, the interior
  slice, the shift by the opposite offsets (zero fill again), and a scatter-add into
  zeros (an input element read by several indices receives the sum of their gradients);
* ``upsample`` (nearest) repeats each pixel into an sh x sw block; its gradient sums
  each block;
* ``prelu`` is ``x`` where ``x > 0``, else ``a_c * x``; ``gx`` is ``gy`` where ``x > 0``,
  else ``a_c * gy`` (PyTorch's rule at x = 0), ``ga_c`` sums ``gy * min(x, 0)`` over every
  axis but 1;
* ``backward`` differentiates loss = sum over outputs of sum(output * cotangent). Only
  nodes that depend on an ``input`` or ``param`` receive gradients; ``const`` nodes never do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from convbench.graph import SOURCE_OPS, Graph, Node, conv_output_hw, shift_runs

Tensors = dict[str, np.ndarray]
Array = np.ndarray
#: forward(node, inputs, training) -> output
ForwardFn = Callable[[Node, list[Array], bool], Array]
#: backward(node, inputs, output, grad_output, needs, training) -> grad per input (or None)
BackwardFn = Callable[[Node, list[Array], Array, Array, list[bool], bool], list["Array | None"]]

MODES = ("inference", "training")


# -- windows (shared by conv and pools) ---------------------------------------------------
def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    a, b = value
    return (int(a), int(b))


def _pad(x: Array, padding: tuple[int, int], value: float = 0.0) -> Array:
    """Pad the two last axes symmetrically with ``value``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    return np.pad(x, widths, constant_values=value)


Taps = list[tuple[int, int, tuple[slice, slice]]]


def _taps(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> Taps:
    """(i, j, (rows, cols)) per kernel tap: ``xpad[..., rows, cols]`` is what tap (i, j) reads.

    Output pixel (oh, ow) reads padded pixel (oh*sh + i*dh, ow*sw + j*dw); trailing rows
    and columns that no window reaches are simply never indexed.
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    taps = []
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            taps.append((i, j, (rows, cols)))
    return taps


def _unpad(xp: Array, padding: tuple[int, int], hw: tuple[int, int]) -> Array:
    ph, pw = padding
    return np.ascontiguousarray(xp[..., ph : ph + hw[0], pw : pw + hw[1]])


# -- conv2d ---------------------------------------------------------------------------------
def _conv_attrs(node: Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]:
    a = node.attrs
    return _pair(a["stride"]), _pair(a["padding"]), _pair(a.get("dilation", 1)), int(a["groups"])


#: Working-set size per batch chunk of the depthwise loops: cache-sized, since a tap loop
#: makes many passes over its arrays and is bound by memory bandwidth.
_CHUNK_BYTES = 4 << 20


def _batch_chunks(n: int, sample_bytes: int) -> list[slice]:
    """Slices of the batch axis whose arrays take about ``_CHUNK_BYTES`` each."""
    step = max(1, _CHUNK_BYTES // max(sample_bytes, 1))
    return [slice(s, min(n, s + step)) for s in range(0, n, step)]


def _depthwise_forward(xp: Array, wr: Array, taps: Taps, out: Array) -> None:
    """out (n, c, m, oh, ow) = sum over taps of xp[tap] (n, c, 1, ...) * wr (c, m, tap)."""
    out[...] = 0.0
    tmp = np.empty_like(out)
    for i, j, (rows, cols) in taps:
        np.multiply(xp[:, :, None, rows, cols], wr[None, :, :, i, j, None, None], out=tmp)
        out += tmp


def _depthwise_backward(
    xp: Array, wr: Array, gy: Array, taps: Taps, gxp: Array | None, gw: Array | None
) -> None:
    """Accumulate into gxp (n, c, Hp, Wp) and gw (c, m, kh, kw); gy is (n, c, m, oh, ow)."""
    m = wr.shape[1]
    tmp = np.empty(gy.shape[:2] + gy.shape[3:]) if gxp is not None and m == 1 else None
    for i, j, (rows, cols) in taps:
        xs = xp[:, :, rows, cols]
        if gw is not None:
            gw[:, :, i, j] += np.einsum("ncmhw,nchw->ncm", gy, xs).sum(axis=0)
        if gxp is None:
            continue
        if tmp is not None:
            np.multiply(gy[:, :, 0], wr[None, :, 0, i, j, None, None], out=tmp)
            gxp[:, :, rows, cols] += tmp
        else:
            gxp[:, :, rows, cols] += np.einsum("ncmhw,cm->nchw", gy, wr[:, :, i, j])


def conv2d(
    x: Array,
    w: Array,
    b: Array | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Array:
    """Grouped 2-D cross-correlation. x (N, C, H, W), w (O, C/groups, kh, kw), b (O,).

    Depthwise (C/groups == 1, any multiplier m = O/C: output o reads input o // m) runs
    per-channel multiply-adds per tap in cache-sized batch chunks; other convs run one
    batched matmul per tap.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out_hw = conv_output_hw((h, wd), (kh, kw), stride, padding, dilation)
    xp = _pad(x, padding)
    taps = _taps((kh, kw), stride, dilation, out_hw)
    if cg == 1:
        m = o // c
        wr = w.reshape(c, m, kh, kw)
        out = np.empty((n, c, m) + out_hw)
        for sl in _batch_chunks(n, 8 * (xp[0].size + out[0].size)):
            _depthwise_forward(xp[sl], wr, taps, out[sl])
    else:
        og, p = o // groups, out_hw[0] * out_hw[1]
        wg = w.reshape(groups, og, cg, kh, kw)
        out = np.zeros((n, groups, og, p))
        for i, j, (rows, cols) in taps:
            xs = xp[:, :, rows, cols].reshape(n, groups, cg, p)
            out += np.matmul(wg[:, :, :, i, j], xs)  # (g, og, cg) @ (n, g, cg, p)
    out = out.reshape((n, o) + out_hw)
    if b is not None:
        out += b[None, :, None, None]
    return out


def conv2d_grads(
    x: Array,
    w: Array,
    gy: Array,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    need_x: bool = True,
    need_w: bool = True,
) -> tuple[Array | None, Array | None]:
    """Gradients (dx, dw) of :func:`conv2d` given the output gradient ``gy``.

    dx is the transposed convolution, accumulated tap by tap into the padded input and
    cropped; input rows/columns no window reads get exactly zero. The bias gradient is
    ``gy.sum((0, 2, 3))``.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out_hw = gy.shape[2:]
    xp = _pad(x, padding)
    gxp = np.zeros(xp.shape) if need_x else None
    gw = np.zeros(w.shape) if need_w else None
    taps = _taps((kh, kw), stride, dilation, out_hw)
    if cg == 1:
        m = o // c
        wr = w.reshape(c, m, kh, kw)
        gyr = gy.reshape((n, c, m) + out_hw)
        gwr = gw.reshape(c, m, kh, kw) if gw is not None else None
        for sl in _batch_chunks(n, 8 * (2 * xp[0].size + gy[0].size)):
            gxs = gxp[sl] if gxp is not None else None
            _depthwise_backward(xp[sl], wr, gyr[sl], taps, gxs, gwr)
    else:
        og, p = o // groups, out_hw[0] * out_hw[1]
        wg = w.reshape(groups, og, cg, kh, kw)
        gyg = gy.reshape(n, groups, og, p)
        gwg = gw.reshape(groups, og, cg, kh, kw) if gw is not None else None
        for i, j, (rows, cols) in taps:
            if gwg is not None:
                xs = xp[:, :, rows, cols].reshape(n, groups, cg, p)
                gwg[:, :, :, i, j] = np.matmul(gyg, xs.swapaxes(2, 3)).sum(axis=0)
            if gxp is not None:
                gxs = np.matmul(wg[:, :, :, i, j].swapaxes(1, 2), gyg)  # (n, g, cg, p)
                gxp[:, :, rows, cols] += gxs.reshape((n, c) + out_hw)
    gx = _unpad(gxp, padding, (h, wd)) if gxp is not None else None
    return gx, gw


def _conv2d_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    stride, padding, dilation, groups = _conv_attrs(node)
    bias = ins[2] if len(ins) > 2 else None
    return conv2d(ins[0], ins[1], bias, stride, padding, dilation, groups)


def _conv2d_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    stride, padding, dilation, groups = _conv_attrs(node)
    gx, gw = conv2d_grads(
        ins[0], ins[1], gy, stride, padding, dilation, groups, need_x=needs[0], need_w=needs[1]
    )
    grads: list[Array | None] = [gx, gw]
    if len(ins) > 2:
        grads.append(gy.sum(axis=(0, 2, 3)) if needs[2] else None)
    return grads


# -- batchnorm ------------------------------------------------------------------------------
def _channel(v: Array, ndim: int) -> Array:
    """Reshape a per-channel vector to broadcast against axis 1 of an ``ndim`` tensor."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _reduce_axes(x: Array) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def batchnorm_stats(x: Array) -> tuple[Array, Array]:
    """Batch mean and biased variance per channel (over every axis but 1)."""
    axes = _reduce_axes(x)
    return x.mean(axis=axes), x.var(axis=axes)


def _bn_mean_var(ins: list[Array], training: bool) -> tuple[Array, Array]:
    return batchnorm_stats(ins[0]) if training else (ins[3], ins[4])


def _batchnorm_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    x, gamma, beta = ins[0], ins[1], ins[2]
    mean, var = _bn_mean_var(ins, training)
    scale = gamma / np.sqrt(var + node.attrs["eps"])
    y = x - _channel(mean, x.ndim)
    y *= _channel(scale, x.ndim)
    y += _channel(beta, x.ndim)
    return y


def _batchnorm_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    """Training: dx = gamma/sigma * (dy - mean(dy) - xhat * mean(dy * xhat))."""
    x, gamma = ins[0], ins[1]
    mean, var = _bn_mean_var(ins, training)
    inv = 1.0 / np.sqrt(var + node.attrs["eps"])
    axes, nd = _reduce_axes(x), x.ndim
    xhat = x - _channel(mean, nd)
    xhat *= _channel(inv, nd)
    gbeta = gy.sum(axis=axes)
    n, c = x.shape[:2]
    ggamma = np.einsum("ncp,ncp->nc", gy.reshape(n, c, -1), xhat.reshape(n, c, -1)).sum(axis=0)
    if not training:
        return [gy * _channel(gamma * inv, nd), ggamma, gbeta, None, None]
    count = x.size // x.shape[1]
    gx = xhat  # reuse the buffer: gx = (dy - mean(dy) - xhat * mean(dy * xhat)) * gamma/sigma
    gx *= _channel(-ggamma / count, nd)
    gx += gy
    gx -= _channel(gbeta / count, nd)
    gx *= _channel(gamma * inv, nd)
    return [gx, ggamma, gbeta, None, None]


# -- elementwise ----------------------------------------------------------------------------
def _sigmoid(x: Array) -> Array:
    """Numerically stable logistic function."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``g`` down to ``shape``, undoing NumPy broadcasting."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _unary_fwd(fn: Callable[[Array], Array]) -> ForwardFn:
    return lambda node, ins, training: fn(ins[0])


def _relu_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    return [gy * (ins[0] > 0)]


def _relu6_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    x = ins[0]
    return [gy * ((x > 0) & (x < 6))]


def _sigmoid_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    return [gy * y * (1.0 - y)]


def _prelu_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    x, a = ins
    return np.where(x > 0, x, x * _channel(a, x.ndim))


def _prelu_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    x, a = ins
    positive = x > 0
    gx = np.where(positive, gy, gy * _channel(a, x.ndim)) if needs[0] else None
    ga = (gy * np.where(positive, 0.0, x)).sum(axis=_reduce_axes(x)) if needs[1] else None
    return [gx, ga]


def _add_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    return [_unbroadcast(gy, a.shape) for a in ins]


def _mul_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    a, b = ins
    return [
        _unbroadcast(gy * b, a.shape) if needs[0] else None,
        _unbroadcast(gy * a, b.shape) if needs[1] else None,
    ]


# -- shape ops ------------------------------------------------------------------------------
def _slice_index(node: Node, ndim: int) -> tuple[slice, ...]:
    a = node.attrs
    index = [slice(None)] * ndim
    index[a["axis"]] = slice(a["start"], a["stop"])
    return tuple(index)


def _slice_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    return ins[0][_slice_index(node, ins[0].ndim)].copy()


def _slice_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    gx = np.zeros(ins[0].shape)
    gx[_slice_index(node, gy.ndim)] = gy
    return [gx]


def _concat_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    axis = node.attrs["axis"]
    bounds = np.cumsum([a.shape[axis] for a in ins])[:-1]
    return list(np.split(gy, bounds, axis=axis))


def _flatten_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    return [gy.reshape(ins[0].shape)]


def _reshape_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    return [gy.reshape(ins[0].shape)]


def _transpose_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    return np.ascontiguousarray(np.transpose(ins[0], node.attrs["perm"]))


def _transpose_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    return [np.ascontiguousarray(np.transpose(gy, np.argsort(node.attrs["perm"])))]


def _pad_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    return np.pad(ins[0], [tuple(p) for p in node.attrs["pads"]])


def _pad_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    index = tuple(slice(a, a + n) for (a, _), n in zip(node.attrs["pads"], ins[0].shape, strict=True))
    return [gy[index].copy()]


def shift(x: Array, offsets: Sequence[Sequence[int]], sign: int = 1) -> Array:
    """``out[:, c, h, w] = x[:, c, h - s*dy_c, w - s*dx_c]`` (zero outside), s = ``sign``."""
    out = np.zeros(x.shape)
    height, width = x.shape[2:]

    def spans(d: int, size: int) -> tuple[slice, slice]:
        return slice(max(0, d), min(size, size + d)), slice(max(0, -d), min(size, size - d))

    for start, stop, dy, dx in shift_runs(offsets):
        (oh, ih), (ow, iw) = spans(sign * dy, height), spans(sign * dx, width)
        out[:, start:stop, oh, ow] = x[:, start:stop, ih, iw]
    return out


def _shift_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    return [shift(gy, node.attrs["offsets"], sign=-1)]


def _gather_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    return np.take(ins[0], np.asarray(node.attrs["indices"], dtype=np.intp), axis=node.attrs["axis"])


def _gather_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    """The adjoint of a gather: a scatter-add of ``gy`` into zeros (repeated indices sum)."""
    axis = node.attrs["axis"] % gy.ndim
    gx = np.zeros(ins[0].shape)
    moved = np.moveaxis(gx, axis, 0)  # a view: adding into it adds into gx
    np.add.at(moved, np.asarray(node.attrs["indices"], dtype=np.intp), np.moveaxis(gy, axis, 0))
    return [gx]


def _upsample_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    sh, sw = node.attrs["scale"]
    return np.repeat(np.repeat(ins[0], sh, axis=2), sw, axis=3)


def _upsample_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    sh, sw = node.attrs["scale"]
    n, c, h, w = ins[0].shape
    return [gy.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))]


def _linear_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    y = ins[0] @ ins[1].T
    return y + ins[2] if len(ins) > 2 else y


def _linear_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    x, w = ins[0], ins[1]
    grads: list[Array | None] = [gy @ w if needs[0] else None, gy.T @ x if needs[1] else None]
    if len(ins) > 2:
        grads.append(gy.sum(axis=0))
    return grads


# -- pools ----------------------------------------------------------------------------------
def _pool_attrs(node: Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    a = node.attrs
    return _pair(a["kernel"]), _pair(a["stride"]), _pair(a["padding"])


def _window_counts(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    out_hw: tuple[int, int],
) -> Array:
    """(OH, OW) number of real (non-padding) input elements in each pooling window."""
    counts = []
    for size, k, s, p, o in zip(hw, kernel, stride, padding, out_hw, strict=True):
        start = np.arange(o) * s - p
        counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
    total = counts[0][:, None] * counts[1][None, :]
    if (total <= 0).any():
        raise ValueError(f"pool window {kernel} with padding {padding} lies entirely in padding")
    return total.astype(np.float64)


def _pool_geometry(
    node: Node, x: Array
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], Array]:
    kernel, stride, padding = _pool_attrs(node)
    hw = (x.shape[2], x.shape[3])
    out_hw = conv_output_hw(hw, kernel, stride, padding)
    return kernel, stride, padding, out_hw, _window_counts(hw, kernel, stride, padding, out_hw)


def _avgpool_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    x = ins[0]
    kernel, stride, padding, out_hw, counts = _pool_geometry(node, x)
    xp = _pad(x, padding)
    out = np.zeros(x.shape[:2] + out_hw)
    for _, _, idx in _taps(kernel, stride, (1, 1), out_hw):
        out += xp[:, :, idx[0], idx[1]]
    return out / counts


def _avgpool_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    x = ins[0]
    kernel, stride, padding, out_hw, counts = _pool_geometry(node, x)
    g = gy / counts
    gxp = np.zeros(x.shape[:2] + (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]))
    for _, _, idx in _taps(kernel, stride, (1, 1), out_hw):
        gxp[:, :, idx[0], idx[1]] += g
    return [_unpad(gxp, padding, x.shape[2:])]


def _maxpool_fwd(node: Node, ins: list[Array], training: bool) -> Array:
    x = ins[0]
    kernel, stride, padding, out_hw, _ = _pool_geometry(node, x)
    xp = _pad(x, padding, -np.inf)
    out = np.full(x.shape[:2] + out_hw, -np.inf)
    for _, _, idx in _taps(kernel, stride, (1, 1), out_hw):
        np.maximum(out, xp[:, :, idx[0], idx[1]], out=out)
    return out


def _maxpool_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    """The gradient goes to the first maximum of each window in row-major tap order."""
    x = ins[0]
    kernel, stride, padding, out_hw, _ = _pool_geometry(node, x)
    xp = _pad(x, padding, -np.inf)
    gxp = np.zeros(xp.shape)
    taken = np.zeros(y.shape, dtype=bool)
    for _, _, idx in _taps(kernel, stride, (1, 1), out_hw):
        hit = (xp[:, :, idx[0], idx[1]] == y) & ~taken
        gxp[:, :, idx[0], idx[1]] += np.where(hit, gy, 0.0)
        taken |= hit
    return [_unpad(gxp, padding, x.shape[2:])]


def _global_avgpool_bwd(
    node: Node, ins: list[Array], y: Array, gy: Array, needs: list[bool], training: bool
) -> list[Array | None]:
    x = ins[0]
    count = x.shape[2] * x.shape[3]
    return [np.broadcast_to(gy / count, x.shape).copy()]


# -- dispatch -------------------------------------------------------------------------------
_FORWARD: dict[str, ForwardFn] = {
    "conv2d": _conv2d_fwd,
    "batchnorm": _batchnorm_fwd,
    "relu": _unary_fwd(lambda x: np.maximum(x, 0.0)),
    "relu6": _unary_fwd(lambda x: np.clip(x, 0.0, 6.0)),
    "sigmoid": _unary_fwd(_sigmoid),
    "add": lambda node, ins, training: ins[0] + ins[1],
    "mul": lambda node, ins, training: ins[0] * ins[1],
    "concat": lambda node, ins, training: np.concatenate(ins, axis=node.attrs["axis"]),
    "slice": _slice_fwd,
    "avgpool": _avgpool_fwd,
    "maxpool": _maxpool_fwd,
    "global_avgpool": lambda node, ins, training: ins[0].mean(axis=(2, 3), keepdims=True),
    "flatten": lambda node, ins, training: ins[0].reshape(ins[0].shape[0], -1).copy(),
    "linear": _linear_fwd,
    "reshape": lambda node, ins, training: ins[0].reshape(node.attrs["shape"]).copy(),
    "transpose": _transpose_fwd,
    "pad": _pad_fwd,
    "shift": lambda node, ins, training: shift(ins[0], node.attrs["offsets"]),
    "gather": _gather_fwd,
    "upsample": _upsample_fwd,
    "prelu": _prelu_fwd,
}

_BACKWARD: dict[str, BackwardFn] = {
    "conv2d": _conv2d_bwd,
    "batchnorm": _batchnorm_bwd,
    "relu": _relu_bwd,
    "relu6": _relu6_bwd,
    "sigmoid": _sigmoid_bwd,
    "add": _add_bwd,
    "mul": _mul_bwd,
    "concat": _concat_bwd,
    "slice": _slice_bwd,
    "avgpool": _avgpool_bwd,
    "maxpool": _maxpool_bwd,
    "global_avgpool": _global_avgpool_bwd,
    "flatten": _flatten_bwd,
    "linear": _linear_bwd,
    "reshape": _reshape_bwd,
    "transpose": _transpose_bwd,
    "pad": _pad_bwd,
    "shift": _shift_bwd,
    "gather": _gather_bwd,
    "upsample": _upsample_bwd,
    "prelu": _prelu_bwd,
}


def _check_shape(node: Node, value: Array, what: str) -> None:
    if value.shape != tuple(node.shape):
        raise ValueError(f"{what} {node.name!r} has shape {value.shape}, graph says {node.shape}")


def forward(graph: Graph, tensors: Mapping[str, Array], training: bool) -> Tensors:
    """Value of every node of ``graph``; sources are read (as float64) from ``tensors``."""
    values: Tensors = {}
    for node in graph.nodes:
        if node.op in SOURCE_OPS:
            if node.name not in tensors:
                raise KeyError(f"no tensor given for {node.op} node {node.name!r}")
            value = np.asarray(tensors[node.name], dtype=np.float64)
        else:
            value = _FORWARD[node.op](node, [values[i] for i in node.inputs], training)
        _check_shape(node, value, node.op)
        values[node.name] = value
    return values


def requires_grad(graph: Graph) -> set[str]:
    """Names of the nodes whose value depends on an ``input`` or ``param`` node."""
    needs: set[str] = set()
    for node in graph.nodes:
        if node.op in ("input", "param") or any(i in needs for i in node.inputs):
            needs.add(node.name)
    return needs


def _accumulate(grads: Tensors, name: str, g: Array) -> None:
    # Never in place: a backward rule may hand the same array to several inputs.
    grads[name] = grads[name] + g if name in grads else g


#: The kinks of the ops whose derivative jumps: the input values where it is not defined.
KINKS: dict[str, tuple[float, ...]] = {"relu": (0.0,), "relu6": (0.0, 6.0), "prelu": (0.0,)}


def _flip_derivative(node: Node, ins: list[Array], gy: Array, gx: Array, flat: Array) -> Array:
    """``gx`` with the derivative at the flat indices ``flat`` of a kinked op's input taken
    on the other side of its kink (relu, relu6: 1 <-> 0; prelu: 1 <-> a_c). The forward
    value moves by at most the element's distance to the kink, so nothing else changes but
    prelu's ``ga_c``, by ``gy * x`` there, which is left as it is."""
    x = ins[0]
    gx = np.array(gx, dtype=np.float64)
    if node.op == "prelu":
        slope = np.broadcast_to(_channel(ins[1], x.ndim), x.shape).ravel()[flat]
        other = np.where(x.ravel()[flat] > 0, slope, 1.0)
    else:
        passes = x.ravel()[flat] > 0
        if node.op == "relu6":
            passes &= x.ravel()[flat] < 6
        other = np.where(passes, 0.0, 1.0)
    gx.ravel()[flat] = gy.ravel()[flat] * other
    return gx


def backward(
    graph: Graph,
    values: Mapping[str, Array],
    cotangents: Mapping[str, Array],
    training: bool,
    flipped: Mapping[str, Array] | None = None,
) -> Tensors:
    """Gradients of sum over outputs of sum(output * cotangent), reverse mode.

    Returns a gradient for every node that depends on an input or param and reaches an
    output; every ``input`` and ``param`` node gets one (zeros if it does not reach an
    output); ``const`` nodes get none. ``values`` is what :func:`forward` returned with
    the same ``training`` flag. ``flipped`` (kinked node -> flat input indices) takes the
    derivative at those elements on the other side of the kink (:mod:`convbench.kinks`).
    """
    flipped = flipped or {}
    needs = requires_grad(graph)
    grads: Tensors = {}
    for name in graph.outputs:
        if name in needs and name not in grads:
            if name not in cotangents:
                raise KeyError(f"no cotangent given for output {name!r}")
            ct = np.asarray(cotangents[name], dtype=np.float64)
            _check_shape(graph[name], ct, "cotangent of")
            grads[name] = ct
    for node in reversed(graph.nodes):
        if node.op in SOURCE_OPS or node.name not in grads:
            continue
        needed = [i in needs for i in node.inputs]
        ins = [values[i] for i in node.inputs]
        results = _BACKWARD[node.op](
            node, ins, values[node.name], grads[node.name], needed, training
        )
        if node.name in flipped and results[0] is not None:
            results = [_flip_derivative(node, ins, grads[node.name], results[0], flipped[node.name]), *results[1:]]
        for name, need, g in zip(node.inputs, needed, results, strict=True):
            if need and g is not None:
                _accumulate(grads, name, g)
    for node in graph.nodes:
        if node.op in ("input", "param") and node.name not in grads:
            grads[node.name] = np.zeros(node.shape)
    return grads


def run_reference(
    graph: Graph, tensors: Mapping[str, Array], cotangents: Mapping[str, Array] | None, mode: str
) -> Tensors:
    """What :meth:`convbench.backend.Prepared.check` returns, computed in float64.

    ``inference``: ``{output: value}``. ``training``: the outputs (batch statistics in BN)
    plus ``grad:<name>`` for every input and param node.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    training = mode == "training"
    values = forward(graph, tensors, training)
    result = {name: values[name] for name in graph.outputs}
    if training:
        if cotangents is None:
            raise ValueError("training mode needs cotangents")
        grads = backward(graph, values, cotangents, training=True)
        for node in graph.nodes:
            if node.op in ("input", "param"):
                result[f"grad:{node.name}"] = grads[node.name]
    return result
