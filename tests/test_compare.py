"""convbench compare: statistics and verdicts on synthetic samples, renderings, the CLI.

The rates below are measured over many seeds of synthetic lognormal samples; the
numbers quoted in docs/compare.md come from these same generators (tests print them
with ``pytest -s``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from convbench.cases import KEY_FIELDS, Case
from convbench.cli import main
from convbench.compare import compare_paths, compare_runs, decide, threshold_for, within_run
from convbench.compare_render import comparison_json, comparison_markdown, comparison_rich
from convbench.ratio_stats import estimate_noise, ratio_test
from convbench.results import RunFolder, empty_row
from convbench.run_environment import environment_diff
from tests.conftest import ROOT, run_cli

SEEDS = 200


# --------------------------------------------------------------------------- helpers
def lognormal(rng: np.random.Generator, n: int, sigma: float, scale: float = 1e-3, outliers: float = 0.0) -> np.ndarray:
    """Per-iteration times: lognormal noise (log-sd ``sigma``) plus a fraction of
    ``outliers`` slowed 1.5-3x, as interruptions on a shared machine do."""
    x = scale * np.exp(rng.normal(0.0, sigma, n))
    if outliers:
        x = np.where(rng.random(n) < outliers, x * rng.uniform(1.5, 3.0, n), x)
    return x


def case_of(workload: str, variant: str = "native", backend: str = "torch", device: str = "cpu", suite: str = "s") -> Case:
    return Case(suite=suite, workload=workload, kind="depthwise", params={"channels": 8}, variant=variant, backend=backend, device=device, threads=2 if device == "cpu" else None)


def frames(
    samples: dict[str, np.ndarray],
    run: str = "run",
    statuses: dict[str, str] | None = None,
    backend: str = "torch",
    started: str = "2026-01-01T00:00:00+00:00",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cases, samples) frames as convbench.results.load gives them, one case per key
    of ``samples`` (the workload name), status ok unless ``statuses`` says otherwise."""
    rows, srows = [], []
    for name, x in samples.items():
        case = case_of(name, backend=backend)
        row = empty_row(case)
        status = (statuses or {}).get(name, "ok")
        row.update(status=status, reason=None if status == "ok" else f"{status} on purpose", timer="host_wall_sync")
        if status == "ok" and len(x):
            row.update(median=float(np.median(x)), n=len(x))
        rows.append({**row, "run": run, "run_dir": run, "started": started})
        if status == "ok":
            srows += [{"case_id": case.case_id, "index": i, "seconds": float(v), "ratio": None, "run": run, "run_dir": run} for i, v in enumerate(x)]
    return pd.DataFrame(rows), pd.DataFrame(srows, columns=["case_id", "index", "seconds", "ratio", "run", "run_dir"])


def one_case(base: np.ndarray, new: np.ndarray, **kw: Any) -> pd.Series:
    bc, bs = frames({"w": base}, "a")
    nc, ns = frames({"w": new}, "b")
    return compare_runs(bc, nc, bs, ns, **kw).table.iloc[0]


def rate(shift: float, sigma: float, n: int = 30, threshold: float = 0.05, alpha: float = 0.01, outliers: float = 0.0) -> dict[str, float]:
    """Verdict frequencies of one case over SEEDS seeds: BASE and NEW drawn from the same
    noise, NEW's times multiplied by (1 + shift). Returns {verdict: fraction}."""
    base, new = {}, {}
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        base[f"w{seed}"] = lognormal(rng, n, sigma, outliers=outliers)
        new[f"w{seed}"] = lognormal(rng, n, sigma, outliers=outliers) * (1 + shift)
    bc, bs = frames(base, "a")
    nc, ns = frames(new, "b")
    # One comparison of SEEDS independent cases; no run-to-run noise here by design.
    table = compare_runs(bc, nc, bs, ns, threshold=threshold, alpha=alpha, run_noise=False, n_boot=1000).table
    return (table["verdict"].value_counts() / len(table)).to_dict()


# --------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("sigma,outliers", [(0.03, 0.0), (0.05, 0.0), (0.05, 0.05)])
def test_identical_distributions_are_same_at_nearly_every_seed(sigma: float, outliers: float) -> None:
    rates = rate(0.0, sigma, outliers=outliers)
    false_positive = 1 - rates.get("same", 0.0)
    print(f"identical, sigma={sigma}, outliers={outliers}: false-positive rate {false_positive:.3f} over {SEEDS} seeds")
    assert false_positive <= 0.01  # alpha


