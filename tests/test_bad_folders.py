"""Bad run folders never crash a command: exit 2 with a message naming the file and what
is wrong, the input left as it was; report and history skip a corrupted run among good
ones; run folders are locked (one creator, one resumer) and respect the umask. Ends with
a fuzz test over corrupted copies of a small real run (tests/folder_fuzz.py)."""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from convbench.cli import main
from convbench.results import JOURNAL, ResultsError, RunFolder, load, read_table
from tests import folder_fuzz
from tests.report_data import make_run

TINY = Path(__file__).resolve().parent / "data" / "tiny-run"


def copy_of(tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(TINY, tmp_path / name))


def flat(text: object) -> str:
    """``text`` without whitespace (rich folds long paths at the console width)."""
    return "".join(str(text).split())


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


def no_cases_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run --resume`` without running any case: only the folder's reading and writing."""
    import convbench.commands.run as run_cmd

    monkeypatch.setattr(run_cmd, "execute", lambda *a, **k: True)


# --------------------------------------------------------------------------- run.json
RUN_JSON = {
    "a list": b"[1, 2]",
    "a string": b'"run"',
    "null": b"null",
    "a number": b"3",
    "not UTF-8": b'{"suite": "\xff\xfe"}',
    "cut short": b'{"suite": "s", "environ',
    "empty": b"",
    "a newer schema": b'{"schema_version": 99}',
    "environment a list": b'{"environment": []}',
    "core a string": b'{"environment": {"core": "x"}}',
    "hosts a number": b'{"environment": {"hosts": 1}}',
    "status a number": b'{"status": 1}',
    "timing a list": b'{"options": {"timing": [1]}}',
}


