"""pytest-benchmark interop: import its JSON into a run folder, export a run to its JSON.

pytest-benchmark's JSON (``--benchmark-json FILE``, or ``--benchmark-save`` with
``--benchmark-save-data``) holds ``machine_info``, ``commit_info``, ``datetime``,
``version`` and ``benchmarks``: each with ``name``, ``fullname``, ``group``, ``param``,
``params``, ``extra_info``, ``options`` and ``stats`` (``min max mean stddev rounds median
iqr q1 q3 iqr_outliers stddev_outliers outliers ld15iqr hd15iqr ops total iterations``,
and ``data``, the per-iteration seconds of each round, when it was saved).

Import mapping (one benchmark -> one case and its row)
    ``workload`` = fullname (or name), ``kind`` = ``backend`` = ``pytest-benchmark``,
    ``variant`` ``native``, ``device`` ``cpu``, ``mode`` ``inference``, ``batch`` 1, the
    other key fields at their defaults and ``threads`` unknown (None); ``params`` keeps
    name, fullname, group, param, params, extra_info and options; the row takes the
    file's statistics (rounds -> ``n``, iterations -> ``inner``, stddev -> ``stdev``), the
    timer from the options, the CI of the median from ``data`` (when saved), and
    ``details`` keeps the other statistics; ``data`` becomes the raw samples. run.json
    takes ``datetime`` as start, ``machine_info``/``commit_info`` mapped into
    ``environment.core`` and kept verbatim under ``pytest_benchmark``. Without ``data``
    a case has no samples, and ``convbench compare`` cannot test it ("not tested").

Export mapping (one timed case -> one benchmark)
    An imported case gets its original names, options and statistics back. Any other
    case: ``name`` = ``WORKLOAD[variant-backend-device-mode-bBATCH-dtype-layout-execution-tTHREADS]``,
    ``fullname`` = ``SUITE::name``, ``group`` = the case without its variant (so
    pytest-benchmark shows variants side by side), ``params`` the key fields,
    ``extra_info`` the case id, MACs, achieved GFLOP/s, verification error and the
    interleaved ratio; ``stats`` computed from the raw samples as pytest-benchmark does
    (its quartile method), with ``data``. Cases that were not timed (skipped, error,
    mismatch, verify-only) are left out, as pytest-benchmark leaves out failed tests.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from convbench import __version__
from convbench.cases import KEY_FIELDS, Case
from convbench.display import is_number
from convbench.results import ResultsError, RunFolder, check_rows, empty_row, find_runs, read_run
from convbench.run_record import RunRecord, validate
from convbench.timing import summarize

__all__ = ["InteropError", "export_pytest_benchmark", "import_pytest_benchmark", "pytest_benchmark_stats"]

BACKEND = "pytest-benchmark"
#: pytest-benchmark version written into exported files (the format we follow).
FORMAT_VERSION = "5.3.1"
STAT_FIELDS = ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers", "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total")
REQUIRED_STATS = ("min", "max", "mean", "median", "rounds")
BENCH_META = ("name", "fullname", "group", "param", "params", "extra_info", "options")


class InteropError(ResultsError):
    """A pytest-benchmark file or a run cannot be converted (message names file and field)."""


# --------------------------------------------------------------------------- statistics
def _q1(data: Sequence[float]) -> float:
    n = len(data)
    if n == 1:
        return data[0]
    if n % 2:
        k, q = n // 4, n % 4
        return 0.25 * data[k - 1] + 0.75 * data[k] if q == 1 else 0.75 * data[k] + 0.25 * data[k + 1]
    return statistics.median(data[: n // 2])


def _q3(data: Sequence[float]) -> float:
    n = len(data)
    if n == 1:
        return data[0]
    if n % 2:
        k, q = n // 4, n % 4
        return 0.75 * data[3 * k] + 0.25 * data[3 * k + 1] if q == 1 else 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return statistics.median(data[n // 2 :])


def pytest_benchmark_stats(samples: Sequence[float]) -> dict[str, Any]:
    """The ``stats`` fields pytest-benchmark computes from per-iteration ``samples``
    (its quartile methods, Tukey fences and outlier counts), without ``data``."""
    data = [float(x) for x in samples]
    if not data:
        raise ValueError("pytest_benchmark_stats needs at least one sample")
    s = sorted(data)
    n = len(s)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0
    q1, q3 = _q1(s), _q3(s)
    iqr = q3 - q1
    total = sum(data)
    return {
        "min": s[0],
        "max": s[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": sum(1 for v in data if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr),
        "stddev_outliers": sum(1 for v in data if v < mean - stddev or v > mean + stddev),
        "outliers": f"{sum(1 for v in data if v < mean - stddev or v > mean + stddev)};{sum(1 for v in data if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr)}",
        "ld15iqr": s[0] if n == 1 else s[bisect_left(s, q1 - 1.5 * iqr)],
        "hd15iqr": s[0] if n == 1 else s[bisect_right(s, q3 + 1.5 * iqr) - 1],
        "ops": n / total if total else 0,
        "total": total,
    }


# --------------------------------------------------------------------------- import
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InteropError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InteropError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise InteropError(f"{path}: not a pytest-benchmark file (expected an object with a 'benchmarks' list)")
    if not data["benchmarks"]:
        raise InteropError(f"{path}: 'benchmarks' is empty: nothing to import")
    return data


def _check_bench(path: Path, i: int, bench: Any) -> dict[str, Any]:
    where = f"{path}: benchmarks[{i}]"
    if not isinstance(bench, dict):
        raise InteropError(f"{where}: expected an object")
    if not (bench.get("fullname") or bench.get("name")):
        raise InteropError(f"{where}: needs 'fullname' or 'name'")
    stats = bench.get("stats")
    if not isinstance(stats, dict):
        raise InteropError(f"{where}: missing 'stats' object")
    for f in REQUIRED_STATS:
        if not is_number(stats.get(f)):
            raise InteropError(f"{where}.stats.{f}: expected a finite number, got {_shown(stats.get(f))}")
    for f in ("rounds", "iterations"):
        v = stats.get(f)
        if (f == "rounds" or v is not None) and not (is_number(v) and float(v).is_integer() and 0 < v < 2**63):
            raise InteropError(f"{where}.stats.{f}: expected a positive whole number below 2**63, got {_shown(v)}")
    for f in ("q1", "q3", "iqr", "stddev"):
        v = stats.get(f)
        if v is not None and not is_number(v):
            raise InteropError(f"{where}.stats.{f}: expected a finite number or nothing, got {_shown(v)}")
    data = stats.get("data")
    if data is not None and (not isinstance(data, list) or not all(is_number(x) for x in data)):
        raise InteropError(f"{where}.stats.data: expected a list of finite numbers (seconds per iteration)")
    for f in ("options", "params", "extra_info"):
        if bench.get(f) is not None and not isinstance(bench.get(f), dict):
            raise InteropError(f"{where}.{f}: expected an object, got {_shown(bench.get(f))}")
    for f in ("name", "fullname", "group", "param"):
        if bench.get(f) is not None and not isinstance(bench.get(f), str):
            raise InteropError(f"{where}.{f}: expected a string, got {_shown(bench.get(f))}")
    return bench


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _object(v: Any) -> dict[str, Any]:
    """``v`` if it is a JSON object, else {} (a wrongly typed optional field)."""
    return v if isinstance(v, dict) else {}


def _core_environment(doc: dict[str, Any]) -> dict[str, Any]:
    mi = _object(doc.get("machine_info"))
    ci = _object(doc.get("commit_info"))
    cpu = _object(mi.get("cpu"))
    return {
        "timestamp": doc.get("datetime"),
        "hostname": mi.get("node"),
        "os": mi.get("system"),
        "kernel": mi.get("release"),
        "architecture": mi.get("machine"),
        "cpu": cpu.get("brand_raw") or mi.get("processor") or None,
        "cpu_vendor": cpu.get("vendor_id_raw"),
        "cpu_logical_cores": cpu.get("count"),
        "python_version": mi.get("python_version"),
        "python_implementation": mi.get("python_implementation"),
        "git_revision": ci.get("id"),
        "git_dirty": ci.get("dirty"),
    }


def import_pytest_benchmark(path: str | Path, out: str | Path, suite: str | None = None) -> RunFolder:
    """Read pytest-benchmark JSON at ``path`` into a new run folder ``out`` (mapping in
    the module docstring). Raises InteropError (bad file) or ResultsError (``out``
    already holds a run)."""
    path, out = Path(path), Path(out)
    doc = _read_json(path)
    benches = [_check_bench(path, i, b) for i, b in enumerate(doc["benchmarks"])]
    suite = suite or BACKEND
    started = doc.get("datetime") if isinstance(doc.get("datetime"), str) else None
    rows, samples, cases = [], [], []
    seen: set[str] = set()
    for i, bench in enumerate(benches):
        name = str(bench.get("fullname") or bench.get("name"))
        params = {k: bench.get(k) for k in BENCH_META}
        case = Case(suite=suite, workload=name, kind=BACKEND, params=json.loads(json.dumps(params, default=str)), backend=BACKEND)
        if case.case_id in seen:
            raise InteropError(f"{path}: benchmarks[{i}]: {name!r} appears twice")
        seen.add(case.case_id)
        stats = bench["stats"]
        data = [float(x) for x in stats.get("data") or []]
        row = empty_row(case)
        row.update(
            status="ok", timer=str(_object(bench.get("options")).get("timer") or "perf_counter"),
            median=float(stats["median"]), q1=_float(stats.get("q1")), q3=_float(stats.get("q3")), iqr=_float(stats.get("iqr")),
            mean=float(stats["mean"]), stdev=_float(stats.get("stddev")), min=float(stats["min"]), max=float(stats["max"]),
            n=int(stats["rounds"]), inner=_int(stats.get("iterations")), finished_at=started,
            details=json.dumps({k: v for k, v in stats.items() if k != "data"}, default=str),
        )  # fmt: skip
        if data:
            s = summarize(data)
            row.update(ci_low=s.ci_low, ci_high=s.ci_high)
        if row["median"] > 0:
            row["throughput"] = 1 / row["median"]
        rows.append(row)
        samples.append([{"case_id": case.case_id, "index": j, "seconds": v, "ratio": None} for j, v in enumerate(data)])
        cases.append(case)
    meta = {
        "suite": suite,
        "suite_path": None,
        "convbench_version": __version__,
        "source": {"format": BACKEND, "file": str(path), "version": doc.get("version")},
        "cases": [c.model_dump() for c in cases],
        "environment": {
            "core": _core_environment(doc),
            "backends": {f"{BACKEND}:cpu": {"name": BACKEND, "available": True, "version": doc.get("version"), "devices": ["cpu"], "environment": {}}},
        },
        "pytest_benchmark": {k: doc.get(k) for k in ("machine_info", "commit_info", "datetime", "version")},
    }
    if (out / "run.json").exists():
        raise InteropError(f"{out}: already holds a run; import into a new folder")
    try:  # everything checked before the folder exists: a bad file leaves nothing behind
        check_rows(rows, [s for group in samples for s in group], path)
        validate(meta)
    except (ResultsError, ValueError) as exc:
        raise InteropError(f"{path}: cannot be stored as a run ({exc})") from None
    existed = out.exists()
    folder = RunFolder.create(out, meta)
    try:
        if started:
            folder.meta["started"] = started
        # One write of both tables: every row but the last in memory, then add() the last.
        folder.rows = rows[:-1]
        folder.samples = [s for group in samples[:-1] for s in group]
        folder.add(rows[-1], samples[-1])
        folder.meta.update(status="complete", finished=started or folder.meta["started"])
        folder.save_meta()
    except BaseException:
        folder.close()
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return folder


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# --------------------------------------------------------------------------- export
def _value(v: Any) -> Any:
    """JSON-friendly scalar: NaN -> None, numpy -> Python."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _plain(v: Any) -> Any:
    """``_value``, with integral floats (threads, batch read back from parquet) as ints."""
    v = _value(v)
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _bench_name(row: pd.Series) -> str:
    parts = [row["variant"], row["backend"], row["device"], row["mode"], f"b{_plain(row['batch'])}", row["dtype"], row["layout"], row["execution"]]
    threads = _plain(row.get("threads"))
    parts.append(f"t{threads}" if threads is not None else "t-")
    return f"{row['workload']}[{'-'.join(map(str, parts))}]"


