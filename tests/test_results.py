"""The run folder: atomic incremental writes, reopening, loading, and bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import convbench
from convbench.cases import Case
from convbench.results import CASE_COLUMNS, ResultsError, RunFolder, empty_row, find_runs, load
from convbench.summary import summary_frame


def a_case(variant: str = "native", workload: str = "w") -> Case:
    return Case(suite="s", workload=workload, kind="depthwise", params={"channels": 4, "size": 4}, variant=variant, backend="reference")


def ok(case: Case, median: float, ratio: float | None = None) -> dict:
    row = empty_row(case)
    row.update(status="ok", median=median, iqr=median / 10, converged=True, verify_error=1e-7)
    if ratio is not None:
        row.update(baseline="native", ratio=ratio, ratio_ci_low=ratio * 0.9, ratio_ci_high=ratio * 1.1)
    return row


def test_rows_persist_as_they_come_and_reopen(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run", {"suite": "s", "cases": []})
    folder.add(ok(a_case(), 1e-3), [{"case_id": a_case().case_id, "index": 0, "seconds": 1e-3, "ratio": None}])
    assert len(pd.read_parquet(tmp_path / "run" / "cases.parquet")) == 1
    folder.add(ok(a_case("diagonalwise"), 2e-3, 2.0))
    reopened = RunFolder.open(tmp_path / "run")
    assert reopened.finished_ids() == {a_case().case_id, a_case("diagonalwise").case_id}
    assert len(reopened.samples) == 1
    assert not list((tmp_path / "run").glob(".*.tmp")), "temporary files left behind"
    frame = load(tmp_path)
    assert list(frame.columns[:2]) == ["run", "run_dir"] and set(CASE_COLUMNS) <= set(frame.columns)
    assert len(convbench.load([tmp_path / "run"])) == 2


def test_a_run_folder_is_never_overwritten(tmp_path: Path) -> None:
    RunFolder.create(tmp_path / "run", {"suite": "s"})
    with pytest.raises(ResultsError, match="--resume"):
        RunFolder.create(tmp_path / "run", {"suite": "s"})


def test_unknown_columns_are_refused(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run", {"suite": "s"})
    with pytest.raises(ValueError, match="unknown result columns"):
        folder.add({**ok(a_case(), 1.0), "speed": 3})


def test_bad_paths_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such file"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="holds no convbench run"):
        find_runs([tmp_path / "empty"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    with pytest.raises(ResultsError, match="unreadable run.json"):
        load(broken)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{}")
    (corrupt / "cases.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ResultsError, match="cases.parquet: unreadable"):
        load(corrupt)


def test_summary_pairs_variants_and_inverts_the_ratio() -> None:
    rows = [ok(a_case(), 1e-3), ok(a_case("diagonalwise"), 4e-3, ratio=4.0)]
    skipped = empty_row(a_case("diagonalwise", "v"))
    skipped.update(status="skipped", reason="variant diagonalwise changes nothing")
    frame, variants = summary_frame(pd.DataFrame(rows + [ok(a_case(workload="v"), 1e-3), skipped], columns=CASE_COLUMNS))
    assert variants == ["native", "diagonalwise"]
    first = frame.iloc[0]
    speed, lo, hi = first["speedup:diagonalwise"]
    assert speed == pytest.approx(0.25) and lo == pytest.approx(1 / 4.4) and hi == pytest.approx(1 / 3.6)
    assert "skipped" in frame.iloc[1]["diagonalwise"] and "changes nothing" in frame.iloc[1]["notes"]
