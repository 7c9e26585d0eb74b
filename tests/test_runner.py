"""The runner's pure parts and its handling of processes and interpreters."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from convbench.cases import KEY_FIELDS, Case, format_case_id, parse_case_id
from convbench.results import RunFolder, empty_row, read_table
from convbench.runner import (
    Runner,
    RunOptions,
    finished_planned,
    group_cases,
    interpreter_for,
    key_without_threads,
    merge_processes,
)
from tests.conftest import run_cli
from tests.test_end_to_end import write_suite


def case(variant: str = "native", backend: str = "reference", workload: str = "w", device: str = "cpu") -> Case:
    return Case(suite="s", workload=workload, kind="depthwise", params={"channels": 4, "size": 4}, variant=variant, backend=backend, device=device)


def ok_row(c: Case, seconds: list[float]) -> tuple[dict, list[dict]]:
    row = empty_row(c)
    row.update(status="ok", median=sorted(seconds)[len(seconds) // 2], converged=True, batch=1, flops=100, bytes=10, rounds=None, timing_seconds=1.0)
    return row, [{"case_id": c.case_id, "index": i, "seconds": s, "ratio": None} for i, s in enumerate(seconds)]


def test_merge_processes_pools_samples_and_reports_between_process_spread() -> None:
    c = case()
    merged, samples = merge_processes([ok_row(c, [1.0, 1.1, 0.9]), ok_row(c, [2.0, 2.1, 1.9])])
    assert merged["processes"] == 2 and merged["n"] == 6
    assert merged["median"] == pytest.approx(1.5)  # median of the pooled six samples
    assert merged["process_spread"] == pytest.approx(pd.Series([1.0, 2.0]).std() / 1.5)
    assert [s["process"] for s in samples] == [0, 0, 0, 1, 1, 1]
    assert [s["index"] for s in samples] == list(range(6))


def interleaved_row(c: Case, ratios: list[float]) -> tuple[dict, list[dict]]:
    row, samples = ok_row(c, [1.0] * len(ratios))
    return row, [{**s, "ratio": r} for s, r in zip(samples, ratios, strict=True)]


def test_merge_processes_ratio_ci_spans_the_processes_not_the_pooled_rounds() -> None:
    """Each process's rounds agree tightly, but the processes differ (2.43 vs 2.59, as
    fresh processes of one case did on a 2-core VM): pooling the rounds as one sample
    would give a CI of a few tenths of a percent; the merged CI must cover both."""
    c = case("diagonalwise")
    jitter = [1.0, 1.001, 0.999, 1.0005, 0.9995] * 4
    runs = [interleaved_row(c, [m * j for j in jitter]) for m in (2.43, 2.59, 2.51)]
    merged, _ = merge_processes(runs)
    assert merged["ratio_ci_low"] < 2.43 * 1.01 and merged["ratio_ci_high"] > 2.59 * 0.99
    assert merged["ratio_ci_low"] < merged["ratio"] < merged["ratio_ci_high"]
    agreeing, _ = merge_processes([interleaved_row(c, [2.5 * j for j in jitter]) for _ in range(3)])
    assert agreeing["ratio"] == pytest.approx(2.5, rel=1e-3)
    assert agreeing["ratio_ci_high"] / agreeing["ratio_ci_low"] < 1.01


def test_merge_processes_keeps_a_failure() -> None:
    c = case()
    bad = empty_row(c)
    bad.update(status="error", reason="worker failed: boom")
    merged, samples = merge_processes([ok_row(c, [1.0]), (bad, [])])
    assert merged["status"] == "error" and merged["reason"].startswith("process 2 of 2: worker failed")
    assert samples == []


def test_groups_put_variants_together_and_order_by_worker() -> None:
    cases = [case("native", "torch"), case("native", "reference"), case("diagonalwise", "torch"), case("native", "torch", "v")]
    groups = group_cases(cases)
    assert [[c.variant for c in g] for g in groups] == [["native", "diagonalwise"], ["native"], ["native"]]
    assert [g[0].backend for g in groups] == ["torch", "torch", "reference"]


def test_case_ids_are_formatted_and_parsed_in_one_place() -> None:
    c = case().model_copy(update={"workload": "a|b", "threads": 3})
    assert c.case_id == format_case_id(c.key()) == "a|b|native|reference|cpu|inference|1|float32|nchw|eager|3"
    assert parse_case_id(c.case_id) == {f: str(getattr(c, f)) for f in KEY_FIELDS}  # a '|' in the workload kept
    assert key_without_threads(c.case_id) == format_case_id({**c.key(), "threads": None})
    assert key_without_threads("not a case id") == "not a case id"
    with pytest.raises(ValueError, match="expected 10 fields"):
        parse_case_id("w|native")


def test_resume_skips_planned_cases_the_folder_holds_threads_unset_matching_any(tmp_path: Path) -> None:
    pinned, loose, other = case(), case(workload="v"), case(workload="u")
    folder = RunFolder.create(tmp_path / "run", {"suite": "s", "cases": []})
    for c in (pinned.model_copy(update={"threads": 2}), loose.model_copy(update={"threads": 4})):
        folder.add({**empty_row(c), "status": "ok"})
    planned = [pinned.model_copy(update={"threads": 1}), loose, other]
    assert finished_planned(folder, planned) == {loose.case_id}  # threads 1 was not run; unset matches 4


def test_interpreter_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVBENCH_PYTHON_MXNET", "/opt/mx/bin/python")
    assert interpreter_for("mxnet") == "/opt/mx/bin/python"
    assert interpreter_for("mxnet", {"mxnet": "/suite/python"}) == "/suite/python"


def test_a_plugin_declares_the_virtual_environment_its_workers_run_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A plugin's ``venv`` (relative to the checkout, or absolute) hosts its workers when it
    exists and neither the suite nor CONVBENCH_PYTHON_<NAME> names another interpreter."""
    from convbench.backend import backend_venv
    from tests.fake_backends import WarpBackend

    assert backend_venv("mxnet") == ".venv-mxnet" and backend_venv("torch") is None
    monkeypatch.setenv("CONVBENCH_EXTRA_BACKENDS", "warpfake=tests.fake_backends:WarpBackend")
    monkeypatch.delenv("CONVBENCH_PYTHON_WARPFAKE", raising=False)
    assert backend_venv("warpfake") == ".venv-warpfake"
    assert interpreter_for("warpfake") == sys.executable  # no such environment in the checkout
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    monkeypatch.setattr(WarpBackend, "venv", str(tmp_path / "venv"))
    assert interpreter_for("warpfake") == str(python)
    assert interpreter_for("warpfake", {"warpfake": "/suite/python"}) == "/suite/python"


