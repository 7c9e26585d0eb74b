"""DiCE and DiCENet (convbench/workloads/dicenet.py): the unit's forward against a direct
NumPy reading of the authors' ``DICE``, finite-difference gradients of the float64
reference, the strided block's zero-counting average pool, and the counts."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest

from convbench.data import make_tensors
from convbench.graph import GraphBuilder
from convbench.reference import forward
from convbench.workloads import WORKLOADS, build_graph
from convbench.workloads.dicenet import DiceNetParams, dice_unit, strided_dice_block
from tests.test_reference import fd_check

EPS = 1e-5


def _taps(xp: np.ndarray, axes: tuple[int, int], k: int, i: int, j: int, shape: tuple[int, ...]) -> np.ndarray:
    """The window of ``xp`` (padded by (k - 1) / 2 on ``axes``) read by tap (i, j)."""
    index = [slice(None)] * xp.ndim
    index[axes[0]] = slice(i, i + shape[axes[0]])
    index[axes[1]] = slice(j, j + shape[axes[1]])
    return xp[tuple(index)]


def _pad(x: np.ndarray, axes: tuple[int, int], p: int) -> np.ndarray:
    widths = [(0, 0)] * x.ndim
    for a in axes:
        widths[a] = (p, p)
    return np.pad(x, widths)


def _bn_prelu(x: np.ndarray, t: dict[str, np.ndarray], name: str, act: str) -> np.ndarray:
    shape = (1, -1, 1, 1)
    y = (x - t[f"{name}.running_mean"].reshape(shape)) / np.sqrt(t[f"{name}.running_var"].reshape(shape) + EPS)
    y = y * t[f"{name}.gamma"].reshape(shape) + t[f"{name}.beta"].reshape(shape)
    return np.where(y > 0, y, y * t[f"{act}.slope"].reshape(shape))


def _dice(x: np.ndarray, t: dict[str, np.ndarray], k: int = 3) -> np.ndarray:
    """The authors' DICE (C_out = C, inference), written directly: the height-wise conv's
    filter h runs over (C, W), the width-wise conv's filter w over (H, C)."""
    n, c, h, w = x.shape
    p = (k - 1) // 2
    wc, wh, ww = (t[f"dice.conv_{d}.weight"][:, 0] for d in ("channel", "height", "width"))
    along_c, along_h, along_w = (np.zeros(x.shape) for _ in range(3))
    xc, xh, xw = _pad(x, (2, 3), p), _pad(x, (1, 3), p), _pad(x, (2, 1), p)
    for i in range(k):
        for j in range(k):
            along_c += wc[None, :, i, j, None, None] * _taps(xc, (2, 3), k, i, j, x.shape)
            along_h += wh[None, None, :, i, j, None] * _taps(xh, (1, 3), k, i, j, x.shape)
            along_w += ww[None, None, None, :, i, j] * _taps(xw, (2, 1), k, i, j, x.shape)
    y = _bn_prelu(np.concatenate([along_c, along_h, along_w], axis=1), t, "dice.bn", "dice.prelu")
    y = y.reshape(n, 3, c, h, w).transpose(0, 2, 1, 3, 4).reshape(n, 3 * c, h, w)  # shuffle in 3 groups
    local = np.einsum("ncghw,cg->nchw", y.reshape(n, c, 3, h, w), t["dice.local_fusion.weight"][:, :, 0, 0])
    fused = _bn_prelu(local, t, "dice.local_fusion.bn", "dice.local_fusion.prelu")
    pooled = fused.mean(axis=(2, 3))
    squeezed = np.maximum(pooled @ t["dice.squeeze.weight"][:, :, 0, 0].T, 0)
    gate = 1 / (1 + np.exp(-(squeezed @ t["dice.excite.weight"][:, :, 0, 0].T)))
    fp = _pad(fused, (2, 3), 1)
    proj = sum(
        t["dice.proj.weight"][None, :, 0, i, j, None, None] * _taps(fp, (2, 3), 3, i, j, x.shape)
        for i in range(3)
        for j in range(3)
    )
    return _bn_prelu(proj, t, "dice.proj.bn", "dice.proj.prelu") * gate[:, :, None, None]


@pytest.mark.parametrize("shape", [(2, 8, 5, 5), (2, 6, 4, 7)], ids=str)
def test_dice_forward_is_the_authors_unit(shape: tuple[int, ...]) -> None:
    b = GraphBuilder()
    graph = b.build([dice_unit(b, b.input("x", shape), name="dice")])
    t = make_tensors(graph, 5)
    n, c, h, w = shape
    assert t["dice.conv_height.weight"].shape == (h, 1, 3, 3)
    assert t["dice.conv_width.weight"].shape == (w, 1, 3, 3)
    got = forward(graph, t, False)["dice"]
    np.testing.assert_allclose(got, _dice(t["x"], t), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params", [{"channels": 4, "size": 3}, {"channels": 4, "size": 3, "out_channels": 6, "shuffle": False}], ids=str
)
def test_reference_gradients_match_finite_differences(params: dict, mode: str) -> None:
    fd_check(build_graph("dice", params, 2), mode)


