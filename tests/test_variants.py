"""Variants: diagonalwise computes what native computes, forward and gradients."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.data import make_cotangents, make_tensors, native_tensors
from convbench.reference import run_reference
from convbench.variants import diagonal_mask, native_gradients, parse_variant
from convbench.verify import verify
from convbench.workloads import build_graph


def _same_function(kind: str, params: dict, batch: int, label: str, mode: str, tolerance: float = 1e-10) -> float:
    graph = build_graph(kind, params, batch)
    rewritten = parse_variant(label).apply(graph)
    tensors = make_tensors(rewritten, seed=7)
    cot = make_cotangents(graph, seed=7)
    want = run_reference(graph, make_tensors(graph, seed=7), cot, mode)
    got = run_reference(rewritten, tensors, cot, mode)
    result = verify(got, want, tolerance)
    assert result.ok, (result.error, result.worst, result.missing)
    return result.error


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params, label",
    [
        ({"channels": 64, "size": 6}, "diagonalwise"),  # 2 groups of 32
        ({"channels": 8, "size": 5}, "diagonalwise"),  # G = C: one dense conv
        ({"channels": 70, "size": 7, "stride": 2}, "diagonalwise(group_size=16)"),  # 70 = 4*16 + 6
        ({"channels": 5, "size": 6, "multiplier": 3, "bias": True}, "diagonalwise(group_size=2)"),
        ({"channels": 33, "size": 9, "kernel": 5, "stride": 2, "bn": True, "act": "relu6"}, "diagonalwise"),
        ({"channels": 70, "size": 7, "stride": 2}, "diagonalwise(group_size=16, remainder=pad)"),  # 70 -> 80
        ({"channels": 5, "size": 6, "multiplier": 3, "bias": True}, "diagonalwise(group_size=2, remainder=pad)"),
        ({"channels": 70, "size": 5}, "diagonalwise(group_size=16)+split"),  # the authors' TensorFlow form
        ({"channels": 70, "size": 5}, "diagonalwise(group_size=1024)"),  # the authors' Caffe form: one dense conv
    ],
)
def test_diagonalwise_equals_native(params: dict, label: str, mode: str) -> None:
    _same_function("depthwise", params, 2, label, mode)


def test_diagonalwise_equals_native_on_random_shapes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(6):
        params = {
            "channels": int(rng.integers(2, 50)),
            "size": int(rng.integers(3, 9)),
            "kernel": int(rng.choice([1, 3, 5])),
            "stride": int(rng.integers(1, 3)),
            "multiplier": int(rng.integers(1, 3)),
        }
        label = f"diagonalwise(group_size={int(rng.integers(1, 40))})"
        _same_function("depthwise", params, 2, label, "training")


def test_diagonalwise_on_a_network_keeps_parameters_and_multiplies_macs() -> None:
    graph = build_graph("mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}, 1)
    rewritten = parse_variant("diagonalwise").apply(graph)
    assert [(n.name, n.shape) for n in rewritten.params] == [(n.name, n.shape) for n in graph.params]
    assert rewritten.param_count() == graph.param_count()
    assert rewritten.macs() > graph.macs()
    assert not any(n.op == "conv2d" and n.attrs["groups"] == rewritten.shape(n.inputs[0])[1] > 1 for n in rewritten.nodes)
    _same_function("mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}, 2, "diagonalwise", "training")


def test_remainder_pad_is_one_conv_over_zero_padded_channels() -> None:
    graph = build_graph("depthwise", {"channels": 70, "size": 7}, 1)
    split = parse_variant("diagonalwise(group_size=16)").apply(graph)
    padded = parse_variant("diagonalwise(group_size=16, remainder=pad)").apply(graph)
    convs = [n for n in padded.nodes if n.op == "conv2d"]
    assert len(convs) == 1 and convs[0].attrs["groups"] == 5 and padded.shape(convs[0].inputs[0])[1] == 80
    assert not any(n.op == "concat" for n in padded.nodes) and sum(n.op == "conv2d" for n in split.nodes) == 2
    assert padded.macs() == 80 * 16 * 7 * 7 * 9 > split.macs() == (64 * 16 + 6 * 6) * 7 * 7 * 9
    assert [(n.name, n.shape) for n in padded.params] == [(n.name, n.shape) for n in graph.params]
    assert parse_variant("diagonalwise(remainder=pad)").label == "diagonalwise(remainder=pad)"
    assert parse_variant("diagonalwise(remainder=split)").label == "diagonalwise"
    with pytest.raises(ValueError, match="remainder must be one of split, pad, got 'zero'"):
        parse_variant("diagonalwise(remainder=zero)")


def test_diagonalwise_macs_grow_by_the_group_size() -> None:
    graph = build_graph("depthwise", {"channels": 64, "size": 8}, 1)
    assert parse_variant("diagonalwise").apply(graph).macs() == 32 * graph.macs()


def test_mask_is_block_diagonal() -> None:
    mask = diagonal_mask(channels=4, group=2, multiplier=2)[:, :, 0, 0]
    assert mask.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]


def test_variant_labels() -> None:
    assert parse_variant("diagonalwise").label == "diagonalwise"
    assert parse_variant("diagonalwise(group_size=32)").label == "diagonalwise"
    assert parse_variant(" diagonalwise( group_size = 8 ) ").label == "diagonalwise(group_size=8)"
    for bad, message in [
        ("diagwise", "unknown variant"),
        ("diagonalwise(size=3)", "bad argument"),
        ("diagonalwise(group_size=x)", "must be int"),
        ("diagonalwise(group_size=0)", ">= 1"),
        ("native(", "malformed"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)


def test_variant_that_changes_nothing_is_reported() -> None:
    pw = build_graph("pointwise", {"in_channels": 4, "out_channels": 4, "size": 3}, 1)
    assert not parse_variant("diagonalwise").applies(pw)
    assert parse_variant("native").applies(pw)


def test_chained_variant_labels() -> None:
    chain = parse_variant(" onehot + diagonalwise( group_size = 8 ) ")
    assert chain.label == "onehot+diagonalwise(group_size=8)"
    assert parse_variant("blockdiag+diagonalwise(group_size=32)").label == "blockdiag+diagonalwise"
    for bad, message in [
        ("native+diagonalwise", "cannot be chained"),
        ("onehot+nope", "unknown variant"),
        ("onehot+", "malformed"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)


def test_chain_applies_only_when_every_step_changes_the_graph() -> None:
    shift = build_graph("shift", {"channels": 9, "size": 4}, 1)
    assert parse_variant("onehot+diagonalwise").applies(shift)
    assert not parse_variant("diagonalwise").applies(shift)  # no depthwise before onehot
    assert not parse_variant("onehot+onehot").applies(shift)
    assert not parse_variant("diagonalwise+onehot").applies(shift)
    unit = build_graph("shufflenet_v1_unit", {"in_channels": 12, "out_channels": 12, "size": 4, "groups": 3}, 1)
    both = parse_variant("blockdiag+diagonalwise").apply(unit)
    # the 3-channel depthwise conv becomes one dense conv (G = C = 3), the group convs dense ones
    assert [n.attrs["groups"] for n in unit.of_op("conv2d")] == [3, 3, 3]
    assert [n.attrs["groups"] for n in both.of_op("conv2d")] == [1, 1, 1]
    assert all(n.attrs["groups"] == 1 for n in parse_variant("blockdiag+split").apply(unit).of_op("conv2d"))


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "kind, params, label",
    [
        ("shufflenet_v1", {"groups": 3, "width": 0.25, "resolution": 32, "classes": 10}, "blockdiag+diagonalwise"),
        ("menet", {"stage_channels": 48, "side_channels": 4, "groups": 3, "init_channels": 12, "resolution": 32, "classes": 10}, "blockdiag"),
        ("shufflenet_v2", {"width": "0.5", "resolution": 32, "classes": 10, "downsampling": "original"}, "diagonalwise"),
        ("mobilenet_v2", {"width": 0.25, "resolution": 32, "classes": 10}, "split"),
        ("shiftresnet", {"expansion": 1, "resolution": 16}, "onehot+diagonalwise"),
    ],
)
def test_variants_of_networks_equal_native(kind: str, params: dict, label: str, mode: str) -> None:
    # Two summation orders in float64, through the batch norms of a 32 px network whose
    # last stages are 2x2 and 1x1 at batch 2: the stem's BN-shift gradient, a sum that
    # nearly cancels, differs by 7.7e-10 (relative) between ShuffleNet v1 and its blockdiag
    # rewrite (1.9e-14 with shortcut="excluded"); a rewrite that is wrong is off by O(1).
    _same_function(kind, params, 2, label, mode, tolerance=1e-8)


def test_a_plugin_defines_a_backend_implemented_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant kind a registered plugin declares (``variant_kinds``) is a variant like
    ``kernel``: labels may name it, and backends that do not run it skip its cases."""
    from convbench.variants import backend_variants, known_variants

    monkeypatch.delenv("CONVBENCH_EXTRA_BACKENDS", raising=False)
    with pytest.raises(ValueError, match="unknown variant 'warpkernel'"):
        parse_variant("warpkernel")
    assert backend_variants() == {"kernel"}
    monkeypatch.setenv("CONVBENCH_EXTRA_BACKENDS", "warpfake=tests.fake_backends:WarpBackend")
    assert "warpkernel" in known_variants() and backend_variants() == {"kernel", "warpkernel"}
    variant = parse_variant("warpkernel")
    depthwise, pointwise = build_graph("depthwise", {"channels": 8, "size": 5}, 1), build_graph("pointwise", {"in_channels": 4, "out_channels": 8, "size": 5}, 1)
    assert variant.label == "warpkernel" and variant.applies(depthwise) and not variant.applies(pointwise)
    assert variant.apply(depthwise) is depthwise