def test_mann_whitney_p_values_are_calibrated_under_the_null() -> None:
    """The p-values themselves are uniform under the null: about 5% fall below 0.05."""
    ps = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        ps.append(ratio_test(lognormal(rng, 30, 0.05), lognormal(rng, 30, 0.05), rng, n_boot=200).p_value)
    below = float(np.mean(np.array(ps) < 0.05))
    assert 0.015 <= below <= 0.10, below


@pytest.mark.parametrize("sigma,outliers", [(0.03, 0.0), (0.05, 0.0), (0.05, 0.05)])
def test_a_ten_percent_slowdown_with_realistic_noise_is_slower(sigma: float, outliers: float) -> None:
    rates = rate(0.10, sigma, outliers=outliers)
    print(f"10% slower, sigma={sigma}, outliers={outliers}, 30 samples: detected {rates.get('slower', 0):.3f}")
    assert rates.get("slower", 0.0) >= 0.97
    assert rates.get("faster", 0.0) == 0.0


def test_a_two_percent_slowdown_under_a_five_percent_threshold_is_same() -> None:
    rates = rate(0.02, 0.05)
    print(f"2% slower, threshold 5%: same {rates.get('same', 0):.3f}")
    assert rates.get("same", 0.0) >= 0.97


def test_a_ten_percent_speedup_is_faster() -> None:
    rates = rate(-0.10, 0.03)
    assert rates.get("faster", 0.0) >= 0.97


def test_threshold_decides_between_slower_and_same() -> None:
    rng = np.random.default_rng(1)
    base, new = lognormal(rng, 40, 0.02), lognormal(rng, 40, 0.02) * 1.10
    assert one_case(base, new, threshold=0.05)["verdict"] == "slower"
    row = one_case(base, new, threshold=0.20)
    assert row["verdict"] == "same" and "within the 20.0% threshold" in row["reason"]
    assert row["threshold"] == 0.20


def test_ratio_ci_and_p_value_columns() -> None:
    rng = np.random.default_rng(2)
    row = one_case(lognormal(rng, 50, 0.02), lognormal(rng, 50, 0.02) * 1.3)
    assert row["ratio"] == pytest.approx(row["new_median"] / row["base_median"])
    assert row["ci_low"] < row["ratio"] < row["ci_high"]
    assert row["ci_low"] > 1.2 and row["ci_high"] < 1.4
    assert row["p_value"] < 1e-10
    assert row["adj_ci_low"] <= row["ci_low"] and row["adj_ci_high"] >= row["ci_high"]  # 99% interval


def test_the_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(3)
    base, new = lognormal(rng, 20, 0.1), lognormal(rng, 20, 0.1)
    a, b, c = one_case(base, new, seed=0), one_case(base, new, seed=0), one_case(base, new, seed=1)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])


def test_too_few_samples_are_not_tested() -> None:
    row = one_case(np.array([1.0, 1.1, 0.9]) * 1e-3, np.array([2.0, 2.1, 1.9]) * 1e-3)
    assert row["verdict"] == "inconclusive" and row["reason"].startswith("not tested")  # 3 vs 3: p >= 0.1
    row = one_case(np.array([1e-3]), np.array([2e-3, 2e-3]))
    assert row["verdict"] == "inconclusive" and "1 vs 2 raw samples" in row["reason"]


def test_decide_reasons() -> None:
    rng = np.random.default_rng(4)
    test = ratio_test(lognormal(rng, 30, 0.05), lognormal(rng, 30, 0.05) * 1.5, rng)
    assert decide(test, 0.05, 0.01)[0] == "slower"
    verdict, reason = decide(test, 0.05, 0.01, noise=1.0)  # noise as large as the change
    assert verdict == "same" and "run-to-run noise" in reason


def test_threshold_patterns_first_match_wins() -> None:
    pats = [("*|cuda|*", 0.2), ("dw_*", 0.1), ("smoke", 0.3)]
    assert threshold_for("dw_a|native|torch|cuda|inference|1|float32|nchw|eager|None", "x", 0.05, pats) == 0.2
    assert threshold_for("dw_a|native|torch|cpu|inference|1|float32|nchw|eager|2", "x", 0.05, pats) == 0.1
    assert threshold_for("sep|native|torch|cpu|inference|1|float32|nchw|eager|2", "smoke", 0.05, pats) == 0.3
    assert threshold_for("sep|native|torch|cpu|inference|1|float32|nchw|eager|2", "other", 0.05, pats) == 0.05


