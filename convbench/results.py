"""The run folder: its schema, atomic incremental storage and loading into pandas.

A run folder holds

* ``run.json``: suite, preset, filter, options, the planned cases, environment (core and
  one entry per backend worker), convbench version, git revision, status and times;
* ``cases.parquet``: one row per finished case (keys, status, reason, verification error,
  statistics, throughput, MACs, bytes, achieved GFLOP/s and GB/s, ratios vs baseline);
* ``samples.parquet``: raw per-iteration samples (seconds), one row per sample, with the
  per-round ratio to the baseline variant where the case was interleaved, the index
  of the fresh process that took it when the suite asks for ``processes: N``, and the
  machine's load while it was taken (``kept`` is False for a sample the quiet guard
  dropped as contended: statistics and comparisons use the kept ones);
* ``journal.jsonl``, only while a run goes (or after it was killed): the cases finished
  since the tables were last written, see below;
* ``logs/``: each worker's stderr.

Runs made on a fleet (:mod:`convbench.fleet`) or merged (:mod:`convbench.merge`) also
hold ``environment.hosts`` in ``run.json``: ``{host_id: {core, backends, ...}}``, one
entry per machine; each row names its machine in ``host_id``, the device resource it
ran on in ``device_label`` and its attempts (JSON list, fleet retries) in ``attempts``.

While a run is going, each finished case is appended to ``journal.jsonl``: one
line per case (``{"row": ..., "samples": [...], "replaces": ...}``), so the cost of
persisting a case does not grow with the number of cases before it. ``finish`` (and
reopening with ``--resume``) folds the journal into ``cases.parquet`` and
``samples.parquet`` (each replaced atomically, ``os.replace``) and then deletes it. Rows
are keyed by ``(case_id, side)``: a journal line replaces any earlier row (and samples)
of its key, and of the key ``replaces`` names.

A folder is readable in any state, and :func:`read_table` is the one place that reads
its tables: a finished run (the two tables), a run killed mid-way (a journal, maybe with
tables from an earlier ``--resume``; a last line cut short by ``kill -9`` is the case
that was in flight and is ignored), or a compaction interrupted between its steps (the
journal is replayed over the tables; replaying lines a table already holds changes
nothing). Folders written before the journal existed (the two tables only) read as
they always did.

run.json is read by :func:`read_run` only: a typed, validated
:class:`~convbench.run_record.RunRecord` (with the migration of older schema versions;
:func:`read_meta` is the same record as a dict). The tables are checked against their
declared schemas (:data:`CASE_SCHEMA`, :data:`SAMPLE_SCHEMA`, built from CASE_COLUMNS and
SAMPLE_COLUMNS): a bad file, a missing key column, values of the wrong kind, unknown
statuses or duplicated rows are a ResultsError naming the file. A :class:`RunFolder`
holds a lock on its folder (flock on the directory) while it lives: two creators or two
resumers of one folder cannot both proceed. Files are written with the mode a plain
open() gives (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from convbench.run_record import SCHEMA_VERSION, ResultsError, RunRecord, parse, validate
from convbench.schema import CASE_COLUMNS, SAMPLE_COLUMNS, STATUSES, declared_type, now_iso
from convbench.schema import (
    SCHEMA_ID as SCHEMA_ID,  # re-exported: the columns' home is convbench.schema
)
from convbench.schema import empty_row as empty_row

#: The declared pyarrow schemas of the two tables, built from CASE_COLUMNS and
#: SAMPLE_COLUMNS (the one home of the columns).
CASE_SCHEMA = pa.schema([pa.field(c, pa.type_for_alias(declared_type(c))) for c in CASE_COLUMNS])
SAMPLE_SCHEMA = pa.schema([pa.field(c, pa.type_for_alias(declared_type(c))) for c in SAMPLE_COLUMNS])
SCHEMAS = {"cases": CASE_SCHEMA, "samples": SAMPLE_SCHEMA}

def _umask() -> int:
    """The process's umask (read without changing it where /proc says it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:  # noqa: ANN001 - write(tmp_path)
    """Write ``path`` whole or not at all, with the mode a plain open() would give it
    (0666 less the umask: mkstemp alone would make it 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, default=str)

    _atomic_write(path, write)


def _cases_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(CASE_COLUMNS))
    for col in ("details", "attempts"):
        frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str))
    return frame


def _samples_frame(samples: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(samples, columns=SAMPLE_COLUMNS)


#: The tables of a run folder, by name, and the file each is compacted into.
TABLES = {"cases": "cases.parquet", "samples": "samples.parquet"}
#: Finished cases not yet folded into the tables, one JSON line each.
JOURNAL = "journal.jsonl"
_CASE_SET = frozenset(CASE_COLUMNS)

Key = tuple[Any, Any]


def _side(value: Any) -> Any:
    """A row's ``side`` as a key part: missing (None, or NaN read back from parquet) is None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _key(record: dict[str, Any]) -> Key:
    return (record["case_id"], _side(record.get("side")))


