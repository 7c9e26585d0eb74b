"""Merge run folders made on different machines (or by a fleet) into one run folder.

Every row keeps the machine that ran it: ``host_id`` names an entry of the merged
``run.json``'s ``environment.hosts`` (that machine's ``core`` and ``backends``
environment and the run it came from). ``environment.core`` holds the facts every
machine shares; a fact that differs reads ``a | b`` (a flag is true if any machine's
is), so ``convbench compare`` and the report still show what differs. ``merged_from``
lists the sources. Two sources with the same case id and different results are a
conflict: an error unless a policy picks one (``first`` or ``last`` in argument order).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convbench import __version__
from convbench.results import (
    CASE_COLUMNS,
    TABLES,
    ResultsError,
    RunFolder,
    find_runs,
    read_run,
    read_table,
)

POLICIES = ("error", "first", "last")
#: Columns a merge may rewrite, left out when deciding whether two rows are the same result.
_REWRITTEN = {"host_id"}


class MergeError(ResultsError):
    """Bad merge input: unreadable sources, conflicting duplicates, an occupied output."""


def _read_table(run: Path, table: str, required: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of one table of ``run`` (in any state: see convbench.results.read_table)."""
    try:
        frame = read_table(run, table)
    except ResultsError as exc:
        raise MergeError(str(exc)) from None
    if frame is None:
        return []
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MergeError(f"{run / TABLES[table]}: not a convbench table (no column {', '.join(missing)})")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    return all(norm(a.get(c)) == norm(b.get(c)) for c in CASE_COLUMNS if c not in _REWRITTEN)


def _combined_core(cores: list[dict[str, Any]]) -> dict[str, Any]:
    """Facts all machines share; differing facts joined ``a | b`` (flags: any)."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for core in cores for k in core):
        values = [core.get(key) for core in cores]
        distinct = list({json.dumps(v, sort_keys=True, default=str): v for v in values}.values())
        if len(distinct) == 1:
            out[key] = distinct[0]
        elif all(isinstance(v, bool) or v is None for v in distinct):
            out[key] = any(distinct)
        else:
            out[key] = " | ".join(
                v if isinstance(v, str) else json.dumps(v, default=str) for v in distinct
            )
    return out


class _Source:
    """One input run: its meta, rows, samples, and its machines under merged host ids."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.record = read_run(path)
        self.rows = _read_table(path, "cases", ["case_id", "status"])
        self.samples = _read_table(path, "samples", ["case_id", "seconds"])
        env = self.record.environment
        self.own_host = env.core.hostname or path.name
        self.fleet = bool(env.hosts)  # a fleet or merged run: its rows name their machines
        if self.fleet:
            hosts = {h: info.to_dict() for h, info in env.hosts.items()}
        else:
            hosts = {self.own_host: {"core": env.core.to_dict(), "backends": dict(env.backends)}}
        self.hosts: dict[str, dict[str, Any]] = hosts
        self.host_map: dict[str, str] = {}
        self.samples_of: dict[str, list[dict[str, Any]]] = {}
        for sample in self.samples:
            self.samples_of.setdefault(sample["case_id"], []).append(sample)

    def host_of(self, row: dict[str, Any]) -> str | None:
        """The merged host id of a row (None: a fleet row that never reached a machine)."""
        hid = row.get("host_id") or (None if self.fleet else self.own_host)
        return self.host_map.get(hid, hid) if hid else None


