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
* ``logs/``: each worker's stderr.

Runs made on a fleet (:mod:`convbench.fleet`) or merged (:mod:`convbench.merge`) also
hold ``environment.hosts`` in ``run.json``: ``{host_id: {core, backends, ...}}``, one
entry per machine; each row names its machine in ``host_id``, the device resource it
ran on in ``device_label`` and its attempts (JSON list, fleet retries) in ``attempts``.

Every write goes to a temporary file that replaces the old one (``os.replace``), so an
interrupted run always leaves readable files holding every case finished so far.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from convbench.cases import KEY_FIELDS, Case

STATUSES = ("ok", "mismatch", "skipped", "error")

#: Columns of cases.parquet, in order (keys first).
CASE_COLUMNS = (
    ["case_id", "suite", "kind", "params", *KEY_FIELDS]
    + ["status", "reason", "verify_error", "verify_tolerance", "verify_worst"]
    + ["timer", "median", "q1", "q3", "iqr", "ci_low", "ci_high", "mean", "stdev", "min", "max"]
    + ["n", "inner", "converged", "warmup_iters", "timing_seconds"]
    + ["baseline", "ratio", "ratio_ci_low", "ratio_ci_high", "rounds", "processes", "process_spread"]
    + ["macs", "executed_macs", "flops", "bytes", "param_count"]
    + ["throughput", "gflops", "gbps", "peak_memory", "details", "worker_pid", "finished_at"]
    + ["roofline_bound", "roofline_limit", "roofline_fraction"]  # see convbench.peaks
    + ["host_id", "device_label", "attempts"]  # fleet and merged runs: see convbench.fleet
    # contention telemetry and the quiet guard (convbench.contention, convbench.timing.Guard)
    + ["contended", "contention", "foreign_cpu", "steal", "cpu_pressure", "dropped", "quiet_wait", "threads_all_cores"]
    + ["side"]  # `convbench ab`: base or new (None in a plain run)
    + ["page_faults"]  # median page faults per iteration (convbench.allocator)
)

SAMPLE_COLUMNS = [
    "case_id", "index", "seconds", "ratio", "process", "side",
    # per sample (per round when interleaved): used by the statistics, judged contended,
    # its wall and own CPU seconds, and the machine's load (convbench.contention.Load)
    "kept", "contended", "wall", "cpu", "foreign_cpu", "steal", "cpu_pressure", "runnable", "freq_mhz",
    "page_faults",  # per iteration of the sample
]  # fmt: skip

#: Fingerprint of the result schema: a worker says it in its hello, and a runner refuses
#: a worker whose rows it could not store (another convbench version in its interpreter).
SCHEMA_ID = hashlib.sha256(" ".join([*CASE_COLUMNS, "|", *SAMPLE_COLUMNS]).encode()).hexdigest()[:12]


class ResultsError(Exception):
    """A results path is missing, unreadable or not a convbench run."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write(path: Path, write) -> None:  # noqa: ANN001 - write(tmp_path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def empty_row(case: Case) -> dict[str, Any]:
    """A row with every column, filled with the case's keys."""
    row: dict[str, Any] = dict.fromkeys(CASE_COLUMNS)
    row.update(case.key())
    row.update(case_id=case.case_id, suite=case.suite, kind=case.kind, params=json.dumps(case.params, sort_keys=True))
    return row


def _cases_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(CASE_COLUMNS))
    for col in ("details", "attempts"):
        frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str))
    return frame


class RunFolder:
    """A run folder being written: rows and samples are persisted as each case ends."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta
        self.rows: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []

    # -- creation and reopening -------------------------------------------------------
    @classmethod
    def create(cls, path: Path, meta: dict[str, Any]) -> RunFolder:
        path = Path(path)
        if (path / "run.json").exists():
            raise ResultsError(f"{path}: already holds a run; use --resume {path} to finish it")
        (path / "logs").mkdir(parents=True, exist_ok=True)
        folder = cls(path, {**meta, "status": "running", "started": now_iso()})
        folder.save_meta()
        return folder

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """Reopen a run folder to resume it: keeps every finished case."""
        path = Path(path)
        meta = read_meta(path)
        folder = cls(path, meta)
        cases = path / "cases.parquet"
        if cases.exists():
            folder.rows = pd.read_parquet(cases).astype(object).where(lambda f: f.notna(), None).to_dict("records")
        samples = path / "samples.parquet"
        if samples.exists():
            folder.samples = pd.read_parquet(samples).to_dict("records")
        (path / "logs").mkdir(exist_ok=True)
        return folder

    # -- writing ----------------------------------------------------------------------
    def save_meta(self) -> None:
        write_json(self.path / "run.json", self.meta)

    def finished_ids(self) -> set[str]:
        return {r["case_id"] for r in self.rows}

    def add(self, row: dict[str, Any], samples: Iterable[dict[str, Any]] = (), replaces: str | None = None) -> None:
        """Record one finished case (replacing any row of the same case id, and the row
        ``replaces`` names) and persist both tables atomically."""
        unknown = set(row) - set(CASE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)}")
        side = row.get("side")
        drop = {(row["case_id"], side), (replaces, side)}
        self.rows = [r for r in self.rows if (r["case_id"], r.get("side")) not in drop] + [row]
        self.samples = [s for s in self.samples if (s["case_id"], s.get("side")) not in drop] + list(samples)
        frame = _cases_frame(self.rows)
        _atomic_write(self.path / "cases.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
        sframe = pd.DataFrame(self.samples, columns=SAMPLE_COLUMNS)
        _atomic_write(self.path / "samples.parquet", lambda tmp: sframe.to_parquet(tmp, index=False))

    def finish(self, status: str) -> None:
        self.meta.update(status=status, finished=now_iso())
        self.save_meta()

    def frame(self) -> pd.DataFrame:
        return _cases_frame(self.rows)


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = Path(path) / "run.json"
    if not meta_path.exists():
        raise ResultsError(f"{path}: not a convbench run folder (no run.json)")
    try:
        return json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{meta_path}: unreadable run.json ({exc})") from exc


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
        meta = read_meta(run)
        name = "samples.parquet" if samples else "cases.parquet"
        file = run / name
        if not file.exists():
            continue
        try:
            frame = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise ResultsError(f"{file}: unreadable ({exc})") from exc
        env = meta.get("environment", {}).get("core", {})
        frame.insert(0, "run", run.name)
        frame.insert(1, "run_dir", str(run))
        frame["started"] = meta.get("started")
        frame["host"] = env.get("hostname")
        hosts = meta.get("environment", {}).get("hosts") or {}
        if hosts and "host_id" in frame:  # fleet or merged run: each row's own machine
            names = {h: (info or {}).get("core", {}).get("hostname") for h, info in hosts.items()}
            own = frame["host_id"].map(names)
            frame["host"] = own.where(own.notna(), env.get("hostname"))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "run_dir", *(SAMPLE_COLUMNS if samples else CASE_COLUMNS)])
    return pd.concat(frames, ignore_index=True)