# -- diagonalwise(param=expanded): the authors' PyTorch form, the expanded tensor trained
EXPANDED_CASES = [
    ({"channels": 64, "size": 6}, "diagonalwise"),  # 2 groups of 32
    ({"channels": 8, "size": 5}, "diagonalwise"),  # G = C: one dense conv
    ({"channels": 70, "size": 7, "stride": 2}, "diagonalwise(group_size=16)"),  # remainder 6: split
    ({"channels": 70, "size": 7, "stride": 2}, "diagonalwise(group_size=16, remainder=pad)"),  # 70 -> 80
    ({"channels": 5, "size": 6, "multiplier": 3, "bias": True}, "diagonalwise(group_size=2)"),
    ({"channels": 5, "size": 6, "multiplier": 3, "bias": True}, "diagonalwise(group_size=2, remainder=pad)"),
    ({"channels": 33, "size": 9, "kernel": 5, "stride": 2, "bn": True, "act": "relu6"}, "diagonalwise"),
    ({"channels": 70, "size": 5}, "diagonalwise(group_size=16)+split"),  # the chain splits the expanded weight
]


def expanded_label(label: str) -> str:
    """``label`` with its first step's parameter expanded."""
    first, plus, rest = label.partition("+")
    first = f"{first[:-1]}, param=expanded)" if first.endswith(")") else f"{first}(param=expanded)"
    return first + plus + rest