def merge_runs(
    paths: Sequence[str | Path], out: str | Path, on_duplicate: str = "error"
) -> RunFolder:
    """Merge the runs under ``paths`` into a new run folder ``out``; see the module doc."""
    if on_duplicate not in POLICIES:
        raise MergeError(
            f"unknown duplicate policy {on_duplicate!r} (expected one of {', '.join(POLICIES)})"
        )
    unique: dict[Path, Path] = {}
    for p in find_runs(paths):
        unique.setdefault(p.resolve(), p)
    out = Path(out)
    if out.resolve() in unique:
        raise MergeError(f"{out}: is one of the runs being merged; give a new folder to -o")
    if (out / "run.json").exists():
        raise MergeError(f"{out}: already holds a run; give a new folder to -o")
    sources = [_Source(p) for p in unique.values()]

    hosts: dict[str, dict[str, Any]] = {}
    for src in sources:
        for hid, info in src.hosts.items():
            new, n = hid, 1
            while new in hosts and json.dumps(
                hosts[new].get("core"), sort_keys=True, default=str
            ) != json.dumps(info.get("core"), sort_keys=True, default=str):
                n += 1
                new = f"{hid}@{src.path.name}" if n == 2 else f"{hid}@{src.path.name}-{n}"
            src.host_map[hid] = new
            hosts.setdefault(new, {**info, "source": str(src.path)})

    chosen: dict[str, tuple[dict[str, Any], _Source]] = {}
    conflicts: list[str] = []
    for src in sources:
        for row in src.rows:
            row = {c: row.get(c) for c in CASE_COLUMNS}
            row["host_id"] = src.host_of(row)
            cid = row["case_id"]
            if cid in chosen and not _same(chosen[cid][0], row):
                if on_duplicate == "error":
                    conflicts.append(
                        f"{cid} ({chosen[cid][1].path / 'cases.parquet'} and {src.path / 'cases.parquet'})"
                    )
                    continue
                if on_duplicate == "first":
                    continue
            chosen[cid] = (row, src)
    if conflicts:
        shown = "; ".join(conflicts[:5]) + (
            f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        )
        raise MergeError(
            f"{len(conflicts)} case ids have different results in two runs: {shown}. Pass --on-duplicate first|last to keep one"
        )

    rows = [row for row, _ in chosen.values()]
    samples = [s for row, src in chosen.values() for s in src.samples_of.get(row["case_id"], [])]
    records = [s.record for s in sources]
    suites = list(dict.fromkeys(str(r.suite) for r in records))
    planned = list({json.dumps(c, sort_keys=True): c for r in records for c in r.cases}.values())
    backends: dict[str, Any] = {}
    for info in hosts.values():
        for key, value in (info.get("backends") or {}).items():
            backends.setdefault(key, value)
    first = records[0]
    meta = {
        "suite": suites[0] if len(suites) == 1 else "merged",
        "suites": suites,
        "suite_path": first.suite_path if len(suites) == 1 else None,
        "suite_text": first.suite_text if len(suites) == 1 else None,
        "preset": first.preset if len({r.preset for r in records}) == 1 else None,
        "filter": None,
        "convbench_version": __version__,
        "options": first.options.to_dict(),
        "cases": planned,
        "environment": {
            "core": _combined_core([h.get("core") or {} for h in hosts.values()]),
            "backends": backends,
            "hosts": hosts,
        },
        "merged_from": [
            {
                "path": str(s.path),
                "name": s.path.name,
                "suite": s.record.suite,
                "preset": s.record.preset,
                "status": s.record.status,
                "started": s.record.started,
                "finished": s.record.finished,
                "hosts": sorted(set(s.host_map.values())),
                "cases": len(s.rows),
                "options": s.record.options.to_dict() if "options" in s.record.model_fields_set else None,
            }  # fmt: skip
            for s in sources
        ],
    }
    folder = RunFolder.create(out, meta)
    folder.rows, folder.samples = rows, samples
    folder.compact()
    for src in sources:
        if (src.path / "logs").is_dir():
            shutil.copytree(src.path / "logs", out / "logs" / src.path.name, dirs_exist_ok=True)
    starts = [r.started for r in records if r.started]
    ends = [r.finished for r in records if r.finished]
    folder.meta.update(started=min(starts) if starts else folder.meta["started"])
    folder.meta["status"] = (
        "complete" if all(r.status == "complete" for r in records) else "incomplete"
    )
    folder.meta["finished"] = max(ends) if ends else None
    folder.save_meta()
    return folder