@pytest.mark.parametrize("what", list(RUN_JSON))
def test_a_corrupt_run_json_is_an_error_naming_it_in_every_reader(tmp_path: Path, what: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_of(tmp_path, "bad")
    good = copy_of(tmp_path, "good")
    (run / "run.json").write_bytes(RUN_JSON[what])
    before = digest(run)
    with pytest.raises(ResultsError, match=str(run / "run.json")):
        load(run)
    for argv in (["compare", str(good), str(run)], ["merge", str(run), "-o", str(tmp_path / "m")], ["run", "--resume", str(run)], ["history", str(run)]):
        assert main(argv) == 2, argv
        err = flat(capsys.readouterr().err)
        assert flat(run / "run.json") in err, (argv, err)
    assert digest(run) == before and not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- tables
def rewrite(file: Path, change) -> None:  # noqa: ANN001 - change(table) -> table
    pq.write_table(change(pq.read_table(file)), file)


def set_column(name: str, values: pa.Array):  # noqa: ANN201
    return lambda t: t.set_column(t.column_names.index(name), name, values)


TABLES = {
    "cases.parquet cut short": ("cases.parquet", lambda f: f.write_bytes(f.read_bytes()[:100]), "unreadable"),
    "samples.parquet garbage": ("samples.parquet", lambda f: f.write_bytes(b"PAR1 not really"), "unreadable"),
    "no case_id column": ("cases.parquet", lambda f: rewrite(f, lambda t: t.drop(["case_id"])), "no column case_id"),
    "no status column": ("cases.parquet", lambda f: rewrite(f, lambda t: t.drop(["status"])), "no column status"),
    "no seconds column": ("samples.parquet", lambda f: rewrite(f, lambda t: t.drop(["seconds"])), "no column seconds"),
    "string medians": ("cases.parquet", lambda f: rewrite(f, set_column("median", pa.array(["1e-3"] * 6))), "column median holds string"),
    "integer statuses": ("cases.parquet", lambda f: rewrite(f, set_column("status", pa.array([1] * 6))), "column status holds int64"),
    "unknown statuses": ("cases.parquet", lambda f: rewrite(f, set_column("status", pa.array(["fine"] * 6))), "status 'fine' is not one of"),
    "list seconds": ("samples.parquet", lambda f: rewrite(f, lambda t: set_column("seconds", pa.array([[1.0]] * t.num_rows))(t)), "column seconds holds list"),
    "duplicated rows": ("cases.parquet", lambda f: rewrite(f, lambda t: pa.concat_tables([t, t])), "6 duplicated row"),
    "null case ids": ("cases.parquet", lambda f: rewrite(f, set_column("case_id", pa.nulls(6, pa.string()))), "a row has no case_id"),
}


@pytest.mark.parametrize("what", list(TABLES))
def test_a_corrupt_table_is_an_error_naming_it_and_resume_leaves_the_folder_as_it_was(tmp_path: Path, what: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    name, corrupt, message = TABLES[what]
    run = copy_of(tmp_path, "bad")
    corrupt(run / name)
    (run / f".{name}.123.tmp").write_bytes(b"left by a kill")  # (open() would remove it)
    before = digest(run)
    with pytest.raises(ResultsError, match=f"{run / name}.*{message}".replace("(", r"\(").replace("[", r"\[")):
        load(run, samples=name == "samples.parquet")
    no_cases_run(monkeypatch)
    assert main(["run", "--resume", str(run)]) == 2
    err = flat(capsys.readouterr().err)
    assert flat(run / name) in err and flat(message) in err
    assert main(["report", str(run), "-o", str(tmp_path / "site")]) == 2
    assert flat(run / name) in flat(capsys.readouterr().err)
    assert digest(run) == before, "a failed command changed its input"


def test_a_table_of_an_older_convbench_reads_with_the_missing_columns_as_null(tmp_path: Path) -> None:
    run = copy_of(tmp_path)
    rewrite(run / "cases.parquet", lambda t: t.drop(["side", "host_id", "cache_state", "gpu_power_w"]))
    frame = read_table(run)
    assert len(frame) == 6 and frame[["side", "host_id", "cache_state", "gpu_power_w"]].isna().all().all()


def test_a_bad_journal_row_fails_the_resume_before_anything_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_of(tmp_path)
    row = pq.read_table(run / "cases.parquet").slice(0, 1).to_pylist()[0]
    row["median"] = "fast"  # (a journal line a foreign writer made)
    with open(run / JOURNAL, "w") as f:
        f.write(json.dumps({"row": row, "samples": [], "replaces": None}, default=str) + "\n")
    before = digest(run)
    no_cases_run(monkeypatch)
    assert main(["run", "--resume", str(run)]) == 2
    assert flat(run / JOURNAL) in flat(capsys.readouterr().err)
    assert digest(run) == before


@pytest.mark.parametrize("plan", ["cases", "options", "suite", "no cases"])
def test_a_plan_that_cannot_resume_fails_before_the_journal_is_compacted(tmp_path: Path, plan: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_of(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    if plan == "cases":
        meta["cases"][0] = {"workload": 3}
    elif plan == "options":
        del meta["options"]["timeout"]
    else:
        del meta["suite" if plan == "suite" else "cases"]
    (run / "run.json").write_text(json.dumps(meta))
    row = pq.read_table(run / "cases.parquet").slice(0, 1).to_pylist()[0]
    (run / JOURNAL).write_text(json.dumps({"row": row, "samples": [], "replaces": None}) + "\n")
    before = digest(run)
    no_cases_run(monkeypatch)
    assert main(["run", "--resume", str(run)]) == 2
    err = flat(capsys.readouterr().err)
    assert flat(run / "run.json") in err and {"cases": "cases[0]", "options": "timeout", "suite": "(suite)", "no cases": "(cases)"}[plan] in err
    assert digest(run) == before


def test_a_good_resume_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_of(tmp_path)
    no_cases_run(monkeypatch)
    assert main(["run", "--resume", str(run)]) == 0
    assert len(load(run)) == 6 and json.loads((run / "run.json").read_text())["status"] == "complete"


# --------------------------------------------------------------------------- report, history
def test_a_zero_median_does_not_break_the_report(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    table = pq.read_table(run / "cases.parquet")
    medians = [0.0 if s == "ok" else m for s, m in zip(table.column("status").to_pylist(), table.column("median").to_pylist(), strict=True)]
    rewrite(run / "cases.parquet", set_column("median", pa.array(medians, pa.float64())))
    assert main(["report", str(run), "-o", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").exists()


@pytest.mark.parametrize("command", ["report", "history"])
def test_a_corrupted_run_among_good_ones_is_skipped_with_a_warning(tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    make_run(runs / "a", seed=1, started="2026-01-01T00:00:00+00:00", failures=False)
    make_run(runs / "c", seed=3, started="2026-01-03T00:00:00+00:00", failures=False)
    bad = make_run(runs / "b", seed=2, started="2026-01-02T00:00:00+00:00", failures=False)
    (bad / "run.json").write_text("[]")
    argv = ["report", str(runs), "-o", str(tmp_path / "site")] if command == "report" else ["history", str(runs)]
    assert main(argv) == 0
    err = flat(capsys.readouterr().err)
    assert "warning:skippedarun" in err and flat(bad / "run.json") in err
    if command == "report":
        index = (tmp_path / "site" / "index.html").read_text()
        assert ">a<" in index and ">c<" in index and ">b<" not in index
    (runs / "a" / "cases.parquet").write_bytes(b"")
    (runs / "c" / "run.json").write_text("null")
    assert main(argv) == 2, "every run corrupted: an error, not an empty result"
    err = flat(capsys.readouterr().err)
    assert flat(runs / "a" / "cases.parquet") in err or flat(runs / "c" / "run.json") in err


# --------------------------------------------------------------------------- locks, umask
def _create(path: str, barrier, results) -> None:  # noqa: ANN001
    try:
        barrier.wait()
        RunFolder.create(Path(path), {"suite": "s", "cases": []})
        results.put("created")
        barrier.wait()  # (holds the folder until both have tried)
    except ResultsError as exc:
        results.put(f"refused: {exc}")
        barrier.wait()
    except Exception as exc:  # noqa: BLE001
        results.put(f"crashed: {exc!r}")
        barrier.wait()


def test_two_creates_of_one_folder_at_once_one_succeeds(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    outcomes = collections.Counter()
    for i in range(8):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_create, args=(str(tmp_path / f"run{i}"), barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        got = sorted(results.get(timeout=60).split(":")[0] for _ in procs)
        for p in procs:
            p.join(60)
        outcomes[tuple(got)] += 1
        assert got == ["created", "refused"], got
    assert outcomes == {("created", "refused"): 8}


def _hold(path: str, ready, release) -> None:  # noqa: ANN001
    folder = RunFolder.open(Path(path), resume=True)
    ready.set()
    release.wait(60)
    folder.close()


def test_a_folder_being_resumed_cannot_be_resumed_again(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_of(tmp_path)
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(run), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        before = digest(run)
        with pytest.raises(ResultsError, match="in use by another convbench process"):
            RunFolder.open(run, resume=True)
        no_cases_run(monkeypatch)
        assert main(["run", "--resume", str(run)]) == 2
        assert "inusebyanotherconvbenchprocess" in flat(capsys.readouterr().err)
        with pytest.raises(ResultsError, match="already holds a run"):
            RunFolder.create(run, {"suite": "s"})
        assert digest(run) == before
    finally:
        release.set()
        holder.join(60)
    RunFolder.open(run, resume=True).close()  # (released with its holder)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_run_folder_files_respect_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        folder = RunFolder.create(tmp_path / "run", {"suite": "s", "cases": []})
        folder.add(pq.read_table(TINY / "cases.parquet").slice(0, 1).to_pylist()[0] | {"side": None})
        folder.finish("complete")
    finally:
        os.umask(old)
    for name in ("run.json", "cases.parquet", "samples.parquet"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# --------------------------------------------------------------------------- fuzz
def test_fuzz_corrupted_copies_of_a_real_run_never_crash_a_command(tmp_path: Path) -> None:
    """A few hundred mutations (run.json text and fields, parquet bytes and columns), each
    given to one command in turn and always to load: every outcome is a success or an
    exit 2 naming the folder, with the input unchanged (benchmarks/fuzz_folders.py runs
    thousands)."""
    failures = []
    tried = collections.Counter()
    for r in folder_fuzz.fuzz(TINY, tmp_path, 60, seed=11, every=False):
        tried[r["command"]] += 1
        if r["outcome"] != "clean":
            failures.append(f"{r['command']} {r['outcome']} on {r['mutation']}: {r['detail']}")
    for r in folder_fuzz.fuzz(TINY, tmp_path / "load", 200, seed=12, commands=("load",)):
        tried["load"] += 1
        if r["outcome"] != "clean":
            failures.append(f"load {r['outcome']} on {r['mutation']}: {r['detail']}")
    assert set(tried) == set(folder_fuzz.COMMANDS) and sum(tried.values()) == 260
    assert not failures, "\n".join(failures[:20])