def test_per_pattern_threshold_changes_the_verdict() -> None:
    rng = np.random.default_rng(5)
    base = {"a": lognormal(rng, 40, 0.02), "b": lognormal(rng, 40, 0.02)}
    new = {"a": lognormal(rng, 40, 0.02) * 1.15, "b": lognormal(rng, 40, 0.02) * 1.15}
    bc, bs = frames(base, "x")
    nc, ns = frames(new, "y")
    t = compare_runs(bc, nc, bs, ns, thresholds=[("b|*", 0.25)]).table.set_index("workload")
    assert t.loc["a", "verdict"] == "slower" and t.loc["b", "verdict"] == "same"


# --------------------------------------------------------------------------- statuses
def test_status_verdicts_and_exit_code() -> None:
    x = np.full(10, 1e-3) * np.linspace(0.99, 1.01, 10)
    base = {"ok": x, "gone": x, "broke": x, "mism": x, "still": x, "fixed": x, "skip_new": x, "skip_base": x, "both_skip": x}
    new = {"ok": x, "new": x, "broke": x, "mism": x, "still": x, "fixed": x, "skip_new": x, "skip_base": x, "both_skip": x, "newbroken": x}
    bc, bs = frames(base, "a", {"still": "error", "fixed": "mismatch", "skip_base": "skipped", "both_skip": "skipped"})
    nc, ns = frames(new, "b", {"broke": "error", "mism": "mismatch", "still": "error", "skip_new": "skipped", "both_skip": "skipped", "newbroken": "error"})
    cmp = compare_runs(bc, nc, bs, ns)
    v = cmp.table.set_index("workload")["verdict"].to_dict()
    assert v == {
        "ok": "same", "gone": "removed", "new": "added", "broke": "failed", "mism": "failed", "still": "same",
        "fixed": "same", "skip_new": "removed", "skip_base": "added", "both_skip": "same", "newbroken": "failed",
    }  # fmt: skip
    assert cmp.counts == {"failed": 3, "slower": 0, "inconclusive": 0, "faster": 0, "added": 2, "removed": 2, "same": 4}
    assert cmp.exit_code == 1
    assert list(cmp.table["verdict"][:3]) == ["failed"] * 3  # regressions first
    reasons = cmp.table.set_index("workload")["reason"]
    assert "error in NEW" in reasons["broke"] and "still failing" in reasons["still"]
    ok_only = compare_runs(*_pick(bc, nc, bs, ns, "ok"))
    assert ok_only.exit_code == 0
    assert compare_runs(bc, nc, bs, ns, fail_on=("slower",)).exit_code == 0


def _pick(bc: pd.DataFrame, nc: pd.DataFrame, bs: pd.DataFrame, ns: pd.DataFrame, name: str) -> tuple[pd.DataFrame, ...]:
    keep = lambda f: f[f["case_id"].str.startswith(name + "|")]  # noqa: E731
    return keep(bc), keep(nc), keep(bs), keep(ns)


def test_merged_runs_take_the_worst_status_and_pool_samples() -> None:
    rng = np.random.default_rng(6)
    a1, s1 = frames({"w": lognormal(rng, 20, 0.02)}, "a1")
    a2, s2 = frames({"w": lognormal(rng, 20, 0.02)}, "a2")
    n1, t1 = frames({"w": lognormal(rng, 20, 0.02)}, "n1")
    n2, t2 = frames({"w": np.empty(0)}, "n2", {"w": "error"})
    cmp = compare_runs(pd.concat([a1, a2]), pd.concat([n1, n2]), pd.concat([s1, s2]), pd.concat([t1, t2]))
    assert cmp.table.iloc[0]["verdict"] == "failed"
    cmp = compare_runs(pd.concat([a1, a2]), n1, pd.concat([s1, s2]), t1)
    assert cmp.table.iloc[0]["base_n"] == 40


# --------------------------------------------------------------------------- run-to-run noise
def drifting(seed: int, n_cases: int, drift: float, slow: dict[int, float] | None = None, runs: int = 1) -> tuple[pd.DataFrame, ...]:
    """Two sides of ``n_cases`` cases; each run shifts each case by its own lognormal
    factor (log-sd ``drift``), as process-to-process drift on a shared VM does."""
    rng = np.random.default_rng(seed)
    sides = []
    for side in ("a", "b"):
        cf, sf = [], []
        for r in range(runs):
            d = {f"c{i}": lognormal(rng, 30, 0.03) * np.exp(rng.normal(0, drift)) * (1 + (slow or {}).get(i, 0) * (side == "b")) for i in range(n_cases)}
            c, s = frames(d, f"{side}{r}")
            cf.append(c)
            sf.append(s)
        sides.append((pd.concat(cf), pd.concat(sf)))
    return sides[0][0], sides[1][0], sides[0][1], sides[1][1]