def _jsonable(value: Any) -> Any:
    """JSON for what json cannot write itself: numpy scalars and arrays, else str."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _kind_of(t: pa.DataType) -> str | None:
    """``string``, ``number``, ``bool`` or ``null`` for the types a table may hold, else None."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    return None


def _kind_wanted(t: pa.DataType) -> str:
    return {pa.large_string(): "string", pa.bool_(): "bool"}.get(t, "number")


#: Columns a table must have (older tables may lack any other; readers see them as null).
REQUIRED = {"cases": ("case_id", "status"), "samples": ("case_id", "seconds")}


def check_schema(arrow: pa.Table, table: str, file: Path) -> None:
    """Raise ResultsError (naming ``file``) unless ``arrow`` is one of ``table``'s: the
    required columns present and each declared column of its kind (a string column holds
    strings, a numeric one numbers, a flag booleans; any may be all-null)."""
    declared, schema = SCHEMAS[table], arrow.schema
    missing = [c for c in REQUIRED[table] if c not in schema.names]
    if missing:
        raise ResultsError(f"{file}: not a convbench {table} table (no column {', '.join(missing)})")
    if len(set(schema.names)) != len(schema.names):
        raise ResultsError(f"{file}: a column appears twice")
    for field in schema:
        if field.name not in declared.names:
            continue  # (a column a newer convbench added: kept as it is)
        kind, wanted = _kind_of(field.type), _kind_wanted(declared.field(field.name).type)
        if kind != "null" and kind != wanted and arrow.column(field.name).null_count < len(arrow):
            raise ResultsError(f"{file}: column {field.name} holds {field.type}, expected {wanted}s")


def check_values(frame: pd.DataFrame, table: str, file: Path) -> None:
    """Raise ResultsError (naming ``file``) on values no reader can use: a row without a
    case id, a case whose status is not one of STATUSES, two rows of one (case_id, side)."""
    if not len(frame):
        return
    if frame["case_id"].isna().any():
        raise ResultsError(f"{file}: a row has no case_id")
    if table != "cases":
        return
    bad = frame["status"][~frame["status"].isin(STATUSES)]
    if len(bad):
        raise ResultsError(f"{file}: status {bad.iloc[0]!r} is not one of {', '.join(STATUSES)}")
    side = frame["side"].map(_side) if "side" in frame else pd.Series([None] * len(frame), index=frame.index)
    dup = pd.DataFrame({"case_id": frame["case_id"], "side": side.astype(object)}).duplicated()
    if dup.any():
        first = frame["case_id"][dup].iloc[0]
        raise ResultsError(f"{file}: {int(dup.sum())} duplicated row(s) (case {first!r} appears twice)")


