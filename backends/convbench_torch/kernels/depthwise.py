"""Hand-written depthwise convolution in Triton: forward, input gradient, weight gradient.

What is supported (:func:`supports` says why not, else None): a 4-D input (N, C, H, W)
in any memory layout (NCHW contiguous, channels_last NHWC, or any strides: every kernel
takes all four strides of every tensor), a weight (C * m, 1, K, K) with channel
multiplier m >= 1 (output channel o reads input channel o // m, as in convbench's IR),
square kernels K in {3, 5}, equal strides S in {1, 2}, any symmetric zero padding,
dilation 1, an optional bias; float32, float16 and bfloat16. Every product is
accumulated in float32 and rounded once to the output dtype.

Tiling and what each program computes
    All three kernels work on 2-D tiles [BLOCK_C channels x BLOCK_P spatial positions],
    positions being a flattened (row, column) index. The tile shape is chosen per memory
    layout (:func:`choose_config`): for NCHW a few channels by many positions (a row of
    positions is contiguous), for NHWC many channels by a few positions (channels are
    contiguous), so that the loads of one tap are coalesced in either layout.

    * forward, grid (N * ceil(C_out / BLOCK_C), ceil(OH * OW / BLOCK_P)): a program
      computes one output tile of one sample. For each of the K * K taps (unrolled at
      compile time) it loads the input tile shifted by the tap (masked where the window
      reads padding), multiplies it by the tap's BLOCK_C weights and accumulates in
      float32; then adds the bias and stores once.
    * input gradient, grid (N * ceil(C_in / BLOCK_C), ceil(H * W / BLOCK_P)): a program
      computes one input-gradient tile as a gather (no atomics, deterministic): input
      position (ih, iw) receives, from tap (kh, kw), the output gradient at
      ((ih + P - kh) / S, (iw + P - kw) / S) when that is an integer inside the output,
      times the tap's weight, summed over the m output channels of the input channel.
      With S = 2 three quarters of the lanes are masked per tap (a phase decomposition
      would avoid that; not done).
    * weight gradient, grid (ceil(C_out / BLOCK_C), SPLIT): a program reduces over its
      share of the (sample, position-block) items: for each item it loads the output
      gradient tile once and, per tap, the matching input tile, reduces their product
      over positions and adds it into column ``tap`` of a [BLOCK_C, next_pow2(K * K)]
      float32 accumulator. Each program writes its partial sums to a float32 buffer
      (SPLIT, C_out, K * K), which is summed over SPLIT afterwards (deterministic: no
      atomics). The bias gradient is ``grad_out.sum((0, 2, 3))`` in float32, in torch.

Block sizes, warps and SPLIT come from heuristics (:func:`choose_config`), not from
autotuning, so that the same configurations run in the interpreter; they are a starting
point. Under ``TRITON_INTERPRET=1`` (the only way these kernels run on a CPU) every
program instance costs about 35 ms whatever its size, so the interpreter configuration
uses the largest tiles the shape allows (fewest programs); :func:`program_count` counts
them so a backend can refuse shapes too large to interpret.

This module imports torch and triton. ``TRITON_INTERPRET`` is read by ``triton.jit`` when
this module is imported: set it before (see :func:`interpreted`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import triton
import triton.language as tl

KERNEL_SIZES = (3, 5)
STRIDES = (1, 2)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------- the kernels
@triton.jit
def _dw_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    C_out, H, W, OH, OW, MULT, PAD,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    K: tl.constexpr, STRIDE: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    pid_nc = tl.program_id(0)
    pid_p = tl.program_id(1)
    n_cblocks = tl.cdiv(C_out, BLOCK_C)
    n = (pid_nc // n_cblocks).to(tl.int64)
    co = (pid_nc % n_cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    cmask = co < C_out
    pmask = p < OH * OW
    oh = p // OW
    ow = p % OW
    ci = co // MULT
    x_base = x_ptr + n * sxn + ci.to(tl.int64)[:, None] * sxc
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    for kh in tl.static_range(K):
        ih = oh * STRIDE - PAD + kh
        hmask = pmask & (ih >= 0) & (ih < H)
        for kw in tl.static_range(K):
            iw = ow * STRIDE - PAD + kw
            m = hmask & (iw >= 0) & (iw < W)
            xv = tl.load(x_base + (ih * sxh + iw * sxw)[None, :], mask=cmask[:, None] & m[None, :], other=0.0)
            wv = tl.load(w_ptr + co * (K * K) + (kh * K + kw), mask=cmask, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[:, None]
    if HAS_BIAS:
        acc += tl.load(b_ptr + co, mask=cmask, other=0.0).to(tl.float32)[:, None]
    y_off = n * syn + co.to(tl.int64)[:, None] * syc + (oh * syh + ow * syw)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])


@triton.jit
def _dw_dgrad_kernel(
    gy_ptr, w_ptr, gx_ptr,
    C_in, H, W, OH, OW, MULT, PAD,
    sgn, sgc, sgh, sgw,
    sxn, sxc, sxh, sxw,
    K: tl.constexpr, STRIDE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    pid_nc = tl.program_id(0)
    pid_p = tl.program_id(1)
    n_cblocks = tl.cdiv(C_in, BLOCK_C)
    n = (pid_nc // n_cblocks).to(tl.int64)
    ci = (pid_nc % n_cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    cmask = ci < C_in
    pmask = p < H * W
    ih = p // W
    iw = p % W
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    for j in range(MULT):
        co = ci * MULT + j
        g_base = gy_ptr + n * sgn + co.to(tl.int64)[:, None] * sgc
        for kh in tl.static_range(K):
            th = ih + PAD - kh  # = oh * STRIDE where this tap of output row oh reads row ih
            oh = th // STRIDE
            hmask = pmask & (th >= 0) & (th % STRIDE == 0) & (oh < OH)
            for kw in tl.static_range(K):
                tw = iw + PAD - kw
                ow = tw // STRIDE
                m = hmask & (tw >= 0) & (tw % STRIDE == 0) & (ow < OW)
                gv = tl.load(g_base + (oh * sgh + ow * sgw)[None, :], mask=cmask[:, None] & m[None, :], other=0.0)
                wv = tl.load(w_ptr + co * (K * K) + (kh * K + kw), mask=cmask, other=0.0)
                acc += gv.to(tl.float32) * wv.to(tl.float32)[:, None]
    x_off = n * sxn + ci.to(tl.int64)[:, None] * sxc + (ih * sxh + iw * sxw)[None, :]
    tl.store(gx_ptr + x_off, acc.to(gx_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])


@triton.jit
def _dw_wgrad_kernel(
    x_ptr, gy_ptr, part_ptr,
    N, C_out, H, W, OH, OW, MULT, PAD, ITEMS,
    sxn, sxc, sxh, sxw,
    sgn, sgc, sgh, sgw,
    K: tl.constexpr, STRIDE: tl.constexpr, KK_PAD: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    pid_c = tl.program_id(0)
    split = tl.program_id(1)
    co = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = co < C_out
    ci = co // MULT
    taps = tl.arange(0, KK_PAD)
    acc = tl.zeros([BLOCK_C, KK_PAD], dtype=tl.float32)
    n_pblocks = tl.cdiv(OH * OW, BLOCK_P)
    first = split * ITEMS
    last = tl.minimum(first + ITEMS, N * n_pblocks)
    for item in range(first, last):
        n = (item // n_pblocks).to(tl.int64)
        p = (item % n_pblocks) * BLOCK_P + tl.arange(0, BLOCK_P)
        pmask = p < OH * OW
        oh = p // OW
        ow = p % OW
        g_off = n * sgn + co.to(tl.int64)[:, None] * sgc + (oh * sgh + ow * sgw)[None, :]
        gv = tl.load(gy_ptr + g_off, mask=cmask[:, None] & pmask[None, :], other=0.0).to(tl.float32)
        x_base = x_ptr + n * sxn + ci.to(tl.int64)[:, None] * sxc
        for kh in tl.static_range(K):
            ih = oh * STRIDE - PAD + kh
            hmask = pmask & (ih >= 0) & (ih < H)
            for kw in tl.static_range(K):
                iw = ow * STRIDE - PAD + kw
                m = hmask & (iw >= 0) & (iw < W)
                xv = tl.load(x_base + (ih * sxh + iw * sxw)[None, :], mask=cmask[:, None] & m[None, :], other=0.0)
                tap_sum = tl.sum(gv * xv.to(tl.float32), axis=1)
                acc += tl.where(taps[None, :] == kh * K + kw, tap_sum[:, None], 0.0)
    out = part_ptr + split.to(tl.int64) * C_out * (K * K) + co[:, None] * (K * K) + taps[None, :]
    tl.store(out, acc, mask=cmask[:, None] & (taps[None, :] < K * K))


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    """Tile shape and launch parameters of one kernel launch."""

    block_c: int
    block_p: int
    num_warps: int = 4
    split: int = 1  #: weight gradient only: programs sharing one channel block's reduction


def interpreted() -> bool:
    """Whether these kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return type(_dw_fwd_kernel).__name__ == "InterpretedFunction"


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _channels_last(t: torch.Tensor) -> bool:
    return t.stride(1) == 1 and not t.is_contiguous()


