"""Shifts: Wu et al.'s shift and its forms (native, slice, onehot), and AddressNet's primitives."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from convbench.data import make_cotangents, make_tensors
from convbench.graph import GraphError, shift_offsets, shift_runs
from convbench.reference import forward, run_reference
from convbench.reference import shift as reference_shift
from convbench.variants import onehot_kernels, parse_variant
from convbench.verify import verify
from convbench.workloads import build_graph
from convbench.workloads.shift import address_offsets


def same_function(kind: str, params: dict, label: str, mode: str, batch: int = 2) -> None:
    graph = build_graph(kind, params, batch)
    variant = parse_variant(label)
    assert variant.applies(graph)
    rewritten = variant.apply(graph)
    cot = make_cotangents(graph, 5)
    want = run_reference(graph, make_tensors(graph, 5), cot, mode)
    got = run_reference(rewritten, make_tensors(rewritten, 5), cot, mode)
    result = verify(got, want, 1e-12)
    assert result.ok, (label, result.error, result.worst, result.missing)


def test_shift_offsets_follow_wu_et_al() -> None:
    offsets = shift_offsets(20, 3)
    # 20 channels in 9 groups of 20 // 9 = 2; the 20 mod 9 = 2 channels left over stay
    runs = shift_runs(offsets)
    assert [stop - start for start, stop, _, _ in runs] == [2] * 10
    assert [(dy, dx) for *_, dy, dx in runs] == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] + [(0, 0)]
    assert runs[4][2:] == (0, 0)  # the centre group stays
    assert shift_offsets(9, 3, dilation=2)[0] == (-2, -2)
    assert set(shift_offsets(5, 5)) == {(0, 0)}  # fewer channels than offsets: none moves
    assert shift_offsets(18, 3) == shift_offsets(18, 3, leftover="spread")  # C a multiple of k*k
    with pytest.raises(GraphError, match="odd"):
        shift_offsets(8, 2)
    with pytest.raises(GraphError, match="leftover"):
        shift_offsets(8, 3, leftover="first")


def test_spread_leftover_is_convbenchs_earlier_rule() -> None:
    runs = shift_runs(shift_offsets(20, 3, leftover="spread"))
    # the first 20 mod 9 = 2 groups have 3 channels, the rest 2 (numpy.array_split)
    assert [stop - start for start, stop, _, _ in runs] == [3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert len(shift_runs(shift_offsets(5, 5, leftover="spread"))) == 5
    graph = build_graph("shift", {"channels": 20, "size": 6, "leftover": "spread"}, 1)
    assert graph["shift"].attrs["offsets"] == shift_offsets(20, 3, leftover="spread")
    with pytest.raises(pydantic.ValidationError):
        build_graph("shift", {"channels": 20, "size": 6, "leftover": "first"}, 1)


def authors_kernel(x: np.ndarray, kernel: int, dilation: int = 1) -> np.ndarray:
    """NumPy transcription of the authors' shift kernel (alvinwan/shiftresnet-cifar,
    models/shiftnet_cuda_v2/src/shiftnet_cuda_kernels.cu, moduloshiftgeneric, direction 1):
    channel c < rd = (C // k^2) * k^2 reads ``src[h + h_shift, w + w_shift]`` with
    ``w_shift = dilation * (c % k - k // 2)``, ``h_shift = dilation * ((c // k) % k - k // 2)``,
    zero outside; the channels from rd on are copied unshifted."""
    n, c, h, w = x.shape
    rd = (c // kernel**2) * kernel**2
    out = np.zeros_like(x)
    for ch in range(c):
        hs = dilation * ((ch // kernel) % kernel - kernel // 2) * (ch < rd)
        ws = dilation * ((ch % kernel) - kernel // 2) * (ch < rd)
        for i in range(h):
            for j in range(w):
                if 0 <= i + hs < h and 0 <= j + ws < w:
                    out[:, ch, i, j] = x[:, ch, i + hs, j + ws]
    return out


@pytest.mark.parametrize("channels, kernel, dilation", [(96, 3, 1), (20, 3, 1), (7, 3, 1), (30, 5, 1), (23, 3, 2)])
def test_shift_is_the_authors_kernel_up_to_a_channel_permutation(channels: int, kernel: int, dilation: int) -> None:
    """Each channel of the authors' output is its input moved by one of our offsets, and
    the offsets so found are ours, each as many times: the two differ by a permutation."""
    size = 2 * dilation * (kernel // 2) + 3
    ours = shift_offsets(channels, kernel, dilation)
    x = np.random.default_rng(0).standard_normal((1, channels, size, size))
    theirs = authors_kernel(x, kernel, dilation)[0]
    found = []
    for ch in range(channels):
        moved = {o: reference_shift(x[:, ch : ch + 1], [o])[0, 0] for o in set(ours)}
        matches = [o for o, plane in moved.items() if np.array_equal(plane, theirs[ch])]
        assert len(matches) == 1, (ch, matches)
        found.append(matches[0])
    assert sorted(found) == sorted(ours)


def test_unshifted_channels_c96_k3() -> None:
    """The issue's example: the authors' rule leaves 96 // 9 + 96 mod 9 = 16 channels in
    place; the spread rule 11 (the centre group of 96 // 9 + 1)."""
    assert shift_offsets(96, 3).count((0, 0)) == 16
    assert shift_offsets(96, 3, leftover="spread").count((0, 0)) == 11
    rd = (96 // 9) * 9
    assert sum(1 for c in range(96) if c >= rd or (c % 3 == 1 and (c // 3) % 3 == 1)) == 16  # the kernel's


def test_shift_moves_each_group_by_its_offset() -> None:
    graph = build_graph("shift", {"channels": 9, "size": 5}, 1)
    x = np.arange(9 * 25, dtype=float).reshape(1, 9, 5, 5)
    y = forward(graph, {"x": x}, False)["shift"]
    # channel 0 moves by (-1, -1): out[h, w] = x[h + 1, w + 1]; the last row and column are zero
    np.testing.assert_array_equal(y[0, 0, :4, :4], x[0, 0, 1:, 1:])
    assert not y[0, 0, 4].any() and not y[0, 0, :, 4].any()
    np.testing.assert_array_equal(y[0, 4], x[0, 4])  # the centre
    np.testing.assert_array_equal(y[0, 8, 1:, 1:], x[0, 8, :4, :4])  # (+1, +1)
    assert graph.param_count() == 0 and graph.macs() == 0


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("label", ["slice", "onehot", "onehot+diagonalwise", "onehot+diagonalwise(group_size=4)", "onehot+split"])
@pytest.mark.parametrize(
    "params",
    [
        {"channels": 20, "size": 6},
        {"channels": 7, "size": 6, "kernel": 5},
        {"channels": 30, "size": 5, "dilation": 2},
        {"channels": 20, "size": 6, "leftover": "spread"},
    ],
    ids=str,
)
def test_shift_forms_equal_native(params: dict, label: str, mode: str) -> None:
    same_function("shift", params, label, mode)


def test_onehot_kernels_and_macs() -> None:
    w = onehot_kernels(((0, 0), (1, -1), (-2, 0)))
    assert w.shape == (3, 1, 5, 5) and w.sum() == 3
    assert w[1, 0, 1, 3] == 1 and w[2, 0, 4, 2] == 1 and w[0, 0, 2, 2] == 1
    graph = build_graph("shift", {"channels": 18, "size": 6}, 2)
    onehot = parse_variant("onehot").apply(graph)
    assert onehot.macs() == 2 * 18 * 36 * 9 and onehot.param_count() == 0
    assert parse_variant("onehot+diagonalwise").apply(graph).macs() == 18 * onehot.macs()  # G = C = 18


def test_shift_conv_module_and_shiftresnet_forms() -> None:
    params = {"in_channels": 8, "out_channels": 6, "size": 6, "expansion": 2, "stride": 2}
    g = build_graph("shift_conv", params, 2)
    assert g.shape(g.outputs[0]) == (2, 6, 3, 3)
    assert g.param_count() == 8 * 12 + 2 * 12 + 12 * 6 + 2 * 6
    for label in ("slice", "onehot", "onehot+diagonalwise"):
        same_function("shift_conv", params, label, "training")
        same_function("shiftresnet", {"expansion": 1, "resolution": 16}, label, "training")
    assert not parse_variant("diagonalwise").applies(build_graph("shiftresnet", {"resolution": 16}, 1))


def test_shift_that_leaves_the_plane_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="does not fit"):
        build_graph("shift", {"channels": 9, "size": 2, "kernel": 5}, 1)


def test_channel_shift_is_a_cyclic_roll() -> None:
    graph = build_graph("channel_shift", {"channels": 12, "size": 3, "shift": 5}, 2)
    x = make_tensors(graph, 1)["x"]
    y = forward(graph, {"x": x}, False)["channel_shift"]
    np.testing.assert_array_equal(y, np.roll(x, -5, axis=1))  # out[:, c] = x[:, (c + 5) mod 12]
    with pytest.raises(pydantic.ValidationError, match="smaller than channels"):
        build_graph("channel_shift", {"channels": 4, "size": 3, "shift": 4}, 1)


def test_address_shift_moves_the_flattened_plane() -> None:
    graph = build_graph("address_shift", {"channels": 11, "size": 4}, 2)
    x = make_tensors(graph, 1)["x"]
    y = forward(graph, {"x": x}, False)["address_shift"]
    offsets = address_offsets(11, 4)
    assert offsets == [4, 4, 4, 1, 1, 0, 0, -1, -1, -4, -4]
    flat, out = x.reshape(2, 11, 16), np.zeros((2, 11, 16))
    for c, a in enumerate(offsets):
        for i in range(16):
            if 0 <= i + a < 16:
                out[:, c, i] = flat[:, c, i + a]
    np.testing.assert_array_equal(y, out.reshape(2, 11, 4, 4))
    # unlike the spatial shift, a horizontal move wraps into the neighbouring row
    assert y[0, 3, 0, 3] == x[0, 3, 1, 0]


def test_shortcut_shift_keeps_a_window_of_channels() -> None:
    graph = build_graph("shortcut_shift", {"channels": 8, "size": 3, "branch_channels": 3}, 2)
    t = make_tensors(graph, 1)
    y = forward(graph, t, False)["shortcut_shift"]
    np.testing.assert_array_equal(y, np.concatenate([t["x"][:, 3:], t["branch"]], axis=1))
    with pytest.raises(pydantic.ValidationError, match="<= channels"):
        build_graph("shortcut_shift", {"channels": 2, "size": 3, "branch_channels": 3}, 1)


@pytest.mark.parametrize(
    "kind, params",
    [
        ("channel_shift", {"channels": 12, "size": 3, "shift": 5}),
        ("address_shift", {"channels": 11, "size": 4}),
        ("shortcut_shift", {"channels": 8, "size": 3, "branch_channels": 3}),
    ],
)
def test_addressnet_primitive_gradients(kind: str, params: dict) -> None:
    """The adjoint of a data movement: every input element gets the cotangent of the output
    element it went to, or zero where it left the tensor."""
    graph = build_graph(kind, params, 2)
    t = make_tensors(graph, 1)
    cot = make_cotangents(graph, 1)
    out = run_reference(graph, t, cot, "training")
    name = graph.outputs[0]
    loss = float((out[name] * cot[name]).sum())
    # linear in the inputs: loss = sum over inputs of <grad, input>
    assert loss == pytest.approx(sum(float((out[f"grad:{n.name}"] * t[n.name]).sum()) for n in graph.inputs), rel=1e-12)