def _reference_steps(graph, cotangents: dict, mode: str, steps: int = 2) -> list[dict]:  # noqa: ANN001
    """``steps`` checks of the reference backend (each after the previous SGD update), the
    expanded parameters' gradients mapped to the compact weights'."""
    from convbench.reference_backend import ReferenceBackend
    from tests.backends.graphs import make_case

    prepared = ReferenceBackend().prepare(make_case(mode=mode), graph, make_tensors(graph, seed=7), cotangents)
    return [native_gradients(graph, prepared.check()) for _ in range(steps)]


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("params, label", EXPANDED_CASES)
def test_expanded_parameter_computes_what_compact_computes(params: dict, label: str, mode: str) -> None:
    """Outputs and (mapped) gradients of param=expanded equal param=compact's in the
    reference backend, at the first step and after one SGD update, and the native graph's
    float64 reference."""
    graph = build_graph("depthwise", params, 2)
    compact = parse_variant(label).apply(graph)
    expanded = parse_variant(expanded_label(label)).apply(graph)
    c, m, k = params["channels"], params.get("multiplier", 1), params.get("kernel", 3)
    variant = parse_variant(label)
    step = variant.steps[0] if "+" in label else variant
    g = min(dict(step.args)["group_size"], c)
    (param,) = [n for n in expanded.params if "expands" in n.attrs]
    assert param.shape == (c * m, g, k, k) and param.attrs["expands"] not in expanded
    assert expanded.macs() == compact.macs() and expanded.param_count() == graph.param_count() + c * m * (g - 1) * k * k
    # drawn from the compact weight: its diagonal entries are the compact weight, the rest zeros
    mask = expanded[param.attrs["mask"]].attrs["value"]
    values = make_tensors(expanded, seed=7)[param.name]
    assert np.array_equal(values * (1 - mask), np.zeros_like(values))
    cotangents = make_cotangents(graph, seed=7)
    assert np.array_equal(native_gradients(expanded, {f"grad:{param.name}": values})[f"grad:{param.attrs['expands']}"], make_tensors(graph, seed=7)[param.attrs["expands"]])
    native = native_tensors(graph, 7, make_tensors(expanded, seed=7))  # the compact weight drawn again, the rest reused
    assert native.keys() == make_tensors(graph, seed=7).keys() and all(np.array_equal(v, make_tensors(graph, seed=7)[name]) for name, v in native.items())
    want = run_reference(graph, native, cotangents, mode)
    got_compact, got_expanded = _reference_steps(compact, cotangents, mode), _reference_steps(expanded, cotangents, mode)
    assert verify(got_expanded[0], want, 1e-12).ok
    for a, b in zip(got_compact, got_expanded, strict=True):
        assert set(a) == set(b) == set(want)
        for key in want:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-12, atol=1e-13, err_msg=key)
    if mode == "training":  # the expanded gradient is the masked one: zero off the diagonal
        raw = run_reference(expanded, make_tensors(expanded, seed=7), cotangents, mode)[f"grad:{param.name}"]
        assert np.array_equal(raw * (1 - mask), np.zeros_like(raw)) and np.abs(raw).max() > 0


