"""``convbench ab`` end to end: two environments timed side by side, verdicts, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from convbench.ab import paired_test
from convbench.results import SCHEMA_ID
from tests.conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "tests" / "plugins"))
from convbench_slowtorch import slow_environment  # noqa: E402

pytestmark = pytest.mark.slow

#: Tiny torch cases; the guard is off so that a loaded CI machine cannot turn a planted
#: slowdown into an inconclusive verdict (the guard has tests of its own).
SUITE = """
name: abtiny
workloads:
  - {id: dw_small, kind: depthwise, params: {channels: 8, size: 8, kernel: 3, stride: 1}}
matrix:
  variant: [native, diagonalwise]
  backend: [torch]
  device: [cpu]
  mode: [inference]
  batch: [2]
  threads: [1]
timing: {warmup_iters: 3, warmup_time: 0.02, min_sample_time: 0.002, min_samples: 15, max_samples: 200, precision: 0.02, max_time: MAXTIME, guard: off}
timeout: 120
"""


def suite(tmp_path: Path, max_time: float = 0.4) -> Path:
    path = tmp_path / "abtiny.yaml"
    path.write_text(SUITE.replace("MAXTIME", str(max_time)))
    return path


def folder_frames(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(out / "cases.parquet"), pd.read_parquet(out / "samples.parquet")


def test_a_planted_slowdown_is_slower_and_exits_1(tmp_path: Path) -> None:
    base = slow_environment(tmp_path / "plain", sys.executable, fraction=0.0)  # the same wrapper, no burn
    new = slow_environment(tmp_path / "slow", sys.executable, fraction=1.0)  # every step about twice as long
    out = tmp_path / "run"
    proc = run_cli("ab", str(suite(tmp_path)), "--base", str(base), "--new", str(new), "--out", str(out), "--format", "json")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["method"] == "ab" and doc["counts"]["slower"] == 2, doc["cases"]
    assert all(1.5 < c["ratio"] < 3.5 for c in doc["cases"])
    cases, samples = folder_frames(out)
    assert sorted(cases["side"]) == ["base", "base", "new", "new"] and (cases["status"] == "ok").all()
    assert set(samples["side"]) == {"base", "new"}
    news = samples[samples["side"] == "new"]
    assert news["ratio"].notna().all() and samples.loc[samples["side"] == "base", "ratio"].isna().all()
    assert (out / "ab.json").exists() and "convbench ab: regression" in (out / "ab.md").read_text()
    meta = json.loads((out / "run.json").read_text())
    assert meta["ab"]["new"].endswith("slow/bin/python") and [c["at"] for c in meta["canary"]] == ["start", "end"]
    # the verdicts again from the folder, with another threshold
    again = run_cli("compare", str(out), "--format", "json", "--threshold", "500%")
    assert again.returncode == 0 and json.loads(again.stdout)["counts"]["slower"] == 0, again.stderr[-2000:]


@pytest.mark.xfail(
    strict=False,
    reason="known limitation (issue 12, benchmarks/trust.md): two processes of the same code can differ "
    "by up to 2x and one process pair's rounds cannot show it; ab must repeat groups in fresh process pairs",
)
def test_the_same_environment_twice_is_no_regression(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("ab", str(suite(tmp_path)), "--base", sys.executable, "--new", sys.executable, "--out", str(out), "--format", "json")
    assert proc.returncode in (0, 3), proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["counts"]["slower"] == doc["counts"]["failed"] == 0
    assert all(0.8 < c["ratio"] < 1.25 for c in doc["cases"])


def test_a_side_whose_worker_dies_fails_and_the_other_side_is_kept(tmp_path: Path) -> None:
    new = slow_environment(tmp_path / "crash", sys.executable, fraction=0.0, crash_after=0.8)
    out = tmp_path / "run"
    proc = run_cli("ab", str(suite(tmp_path, max_time=3.0)), "--base", sys.executable, "--new", str(new), "--out", str(out), "--format", "json")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["counts"]["failed"] == 2 and all("worker failed" in c["reason"] for c in doc["cases"])
    cases, samples = folder_frames(out)
    base, new_rows = cases[cases["side"] == "base"], cases[cases["side"] == "new"]
    assert (new_rows["status"] == "error").all() and new_rows["reason"].str.contains("worker failed").all()
    assert (base["status"] == "ok").all() and (base["n"] >= 1).all()
    assert len(samples[samples["side"] == "base"]) >= 2


def test_a_side_without_the_backend_gives_skipped_rows(tmp_path: Path) -> None:
    bindir = tmp_path / "nobackend" / "bin"
    bindir.mkdir(parents=True)
    script = bindir / "python"
    script.write_text(f"#!/bin/sh\nexport CONVBENCH_EXTRA_BACKENDS=torch=no_such_module:Nothing\nexec '{sys.executable}' \"$@\"\n")
    script.chmod(0o755)
    out = tmp_path / "run"
    proc = run_cli("ab", str(suite(tmp_path)), "--base", sys.executable, "--new", str(tmp_path / "nobackend"), "--out", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cases, _ = folder_frames(out)
    new_rows = cases[cases["side"] == "new"]
    assert (new_rows["status"] == "skipped").all() and new_rows["reason"].str.contains("no_such_module").all()
    assert set(json.loads(proc.stdout)["counts"].items()) >= {("removed", 2)}


@pytest.mark.parametrize("kind", ["missing", "folder", "no_convbench", "other_schema"])
def test_bad_interpreters_exit_2_and_write_nothing(tmp_path: Path, kind: str) -> None:
    if kind == "missing":
        python, expect = str(tmp_path / "nope" / "python"), "no such interpreter"
    elif kind == "folder":
        (tmp_path / "empty").mkdir()
        python, expect = str(tmp_path / "empty"), "a folder without bin/python"
    else:
        fake = tmp_path / "fake-python"
        hello = {"event": "hello", "schema": "0123456789ab", "convbench": "0.0.1"} if kind == "other_schema" else None
        body = f"echo '{json.dumps(hello)}'" if hello else "echo 'No module named convbench' >&2; exit 1"
        fake.write_text(f"#!/bin/sh\n{body}\n")
        fake.chmod(0o755)
        python = str(fake)
        expect = "another result schema" if hello else "cannot start convbench's worker"
    out = tmp_path / "run"
    proc = run_cli("ab", str(suite(tmp_path)), "--base", sys.executable, "--new", python, "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--new" in proc.stderr and expect in proc.stderr
    assert not out.exists()


def test_paired_test_statistics() -> None:
    test = paired_test([1.1] * 9 + [1.2, 1.0])
    assert test.ratio == pytest.approx(1.1) and test.p_value < 0.05 and test.n_base == test.n_new == 11
    flat = paired_test([1.0, 1.0, 1.0])
    assert flat.p_value == 1.0 and flat.ci_low == flat.ci_high == 1.0
    assert SCHEMA_ID  # the schema every side's worker must share
