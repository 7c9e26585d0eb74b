"""The run folder: appended results, compaction, reading in any state, reopening,
loading, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import convbench
from convbench import results
from convbench.cases import Case
from convbench.results import (
    CASE_COLUMNS,
    JOURNAL,
    ResultsError,
    RunFolder,
    empty_row,
    find_runs,
    load,
    read_table,
)
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
    assert len(read_table(tmp_path / "run")) == 1
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


# -- appending, compaction and reading a folder in any state ------------------------------
def samples_of(case: Case, n: int, seconds: float = 1e-3, side: str | None = None) -> list[dict]:
    return [{"case_id": case.case_id, "index": i, "seconds": seconds, "ratio": None, "side": side} for i in range(n)]


def a_run(path: Path, n: int) -> tuple[RunFolder, list[Case]]:
    """A run folder with n finished cases (3 samples each), not finished: as a kill leaves it."""
    folder = RunFolder.create(path, {"suite": "s", "cases": []})
    cases = [a_case(workload=f"w{i}") for i in range(n)]
    for i, case in enumerate(cases):
        folder.add(ok(case, (i + 1) * 1e-3), samples_of(case, 3, (i + 1) * 1e-3))
    return folder, cases


def finished_copy(run: Path, dest: Path) -> Path:
    """A copy of ``run`` reopened and finished: the tables a complete compaction writes."""
    shutil.copytree(run, dest)
    RunFolder.open(dest).finish("complete")
    return dest


def test_appends_do_not_rewrite_earlier_data(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder, cases = a_run(run, 2)
    journal = run / JOURNAL
    before, inode = journal.read_bytes(), journal.stat().st_ino
    assert before.count(b"\n") == 2
    assert not (run / "cases.parquet").exists() and not (run / "samples.parquet").exists()
    folder.add(ok(a_case(workload="w2"), 3e-3), samples_of(a_case(workload="w2"), 3))
    after = journal.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 3, "an add must only append"
    assert journal.stat().st_ino == inode
    assert len(read_table(run)) == 3 and len(read_table(run, "samples")) == 9
    folder.finish("complete")
    assert not journal.exists() and len(pd.read_parquet(run / "cases.parquet")) == 3
    assert len(pd.read_parquet(run / "samples.parquet")) == 9
    assert list(read_table(run)["workload"]) == ["w0", "w1", "w2"]


def test_add_costs_the_same_however_many_cases_came_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = a_run(tmp_path / "run", 200)
    written: list[int] = []
    append = results._append
    monkeypatch.setattr(results, "_append", lambda file, data: (written.append(len(data)), append(file, data)))
    monkeypatch.setattr(results, "_atomic_write", lambda *a: pytest.fail("add() rewrote a table"))
    case = a_case(workload="last")
    folder.add(ok(case, 1e-3), samples_of(case, 3))
    assert len(written) == 1 and written[0] < 10_000  # one line: this case only


def test_a_folder_killed_mid_run_loads_and_resumes_without_losing_finished_cases(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder, cases = a_run(run, 4)
    want = read_table(finished_copy(run, tmp_path / "want"))
    # a kill -9 while the 5th case was being appended: its line is cut short
    line = (run / JOURNAL).read_bytes().splitlines(keepends=True)[-1]
    with open(run / JOURNAL, "ab") as f:
        f.write(line.replace(b'"w3"', b'"w4"')[: len(line) // 2])
    del folder
    frame = load(run)
    assert list(frame["workload"]) == ["w0", "w1", "w2", "w3"]
    pd.testing.assert_frame_equal(read_table(run), want)  # the same frame as compacted
    assert len(load(run, samples=True)) == 12
    assert RunFolder.open(run).finished_ids() == {c.case_id for c in cases}
    # the resumed run: the cut-short line is gone, new cases append after the old ones
    assert not (run / JOURNAL).exists() and len(pd.read_parquet(run / "cases.parquet")) == 4
    resumed = RunFolder.open(run)
    resumed.add(ok(a_case(workload="w4"), 5e-3), samples_of(a_case(workload="w4"), 2))
    assert (run / JOURNAL).read_bytes().count(b"\n") == 1
    assert list(load(run)["workload"]) == ["w0", "w1", "w2", "w3", "w4"]  # tables + journal
    resumed.finish("complete")
    assert list(load(run)["workload"]) == ["w0", "w1", "w2", "w3", "w4"] and len(load(run, samples=True)) == 14


def test_a_folder_with_only_a_cut_short_line_holds_no_case(tmp_path: Path) -> None:
    run = tmp_path / "run"
    RunFolder.create(run, {"suite": "s"})
    (run / JOURNAL).write_bytes(b'{"row": {"case_id": "s|w')
    assert read_table(run) is None and len(load(run)) == 0
    assert RunFolder.open(run).rows == [] and not (run / JOURNAL).exists()


@pytest.mark.parametrize("step", ["cases written", "tables written", "temporary file left"])
def test_an_interrupted_compaction_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    run = tmp_path / "run"
    folder, cases = a_run(run, 3)
    folder.finish("complete")
    resumed = RunFolder.open(run)  # a resumed run redoes w1 and adds w3 to the journal
    resumed.add(ok(cases[1], 9e-3), samples_of(cases[1], 5, 9e-3))
    resumed.add(ok(a_case(workload="w3"), 4e-3), samples_of(a_case(workload="w3"), 3))
    want = read_table(finished_copy(run, tmp_path / "want"))
    want_samples = read_table(tmp_path / "want", "samples")
    journal = (run / JOURNAL).read_bytes()
    write = results._atomic_write
    if step == "cases written":  # killed between replacing cases.parquet and samples.parquet
        def killed(path: Path, fn) -> None:  # noqa: ANN001
            if path.name == "samples.parquet":
                raise KeyboardInterrupt
            write(path, fn)

        monkeypatch.setattr(results, "_atomic_write", killed)
        with pytest.raises(KeyboardInterrupt):
            resumed.finish("complete")
        assert len(pd.read_parquet(run / "cases.parquet")) == 4 and len(pd.read_parquet(run / "samples.parquet")) == 9
    elif step == "tables written":  # killed before the journal was deleted
        resumed.compact()
        (run / JOURNAL).write_bytes(journal)
    else:  # killed inside a table's write: its temporary file stays, the table is the old one
        (run / ".cases.parquet.x1y2.tmp").write_bytes(b"PAR1 half a file")
    monkeypatch.setattr(results, "_atomic_write", write)
    del resumed
    pd.testing.assert_frame_equal(read_table(run), want)
    pd.testing.assert_frame_equal(read_table(run, "samples"), want_samples)
    assert load(run).set_index("workload").loc["w1", "median"] == 9e-3
    again = RunFolder.open(run)
    assert len(again.rows) == 4 and len(again.samples) == 14 and not list(run.glob(".*.tmp"))
    again.finish("complete")
    pd.testing.assert_frame_equal(read_table(run), want)
    pd.testing.assert_frame_equal(read_table(run, "samples"), want_samples)


def test_a_row_replaces_the_row_of_its_key(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder = RunFolder.create(run, {"suite": "s"})
    first, other = a_case(), a_case(workload="v")
    folder.add(ok(first, 1e-3), samples_of(first, 3))
    folder.add(ok(other, 2e-3), samples_of(other, 2))
    for side in ("base", "new"):  # `convbench ab`: one row per side of the same case
        folder.add({**ok(first, 5e-3), "side": side}, samples_of(first, 2, side=side))
    folder.add(ok(first, 3e-3), samples_of(first, 4, 3e-3))  # replaces the plain row only
    error = {**empty_row(a_case(workload="x")), "status": "error", "reason": "node died"}
    folder.add(error)
    retried = ok(a_case(workload="x2"), 7e-3)
    folder.add(retried, replaces=error["case_id"])  # a fleet retry under another case id

    order = [("v", None), ("w", "base"), ("w", "new"), ("w", None), ("x2", None)]

    def check(frame: pd.DataFrame, samples: pd.DataFrame) -> None:
        keys = [(w, None if pd.isna(side) else side) for w, side in frame[["workload", "side"]].itertuples(index=False)]
        assert keys == order
        assert frame.set_index(["workload"]).loc["w"].query("side != side")["median"].item() == 3e-3
        plain = samples[(samples.case_id == first.case_id) & samples.side.isna()]
        assert list(plain["seconds"]) == [3e-3] * 4 and len(samples) == 2 + 2 + 2 + 4

    check(folder.frame(), pd.DataFrame(folder.samples))
    check(read_table(run), read_table(run, "samples"))  # from the journal
    reopened = RunFolder.open(run)  # compacted: sides read back as NaN-or-None still match
    check(reopened.frame(), pd.DataFrame(reopened.samples))
    reopened.add(ok(first, 3e-3), samples_of(first, 4, 3e-3))  # a replaced row goes last
    reopened.finish("complete")
    order = [*order[:3], order[4], order[3]]
    check(read_table(run), read_table(run, "samples"))


def test_lists_assigned_directly_are_written_in_full(tmp_path: Path) -> None:
    """An import or a merge assigns rows and samples, then adds or compacts."""
    run = tmp_path / "run"
    folder = RunFolder.create(run, {"suite": "s"})
    cases = [a_case(workload=f"w{i}") for i in range(3)]
    folder.rows = [ok(c, 1e-3) for c in cases[:2]]
    folder.samples = samples_of(cases[0], 2)
    folder.add(ok(cases[2], 1e-3), samples_of(cases[2], 1))
    assert len(pd.read_parquet(run / "cases.parquet")) == 3 and len(pd.read_parquet(run / "samples.parquet")) == 3
    assert not (run / JOURNAL).exists()
    folder.add(ok(a_case(workload="w3"), 1e-3))  # then appends again
    assert len(load(run)) == 4 and (run / JOURNAL).exists()


def test_a_journal_line_that_is_not_an_entry_is_an_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    a_run(run, 1)
    with open(run / JOURNAL, "ab") as f:
        f.write(b"{not json}\n")
    with pytest.raises(ResultsError, match="journal.jsonl: line 2 unreadable"):
        load(run)


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parent.parent / "results" / "published").iterdir()))
def test_the_old_layout_still_loads_and_resumes(tmp_path: Path, name: str) -> None:
    """Folders written before the journal: cases.parquet and samples.parquet only."""
    published = Path(__file__).parent.parent / "results" / "published" / name
    frame = load(published)
    stored = pd.read_parquet(published / "cases.parquet")
    pd.testing.assert_frame_equal(frame[list(stored.columns)], stored)
    added = [c for c in CASE_COLUMNS if c not in stored.columns]  # (columns added since: read as null)
    assert set(frame.columns) == {"run", "run_dir", "started", "host", *CASE_COLUMNS} and frame[added].isna().all().all()
    assert len(load(published, samples=True)) == len(pd.read_parquet(published / "samples.parquet"))
    run = shutil.copytree(published, tmp_path / name)
    folder = RunFolder.open(run)
    assert len(folder.rows) == len(frame) and not (run / JOURNAL).exists()
    assert (run / "cases.parquet").read_bytes() == (published / "cases.parquet").read_bytes(), "open() rewrote a table"
    case = a_case(workload="extra")
    folder.add(ok(case, 1e-3), samples_of(case, 3))
    assert len(load(run)) == len(frame) + 1
    folder.finish("complete")
    assert len(pd.read_parquet(run / "cases.parquet")) == len(frame) + 1


def test_write_tables_copies_a_compacted_run_and_writes_one_in_progress(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder, _ = a_run(run, 2)
    (tmp_path / "a").mkdir()
    assert results.write_tables(run, tmp_path / "a") == ["cases.parquet", "samples.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "cases.parquet"), read_table(run))
    folder.finish("complete")
    (tmp_path / "b").mkdir()
    results.write_tables(run, tmp_path / "b")
    assert (tmp_path / "b" / "cases.parquet").read_bytes() == (run / "cases.parquet").read_bytes()


def test_a_compaction_that_fails_still_records_the_status_and_keeps_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    folder, _ = a_run(run, 2)
    write = results._atomic_write

    def full(path: Path, fn) -> None:  # noqa: ANN001
        if path.suffix == ".parquet":
            raise OSError(28, "No space left on device")
        write(path, fn)

    monkeypatch.setattr(results, "_atomic_write", full)
    with pytest.raises(OSError, match="No space"):
        folder.finish("interrupted")
    assert results.read_meta(run)["status"] == "interrupted"
    assert (run / JOURNAL).exists() and len(load(run)) == 2
