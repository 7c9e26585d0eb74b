"""Spatial shifts as pure indexing, in Triton: forward and exact adjoint (gradient).

Every output element is one input element or zero: no multiply, no add. Indices are
logical NCHW; the kernels take all four strides of every tensor, so NCHW and
channels_last (NHWC) memory both work (an address shift always follows NCHW order).

* :func:`shift`, the IR's ``shift`` op (Wu et al. 2017, arXiv 1711.08141; see
  :mod:`convbench.graph`): channel c moves by its own offset (dy_c, dx_c),
  ``out[n, c, h, w] = x[n, c, h - dy_c, w - dx_c]`` inside the H x W plane, else 0.
  Its adjoint is the shift by (-dy_c, -dx_c).
* :func:`address_shift`, AddressNet's address shift (Zhong et al. 2018, arXiv 1809.08458)
  as :mod:`convbench.workloads.shift` defines it, generalised: channel c reads a_c
  elements further on in the flat NCHW sequence, as if its data pointer had moved,
  ``out.flat[i] = x.flat[i + a_c(i)]`` when ``i + a_c(i)`` lies in the same *block* as
  ``i``, else 0. ``bound="plane"`` (blocks of H*W: one channel's plane, the workload's
  definition, offsets +W, +1, 0, -1, -W) lets a horizontal move wrap into the next row;
  ``"sample"`` (C*H*W) and ``"tensor"`` (N*C*H*W: the literal pointer move, zero only
  past the buffer's ends) let a move read the neighbouring channel or sample. Its adjoint
  is a gather over the distinct offsets a: ``grad_x.flat[j] = sum over a of
  grad_out.flat[j - a]`` over those a where ``j - a`` is in ``j``'s block and its channel's
  offset is a (exact, deterministic, no atomics).

Tiling: one program handles BLOCK consecutive logical (flat NCHW) indices: it decodes
each into (n, c, h, w), reads the channel's offset, and copies one element from the
source position (masked to zero outside the plane or block); grid
``ceil(N*C*H*W / BLOCK)``. BLOCK is 1024 on a GPU and up to 8192 in the interpreter
(fewest programs). This module imports torch and triton (set ``TRITON_INTERPRET`` before
importing it to run on a CPU).

Offset tables: :func:`shift` and :func:`address_shift` take Python offsets and build
their int64 device tables on every call (a host-to-device copy, and for the address
adjoint a ``torch.unique``, each a stream synchronize on CUDA). Timed code must not:
:func:`shift_tables` / :func:`address_tables` build the tables once (the ``kernel``
variant does so at install, :mod:`convbench_torch.kernels.variant`) and
:func:`shift_with_tables` / :func:`address_shift_with_tables` only launch kernels.
What has been checked on a CPU (Triton's interpreter, tests/backends/torch) is that a
step with prebuilt tables calls neither ``torch.as_tensor`` nor ``torch.unique``; that
the launches then never synchronize on a real GPU has not been measured on one.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

BOUNDS = ("plane", "sample", "tensor")
_BOUND_CODE = {"plane": 0, "sample": 1, "tensor": 2}


@triton.jit
def _phys(idx, C, H, W, sn, sc, sh, sw):
    """Physical element offset of logical flat NCHW index ``idx``."""
    w = idx % W
    h = (idx // W) % H
    c = (idx // (W * H)) % C
    n = idx // (W * H * C)
    return n * sn + c * sc + h * sh + w * sw


@triton.jit
def _block_size(TOTAL, C, H, W, BOUND: tl.constexpr):
    if BOUND == 0:
        size = H * W
    elif BOUND == 1:
        size = C * H * W
    else:
        size = TOTAL
    return size


@triton.jit
def _shift_kernel(
    x_ptr, y_ptr, dy_ptr, dx_ptr,
    TOTAL, C, H, W,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    BLOCK: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < TOTAL
    w = i % W
    h = (i // W) % H
    c = (i // (W * H)) % C
    n = i // (W * H * C)
    sh = h - tl.load(dy_ptr + c, mask=mask, other=0)
    sw = w - tl.load(dx_ptr + c, mask=mask, other=0)
    ok = mask & (sh >= 0) & (sh < H) & (sw >= 0) & (sw < W)
    v = tl.load(x_ptr + n * sxn + c * sxc + sh * sxh + sw * sxw, mask=ok, other=0.0)
    tl.store(y_ptr + n * syn + c * syc + h * syh + w * syw, v, mask=mask)


@triton.jit
def _address_kernel(
    x_ptr, y_ptr, a_ptr,
    TOTAL, C, H, W,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    BOUND: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < TOTAL
    c = (i // (W * H)) % C
    src = i + tl.load(a_ptr + c, mask=mask, other=0)
    size = _block_size(TOTAL, C, H, W, BOUND)
    ok = mask & (src >= 0) & (src < TOTAL) & (src // size == i // size)
    v = tl.load(x_ptr + _phys(src, C, H, W, sxn, sxc, sxh, sxw), mask=ok, other=0.0)
    tl.store(y_ptr + _phys(i, C, H, W, syn, syc, syh, syw), v, mask=mask)


@triton.jit
def _address_adjoint_kernel(
    g_ptr, gx_ptr, a_ptr, offs_ptr, NUM_OFFS,
    TOTAL, C, H, W,
    sgn, sgc, sgh, sgw,
    sxn, sxc, sxh, sxw,
    BOUND: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = j < TOTAL
    size = _block_size(TOTAL, C, H, W, BOUND)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(NUM_OFFS):
        a = tl.load(offs_ptr + t)
        i = j - a
        ok = mask & (i >= 0) & (i < TOTAL) & (i // size == j // size)
        own = tl.load(a_ptr + (i // (W * H)) % C, mask=ok, other=0)
        ok = ok & (own == a)
        g = tl.load(g_ptr + _phys(i, C, H, W, sgn, sgc, sgh, sgw), mask=ok, other=0.0)
        acc += g.to(tl.float32)
    tl.store(gx_ptr + _phys(j, C, H, W, sxn, sxc, sxh, sxw), acc.to(gx_ptr.dtype.element_ty), mask=mask)


def interpreted() -> bool:
    """Whether these kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return type(_shift_kernel).__name__ == "InterpretedFunction"