def test_run_noise_keeps_drift_from_passing_for_regressions() -> None:
    flagged_raw = flagged = 0
    for seed in range(10):
        bc, nc, bs, ns = drifting(seed, 20, 0.10)
        flagged_raw += (compare_runs(bc, nc, bs, ns, run_noise=False, n_boot=500).table["verdict"] != "same").sum()
        cmp = compare_runs(bc, nc, bs, ns, n_boot=500)
        flagged += (cmp.table["verdict"] != "same").sum()
        assert 0.05 < cmp.noise["torch/cpu"] < 0.4  # sqrt(2) * 10% drift, estimated
    print(f"20 cases x 10 seeds, 10% drift: flagged {flagged_raw} without run noise, {flagged} with")
    assert flagged_raw > 60  # the within-run samples alone cry wolf
    assert flagged <= 8  # about alpha per case, 200 cases


def test_run_noise_still_sees_a_large_regression_and_a_shared_one() -> None:
    bc, nc, bs, ns = drifting(0, 20, 0.05, slow={0: 0.6})
    t = compare_runs(bc, nc, bs, ns).table.set_index("workload")
    assert t.loc["c0", "verdict"] == "slower"
    assert (t.drop(index="c0")["verdict"] == "same").all()
    # Every case 20% slower: the noise estimate measures spread, not level.
    bc, nc, bs, ns = drifting(1, 20, 0.0, slow={i: 0.2 for i in range(20)})
    cmp = compare_runs(bc, nc, bs, ns)
    assert cmp.counts["slower"] == 20
    assert cmp.noise["torch/cpu"] < 0.01


def test_estimate_noise() -> None:
    rng = np.random.default_rng(7)
    lr = rng.normal(0.2, 0.1, 400)
    assert estimate_noise(lr, np.zeros(400)) == pytest.approx(0.1, rel=0.15)
    assert estimate_noise(lr, np.full(400, 0.1)) < 0.03  # explained by the within-run error
    assert estimate_noise(lr[:5], np.zeros(5)) is None


def test_several_runs_per_side_widen_the_ci() -> None:
    bc, nc, bs, ns = drifting(3, 1, 0.10, runs=3)
    merged = compare_runs(bc, nc, bs, ns, run_noise=False).table.iloc[0]
    pooled = compare_runs(bc, nc, bs.drop(columns="run_dir"), ns.drop(columns="run_dir"), run_noise=False).table.iloc[0]
    assert merged["ratio"] == pooled["ratio"]
    assert np.log(merged["ci_high"] / merged["ci_low"]) > 2 * np.log(pooled["ci_high"] / pooled["ci_low"])


# --------------------------------------------------------------------------- environment
def meta(cpu: str = "AMD EPYC", torch: str = "2.13.0", driver: str | None = None) -> dict[str, Any]:
    gpus = [{"name": "NVIDIA H100", "driver_version": driver, "memory_total": "80 GiB"}] if driver else []
    return {
        "suite": "s",
        "started": "2026-01-01T00:00:00+00:00",
        "options": {"timing": {"max_time": 5.0}},
        "environment": {
            "core": {"hostname": "vm", "cpu": cpu, "python_version": "3.11.7", "git_revision": "abc", "timestamp": "t", "gpus": gpus, "thread_env": {"OMP_NUM_THREADS": None}},
            "backends": {"torch:cpu": {"name": "torch", "version": torch, "python": "/x/python", "environment": {"torch": torch, "cuda": None}}},
        },
    }


def test_environment_diff_lists_what_differs() -> None:
    assert environment_diff([meta()], [meta()]) == []
    diff = {d["field"]: (d["base"], d["new"]) for d in environment_diff([meta()], [meta(cpu="Intel Xeon", torch="2.14.0", driver="550.54")])}
    assert diff["cpu"] == ("AMD EPYC", "Intel Xeon")
    assert diff["torch:cpu.version"] == ("2.13.0", "2.14.0")
    assert diff["torch:cpu.torch"] == ("2.13.0", "2.14.0")
    assert diff["gpus"] == ("none", "NVIDIA H100 (driver 550.54)")
    assert not any(k.endswith("python") or k in ("git_revision", "timestamp") for k in diff)
    two = {d["field"]: d for d in environment_diff([meta(), meta(cpu="Intel Xeon")], [meta()])}
    assert two["cpu"]["base"] == "AMD EPYC | Intel Xeon"


