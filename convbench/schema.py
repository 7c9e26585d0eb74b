"""The result tables' columns and their declared types, without pandas or pyarrow.

The one home of the columns of ``cases.parquet`` and ``samples.parquet``, their
declared types (by pyarrow's names) and the schema fingerprint a worker says in its
hello: a worker process needs them to build its rows, and importing pandas and pyarrow
for that cost every worker start ~0.2 s. :mod:`convbench.results` builds the pyarrow
schemas from them and stores and reads the tables.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

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
    + ["speed_compute", "speed_memory"]  # the speed probe against the machine's reference (convbench.speed_probe)
    # GPU cases (convbench.worker, docs/gpu.md): host wall time beside device events, the
    # launch-bound flag, clocks/temperature/throttling (convbench.gpuclocks), which peak
    # the roofline used and whether the timing was warm or cold cache (convbench.peaks)
    + ["host_median", "host_ci_low", "host_ci_high", "device_median", "host_device_ratio", "launch_bound"]
    + ["gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_temperature_c", "gpu_power_w", "gpu_throttled", "gpu_throttle_reasons"]
    + ["roofline_peak", "cache_state"]
)

SAMPLE_COLUMNS = [
    "case_id", "index", "seconds", "ratio", "process", "side",
    # per sample (per round when interleaved): used by the statistics, judged contended,
    # its wall and own CPU seconds, and the machine's load (convbench.contention.Load)
    "kept", "contended", "wall", "cpu", "foreign_cpu", "steal", "cpu_pressure", "runnable", "freq_mhz",
    "page_faults",  # per iteration of the sample
    "speed_compute", "speed_memory",  # the speed probe after the sample (convbench.speed_probe)
    "host_seconds",  # per iteration, host wall clock, of a device-timed sample (else None)
]  # fmt: skip

#: Declared types of the columns of cases.parquet and samples.parquet (every other
#: column of CASE_COLUMNS / SAMPLE_COLUMNS is a float64). Readers check a table against
#: them by kind (see :func:`check_table`): an integer column read back as float64 (a
#: missing value made pandas write it so) is fine, a string where numbers belong is not.
_STRING_COLUMNS = frozenset(
    ["case_id", "suite", "kind", "params", "workload", "variant", "backend", "device", "mode", "dtype", "layout", "execution"]
    + ["status", "reason", "verify_worst", "timer", "baseline", "details", "finished_at", "roofline_limit"]
    + ["host_id", "device_label", "attempts", "contention", "side", "gpu_throttle_reasons", "roofline_peak", "cache_state"]
)
_INT_COLUMNS = frozenset(
    ["batch", "threads", "n", "inner", "warmup_iters", "rounds", "processes", "macs", "executed_macs", "flops", "bytes"]
    + ["param_count", "worker_pid", "dropped", "index", "process", "runnable"]
)
_BOOL_COLUMNS = frozenset(["converged", "contended", "threads_all_cores", "launch_bound", "gpu_throttled", "kept"])


def declared_type(column: str) -> str:
    """The pyarrow type name of ``column`` (``pyarrow.type_for_alias`` makes the type)."""
    if column in _STRING_COLUMNS:
        return "large_string"
    if column in _INT_COLUMNS:
        return "int64"
    if column in _BOOL_COLUMNS:
        return "bool"
    return "double"


#: Fingerprint of the result schema (column names and declared types): a worker says it
#: in its hello, and a runner refuses a worker whose rows it could not store (another
#: convbench version in its interpreter).
SCHEMA_ID = hashlib.sha256(
    " ".join([*(f"{c}:{declared_type(c)}" for c in CASE_COLUMNS), "|", *(f"{c}:{declared_type(c)}" for c in SAMPLE_COLUMNS)]).encode()
).hexdigest()[:12]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def empty_row(case: Case) -> dict[str, Any]:
    """A row with every column, filled with the case's keys."""
    row: dict[str, Any] = dict.fromkeys(CASE_COLUMNS)
    row.update(case.key())
    row.update(case_id=case.case_id, suite=case.suite, kind=case.kind, params=json.dumps(case.params, sort_keys=True))
    return row
