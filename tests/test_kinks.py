"""Tests of training verification at the kinks of relu, relu6 and prelu (convbench.kinks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convbench.data import make_cotangents, make_tensors
from convbench.graph import Graph, GraphBuilder
from convbench.kinks import find_ties, verify_at_ties
from convbench.reference import backward, forward, run_reference
from convbench.verify import verify
from tests.conftest import run_cli

SHAPE = (2, 3, 4, 4)
#: the element of the activation's input that sits at the kink
AT = (1, 2, 3, 0)


def kinked(op: str) -> Graph:
    """input -> op -> 3x3 conv -> batch norm: the op's input is the graph's input."""
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    y = b.prelu(x) if op == "prelu" else b.act(x, op)
    return b.build([b.batchnorm(b.conv2d(y, 5, 3, padding=1))])


def kinked_node(graph: Graph) -> str:
    return next(n.name for n in graph.nodes if n.op in ("relu", "relu6", "prelu"))


def with_element(graph: Graph, value: float) -> dict[str, np.ndarray]:
    tensors = make_tensors(graph, 3)
    tensors["x"] = tensors["x"].copy()
    tensors["x"][AT] = value
    return tensors


@pytest.mark.parametrize(("op", "kink"), [("relu", 0.0), ("relu6", 0.0), ("relu6", 6.0), ("prelu", 0.0)])
def test_a_flipped_derivative_is_the_derivative_on_the_other_side_of_the_kink(op: str, kink: float) -> None:
    graph = kinked(op)
    cotangents = make_cotangents(graph, 3)
    below, above = with_element(graph, kink - 1e-9), with_element(graph, kink + 1e-9)
    flat = np.array([np.ravel_multi_index(AT, SHAPE)])
    from_above = backward(graph, forward(graph, above, True), cotangents, True)
    from_below = backward(graph, forward(graph, below, True), cotangents, True)
    flipped = backward(graph, forward(graph, above, True), cotangents, True, flipped={kinked_node(graph): flat})
    assert abs(from_above["x"][AT] - from_below["x"][AT]) > 1e-3  # the kink matters here
    np.testing.assert_allclose(flipped["x"], from_below["x"], rtol=0, atol=1e-7)
    others = np.ones(SHAPE, dtype=bool)
    others[AT] = False
    np.testing.assert_array_equal(flipped["x"][others], from_above["x"][others])


def test_ties_are_the_elements_near_a_kink_nearest_first() -> None:
    graph = kinked("relu6")
    tensors = with_element(graph, 6.0 + 3e-7)
    tensors["x"][0, 0, 0, 0] = -1e-8
    ties = find_ties(graph, forward(graph, tensors, True), rtol=1e-5)
    scale = np.abs(tensors["x"]).max()
    assert [t.index for t in ties[:2]] == [(0, 0, 0, 0), AT]
    assert ties[1].distance == pytest.approx(3e-7 / scale, rel=1e-6)
    assert all(t.node == kinked_node(graph) for t in ties)


def backend_result(graph: Graph, tensors: dict, cotangents: dict, flip: bool) -> tuple[dict, dict]:
    """(what a backend that put AT on the other side returns, the float64 reference)."""
    want = run_reference(graph, tensors, cotangents, "training")
    values = forward(graph, tensors, True)
    flat = np.array([np.ravel_multi_index(AT, SHAPE)])
    grads = backward(graph, values, cotangents, True, flipped={kinked_node(graph): flat} if flip else None)
    got = {**want, **{f"grad:{n.name}": grads[n.name] for n in graph.nodes if n.op in ("input", "param")}}
    return got, want


def test_a_backend_on_the_other_side_of_a_tie_verifies_with_that_flip_recorded() -> None:
    graph = kinked("relu")
    tensors = with_element(graph, 2e-8)
    cotangents = make_cotangents(graph, 3)
    got, want = backend_result(graph, tensors, cotangents, flip=True)
    assert not verify(got, want, 1e-4).ok
    checked = verify_at_ties(graph, tensors, cotangents, got, want, 1e-4, "float32")
    assert checked is not None and checked.verification.ok and checked.verification.error < 1e-12
    assert [(t.node, t.index) for t in checked.flips] == [(kinked_node(graph), AT)]


def test_a_wrong_gradient_elsewhere_still_fails_and_half_precision_has_no_tie_rule() -> None:
    graph = kinked("relu")
    tensors = with_element(graph, 2e-8)
    cotangents = make_cotangents(graph, 3)
    got, want = backend_result(graph, tensors, cotangents, flip=True)
    weight = next(k for k in got if k.startswith("grad:") and k != "grad:x" and got[k].ndim == 4)
    got[weight] = got[weight] * 1.01
    checked = verify_at_ties(graph, tensors, cotangents, got, want, 1e-4, "float32")
    assert checked is not None and not checked.verification.ok and checked.verification.worst == weight
    assert verify_at_ties(graph, tensors, cotangents, got, want, 1e-4, "float16") is None


def test_without_ties_there_is_nothing_to_flip() -> None:
    graph = kinked("relu")
    tensors = with_element(graph, 0.5)
    tensors["x"] = np.where(np.abs(tensors["x"]) < 1e-3, 0.5, tensors["x"])
    cotangents = make_cotangents(graph, 3)
    got, want = backend_result(graph, tensors, cotangents, flip=False)
    got["grad:x"] = got["grad:x"] * 1.01
    assert verify_at_ties(graph, tensors, cotangents, got, want, 1e-4, "float32") is None


def test_check_passes_a_case_across_a_kink_and_says_which_element_it_flipped(tmp_path: Path) -> None:
    """ECA-MobileNetV2 0.25x at 64 px, batch 2: its relu6 input nearest a kink (5.7e-8 of
    the largest value) flipped alone moves the gradients beyond the default tolerance."""
    workload = "{kind: eca_mobilenet_v2, params: {width: 0.25, resolution: 64, classes: 10}}"
    suite = tmp_path / "kinks.yaml"
    suite.write_text(
        f"name: kinks\nworkloads:\n  - {{id: kink_eca, {workload[1:]}\n"
        "matrix:\n  workload: [kink_eca]\n  variant: [native]\n  backend: [faulty]\n"
        "  device: [cpu]\n  mode: [training]\n  batch: [2]\n"
    )
    proc = run_cli("check", str(suite), "--json")
    rows = {r["workload"]: r for r in json.loads(proc.stdout)}
    across = rows["kink_eca"]
    assert across["status"] == "ok" and across["verify_error"] < 1e-12, across["reason"]
    details = across["details"] if isinstance(across["details"], dict) else json.loads(across["details"])
    assert details["verify_error_unflipped"] > 1e-4 and details["kink_ties"] >= 1
    assert details["kink_flips"][0]["node"] == "block2.expand.bn.relu6" and details["kink_flips"][0]["distance"] < 1e-7
    assert proc.returncode == 0