def _with_declared_columns(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` with every declared column (those an older table lacks, as nulls)."""
    missing = [c for c in SCHEMAS[table].names if c not in frame.columns]
    if not missing:
        return frame
    added = pa.Table.from_pydict({c: pa.nulls(len(frame), SCHEMAS[table].field(c).type) for c in missing}).to_pandas()
    added.index = frame.index
    return pd.concat([frame, added], axis=1)


def _read_parquet(file: Path, table: str | None = None) -> pd.DataFrame | None:
    """The table in ``file`` (None when there is no such file), checked against its
    declared schema; ResultsError naming the file when it is unreadable or not one."""
    if not file.exists():
        return None
    import pyarrow.parquet as pq

    table = table or next(t for t, name in TABLES.items() if name == file.name)
    try:
        arrow = pq.read_table(file)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise ResultsError(f"{file}: unreadable ({exc})") from None
    check_schema(arrow, table, file)
    try:
        frame = arrow.to_pandas()
    except Exception as exc:
        raise ResultsError(f"{file}: unreadable ({exc})") from None
    check_values(frame, table, file)
    return frame


def _records(frame: pd.DataFrame | None, nulls: bool) -> list[dict[str, Any]]:
    """Rows of ``frame`` as dicts (``nulls``: every missing value as None)."""
    if frame is None:
        return []
    if nulls:
        frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The entries of a run folder's journal, oldest first ([] when it has none).

    A last line without its newline is a case cut short by a kill mid-write: it is left
    out. Any other line that is not an entry makes the folder unreadable (ResultsError).
    """
    file = Path(path) / JOURNAL
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ResultsError(f"{file}: unreadable ({exc})") from exc
    entries = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], 1):  # lines[-1]: b"" or the cut-short line
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise ResultsError(f"{file}: line {number} unreadable ({exc})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("row"), dict) or "case_id" not in entry["row"]:
            raise ResultsError(f"{file}: line {number} is not a convbench journal entry")
        entries.append(entry)
    return entries


def _replay(
    rows: list[dict[str, Any]], samples: list[dict[str, Any]], entries: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rows`` and ``samples`` with the journal ``entries`` applied in order, as
    :meth:`RunFolder.add` applies them: each entry's key (and the key it replaces) loses
    its rows and samples, then its row and samples go last. Replaying entries the tables
    already hold (an interrupted compaction) gives the same tables."""
    if not entries:
        return rows, samples
    row_groups: dict[Key, list[dict[str, Any]]] = {}
    for r in rows:
        row_groups.setdefault(_key(r), []).append(r)
    sample_groups: dict[Key, list[dict[str, Any]]] = {}
    for s in samples:
        sample_groups.setdefault(_key(s), []).append(s)
    for entry in entries:
        row = entry["row"]
        key = _key(row)
        for k in (key, (entry.get("replaces"), key[1])):
            row_groups.pop(k, None)
            sample_groups.pop(k, None)
        row_groups[key] = [row]
        for s in entry.get("samples") or ():
            sample_groups.setdefault(_key(s), []).append(s)
    return [r for g in row_groups.values() for r in g], [s for g in sample_groups.values() for s in g]


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every finished case of a run folder in any state, as (rows, samples) dicts: the
    tables with the journal replayed over them. Missing row values are None."""
    path = Path(path)
    entries = read_journal(path)  # before the tables: a compaction may end in between
    rows = _records(_read_parquet(path / TABLES["cases"]), nulls=True)
    samples = _records(_read_parquet(path / TABLES["samples"]), nulls=False)
    return _replay(rows, samples, entries)


def _arrow(frame: pd.DataFrame, table: str, file: Path) -> pa.Table:
    """``frame`` (rows from a journal) through Arrow, checked as a table read from disk."""
    try:
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise ResultsError(f"{file}: a row cannot be stored ({exc})") from None
    check_schema(arrow, table, file)
    return arrow


def check_rows(rows: list[dict[str, Any]], samples: list[dict[str, Any]], where: Path | str) -> None:
    """Raise ResultsError (naming ``where``) unless ``rows`` and ``samples`` can be stored
    as the two tables (every value of its column's kind, int64 in range, statuses known,
    no duplicated key): an importer calls it before it creates a folder."""
    where = Path(where)
    for table, frame in (("cases", _cases_frame(rows)), ("samples", _samples_frame(samples))):
        arrow = _arrow(frame, table, where)
        for field in SCHEMAS[table]:
            if field.name in arrow.schema.names and field.type == pa.int64():
                try:
                    arrow.column(field.name).cast(pa.int64())
                except (pa.ArrowException, ValueError) as exc:
                    raise ResultsError(f"{where}: column {field.name} out of range ({exc})") from None
        check_values(arrow.to_pandas(), table, where)


def read_table(path: Path, table: str = "cases") -> pd.DataFrame | None:
    """One table of a run folder (``cases`` or ``samples``) in any state, as pandas reads
    it from its parquet file, with every declared column (columns an older table lacks
    read as nulls); None when the folder holds no finished case.

    The one reader of a run folder's tables: :func:`load`, :meth:`RunFolder.open`,
    compare, merge and the report go through it. Raises ResultsError naming the file on
    a corrupt file, a table of the wrong schema (a missing key column, strings where
    numbers belong), unknown statuses or duplicated rows.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r} (expected one of {', '.join(TABLES)})")
    path = Path(path)
    file = path / TABLES[table]
    if not (path / JOURNAL).exists():
        frame = _read_parquet(file, table)
        if frame is not None or not (path / JOURNAL).exists():  # (or compacted meanwhile)
            return None if frame is None else _with_declared_columns(frame, table)
    entries = read_journal(path)
    if not entries:  # an empty journal, or one only a cut-short line
        frame = _read_parquet(file, table)
        return None if frame is None else _with_declared_columns(frame, table)
    if table == "cases":
        rows, _ = _replay(_records(_read_parquet(file, table), nulls=True), [], entries)
        frame = _cases_frame(rows)
    else:
        _, samples = _replay([], _records(_read_parquet(file, table), nulls=False), entries)
        frame = _samples_frame(samples)
    # through Arrow, as to_parquet and read_parquet would: the same dtypes as compacted
    frame = _arrow(frame, table, path / JOURNAL).to_pandas()
    check_values(frame, table, path / JOURNAL)
    return frame


def write_tables(path: Path, dest: Path) -> list[str]:
    """Write the tables of the run folder ``path`` (in any state) into the folder
    ``dest`` as cases.parquet and samples.parquet: copied as they are when the run is
    compacted, else written from :func:`read_table`. Returns the file names written."""
    path, dest = Path(path), Path(dest)
    written = []
    for table, name in TABLES.items():
        if not (path / JOURNAL).exists() and (path / name).exists():
            shutil.copyfile(path / name, dest / name)
            written.append(name)
            continue
        frame = read_table(path, table)
        if frame is not None:
            _atomic_write(dest / name, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
            written.append(name)
    return written


class RunFolder:
    """A run folder being written: each finished case is appended to its journal.

    ``rows`` and ``samples`` hold every finished case in memory (one row per
    ``(case_id, side)``); ``add`` appends one case to the journal at a cost that does
    not grow with the number of cases, ``compact`` (called by ``finish``) writes the two
    tables and drops the journal. Lists assigned to ``rows`` or ``samples`` directly (an
    import, a merge) are written in full by the next ``add`` or ``compact``.
    """

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta
        self.rows: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self._lock: tuple[int, int] | None = None
        self._synced()

    # -- creation and reopening -------------------------------------------------------
    def _take_lock(self) -> None:
        """Hold an exclusive lock on the folder while this object lives (flock on the
        directory itself: no file is added, and the lock goes with the process)."""
        self._lock = lock_folder(self.path)

    def close(self) -> None:
        """Release the folder's lock (also released when the process ends)."""
        if self._lock is not None:
            unlock_folder(self._lock)
            self._lock = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    @property
    def record(self) -> RunRecord:
        """run.json as a typed record (what the folder would write now)."""
        return parse(self.meta)

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any]) -> RunFolder:
        """A new run folder at ``path`` (created if need be). Atomic: of two processes
        creating one folder at once, exactly one succeeds; the other, and any later
        create of a folder that holds a run, raises ResultsError."""
        path = Path(path)
        meta = {"schema_version": SCHEMA_VERSION, **meta, "status": "running", "started": now_iso()}
        validate(meta)
        if (path / "run.json").exists():
            raise ResultsError(f"{path}: already holds a run; use --resume {path} to finish it")
        path.mkdir(parents=True, exist_ok=True)
        folder = cls(path, meta)
        folder._take_lock()  # (a second creator fails here, or sees run.json below)
        try:
            if (path / "run.json").exists():
                raise ResultsError(f"{path}: already holds a run; use --resume {path} to finish it")
            (path / "logs").mkdir(exist_ok=True)
            folder.save_meta()
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def open(cls, path: Path, resume: bool = False) -> RunFolder:
        """Reopen a run folder to resume it: keeps every finished case. The journal is
        folded into the tables first (dropping a line a kill cut short), and temporary
        files of a write interrupted by a kill are removed.

        Everything is read and checked before anything is changed: a folder that cannot
        be reopened (a bad run.json or table, another process holding it; with
        ``resume``, a plan or options a runner cannot use) raises ResultsError naming the
        file and is left as it was."""
        path = Path(path)
        read_run(path)  # (before the lock: "not a run folder" beats "cannot lock")
        folder = cls(path, {})
        folder._take_lock()
        try:
            record = read_run(path)  # (again, under the lock)
            try:
                record.planned_cases()
                if resume:
                    record.check_resumable()
            except ResultsError as exc:
                raise ResultsError(f"{path / 'run.json'}: {exc}") from None
            folder.meta = record.to_dict()
            rows, samples = read_records(path)
            _arrow(_cases_frame(rows), "cases", path / JOURNAL)  # (what compact will write)
            _arrow(_samples_frame(samples), "samples", path / JOURNAL)
        except BaseException:
            folder.close()
            raise
        folder.rows, folder.samples = rows, samples
        for name in (*TABLES.values(), "run.json"):
            for tmp in path.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
        if (path / JOURNAL).exists():
            folder.compact()
        folder._synced()
        (path / "logs").mkdir(exist_ok=True)
        return folder

    # -- writing ----------------------------------------------------------------------
    def save_meta(self) -> None:
        validate(self.meta)  # (a writer's bug is caught here, not by the next reader)
        write_json(self.path / "run.json", self.meta)

    def finished_ids(self) -> set[str]:
        return {r["case_id"] for r in self.rows}

    def _synced(self) -> None:
        """Remember the lists as persisted, with the keys they hold."""
        self._persisted = (self.rows, len(self.rows), self.samples, len(self.samples))
        self._row_keys = {_key(r) for r in self.rows}
        self._sample_keys = {_key(s) for s in self.samples}

    def _changed_outside(self) -> bool:
        """Whether ``rows`` or ``samples`` were assigned or resized other than by add()."""
        rows, n_rows, samples, n_samples = self._persisted
        return rows is not self.rows or samples is not self.samples or n_rows != len(rows) or n_samples != len(samples)

    def add(self, row: dict[str, Any], samples: Iterable[dict[str, Any]] = (), replaces: str | None = None) -> None:
        """Record one finished case (replacing any row and samples of the same
        ``(case_id, side)``, and of the case id ``replaces`` names on that side) and
        append it to the journal; its cost does not depend on the rows before it."""
        unknown = set(row) - _CASE_SET
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)}")
        samples = list(samples)
        if self._changed_outside():
            self._synced()  # (the keys of the lists as they are now)
            self._apply(row, samples, replaces)
            self.compact()
            return
        line = json.dumps({"row": row, "samples": samples, "replaces": replaces}, default=_jsonable, separators=(",", ":"))
        _append(self.path / JOURNAL, (line + "\n").encode())
        self._apply(row, samples, replaces)
        self._persisted = (self.rows, len(self.rows), self.samples, len(self.samples))

    def _apply(self, row: dict[str, Any], samples: list[dict[str, Any]], replaces: str | None) -> None:
        key = _key(row)
        drop = {key, (replaces, key[1])}
        if drop & self._row_keys:
            self.rows = [r for r in self.rows if _key(r) not in drop]
            self._row_keys -= drop
        if drop & self._sample_keys:
            self.samples = [s for s in self.samples if _key(s) not in drop]
            self._sample_keys -= drop
        self.rows.append(row)
        self._row_keys.add(key)
        self.samples.extend(samples)
        self._sample_keys.update(_key(s) for s in samples)

    def compact(self) -> None:
        """Write both tables from the rows and samples in memory (each atomically) and
        delete the journal; a kill at any step leaves a readable folder."""
        if self.rows or self.samples or any((self.path / name).exists() for name in TABLES.values()):
            frame = _cases_frame(self.rows)
            _atomic_write(self.path / TABLES["cases"], lambda tmp: frame.to_parquet(tmp, index=False))
            sframe = _samples_frame(self.samples)
            _atomic_write(self.path / TABLES["samples"], lambda tmp: sframe.to_parquet(tmp, index=False))
        (self.path / JOURNAL).unlink(missing_ok=True)
        self._synced()

    def finish(self, status: str) -> None:
        """Compact the tables, then record ``status`` in run.json (recorded even when the
        compaction fails, e.g. on a full disk: the journal keeps the cases then)."""
        try:
            self.compact()
        finally:
            self.meta.update(status=status, finished=now_iso())
            self.save_meta()

    def frame(self) -> pd.DataFrame:
        return _cases_frame(self.rows)


#: Folders this process holds locked: ``{(device, inode): [fd, holders]}`` (a process may
#: hold one folder through several RunFolder objects: a test reopening what it created).
_HELD: dict[tuple[int, int], list[int]] = {}


def lock_folder(path: Path) -> tuple[int, int]:
    """An exclusive lock on the folder ``path`` against other processes, held until
    :func:`unlock_folder`; returns its key. ResultsError when another process holds it."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    if key in _HELD:
        os.close(fd)
        _HELD[key][1] += 1
        return key
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ResultsError(f"{path}: in use by another convbench process (it holds the folder's lock)") from None
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]
    return key


def unlock_folder(key: tuple[int, int]) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        os.close(held[0])


def _append(file: Path, data: bytes) -> None:
    """Append ``data`` to ``file`` whole or not at all (a failed write is truncated away;
    only a kill mid-write leaves a partial last line, which readers leave out)."""
    fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def read_run(path: Path) -> RunRecord:
    """The run record (run.json) of the run folder ``path``: read, migrated from an older
    schema version and validated (see :mod:`convbench.run_record`). The one reader of
    run.json; ResultsError naming the file and what is wrong when it is not a record."""
    meta_path = Path(path) / "run.json"
    try:
        data = meta_path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{path}: not a convbench run folder (no run.json)") from None
    except OSError as exc:
        raise ResultsError(f"{meta_path}: unreadable run.json ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{meta_path}: unreadable run.json (not UTF-8: {exc.reason} at byte {exc.start})") from None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ResultsError(f"{meta_path}: unreadable run.json ({exc})") from None
    try:
        return parse(raw)
    except ResultsError as exc:
        raise ResultsError(f"{meta_path}: {exc}") from None


def read_meta(path: Path) -> dict[str, Any]:
    """run.json of ``path`` as a dict, validated and migrated (see :func:`read_run`)."""
    return read_run(path).to_dict()


def warn_skipped(error: Exception | str) -> None:
    """Say on stderr that a run was left out (``error`` names its file and what is wrong):
    report and history skip a corrupted run among good ones and go on."""
    import sys

    print(f"convbench: warning: skipped a run: {error}", file=sys.stderr)


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders named by ``paths``: each a run folder or a directory holding some."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ResultsError(f"{p}: no such file or directory")
        if (p / "run.json").exists():
            runs.append(p)
            continue
        found = sorted(q.parent for q in p.rglob("run.json"))
        if not found:
            raise ResultsError(f"{p}: holds no convbench run (no run.json below it)")
        runs.extend(found)
    return runs


def load(paths: str | Path | Iterable[str | Path], samples: bool = False) -> pd.DataFrame:
    """One DataFrame of the cases of every run under ``paths`` (or their raw samples).

    Adds the columns ``run`` (folder name), ``run_dir``, ``started`` and ``host`` (the
    hostname of the machine that ran the row: ``environment.hosts[host_id]`` in fleet and
    merged runs, else the run's own).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    frames = []
    for run in find_runs(paths):
        record = read_run(run)
        frame = read_table(run, "samples" if samples else "cases")
        if frame is None:  # nothing finished yet
            continue
        frame.insert(0, "run", run.name)
        frame.insert(1, "run_dir", str(run))
        frame["started"] = record.started
        frame["host"] = record.hostname
        names = record.host_names()
        if names and "host_id" in frame:  # fleet or merged run: each row's own machine
            own = frame["host_id"].map(names)
            frame["host"] = own.where(own.notna(), record.hostname)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "run_dir", *(SAMPLE_COLUMNS if samples else CASE_COLUMNS)])
    return pd.concat(frames, ignore_index=True)