def _machine_info(record: RunRecord) -> dict[str, Any]:
    stored = (record.pytest_benchmark or {}).get("machine_info")
    if stored:
        return stored
    core = record.core
    return {
        "node": core.get("hostname"),
        "processor": core.get("cpu") or "",
        "machine": core.get("architecture"),
        "python_compiler": "",
        "python_implementation": core.get("python_implementation"),
        "python_implementation_version": core.get("python_version"),
        "python_version": core.get("python_version"),
        "python_build": ["", ""],
        "release": core.get("kernel"),
        "system": core.get("os"),
        "cpu": {"brand_raw": core.get("cpu"), "vendor_id_raw": core.get("cpu_vendor"), "count": core.get("cpu_logical_cores")},
    }


def _commit_info(record: RunRecord) -> dict[str, Any]:
    stored = (record.pytest_benchmark or {}).get("commit_info")
    if stored:
        return stored
    core = record.core
    return {"id": core.git_revision or "unversioned", "time": None, "author_time": None, "dirty": bool(core.git_dirty), "project": "convbench", "branch": None}


def export_pytest_benchmark(run: str | Path, out: str | Path) -> tuple[Path, int, int]:
    """Write the timed cases of the run folder ``run`` as pytest-benchmark JSON at
    ``out``; returns (path, benchmarks written, cases left out). Raises ResultsError."""
    from convbench.results import load

    runs = find_runs([run])
    if len(runs) != 1:
        raise InteropError(f"{run}: holds {len(runs)} runs; export one run folder at a time")
    record = read_run(runs[0])
    cases, samples = load(runs[0]), load(runs[0], samples=True)
    if cases.empty:
        raise InteropError(f"{run}: no finished case to export")
    by_case = {cid: g.sort_values("index")["seconds"].tolist() for cid, g in samples.groupby("case_id")} if len(samples) else {}
    timing = record.timing
    benchmarks, left_out = [], 0
    for _, row in cases.iterrows():
        data = [float(x) for x in by_case.get(row["case_id"], []) if x == x and x > 0]
        imported = row.get("kind") == BACKEND and row.get("backend") == BACKEND
        original = json.loads(row["params"]) if imported and isinstance(row.get("params"), str) else {}
        if row["status"] != "ok" or not (data or (imported and isinstance(row.get("details"), str))):
            left_out += 1
            continue
        if data:
            stats = pytest_benchmark_stats(data)
        else:  # an imported case without data: its original statistics
            details = json.loads(row["details"])
            stats = {k: details.get(k) for k in STAT_FIELDS}
        stats["iterations"] = int(_value(row.get("inner")) or 1)
        if data:
            stats["data"] = data
        if original:
            bench = {k: original.get(k) for k in BENCH_META}
        else:
            name = _bench_name(row)
            bench = {
                "group": " ".join(str(_plain(row[f])) for f in KEY_FIELDS if f != "variant"),
                "name": name,
                "fullname": f"{row['suite']}::{name}",
                "params": {f: _plain(row[f]) for f in KEY_FIELDS if f != "workload"},
                "param": name[name.index("[") + 1 : -1],
                "extra_info": {
                    "convbench_case_id": row["case_id"],
                    "timer": _value(row.get("timer")),
                    "macs": _value(row.get("macs")),
                    "gflops": _value(row.get("gflops")),
                    "verify_error": _value(row.get("verify_error")),
                    "baseline": _value(row.get("baseline")),
                    "ratio_to_baseline": _value(row.get("ratio")),
                },
                "options": {
                    "disable_gc": False, "timer": _value(row.get("timer")), "min_rounds": timing.get("min_samples"),
                    "max_time": timing.get("max_time"), "min_time": timing.get("min_sample_time"), "warmup": True,
                },  # fmt: skip
            }
        bench["stats"] = stats
        benchmarks.append(bench)
    if not benchmarks:
        raise InteropError(f"{run}: no timed case to export ({left_out} cases were skipped, failed or not timed)")
    doc = {
        "machine_info": _machine_info(record),
        "commit_info": _commit_info(record),
        "benchmarks": benchmarks,
        "datetime": (record.pytest_benchmark or {}).get("datetime") or record.started,
        "version": (record.pytest_benchmark or {}).get("version") or FORMAT_VERSION,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=_value))
    return out, len(benchmarks), left_out