def test_processes_run_each_group_in_fresh_workers(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "p.yaml", ["a", "b"], backend="reference")
    suite.write_text(suite.read_text().replace("guard: flag}", "guard: flag, processes: 2}"))
    out = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_parquet(out / "cases.parquet")
    assert (rows.status == "ok").all() and (rows.processes == 2).all() and rows.process_spread.notna().all()
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples.process) == {0, 1}
    assert len(list((out / "logs").glob("worker-*.log"))) == 4  # 2 groups x 2 processes


def test_processes_do_not_repeat_a_group_that_timed_nothing(tmp_path: Path) -> None:
    """A group whose cases are all skipped (here: no CUDA device) runs in one worker, not
    N, and its rows keep the skip reason as it is (a skip is the case's, not a process's)."""
    suite = write_suite(tmp_path / "p.yaml", ["a"], backend="reference")
    suite.write_text(suite.read_text().replace("guard: flag}", "guard: flag, processes: 3}").replace("device: [cpu]", "device: [cpu, cuda]"))
    out = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_parquet(out / "cases.parquet").set_index("device")
    assert rows.loc["cpu", "status"] == "ok" and rows.loc["cpu", "processes"] == 3
    assert rows.loc["cuda", "status"] == "skipped" and rows.loc["cuda", "processes"] == 1
    assert not rows.loc["cuda", "reason"].startswith("process")
    assert len(list((out / "logs").glob("worker-*.log"))) == 4  # 3 for cpu, 1 for cuda


def test_passes_spread_each_case_over_the_run_and_merge_it(tmp_path: Path) -> None:
    """``passes: 2``: both groups, then both again, in the same worker (one backend); each
    case merges its two passes (``processes`` counts them, samples say which)."""
    suite = write_suite(tmp_path / "p.yaml", ["a", "b"], backend="reference")
    suite.write_text(suite.read_text().replace("guard: flag}", "guard: flag, passes: 2}"))
    out = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_parquet(out / "cases.parquet")
    assert len(rows) == 2 and (rows.status == "ok").all() and (rows.processes == 2).all()
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples.process) == {0, 1}
    assert len(list((out / "logs").glob("worker-*.log"))) == 1  # the worker is kept across passes
    meta = json.loads((out / "run.json").read_text())
    assert [c["at"] for c in meta["canary"]] == ["start", "middle", "end"]


class ScriptedRunner(Runner):
    """Records what each group run was sent; fails or interrupts where told."""

    def __init__(self, folder: RunFolder, options: RunOptions, interrupt_at: int | None = None, fail: str | None = None) -> None:
        super().__init__(folder, options)
        self.sent: list[tuple[list[str], float]] = []
        self.shares: list[dict] = []
        self.interrupt_at = interrupt_at
        self.fail = fail

    def canary(self, at: str) -> None:
        pass

    def collect_group(self, group: list[Case], into: dict | None = None) -> dict:
        if len(self.sent) == self.interrupt_at:
            raise KeyboardInterrupt
        timing = self.message({})["timing"]
        self.sent.append(([c.workload for c in group], timing["max_time"]))
        self.shares.append({"min_samples": timing["min_samples"], "precision": timing["precision"]})
        out = {}
        for c in group:
            row, samples = ok_row(c, [1.0, 1.1, 0.9])
            if c.workload == self.fail:
                row.update(status="mismatch", reason="max error 1.0")
            out[c.case_id] = [(row, samples)]
        for cid, runs in out.items():
            (into if into is not None else {}).setdefault(cid, []).extend(runs)
        return out