def test_expanded_parameter_on_a_network_replaces_every_depthwise_weight() -> None:
    kind, params = "mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}
    graph = build_graph(kind, params, 2)
    expanded = parse_variant("diagonalwise(param=expanded)").apply(graph)
    depthwise = {n.inputs[1] for n in graph.nodes if n.op == "conv2d" and n.attrs["groups"] > 1}
    replaced = {n.attrs["expands"]: n for n in expanded.params if "expands" in n.attrs}
    assert len(depthwise) == 13 and set(replaced) == depthwise
    assert {n.name for n in expanded.params} == {n.name for n in graph.params} - depthwise | {n.name for n in replaced.values()}
    grow = sum(n.size - graph[w].size for w, n in replaced.items())
    assert expanded.param_count() == graph.param_count() + grow and grow > 0
    tensors, cotangents = make_tensors(expanded, seed=7), make_cotangents(graph, seed=7)
    want = run_reference(graph, native_tensors(graph, 7, tensors), cotangents, "training")
    result = verify(native_gradients(expanded, run_reference(expanded, tensors, cotangents, "training")), want, 1e-10)
    assert result.ok, (result.error, result.worst, result.missing)


def test_expanded_keeps_a_weight_that_is_not_a_param_compact() -> None:
    """onehot's kernels are consts: nothing to train, so they stay compact."""
    shift = build_graph("shift", {"channels": 9, "size": 4}, 1)
    chain = parse_variant("onehot+diagonalwise(param=expanded)").apply(shift)
    assert chain.param_count() == shift.param_count() == 0 and not [n for n in chain.nodes if "expands" in n.attrs]
    assert chain.macs() == parse_variant("onehot+diagonalwise").apply(shift).macs()


def test_param_labels() -> None:
    assert parse_variant("diagonalwise(param=expanded)").label == "diagonalwise(param=expanded)"
    assert parse_variant("diagonalwise(param=compact)").label == "diagonalwise"
    assert parse_variant("diagonalwise(group_size=16, param=expanded)").label == "diagonalwise(group_size=16, param=expanded)"
    with pytest.raises(ValueError, match="param must be one of compact, expanded, got 'dense'"):
        parse_variant("diagonalwise(param=dense)")


def test_expanded_parameter_verifies_through_the_workers(tmp_path) -> None:  # noqa: ANN001
    """`convbench check`: every form verifies against the native graph's reference in the
    reference backend and torch (each in its worker), forward and training, with remainders."""
    import importlib.util
    import json

    from tests.conftest import run_cli

    backends = ["reference"] + (["torch"] if importlib.util.find_spec("torch") else [])
    variants = ["diagonalwise(group_size=16)", "diagonalwise(group_size=16, param=expanded)", "diagonalwise(group_size=16, remainder=pad, param=expanded)", "diagonalwise(param=expanded)"]
    suite = {
        "name": "expanded",
        "workloads": [
            {"id": "dw70_bias", "kind": "depthwise", "params": {"channels": 70, "size": 7, "bias": True}},
            {"id": "dw32_m2", "kind": "depthwise", "params": {"channels": 32, "size": 5, "multiplier": 2, "bn": True, "act": "relu"}},
        ],
        "matrix": [{"variant": variants, "backend": backends, "mode": ["inference", "training"], "batch": [2], "threads": [1]}],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(json.dumps(suite))
    proc = run_cli("check", str(path), "--json")
    assert proc.stdout.strip(), proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 * len(variants) * len(backends) * 2
    bad = [(r["case_id"], r["status"], r["reason"]) for r in rows if r["status"] != "ok"]
    assert not bad, bad
    assert all(r["verify_error"] <= 1e-4 for r in rows)
    assert any(r["verify_worst"].startswith("grad:") for r in rows if r["mode"] == "training")
    for r in rows:
        details = r["details"] if isinstance(r["details"], dict) else json.loads(r["details"])
        assert ("executed_param_count" in details) == ("expanded" in r["variant"]), r["case_id"]
