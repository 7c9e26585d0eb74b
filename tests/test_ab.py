"""``convbench ab`` end to end: two environments timed side by side, verdicts, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from convbench.ab import paired_doubt, paired_test, random_effects, suite_verdict
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
    proc = run_cli("ab", str(suite(tmp_path)), "--base", str(base), "--new", str(new), "--pairs", "1", "--out", str(out), "--format", "json")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["method"] == "ab" and doc["counts"]["slower"] == 2, doc["cases"]
    # direction and rough size only (about 2: the step burns its own time once more); a
    # busy machine stretches the burn and the step unequally
    assert all(1.2 < c["ratio"] < 8 for c in doc["cases"]), [c["ratio"] for c in doc["cases"]]
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


def test_the_same_environment_twice_is_no_regression(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("ab", str(suite(tmp_path)), "--base", sys.executable, "--new", sys.executable, "--pairs", "2", "--out", str(out), "--format", "json")
    assert proc.returncode in (0, 3), proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["counts"]["slower"] == doc["counts"]["failed"] == 0
    assert doc["suite_verdict"]["verdict"] != "slower" and doc["suite_verdict"]["pairs"] == 2
    assert all(0.75 < c["ratio"] < 1.33 for c in doc["cases"])
    cases, samples = folder_frames(out)
    assert (cases["processes"] == 2).all() and set(samples["process"]) == {0, 1}
    assert json.loads((out / "run.json").read_text())["ab"]["pairs"] == 2


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


def test_random_effects_pools_agreeing_estimates_and_widens_for_disagreeing_ones() -> None:
    mean, se, tau = random_effects([0.1, 0.1, 0.1], [0.05, 0.05, 0.05])
    assert mean == pytest.approx(0.1) and se == pytest.approx(0.05 / 3**0.5) and tau == 0.0
    mean, se, tau = random_effects([0.0, 0.0, 0.75], [0.02, 0.02, 0.02])
    assert tau > 0.3 and se > 0.2 and 0.1 < mean < 0.4  # one odd pair cannot decide alone


def test_paired_test_across_pairs_is_not_fooled_by_one_odd_pair() -> None:
    rng = np.random.default_rng(0)
    rounds = 30
    noise = rng.normal(0, 0.05, size=3 * rounds)
    groups = np.repeat([0, 1, 2], rounds)
    # one process pair ran NEW 2x slower (a process-level accident), the other two agree on no change
    odd = np.exp(noise + np.where(groups == 2, np.log(2.0), 0.0))
    pooled_as_one = paired_test(odd)
    across = paired_test(odd, groups=groups)
    assert pooled_as_one.p_value < 0.01  # the rounds alone would call it significant
    assert across.p_value > 0.01 and across.ci_low < 1.0 < across.ci_high
    # a change every pair shows is significant across pairs too
    real = np.exp(noise + np.log(1.10))
    test = paired_test(real, groups=groups)
    assert test.p_value < 1e-6 and 1.07 < test.ratio < 1.13 and test.ci_low > 1.05


def _row(threshold: float = 0.05, contended: str | None = "contended in BASE (...)") -> dict:
    return {"threshold": threshold, "_contended": contended, "_tested": True}


def test_contention_in_ab_keeps_a_significant_change_and_doubts_a_wide_same() -> None:
    wide = paired_test([0.7, 1.4, 1.0, 0.8, 1.3, 1.1])
    slow = paired_test([1.2] * 20 + [1.21, 1.19])
    tight = paired_test([1.0, 1.001, 0.999] * 10)
    assert paired_doubt(("slower", "x: slower"), slow, _row(), 0.01)[0] == "slower"
    assert paired_doubt(("slower", "x: slower"), slow, _row(), 0.01, pairs=1)[0] == "inconclusive"  # one pair: cannot tell
    assert paired_doubt(("same", "x: not significant"), wide, _row(), 0.01)[0] == "inconclusive"
    assert paired_doubt(("same", "x: not significant"), tight, _row(), 0.01)[0] == "same"
    assert paired_doubt(("same", "x: not significant"), wide, _row(contended=None), 0.01)[0] == "same"
    assert paired_doubt(("same", "not tested: 2 vs 2"), wide, _row(contended=None), 0.01)[0] == "inconclusive"


def test_suite_verdict_across_pairs_catches_a_shared_slowdown_and_not_one_pair_shift() -> None:
    rng = np.random.default_rng(1)

    def verdict(shift_per_pair: list[float]) -> dict:
        rows, tests, by_pair = [], {}, {}
        for case in range(6):
            logs = {p: rng.normal(shift, 0.05, size=20) for p, shift in enumerate(shift_per_pair)}
            ratios = np.exp(np.concatenate(list(logs.values())))
            groups = np.repeat(list(logs), 20)
            tests[case] = paired_test(ratios, groups=groups)
            rows.append({"ratio": tests[case].ratio, "_tested": True, "_contended": None})
            by_pair[case] = logs
        return suite_verdict(rows, tests, by_pair, 0.05, 0.01)

    assert verdict([0.1, 0.1, 0.1])["verdict"] == "slower"
    odd = verdict([0.0, 0.0, 0.3])  # every case of one pair shifted: that pair's processes, not the code
    assert odd["verdict"] == "same" and odd["pairs"] == 3, odd


def test_pairs_must_be_a_small_positive_number(tmp_path: Path) -> None:
    for bad in ("0", "x", "1000"):
        proc = run_cli("ab", str(suite(tmp_path)), "--base", sys.executable, "--new", sys.executable, "--pairs", bad, "--out", str(tmp_path / "run"))
        assert proc.returncode == 2 and "--pairs" in proc.stderr, proc.stderr[-1000:]
        assert not (tmp_path / "run").exists()
