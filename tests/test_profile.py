"""`convbench profile`: categories of graph nodes, attribution of variants, the command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from convbench.graph import GraphBuilder
from convbench.profile import CATEGORIES, categorize, load_profile, node_category, shares
from convbench.variants import parse_variant
from convbench.workloads import build_graph
from tests.conftest import run_cli

EXTRA = "faulty=fake_backends:FaultyBackend,asyncfake=fake_device:AsyncBackend"


def test_every_op_kind_falls_in_its_category() -> None:
    b = GraphBuilder()
    x = b.input("x", (1, 8, 8, 8))
    stem = b.conv2d(x, 8, 3, name="stem")  # full 3x3
    dw = b.conv2d(stem, 16, 3, groups=8, name="dw")  # depthwise, multiplier 2
    gpw = b.conv2d(dw, 8, 1, groups=4, name="gpw")  # grouped 1x1
    g3 = b.conv2d(gpw, 8, 3, groups=2, name="g3")  # group 3x3
    bn = b.batchnorm(g3, name="bn")
    act = b.act(bn, "relu6")
    add = b.add("add", [act, gpw], name="sum")
    cat = b.add("concat", [add, act], name="cat", axis=1)
    pool = b.pool(cat, "maxpool", 2)
    gap = b.add("global_avgpool", [pool], name="gap")
    fc = b.linear(b.add("flatten", [gap], name="flat"), 3, name="fc")
    g = b.build([fc])
    got = {n.name: node_category(g, n) for n in g.ops}
    assert got == {
        "stem": "other conv", "dw": "depthwise", "gpw": "pointwise", "g3": "other conv", "bn": "batchnorm",
        "bn.relu6": "activation", "sum": "elementwise", "cat": "other", pool: "pool", "gap": "pool",
        "flat": "other", "fc": "linear",
    }  # fmt: skip
    assert set(got.values()) == set(CATEGORIES)


def test_a_variant_node_counts_as_the_workload_node_it_implements() -> None:
    native = build_graph("separable", {"in_channels": 40, "out_channels": 8, "size": 6}, 1)
    executed = parse_variant("diagonalwise").apply(native)
    rows = [{"node": n.name} for n in executed.ops] + [{"node": None}, {"node": "dw", "category": "custom"}]
    categorize(rows, native, executed)
    by_node = {r["node"]: r["category"] for r in rows[:-1]}
    new = [n.name for n in executed.ops if n.name not in native]
    assert new and all(by_node[name] == "depthwise" for name in new if name.startswith("dw."))
    assert by_node["dw"] == "depthwise" and by_node["pw"] == "pointwise" and by_node["dw.bn"] == "batchnorm"
    assert by_node[None] == "other" and rows[-1]["category"] == "custom"  # a backend's own category wins
    assert rows[0]["kind"] is not None


def test_shares_are_percentages_of_the_step() -> None:
    frame = pd.DataFrame(
        [
            {"case_id": "a", "status": "ok", "category": "depthwise", "self_time": 3e-3},
            {"case_id": "a", "status": "ok", "category": "pointwise", "self_time": 1e-3},
            {"case_id": "b", "status": "skipped", "category": None, "self_time": None},
        ]
    )
    s = shares(frame)
    assert list(s.index) == ["a"]
    assert s.loc["a", "ms/step"] == pytest.approx(4.0)
    assert s.loc["a", "depthwise"] == pytest.approx(75.0) and s.loc["a", "pointwise"] == pytest.approx(25.0)


def suite(path: Path) -> Path:
    path.write_text(
        "name: prof\n"
        "workloads:\n  - {id: sep, kind: separable, params: {in_channels: 40, out_channels: 8, size: 6}}\n"
        "matrix: {backend: [asyncfake, reference], variant: [native, diagonalwise], batch: [1]}\n"
        "timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.05, guard: flag}\n"
    )
    return path


def test_profile_command_saves_rows_prints_shares_and_attaches_to_a_run(tmp_path: Path) -> None:
    path = suite(tmp_path / "s.yaml")
    out = tmp_path / "prof"
    proc = run_cli("profile", str(path), "--steps", "2", "--out", str(out), CONVBENCH_EXTRA_BACKENDS=EXTRA, CONVBENCH_FAKE_WORK_MS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["kind"] == "profile" and meta["profile"]["steps"] == 2 and meta["status"] == "complete"
    rows = load_profile(out)
    cases = rows.drop_duplicates("case_id").set_index("variant", append=True)
    assert len(cases) == 4
    fake = rows[rows.backend == "asyncfake"]
    assert (fake.status == "ok").all() and set(fake.source) == {"fake profiler"}
    diag = fake[fake.variant == "diagonalwise"]
    # the fake gives 1 ms per conv, 0.5 ms per other op: every node of the rewritten
    # depthwise conv (slices, masks, 2 convs, concat) still counts as depthwise
    native = build_graph("separable", {"in_channels": 40, "out_channels": 8, "size": 6}, 1)
    parts = [n for n in parse_variant("diagonalwise").apply(native).ops if n.name == "dw" or (n.name.startswith("dw.") and n.name not in native)]
    assert sum(n.op == "conv2d" for n in parts) == 2
    want = sum(1e-3 if n.op == "conv2d" else 5e-4 for n in parts)
    assert diag.loc[diag.category == "depthwise", "self_time"].sum() == pytest.approx(want)
    ref = rows[rows.backend == "reference"]
    assert (ref.status == "skipped").all() and ref.reason.str.contains("no profiler hook").all()
    assert "depthwise" in proc.stdout and "pointwise" in proc.stdout and "ms/step" in proc.stdout

    run = tmp_path / "run"
    proc = run_cli("run", str(path), "--filter", "backend == 'asyncfake' and variant == 'native'", "--out", str(run), CONVBENCH_EXTRA_BACKENDS=EXTRA, CONVBENCH_FAKE_WORK_MS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("profile", str(path), "--filter", "backend == 'asyncfake'", "--out", str(run), CONVBENCH_EXTRA_BACKENDS=EXTRA, CONVBENCH_FAKE_WORK_MS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete" and meta["profile"]["filter"] == "backend == 'asyncfake'"
    assert len(pd.read_parquet(run / "cases.parquet")) == 1 and (run / "profile.parquet").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--steps", "0"], "--steps 0"), (["--filter", "batch == 99"], "no case to profile")],
)
def test_bad_profile_input_is_one_message_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_cli("profile", str(suite(tmp_path / "s.yaml")), *args, "--out", str(tmp_path / "p"), CONVBENCH_EXTRA_BACKENDS=EXTRA)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_profile_goes_through_the_runner_pinning_and_a_crashed_worker_included(tmp_path: Path) -> None:
    """--cpus pins the profile's workers (their affinity is in run.json's profile record,
    threads default to the pinned count); a worker that dies costs its case an error row
    and a fresh worker profiles the rest."""
    cpu = min(os.sched_getaffinity(0))
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: prof\nworkloads:\n"
        "  - {id: crash, kind: depthwise, params: {channels: 4, size: 6}}\n"
        "  - {id: fine, kind: depthwise, params: {channels: 4, size: 6}}\n"
        "matrix: {backend: [faulty, asyncfake], batch: [1]}\n"
        "timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.05, guard: flag}\n"
    )
    out = tmp_path / "prof"
    proc = run_cli("profile", str(path), "--steps", "1", "--cpus", str(cpu), "--out", str(out), CONVBENCH_EXTRA_BACKENDS=EXTRA, CONVBENCH_FAKE_WORK_MS="1")
    assert proc.returncode == 1, proc.stderr[-3000:]  # the crashed case is an error
    meta = json.loads((out / "run.json").read_text())
    assert meta["profile"]["cpus"]["cpus"] == str(cpu) and meta["options"]["cpus"]["cpus"] == str(cpu)
    assert {k: v["cpu_affinity"] for k, v in meta["profile"]["backends"].items()} == {"faulty:cpu": str(cpu), "asyncfake:cpu": str(cpu)}
    cases = load_profile(out).drop_duplicates("case_id").set_index(["backend", "workload"])
    assert set(cases["threads"]) == {1}
    assert cases.loc[("faulty", "crash"), "status"] == "error" and "worker failed" in cases.loc[("faulty", "crash"), "reason"]
    assert cases.loc[("faulty", "fine"), "status"] == "skipped"  # a fresh worker took it (no profiler hook)
    assert (cases.loc["asyncfake", "status"] == "ok").all()
    assert len(list((out / "logs").glob("worker-faulty-cpu-*.log"))) == 2