def choose_config(
    kind: str, channels: int, positions: int, channels_last: bool, *, batch: int = 1,
    interpret: bool | None = None, sm_count: int = 132,
) -> Config:  # fmt: skip
    """Tile shape for ``kind`` in ``fwd``/``dgrad``/``wgrad`` (see the module docstring).

    ``positions`` is OH * OW (fwd, wgrad) or H * W (dgrad); ``sm_count`` sizes SPLIT of
    the weight gradient on a GPU. In the interpreter: the biggest tiles (fewest programs).
    """
    if interpret is None:
        interpret = interpreted()
    c2, p2 = _pow2(channels), _pow2(positions)
    if interpret:
        block_c = min(c2, 64)
        block_p = min(p2, max(16, 8192 // block_c))
        return Config(block_c, block_p, 4, 1)
    if channels_last:  # channels contiguous: wide in C
        block_c = min(c2, 64)
        block_p = min(p2, max(1, 1024 // block_c))
    else:  # positions contiguous: wide in P
        block_p = min(p2, 256)
        block_c = min(c2, max(1, 1024 // block_p))
    num_warps = 4 if block_c * block_p >= 512 else 2
    split = 1
    if kind == "wgrad":
        items = batch * triton.cdiv(positions, block_p)
        cblocks = triton.cdiv(channels, block_c)
        split = max(1, min(items, triton.cdiv(4 * sm_count, cblocks)))
    return Config(block_c, block_p, num_warps, split)


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).multi_processor_count)
    return 132


# --------------------------------------------------------------------------- checks
def supports(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any, padding: Any, dilation: Any, groups: int
) -> str | None:  # fmt: skip
    """Why the kernels cannot compute this conv2d, or None when they can."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        return "not a 2-D convolution"
    c = x_shape[1]
    if groups != c or w_shape[1] != 1 or w_shape[0] % c:
        return f"not depthwise (groups {groups}, {c} input channels, weight {tuple(w_shape)})"
    kh, kw = w_shape[2], w_shape[3]
    if kh != kw or kh not in KERNEL_SIZES:
        return f"kernel {kh}x{kw} (supported: {', '.join(f'{k}x{k}' for k in KERNEL_SIZES)})"
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    if s[0] != s[1] or s[0] not in STRIDES:
        return f"stride {s} (supported: {', '.join(map(str, STRIDES))}, equal in both axes)"
    if p[0] != p[1] or p[0] < 0:
        return f"padding {p} (supported: symmetric, equal in both axes)"
    if d != (1, 1):
        return f"dilation {d} (supported: 1)"
    return None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def output_hw(h: int, w: int, k: int, stride: int, pad: int) -> tuple[int, int]:
    return (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1


def program_count(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int, pad: int, *,
    training: bool, channels_last: bool, interpret: bool = True,
) -> int:  # fmt: skip
    """Program instances launched by one forward (plus backward if ``training``)."""
    n, c, h, w = x_shape
    co, k = w_shape[0], w_shape[2]
    oh, ow = output_hw(h, w, k, stride, pad)
    f = choose_config("fwd", co, oh * ow, channels_last, interpret=interpret)
    total = n * triton.cdiv(co, f.block_c) * triton.cdiv(oh * ow, f.block_p)
    if training:
        d = choose_config("dgrad", c, h * w, channels_last, interpret=interpret)
        g = choose_config("wgrad", co, oh * ow, channels_last, batch=n, interpret=interpret)
        total += n * triton.cdiv(c, d.block_c) * triton.cdiv(h * w, d.block_p)
        total += triton.cdiv(co, g.block_c) * g.split
    return total


# --------------------------------------------------------------------------- launchers
def _check(x: torch.Tensor, weight: torch.Tensor, stride: int, pad: int) -> None:
    reason = supports(tuple(x.shape), tuple(weight.shape), stride, pad, 1, x.shape[1])
    if reason is not None:
        raise ValueError(f"triton depthwise conv: unsupported {reason}")
    if x.dtype not in DTYPES or weight.dtype != x.dtype:
        raise ValueError(f"triton depthwise conv: dtypes {x.dtype}, {weight.dtype} (supported: {DTYPES}, equal)")
    if x.device != weight.device:
        raise ValueError("triton depthwise conv: input and weight on different devices")


def _empty_like_layout(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    fmt = torch.channels_last if _channels_last(like) else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad: int,
    config: Config | None = None,
) -> torch.Tensor:  # fmt: skip
    """y = depthwise_conv2d(x, weight) + bias; y has x's memory layout."""
    _check(x, weight, stride, pad)
    n, c, h, w = x.shape
    co, k = weight.shape[0], weight.shape[2]
    oh, ow = output_hw(h, w, k, stride, pad)
    y = _empty_like_layout((n, co, oh, ow), x)
    cfg = config or choose_config("fwd", co, oh * ow, _channels_last(x))
    wf = weight.reshape(co, k * k).contiguous()
    b = bias.contiguous() if bias is not None else wf  # unused when HAS_BIAS is False
    grid = (n * triton.cdiv(co, cfg.block_c), triton.cdiv(oh * ow, cfg.block_p))
    _dw_fwd_kernel[grid](
        x, wf, b, y, co, h, w, oh, ow, co // c, pad, *x.stride(), *y.stride(),
        K=k, STRIDE=stride, HAS_BIAS=bias is not None,
        BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p, num_warps=cfg.num_warps,
    )  # fmt: skip
    return y


def grad_input(
    grad_out: torch.Tensor, weight: torch.Tensor, x_shape: tuple[int, ...], like: torch.Tensor,
    stride: int, pad: int, config: Config | None = None,
) -> torch.Tensor:  # fmt: skip
    """Gradient of the input (shape ``x_shape``, the layout of ``like``)."""
    n, c, h, w = x_shape
    co, k = weight.shape[0], weight.shape[2]
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    gx = _empty_like_layout(tuple(x_shape), like, grad_out.dtype)
    cfg = config or choose_config("dgrad", c, h * w, _channels_last(like))
    wf = weight.reshape(co, k * k).contiguous()
    grid = (n * triton.cdiv(c, cfg.block_c), triton.cdiv(h * w, cfg.block_p))
    _dw_dgrad_kernel[grid](
        grad_out, wf, gx, c, h, w, oh, ow, co // c, pad, *grad_out.stride(), *gx.stride(),
        K=k, STRIDE=stride, BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p, num_warps=cfg.num_warps,
    )  # fmt: skip
    return gx


def grad_weight(
    x: torch.Tensor, grad_out: torch.Tensor, w_shape: tuple[int, ...], stride: int, pad: int,
    config: Config | None = None,
) -> torch.Tensor:  # fmt: skip
    """Gradient of the weight (shape ``w_shape``, contiguous, x's dtype)."""
    n, c, h, w = x.shape
    co, k = w_shape[0], w_shape[2]
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    cfg = config or choose_config(
        "wgrad", co, oh * ow, _channels_last(x), batch=n, sm_count=_sm_count(x.device)
    )
    items = n * triton.cdiv(oh * ow, cfg.block_p)
    split = max(1, min(cfg.split, items))
    per_program = triton.cdiv(items, split)
    split = triton.cdiv(items, per_program)  # no program without work
    partial = torch.empty((split, co, k * k), dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(co, cfg.block_c), split)
    _dw_wgrad_kernel[grid](
        x, grad_out, partial, n, co, h, w, oh, ow, co // c, pad, per_program,
        *x.stride(), *grad_out.stride(),
        K=k, STRIDE=stride, KK_PAD=_pow2(k * k),
        BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p, num_warps=cfg.num_warps,
    )  # fmt: skip
    return partial.sum(0).reshape(w_shape).to(x.dtype)


# --------------------------------------------------------------------------- autograd
class DepthwiseConv2d(torch.autograd.Function):
    """Depthwise conv2d whose forward and both gradients are the Triton kernels above.

    ``forward(x, weight, bias, stride, pad)``; the bias gradient is a torch reduction.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, pad, bias is not None)
        return forward(x, weight, bias, stride, pad)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, pad, has_bias = ctx.conv
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = grad_input(grad_out, weight, tuple(x.shape), x, stride, pad)
        if ctx.needs_input_grad[1]:
            gw = grad_weight(x, grad_out, tuple(weight.shape), stride, pad)
        if has_bias and ctx.needs_input_grad[2]:
            gb = grad_out.sum((0, 2, 3), dtype=torch.float32).to(grad_out.dtype)
        return gx, gw, gb, None, None


def conv2d(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
) -> torch.Tensor:  # fmt: skip
    """Drop-in for ``torch.nn.functional.conv2d`` restricted to what :func:`supports`."""
    reason = supports(tuple(input.shape), tuple(weight.shape), stride, padding, dilation, groups)
    if reason is not None:
        raise ValueError(f"triton depthwise conv: unsupported {reason}")
    return DepthwiseConv2d.apply(input, weight, bias, _pair(stride)[0], _pair(padding)[0])


def describe(config: Config) -> dict[str, Any]:
    return asdict(config)