def _block(total: int) -> int:
    return min(triton.next_power_of_2(max(total, 1)), 8192 if interpreted() else 1024)


def _like(x: torch.Tensor) -> torch.Tensor:
    fmt = torch.channels_last if x.stride(1) == 1 and not x.is_contiguous() else torch.contiguous_format
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def _per_channel(values: Any, c: int, device: torch.device, what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.int64, device=device).contiguous()
    if t.shape != (c,):
        raise ValueError(f"{what}: want one value per channel ({c}), got shape {tuple(t.shape)}")
    return t


def _check(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what}: expected a 4-D (N, C, H, W) tensor, got {tuple(x.shape)}")


def _launch_shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    y = _like(x)
    total = x.numel()
    block = _block(total)
    _shift_kernel[(triton.cdiv(total, block),)](x, y, dy, dx, total, c, h, w, *x.stride(), *y.stride(), BLOCK=block)
    return y


def _launch_address(x: torch.Tensor, a: torch.Tensor, bound: str) -> torch.Tensor:
    _, c, h, w = x.shape
    y = _like(x)
    total = x.numel()
    block = _block(total)
    _address_kernel[(triton.cdiv(total, block),)](
        x, y, a, total, c, h, w, *x.stride(), *y.stride(), BOUND=_BOUND_CODE[bound], BLOCK=block
    )
    return y


def _launch_address_adjoint(g: torch.Tensor, a: torch.Tensor, bound: str, offs: torch.Tensor | None = None) -> torch.Tensor:
    _, c, h, w = g.shape
    offs = torch.unique(a).contiguous() if offs is None else offs  # unique synchronizes: prebuild
    gx = _like(g)
    total = g.numel()
    block = _block(total)
    _address_adjoint_kernel[(triton.cdiv(total, block),)](
        g, gx, a, offs, int(offs.numel()), total, c, h, w, *g.stride(), *gx.stride(),
        BOUND=_BOUND_CODE[bound], BLOCK=block,
    )  # fmt: skip
    return gx


class _Shift(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, ndy: torch.Tensor, ndx: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(ndy, ndx)
        return _launch_shift(x, dy, dx)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        ndy, ndx = ctx.saved_tensors
        gx = _launch_shift(grad_out, ndy, ndx) if ctx.needs_input_grad[0] else None
        return gx, None, None, None, None


class _AddressShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, a: torch.Tensor, offs: torch.Tensor, bound: str) -> torch.Tensor:
        ctx.save_for_backward(a, offs)
        ctx.bound = bound
        return _launch_address(x, a, bound)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, offs = ctx.saved_tensors
        gx = _launch_address_adjoint(grad_out, a, ctx.bound, offs) if ctx.needs_input_grad[0] else None
        return gx, None, None, None


def shift_tables(offsets: Any, channels: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """The int64 tables (dy, dx, -dy, -dx) of a ``shift`` on ``device``: build them once."""
    table = torch.as_tensor([tuple(o) for o in offsets], dtype=torch.int64).reshape(-1, 2)
    if table.shape[0] != channels:
        raise ValueError(f"shift: want one (dy, dx) per channel ({channels}), got {table.shape[0]}")
    return tuple(t.contiguous().to(device) for t in (table[:, 0], table[:, 1], -table[:, 0], -table[:, 1]))


def address_tables(offsets: Any, channels: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """The int64 tables (per-channel offsets, their distinct values) of an address shift."""
    a = _per_channel(offsets, channels, torch.device("cpu"), "address_shift offsets")
    return a.to(device), torch.unique(a).contiguous().to(device)


def shift_with_tables(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, ndy: torch.Tensor, ndx: torch.Tensor
) -> torch.Tensor:
    """The IR's ``shift`` from prebuilt tables (:func:`shift_tables`): kernel launches only."""
    _check(x, "shift")
    return _Shift.apply(x, dy, dx, ndy, ndx)


def address_shift_with_tables(x: torch.Tensor, a: torch.Tensor, offs: torch.Tensor, bound: str = "plane") -> torch.Tensor:
    """Address shift from prebuilt tables (:func:`address_tables`): kernel launches only."""
    _check(x, "address_shift")
    if bound not in BOUNDS:
        raise ValueError(f"address_shift: bound {bound!r} (known: {', '.join(BOUNDS)})")
    return _AddressShift.apply(x, a, offs, bound)


def shift(x: torch.Tensor, offsets: Any) -> torch.Tensor:
    """The IR's ``shift``: channel c moved by ``offsets[c] = (dy, dx)``, zero fill; differentiable.

    Builds its tables on every call (host-to-device copies): untimed use only."""
    _check(x, "shift")
    return shift_with_tables(x, *shift_tables(offsets, x.shape[1], x.device))


def address_shift(x: torch.Tensor, offsets: Any, bound: str = "plane") -> torch.Tensor:
    """Address shift: channel c reads ``offsets[c]`` elements further on, within ``bound``.

    Builds its tables on every call (host-to-device copies): untimed use only."""
    _check(x, "address_shift")
    if bound not in BOUNDS:
        raise ValueError(f"address_shift: bound {bound!r} (known: {', '.join(BOUNDS)})")
    return address_shift_with_tables(x, *address_tables(offsets, x.shape[1], x.device), bound)
