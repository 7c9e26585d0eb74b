"""Sliding-channel convolution (SCC) of DSXplore (Wang et al., IPDPS 2021, "DSXplore:
Optimizing Convolutional Neural Networks via Sliding-Channel Convolutions", arXiv
2101.00745): a 1x1 conv in which each output channel reads a cyclic window of
U = C_in / G consecutive input channels, successive windows overlapping by a fraction
``overlap`` of U.

Definition (the authors' CUDA kernel, YukeWang96/DSXplore_IPDPS21
``SCC_conv/scc_cuda_kernel.cu``, forward): output channel c reads input channels
``start_c, start_c + 1, ... start_c + U - 1`` (mod C_in) with weight ``w[c, 0..U-1]``,
where ``start_c = floor(c * (1 - overlap) * U) mod C_in`` is computed in float32
(:func:`convbench.graph.scc_window_starts`); no bias (``SCC_conv/scc_conv.py``).

Two forms, both one dense 1x1 ``conv2d`` over the whole input (G times the SCC's own
multiply-adds), so every framework with a 1x1 conv runs them; they differ in what is
trained. Form ``masked`` (the default): one dense 1x1 ``conv2d`` whose (C_out, C_in, 1, 1)
weight is a trainable dense ``param`` times a 0/1 ``const`` mask of the windows
(:meth:`convbench.graph.GraphBuilder.sliding_channel_conv`), so it runs in every
framework that has a 1x1 conv, computes the authors' forward exactly, and trains only the
window's entries (the others get zero gradient and stay zero). Its multiply-adds are
those executed, the dense N * C_out * C_in * H * W, G times the SCC's own
N * C_out * U * H * W (``scc_macs`` below); its ``param`` holds C_out * C_in elements,
of which C_out * U are the SCC's own parameters (:func:`scc_params`, what a fused
kernel holds). The graph's parameter count (convbench counts ``param`` elements) is the
dense C_out * C_in; the tests check both. Form ``compact``: the trainable weight is the
SCC's own (C_out, U), scattered into the dense weight each step by existing ops (a
broadcasting ``mul`` by a const (C_out, 1, U, C_in) scatter pattern and an ``avgpool``
that sums over U; no multiply-adds counted, a C_out * U * C_in temporary), so the graph's
parameter count is the SCC's, C_out * U.

Form ``gather`` computes the SCC's own multiply-adds instead: a ``gather`` IR op takes
the C_out * U input channels the windows read, in window order
(:func:`convbench.graph.scc_gather_indices`; ``torch.index_select``, ``tf.gather``,
``jnp.take``, ONNX ``Gather``, MXNet ``take``), then a grouped 1x1 ``conv2d`` with C_out
groups of U channels applies the SCC's (C_out, U, 1, 1) weight. Its MACs are
N * C_out * U * H * W (:func:`scc_macs`) and its parameters C_out * U, and its output is
the masked form's when weight (c, u) equals the masked weight's (c, (start_c + u) mod
C_in) (``tests/test_workloads_scc.py``). The price is data movement: the gathered tensor
has C_out * U channels, ``C_out / G`` times the input (a 128 -> 128 SCC with G = 4 holds
32 copies of its input), and its gradient is a scatter-add over the repeated channels.

Where convbench's reading differs from the authors' code, stated:

* the authors' PyTorch version of the layer (``models/DW_SCC.py``, ``SCC``) advances the
  window by the integer ``U - int(overlap * U)`` per output channel, which differs from
  the CUDA kernel's ``floor(c * (1 - overlap) * U)`` whenever ``overlap * U`` is not an
  integer (overlap 0.33), and it stops at the first repeated window, reusing one conv
  module for all repeats (shared weights); convbench follows the CUDA kernel;
* ``SCC_conv/scc_conv.py`` draws the weight uniform in +-1/sqrt(U) and
  ``models/scc_conv.py`` declares a bias it never adds; convbench draws He-normal with
  fan-in U (the initialiser does not change the function timed) and has no bias;
* the authors' backward kernel was not checked; convbench's gradients are the exact
  gradients of the forward (finite-difference tested).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, WorkloadKind, register
from convbench.workloads.layers import Activation, _finish, _Params


class SccParams(_Params):
    """A sliding-channel 1x1 conv of a (in_channels, size, size) input."""

    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    size: int = Field(ge=1, description="input height and width")
    groups: int = Field(2, ge=1, description="G: each window is in_channels / G channels")
    overlap: float = Field(0.5, ge=0, lt=1, description="fraction of a window shared with the next")
    form: Literal["masked", "compact", "gather"] = "masked"
    bn: bool = False
    act: Activation = "none"

    @model_validator(mode="after")
    def _fits(self) -> SccParams:
        if self.in_channels % self.groups:
            raise ValueError(f"in_channels ({self.in_channels}) must be a multiple of groups ({self.groups})")
        return self


def scc_params(p: SccParams) -> int:
    """The SCC's own parameters, C_out * U (a fused kernel's weight)."""
    return p.out_channels * p.in_channels // p.groups


def scc_macs(p: SccParams, batch: int) -> int:
    """The SCC's own multiply-adds, N * C_out * U * H * W (the masked form runs G times more)."""
    return batch * scc_params(p) * p.size * p.size


def build_scc(p: SccParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.in_channels, p.size, p.size))
    y = b.sliding_channel_conv(x, p.out_channels, p.groups, p.overlap, form=p.form, name="scc")
    return b.build([_finish(b, y, p.bn, p.act)])


CONFIGS = tuple(
    NamedConfig(f"{c}->{c}x{s}, G={g}, overlap={o} (our shape)", {"in_channels": c, "out_channels": c, "size": s, "groups": g, "overlap": o})
    for c, s, g, o in ((128, 28, 2, 0.5), (256, 14, 4, 0.25), (256, 14, 4, 0.33), (512, 7, 8, 0.75))
)  # fmt: skip

register(
    WorkloadKind(
        "scc",
        SccParams,
        build_scc,
        "sliding-channel 1x1 conv (DSXplore); masked form: dense C_out x C_in weight (forms compact, gather: C_out x C_in/G)",
        configs=CONFIGS,
    )
)