def test_passes_split_the_budget_skip_what_failed_and_keep_what_an_interruption_cut_short(tmp_path: Path) -> None:
    from convbench.timing import TimingConfig

    cases = [case(workload=w) for w in ("a", "b")]
    options = RunOptions(timing=TimingConfig(passes=3, max_time=3.0, min_samples=3))
    runner = ScriptedRunner(RunFolder.create(tmp_path / "run", {"cases": []}), options, fail="b")
    runner.run(cases)
    assert runner.sent == [(["a"], 1.0), (["b"], 1.0), (["a"], 1.0), (["a"], 1.0)]  # b failed in pass 1
    assert runner.shares[0] == {"min_samples": 3, "precision": pytest.approx(0.02 * 3**0.5)}
    rows = read_table(tmp_path / "run").set_index("workload")
    assert rows.loc["a", "processes"] == 3 and rows.loc["a", "n"] == 9
    assert rows.loc["b", "status"] == "mismatch" and rows.loc["b", "processes"] == 1
    assert runner.message({})["timing"]["max_time"] == 3.0  # the share ends with the passes

    cut = ScriptedRunner(RunFolder.create(tmp_path / "cut", {"cases": []}), options, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        cut.run(cases)
    kept = read_table(tmp_path / "cut").set_index("workload")
    assert kept.loc["a", "processes"] == 2 and kept.loc["b", "processes"] == 1  # what it measured stays


def test_merged_passes_converge_on_their_pooled_samples() -> None:
    """Each pass has a share of the budget and may stop short of ``precision``; the merged
    row is converged when the pooled samples meet the rule."""
    from convbench.timing import TimingConfig

    c = case()
    runs = [ok_row(c, [1.0 + 0.001 * i for i in range(10)]) for _ in range(3)]
    for row, _ in runs:
        row["converged"] = False
    loose, _ = merge_processes(runs)
    assert loose["converged"] is False
    merged, _ = merge_processes(runs, unit="pass", timing=TimingConfig(min_samples=20, precision=0.01))
    assert merged["converged"] is True
    strict, _ = merge_processes(runs, unit="pass", timing=TimingConfig(min_samples=40, precision=0.01))
    assert strict["converged"] is False


def test_missing_interpreter_gives_skipped_rows(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "i.yaml", ["a"], backend="reference", extra="interpreters: {reference: /nonexistent/python}")
    out = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = pd.read_parquet(out / "cases.parquet").iloc[0]
    assert row.status == "skipped" and "/nonexistent/python" in row.reason and "CONVBENCH_PYTHON_REFERENCE" in row.reason


def test_a_worker_of_another_convbench_is_refused_with_the_reason(tmp_path: Path) -> None:
    """A worker whose result schema differs (another convbench in its interpreter) gives
    error rows that say so; the run goes on and ends normally."""
    fake = tmp_path / "other-convbench-python"
    fake.write_text(
        "#!/bin/sh\nshift 2  # -m convbench.worker\n"
        f'exec {sys.executable} -c "import runpy, sys; import convbench.schema as r; r.SCHEMA_ID = \'0ther\'; '
        "sys.argv = ['worker', *sys.argv[1:]]; runpy.run_module('convbench.worker', run_name='__main__')\" \"$@\"\n"
    )
    fake.chmod(0o755)
    suite = write_suite(tmp_path / "v.yaml", ["a"], backend="reference", extra=f"interpreters: {{reference: {fake}}}")
    out = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = pd.read_parquet(out / "cases.parquet").iloc[0]
    assert row.status == "error" and "0ther" in row.reason and "install the same convbench" in row.reason


def test_a_row_the_folder_cannot_store_is_kept_as_an_error_with_its_measurements(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run", {"cases": []})
    runner = Runner(folder, RunOptions())
    row = empty_row(case())
    row.update(status="ok", median=0.25, n=9, from_the_future=1)
    runner._record(row, [{"case_id": row["case_id"], "index": 0, "seconds": 0.25, "ratio": None}])
    kept = read_table(tmp_path / "run").iloc[0]
    assert kept.status == "error" and "from_the_future" in kept.reason
    assert kept["median"] == 0.25 and kept.n == 9
    assert len(read_table(tmp_path / "run", "samples")) == 1


@pytest.mark.parametrize("allocator", ["steady", "system"])
def test_workers_start_with_the_allocator_the_suite_asks_for(tmp_path: Path, allocator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    suite = write_suite(tmp_path / "a.yaml", ["a"], backend="reference")
    suite.write_text(suite.read_text().replace("guard: flag}", f"guard: flag, allocator: {allocator}}}"))
    out = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "run.json").read_text())
    tunables = meta["environment"]["backends"]["reference:cpu"]["allocator"]["glibc_tunables"]
    if allocator == "steady":
        assert "glibc.malloc.mmap_threshold=4294967296" in tunables
    else:
        assert tunables is None
    assert meta["options"]["timing"]["allocator"] == allocator
    rows = pd.read_parquet(out / "cases.parquet")
    assert rows.page_faults.notna().all()
    assert pd.read_parquet(out / "samples.parquet").page_faults.notna().all()