@pytest.mark.parametrize(("c", "out", "size"), [(58, None, 28), (116, None, 14), (232, None, 7), (8, 12, 5)])
def test_dice_counts(c: int, out: int | None, size: int) -> None:
    params = {"channels": c, "size": size} | ({"out_channels": out} if out else {})
    g = build_graph("dice", params, 1)
    o = out or c
    hw = size * size
    groups = math.gcd(c, o)
    # three 3x3 dimension-wise convs, BN + PReLU on 3C, local fusion (3 weights per
    # channel) + BN + PReLU, squeeze and excite, the 3x3 projection + BN + PReLU
    assert g.param_count() == 9 * (c + 2 * size) + 9 * c + 3 * c + 3 * c + c // 4 * (c + o) + 9 * o * c // groups + 3 * o
    assert g.macs() == 3 * 9 * c * hw + 3 * c * hw + c // 4 * (c + o) + 9 * o * c // groups * hw
    assert len(g.of_op("prelu")) == 3 and len(g.of_op("transpose")) == 4 + 1  # four + the shuffle's


def test_dice_needs_four_channels_and_an_odd_kernel() -> None:
    with pytest.raises(pydantic.ValidationError):
        WORKLOADS["dice"].params_model.model_validate({"channels": 3, "size": 4})
    with pytest.raises(pydantic.ValidationError, match="odd"):
        WORKLOADS["dice"].params_model.model_validate({"channels": 8, "size": 4, "kernel": 2})


def test_strided_block_pool_counts_the_zero_padding() -> None:
    """nn.AvgPool2d(3, padding=1, stride=2) divides by 9 at the border too."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 6, 6))
    graph = b.build([strided_dice_block(b, x, "s")])
    assert graph.shape("s") == (1, 8, 3, 3)
    t = make_tensors(graph, 0)
    pooled = forward(graph, t, False)["s.right.pool"]
    xv = t["x"]
    assert pooled[0, 1, 0, 0] == pytest.approx(xv[0, 1, :2, :2].sum() / 9, rel=1e-12)
    assert pooled[0, 2, 1, 1] == pytest.approx(xv[0, 2, 1:4, 1:4].sum() / 9, rel=1e-12)


def test_width_is_read_from_yaml_numbers_and_resolution_is_a_multiple_of_32() -> None:
    assert [DiceNetParams(width=w).width for w in (0.2, 0.75, 1, 1.0, 2.4)] == ["0.2", "0.75", "1.0", "1.0", "2.4"]
    with pytest.raises(pydantic.ValidationError, match="multiple of 32"):
        DiceNetParams(resolution=200)
    with pytest.raises(pydantic.ValidationError):
        DiceNetParams(width=0.3)


#: (s, parameters, multiply-adds): convbench's counts at 224 x 224, 1000 classes. The
#: parameters are osmr/imgclsmob's; the authors' model zoo prints (MACs + 500) / 1e6 to
#: two decimals: 14.90, 24.71, 46.83, 70.71, 98.11, 135.48, 182.24, 236.29.
HEADLINE = [
    ("0.2", 1_130_704, 14_902_464),
    ("0.5", 1_214_120, 24_711_328),
    ("0.75", 1_495_676, 46_825_936),
    ("1.0", 1_805_604, 70_709_744),
    ("1.25", 2_162_888, 98_114_272),
    ("1.5", 2_652_200, 135_479_200),
    ("1.75", 3_264_932, 182_243_260),
    ("2.0", 3_979_044, 236_290_928),
]


@pytest.mark.parametrize(("width", "params", "macs"), HEADLINE)
def test_dicenet_headline_figures(width: str, params: int, macs: int) -> None:
    g = build_graph("dicenet", {"width": width}, 1)
    assert g.param_count() == params
    assert g.macs() == macs


def test_dicenet_structure() -> None:
    g = build_graph("dicenet", {"width": "1.0"}, 1)
    assert g.shape("flatten") == (1, 1000)
    # 3 strided + 13 shuffle DiCE blocks, one DiCE unit each
    assert len([n for n in g.of_op("mul") if n.name.endswith(".dice")]) == 16
    assert g.shape("level3.0") == (1, 48, 28, 28) and g.shape("level3.1") == (1, 116, 28, 28)
    assert g.shape("level4.7") == (1, 232, 14, 14) and g.shape("level5.3") == (1, 464, 7, 7)
    assert g.shape("level3.1.dice") == (1, 92, 28, 28)  # 116 - 24 channels through the first unit
    assert g["classifier.0"].attrs["groups"] == 4
    small = build_graph("dicenet", {"width": 0.2, "resolution": 64, "classes": 10}, 2)
    assert small.shape("flatten") == (2, 10) and small.shape("level5.3") == (2, 128, 2, 2)