# --------------------------------------------------------------------------- renderings
def regression_comparison() -> Any:
    rng = np.random.default_rng(8)
    base = {f"w{i}": lognormal(rng, 30, 0.02) for i in range(4)}
    new = {f"w{i}": lognormal(rng, 30, 0.02) * (1.3 if i == 2 else 1.0) for i in range(4)}
    bc, bs = frames(base, "a")
    nc, ns = frames(new, "b")
    return compare_runs(bc, nc, bs, ns, base_meta=[{**meta(), "_name": "a"}], new_meta=[{**meta(torch="2.14.0"), "_name": "b"}])


def test_markdown_headline_regressions_first_details_for_the_rest() -> None:
    md = comparison_markdown(regression_comparison())
    assert md.startswith("## convbench compare: regression")
    assert "**1 slower, 0 failed, 0 inconclusive, 0 faster, 3 same, 0 added, 0 removed**" in md
    assert md.index("### Regressions (1)") < md.index("<details><summary>3 same</summary>")
    regress = md[md.index("### Regressions") : md.index("<details>")]
    assert "w2" in regress and "w0" not in regress
    assert "the runs saw different machines or software" in md and "| torch:cpu.version | 2.13.0 | 2.14.0 |" in md
    for line in md.splitlines():  # key values joined with | would break the tables
        if line.startswith("| slower") or line.startswith("| same"):
            assert line.count(" | ") == 6, line


def test_json_and_csv() -> None:
    cmp = regression_comparison()
    doc = json.loads(comparison_json(cmp))
    assert doc["counts"]["slower"] == 1 and doc["exit_code"] == 1 and len(doc["cases"]) == 4
    assert doc["environment_diff"][0]["field"] == "torch:cpu.version"
    assert doc["cases"][0]["verdict"] == "slower" and doc["cases"][-1]["p_value"] is not None
    frame = pd.read_csv(pd.io.common.StringIO(cmp.to_csv()))
    assert {*KEY_FIELDS, "case_id", "ratio", "ci_low", "ci_high", "p_value", "verdict", "threshold", "base_status", "new_status", "reason"} <= set(frame.columns)


def test_rich_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    Console(width=250).print(comparison_rich(regression_comparison()))
    out = capsys.readouterr().out
    grid = out[out.index("convbench compare:") :]
    assert "1 slower" in out and "torch:cpu.version" in out and grid.index("│ slower") < grid.index("│ same")


# --------------------------------------------------------------------------- within a run
def test_within_run_by_variant_uses_interleaved_ratios() -> None:
    rows = []
    for variant, ratio in (("native", None), ("diagonalwise", 0.5)):
        r = empty_row(case_of("dw", variant))
        r.update(status="ok", median=1e-3 if variant == "native" else 0.6e-3, baseline="native", ratio=ratio, ratio_ci_low=ratio and 0.45, ratio_ci_high=ratio and 0.55)
        rows.append(r)
    r = empty_row(case_of("nobase", "diagonalwise"))
    r.update(status="ok", median=1e-3)
    rows.append(r)
    out = within_run(pd.DataFrame(rows))
    assert len(out) == 1  # no native row for "nobase"
    row = out.iloc[0]
    assert (row["variant"], row["source"], row["ratio"]) == ("diagonalwise", "interleaved", 0.5)
    assert row["speedup"] == 2.0 and row["speedup_ci_low"] == pytest.approx(1 / 0.55) and row["speedup_ci_high"] == pytest.approx(1 / 0.45)


def test_within_run_by_backend_bootstraps_from_samples() -> None:
    rng = np.random.default_rng(9)
    ref_c, ref_s = frames({"dw": lognormal(rng, 30, 0.02, scale=2e-3)}, "r", backend="reference")
    tor_c, tor_s = frames({"dw": lognormal(rng, 30, 0.02, scale=1e-3)}, "r", backend="torch")
    cases, samples = pd.concat([ref_c, tor_c]), pd.concat([ref_s, tor_s])
    row = within_run(cases, by="backend", baseline="reference", samples=samples).iloc[0]
    assert row["backend"] == "torch" and row["source"] == "bootstrap"
    assert 1.8 < row["speedup_ci_low"] < row["speedup"] < row["speedup_ci_high"] < 2.2
    row = within_run(cases, by="backend", baseline="reference").iloc[0]
    assert row["source"] == "medians" and np.isnan(row["ratio_ci_low"])


