"""convbench history: runs ordered by start time, medians per run, change points, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from convbench.cli import main
from convbench.history import history, history_paths
from tests.test_compare import frames, lognormal, write_run


def series(levels: list[float], n_cases: int = 3, seed: int = 0, step_case: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs r0, r1, ... started a day apart (listed in reverse, to test the ordering);
    case w{step_case} takes ``levels[k]`` in run k, the others stay at 1."""
    rng = np.random.default_rng(seed)
    cf, sf = [], []
    for k in reversed(range(len(levels))):
        d = {f"w{i}": lognormal(rng, 30, 0.02) * (levels[k] if i == step_case else 1.0) for i in range(n_cases)}
        c, s = frames(d, f"r{k}", started=f"2026-01-{k + 1:02d}T00:00:00+00:00")
        cf.append(c)
        sf.append(s)
    return pd.concat(cf, ignore_index=True), pd.concat(sf, ignore_index=True)


def test_a_step_is_a_change_point_and_nothing_else_is() -> None:
    cases, samples = series([1.0, 1.0, 1.3, 1.3, 1.3])
    hist = history(cases, samples)
    assert list(hist.runs["run"]) == ["r0", "r1", "r2", "r3", "r4"]  # by start time
    changes = hist.changes
    assert len(changes) == 1
    row = changes.iloc[0]
    assert (row["workload"], row["run"], row["change"]) == ("w0", "r2", "slower")
    assert 1.25 < row["step_ratio"] < 1.35 and row["step_p_value"] < 1e-6
    w0 = hist.table[hist.table["workload"] == "w0"].set_index("run")
    assert w0.loc["r4", "vs_first"] == pytest.approx(1.3, rel=0.03)
    assert np.isnan(w0.loc["r0", "step_ratio"])  # the first run has no step
    assert hist.wide().shape == (3, 5)


def test_a_slow_creep_has_no_change_point_but_shows_in_vs_first() -> None:
    cases, samples = series([1.0, 1.02, 1.04, 1.06, 1.08, 1.10])
    hist = history(cases, samples)
    assert hist.changes.empty
    last = hist.table[(hist.table["workload"] == "w0") & (hist.table["run"] == "r5")].iloc[0]
    assert last["vs_first"] == pytest.approx(1.10, rel=0.03)


def test_a_recovery_is_faster_and_a_failure_is_flagged() -> None:
    cases, samples = series([1.0, 1.5, 1.0])
    hist = history(cases, samples)
    assert list(hist.changes["change"]) == ["slower", "faster"]
    c, s = frames({"w0": np.empty(0)}, "r9", {"w0": "error"}, started="2026-02-01T00:00:00+00:00")
    hist = history(pd.concat([cases, c]), pd.concat([samples, s]))
    assert hist.changes.iloc[-1]["change"] == "failed" and hist.changes.iloc[-1]["run"] == "r9"


def test_export_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    base = {f"w{i}": lognormal(rng, 30, 0.02) for i in range(3)}
    runs = tmp_path / "runs"
    write_run(runs / "b-second", {k: v * (1.4 if k == "w1" else 1) for k, v in base.items()}, started="2026-01-02T00:00:00+00:00")
    write_run(runs / "a-first", base, started="2026-01-01T00:00:00+00:00")
    hist = history_paths(runs)
    assert list(hist.runs["run"]) == ["a-first", "b-second"]
    for suffix in (".csv", ".parquet", ".json"):
        out = hist.export(tmp_path / f"h{suffix}")
        back = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out) if suffix == ".parquet" else pd.read_json(out)
        assert len(back) == 6 and {"case_id", "run", "started", "median", "change", "vs_first"} <= set(back.columns)
    assert main(["history", str(runs), "--export", str(tmp_path / "x.csv")]) == 0
    out = capsys.readouterr().out
    assert "1 change points" in out and "change at #1 b-second" in out and "w1" in out
    assert len(pd.read_csv(tmp_path / "x.csv")) == 6
    assert main(["history", str(runs), "--export", str(tmp_path / "x.txt")]) == 2
    assert main(["history", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
