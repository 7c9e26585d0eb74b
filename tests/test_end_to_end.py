"""End to end: `convbench run` in a subprocess, its run folder, resume, faults, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pandas as pd
import pytest

import convbench
from convbench.results import CASE_COLUMNS, read_table
from tests.conftest import ROOT, cli_env, run_cli

SMOKE = str(ROOT / "suites" / "smoke.yaml")


def write_suite(path: Path, workloads: list[str], backend: str = "faulty", timeout: float = 60, max_time: float = 0.05, extra: str = "") -> Path:
    lines = ["name: faults", "workloads:"]
    lines += [f"  - {{id: {w}, kind: depthwise, params: {{channels: 4, size: 6}}}}" for w in workloads]
    lines += [
        "matrix:",
        f"  variant: [native]\n  backend: [{backend}]\n  device: [cpu]\n  mode: [inference]\n  batch: [1]",
        f"timing: {{warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: {max_time}, guard: flag}}",
        f"timeout: {timeout}",
        extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def cases_of(run: Path) -> pd.DataFrame:
    """The finished cases of a run folder, finished or not (a running or killed run keeps
    them in its journal until it finishes)."""
    frame = read_table(run)
    return pd.DataFrame(columns=CASE_COLUMNS) if frame is None else frame


def test_smoke_run_writes_a_complete_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("run", SMOKE, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete"
    assert meta["environment"]["core"]["cpu"]
    assert "torch:cpu" in meta["environment"]["backends"]
    cases = cases_of(out)
    assert len(cases) == len(meta["cases"]) == 3 * 2 * 2 * 2 + 2
    cpu = cases[cases.device == "cpu"]
    assert (cpu.status == "ok").all(), cpu[cpu.status != "ok"][["case_id", "reason"]].to_string()
    assert (cpu.verify_error < 1e-4).all()
    assert cpu["median"].gt(0).all() and cpu["n"].ge(1).all()
    cuda = cases[cases.device == "cuda"]
    assert set(cuda.status) <= {"skipped", "ok"}
    if (cuda.status == "skipped").any():
        assert cuda.reason.str.contains("cuda").all()
    diag = cpu[cpu.variant == "diagonalwise"]
    assert diag.ratio.notna().all() and (diag.baseline == "native").all()
    assert (diag.executed_macs > diag.macs).all()
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples.case_id) == set(cpu.case_id)
    loaded = convbench.load(out)
    assert len(loaded) == len(cases) and (loaded.run == "run").all()
    assert "speedup" in proc.stdout and "dw_odd" in proc.stdout


def test_dry_run_prints_the_matrix_and_runs_nothing(tmp_path: Path) -> None:
    proc = run_cli("run", SMOKE, "--dry-run", "--filter", "backend == 'torch'")
    assert proc.returncode == 0, proc.stderr
    assert "14 cases" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_bad_suite_gives_one_clear_message_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE and Path(SMOKE).read_text().replace("channels: 40", "channels: -40"))
    proc = run_cli("run", str(bad))
    assert proc.returncode == 2
    assert "bad.yaml:" in proc.stderr and "channels" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_verifies_without_timing() -> None:
    proc = run_cli("check", SMOKE, "--filter", "backend == 'reference'")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "12 ok" in proc.stdout


def test_crash_and_hang_become_error_rows_and_the_run_goes_on(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "faults.yaml", ["ok_a", "crash_b", "ok_c", "hang_d", "ok_e", "wrong_f"], timeout=8)
    out = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = cases_of(out).set_index("workload")
    assert list(rows.index) == ["ok_a", "crash_b", "ok_c", "hang_d", "ok_e", "wrong_f"]
    assert (rows.loc[["ok_a", "ok_c", "ok_e"], "status"] == "ok").all()
    assert rows.loc["crash_b", "status"] == "error" and "code 7" in rows.loc["crash_b", "reason"]
    assert rows.loc["hang_d", "status"] == "error" and "timed out" in rows.loc["hang_d", "reason"]
    wrong = rows.loc["wrong_f"]
    assert wrong.status == "mismatch" and "exceeds" in wrong.reason
    assert pd.isna(wrong["median"]), "a mismatching case must not be timed"
    assert len(list((out / "logs").glob("worker-*.log"))) == 3


def _wait_for_rows(run: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(cases_of(run)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the run produced no rows in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "kill-9"])
def test_interrupted_run_resumes_without_redoing_finished_cases(tmp_path: Path, sig: int) -> None:
    # Each case samples for max_time: after the 2nd row the run has 4 x 1 s left.
    workloads = [f"w{i}" for i in range(6)]
    suite = write_suite(tmp_path / "slow.yaml", workloads, backend="reference", max_time=1.0,
                        extra="")  # fmt: skip
    suite.write_text(suite.read_text().replace("precision: 0.5", "precision: 0.0001"))
    out = tmp_path / "run"
    # A job started in the background by a non-interactive shell (`make test &`, a CI
    # runner) inherits SIGINT ignored, and Python then leaves Ctrl-C ignored: give the run
    # the default disposition, as a terminal would.
    proc = subprocess.Popen(
        [sys.executable, "-m", "convbench.cli", "run", str(suite), "--out", str(out)],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    _wait_for_rows(out, 2, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    before = cases_of(out)
    assert 2 <= len(before) < len(workloads)
    meta = json.loads((out / "run.json").read_text())
    if sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM (a CI timeout, kill) ends a run as Ctrl-C does
        assert proc.returncode == 130
        assert f"convbench run --resume {out}" in stderr.replace("\n", "")
        assert meta["status"] == "interrupted"
    resumed = run_cli("run", "--resume", str(out), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = cases_of(out)
    assert sorted(after.workload) == sorted(workloads)
    assert after.case_id.is_unique
    kept = after.set_index("case_id").loc[before.case_id, "finished_at"]
    assert list(kept) == list(before.finished_at), "finished cases were redone"
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_list_shows_workloads_variants_executions_and_backends(probed: dict[str, Future]) -> None:
    proc = probed["list"].result()
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "mobilenet_v1" in out and "4,231,976" in out and "568,740,352" in out
    assert "dw_odd" in out and "diagonalwise" in out
    assert "torch" in out and "2.13" in out and "reference" in out
    assert "executions" in out and "hybridized" in out and "xnnpack" in out  # the plugins' own


def test_env_reports_machine_and_backends_as_json(probed: dict[str, Future]) -> None:
    proc = probed["env"].result()
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = json.loads(proc.stdout)
    assert env["core"]["cpu_logical_cores"] >= 1 and env["core"]["convbench_version"]
    assert env["backends"]["torch"]["available"] and env["backends"]["torch"]["environment"]["torch"]