# --------------------------------------------------------------------------- run folders and the CLI
def write_run(path: Path, samples: dict[str, np.ndarray], statuses: dict[str, str] | None = None, cpu: str = "AMD EPYC", started: str = "2026-01-01T00:00:00+00:00") -> Path:
    """A run folder as `convbench run` writes it, with the given per-case samples."""
    folder = RunFolder.create(path, {**meta(cpu=cpu), "cases": []})
    folder.meta["started"] = started
    for name, x in samples.items():
        case = case_of(name)
        row = empty_row(case)
        status = (statuses or {}).get(name, "ok")
        row.update(status=status, reason=None if status == "ok" else "broken", timer="host_wall_sync")
        rows = []
        if status == "ok":
            row.update(median=float(np.median(x)), n=len(x))
            rows = [{"case_id": case.case_id, "index": i, "seconds": float(v), "ratio": None} for i, v in enumerate(x)]
        folder.add(row, rows)
    folder.finish("complete")
    return path


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(10)
    base = {f"w{i}": lognormal(rng, 30, 0.02) for i in range(3)}
    same = {k: lognormal(rng, 30, 0.02) for k in base}
    slow = {k: v * (1.25 if k == "w1" else 1.0) for k, v in same.items()}
    return {
        "base": write_run(tmp_path / "base", base),
        "same": write_run(tmp_path / "same", same),
        "slow": write_run(tmp_path / "slow", slow, cpu="Intel Xeon"),
        "broken": write_run(tmp_path / "broken", same, {"w0": "mismatch"}),
        "other": write_run(tmp_path / "other", {"zz": base["w0"]}),
    }


def test_cli_exit_codes(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["base"]), str(runs["same"])]) == 0
    assert main(["compare", str(runs["base"]), str(runs["slow"])]) == 1
    out = capsys.readouterr().out
    assert "1 slower" in out and "different machines" in out
    assert main(["compare", str(runs["base"]), str(runs["broken"])]) == 1
    assert main(["compare", str(runs["base"]), str(runs["slow"]), "--threshold", "30%"]) == 0
    assert main(["compare", str(runs["base"]), str(runs["slow"]), "--threshold-for", "w1|*=0.3"]) == 0
    assert main(["compare", "--base", str(runs["base"]), str(runs["same"]), "--new", str(runs["slow"])]) == 1


def test_cli_formats(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["base"]), str(runs["slow"]), "--format", "md"]) == 1
    assert capsys.readouterr().out.startswith("## convbench compare: regression")
    assert main(["compare", str(runs["base"]), str(runs["slow"]), "--format", "json", "-o", str(tmp_path / "c.json")]) == 1
    assert json.loads((tmp_path / "c.json").read_text())["counts"]["slower"] == 1
    assert main(["compare", str(runs["base"]), str(runs["slow"]), "--format", "csv"]) == 1
    assert "verdict" in capsys.readouterr().out.splitlines()[0]
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("'w1|*': 40%\n")
    assert main(["compare", str(runs["base"]), str(runs["slow"]), "--thresholds", str(thresholds)]) == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["compare", "MISSING", "{same}"], "MISSING: no such file or directory"),
        (["compare", "{base}", "{other}"], "no case in common"),
        (["compare", "{base}", "{same}", "--threshold", "5"], "write 5% for a percentage"),
        (["compare", "{base}", "{same}", "--threshold", "abc"], "expected a percentage"),
        (["compare", "{base}", "{same}", "--fail-on", "slower,bogus"], "unknown verdicts ['bogus']"),
        (["compare", "{base}"], "expected BASE and NEW"),
        (["compare", "{base}", "--by", "variant", "--baseline", "nope"], "no case has variant 'nope'"),
        (["compare", "{corrupt}", "{same}"], "cases.parquet: unreadable"),
        (["compare", "{nojson}", "{same}"], "unreadable run.json"),
        (["compare", "{empty}", "{same}"], "no finished case"),
        (["compare", "{oldschema}", "{same}"], "cases.parquet: not a convbench cases table (no column status)"),
    ],
)
def test_cli_bad_input_exits_2_with_one_message(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    corrupt = write_run(tmp_path / "corrupt", {"w0": np.ones(3)})
    (corrupt / "cases.parquet").write_bytes(b"not parquet")
    nojson = write_run(tmp_path / "nojson", {"w0": np.ones(3)})
    (nojson / "run.json").write_text("{")
    empty = tmp_path / "empty"
    RunFolder.create(empty, {"suite": "s"})
    old = write_run(tmp_path / "oldschema", {"w0": np.ones(3)})
    pd.read_parquet(old / "cases.parquet").drop(columns="status").to_parquet(old / "cases.parquet")
    paths = {**{k: str(v) for k, v in runs.items()}, "corrupt": str(corrupt), "nojson": str(nojson), "empty": str(empty), "oldschema": str(old)}
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err.replace("\n", " ") and "Traceback" not in err


def test_cli_bad_input_in_a_subprocess_has_no_traceback(runs: dict[str, Path]) -> None:
    proc = run_cli("compare", str(runs["base"]), "/no/such/run")
    assert proc.returncode == 2
    assert "/no/such/run: no such file or directory" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_paths_merges_folders_of_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    cmp = compare_paths([runs["base"], runs["same"]], runs["slow"])
    assert [r["name"] for r in cmp.base_runs] == ["base", "same"]
    assert cmp.table.set_index("workload").loc["w0", "base_n"] == 60


def test_a_real_run_against_itself_and_within(tmp_path: Path) -> None:
    """The reference backend's inference cases of the smoke suite, run for real."""
    out = tmp_path / "run"
    query = "backend == 'reference' and mode == 'inference' and workload == 'dw_odd'"
    proc = run_cli("run", str(ROOT / "suites" / "smoke.yaml"), "--filter", query, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("compare", str(out), str(out), "--format", "json")
    assert proc.returncode == 3, proc.stderr[-2000:]  # 3 samples a case: too few to test, inconclusive
    doc = json.loads(proc.stdout)
    assert doc["counts"]["inconclusive"] == len(doc["cases"]) == 2 and doc["environment_diff"] == []
    # 3 samples a case are too few to test; on a busy machine the cases are (also) contended,
    # which the status names first: inconclusive either way, never a verdict
    assert doc["status"].startswith("inconclusive: ") and ("too few samples to test" in doc["status"] or "contended" in doc["status"])
    proc = run_cli("compare", str(out), str(out), "--format", "json", "--inconclusive-ok")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok = [c for c in doc["cases"] if c["new_n"]]
    assert ok and all(c["ratio"] == 1.0 for c in ok)
    proc = run_cli("compare", str(out), "--by", "variant", "--format", "csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(pd.io.common.StringIO(proc.stdout))
    assert len(table) == 1 and set(table["source"]) == {"interleaved"} and (table["speedup"] > 0).all()


# --------------------------------------------------------------------------- trust: inconclusive, canary, pooled verdict
def canary_meta(*medians: float) -> dict[str, Any]:
    return {"canary": [{"at": at, "median": m, "contended": False} for at, m in zip(("start", "middle", "end"), medians, strict=False)]}


def test_a_uniform_slowdown_of_untestable_cases_is_caught_by_the_suite_verdict() -> None:
    rng = np.random.default_rng(5)
    base = {f"w{i}": lognormal(rng, 3, 0.03, scale=1e-3 * (1 + i)) for i in range(24)}
    new = {k: v * 1.25 for k, v in base.items()}  # every sample 25% slower
    bc, bs = frames(base, "a")
    nc, ns = frames(new, "b")
    cmp = compare_runs(bc, nc, bs, ns, base_meta=[canary_meta(1e-3, 1e-3, 1e-3)], new_meta=[canary_meta(1e-3, 1e-3, 1e-3)])
    assert cmp.counts["inconclusive"] == 24  # 3 vs 3 samples: no case alone can be tested
    assert cmp.suite["verdict"] == "slower" and cmp.suite["cases"] == 24
    assert cmp.suite["ratio"] == pytest.approx(1.25) and cmp.suite["ci_low"] > 1.2
    assert cmp.exit_code == 1


def test_the_same_untestable_cases_unchanged_are_inconclusive_not_passed() -> None:
    rng = np.random.default_rng(6)
    base = {f"w{i}": lognormal(rng, 3, 0.03) for i in range(24)}
    bc, bs = frames(base, "a")
    nc, ns = frames({k: v.copy() for k, v in base.items()}, "b")
    cmp = compare_runs(bc, nc, bs, ns)
    assert cmp.suite["verdict"] == "same" and cmp.exit_code == 3
    assert cmp.why_inconclusive == ["24 case(s): too few samples to test"]
    cmp.inconclusive_ok = True
    assert cmp.exit_code == 0


def test_a_slowdown_the_canary_explains_is_inconclusive() -> None:
    rng = np.random.default_rng(7)
    base = {f"w{i}": lognormal(rng, 40, 0.02) for i in range(4)}
    new = {k: v * 1.3 for k, v in base.items()}
    bc, bs = frames(base, "a")
    nc, ns = frames(new, "b")
    slow_machine = compare_runs(bc, nc, bs, ns, base_meta=[canary_meta(1e-3, 1e-3)], new_meta=[canary_meta(1.28e-3, 1.3e-3)])
    assert set(slow_machine.table["verdict"]) == {"inconclusive"}
    assert all("NEW's machine ran the canary 1.29x slower" in r for r in slow_machine.table["reason"])
    assert slow_machine.suite["verdict"] == "inconclusive" and slow_machine.exit_code == 3
    steady = compare_runs(bc, nc, bs, ns, base_meta=[canary_meta(1e-3, 1e-3)], new_meta=[canary_meta(1.02e-3, 1.01e-3)])
    assert set(steady.table["verdict"]) == {"slower"} and steady.exit_code == 1
    # a case 2x slower on a machine whose canary is 1.1x slower: the code, not the machine
    twice = {k: v * 2.0 for k, v in base.items()}
    tc, ts = frames(twice, "b")
    code = compare_runs(bc, tc, bs, ts, base_meta=[canary_meta(1e-3)], new_meta=[canary_meta(1.1e-3)])
    assert set(code.table["verdict"]) == {"slower"}


def test_a_contended_side_makes_a_change_inconclusive_and_its_dropped_samples_are_ignored() -> None:
    rng = np.random.default_rng(8)
    base = {"w": lognormal(rng, 40, 0.02)}
    new = {"w": base["w"] * 1.3}
    bc, bs = frames(base, "a")
    nc, ns = frames(new, "b")
    nc = nc.assign(contended=True, contention="other processes used 0.82 cores")
    row = compare_runs(bc, nc, bs, ns).table.iloc[0]
    assert row["verdict"] == "inconclusive" and row["new_contended"] and not row["base_contended"]
    assert "contended in NEW (other processes used 0.82 cores)" in row["reason"]
    # no change, but a contended side could hide one: inconclusive too, not passed
    sc0, ss0 = frames({"w": base["w"].copy()}, "b")
    row = compare_runs(bc, sc0.assign(contended=True, contention="x"), bs, ss0).table.iloc[0]
    assert row["verdict"] == "inconclusive" and row["reason"].endswith("but contended in NEW (x)")
    # samples the guard dropped (kept False) are not evidence: 10x slow ones change nothing
    same = {"w": base["w"].copy()}
    sc, ss = frames(same, "b")
    dropped = pd.DataFrame([{"case_id": ss["case_id"].iloc[0], "index": 100 + i, "seconds": 1e-2, "ratio": None, "run": "b", "run_dir": "b", "kept": False} for i in range(40)])
    ss = pd.concat([ss.assign(kept=True), dropped], ignore_index=True)
    row = compare_runs(bc, sc, bs, ss).table.iloc[0]
    assert row["verdict"] == "same" and row["new_n"] == 40 and row["ratio"] == pytest.approx(1.0)


def test_exit_codes_from_the_command_line(tmp_path: Path) -> None:
    """0, 1, 2 and 3 from `convbench compare` on run folders made here."""
    rng = np.random.default_rng(9)
    base = {f"w{i}": lognormal(rng, 40, 0.02) for i in range(4)}

    def folder(name: str, samples: dict[str, np.ndarray], **meta: Any) -> Path:
        f = RunFolder.create(tmp_path / name, {"suite": "s", "cases": [], **meta})
        cases, srows = frames(samples, name)
        for _, r in cases.iterrows():
            row = {k: r[k] for k in empty_row(case_of(r["workload"]))}
            f.add(row, [{k: s[k] for k in ("case_id", "index", "seconds", "ratio")} for _, s in srows[srows["case_id"] == r["case_id"]].iterrows()])
        return f.path

    a = folder("a", base)
    same = folder("same", {k: v.copy() for k, v in base.items()})
    slow = folder("slow", {k: v * 1.3 for k, v in base.items()})
    few = folder("few", {k: v[:1] for k, v in base.items()})  # one sample a case: untestable
    assert main(["compare", str(a), str(same)]) == 0
    assert main(["compare", str(a), str(slow)]) == 1
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert main(["compare", str(a), str(few)]) == 3
    assert main(["compare", str(a), str(few), "--inconclusive-ok"]) == 0
    out = tmp_path / "few.md"
    assert main(["compare", str(a), str(few), "--format", "md", "-o", str(out)]) == 3
    text = out.read_text()
    assert text.startswith("## convbench compare: inconclusive") and "> **Inconclusive** (exit 3)" in text
