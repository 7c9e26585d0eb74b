"""What machine and software a run saw, as flat facts, and what differs between runs.

Read from run records (:mod:`convbench.run_record`) for the environment table of
``compare`` and ``ab`` and for the headers of their renderings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convbench.display import show
from convbench.run_record import RunRecord, as_record

#: run.json ``environment.core`` fields that say which machine and software a run saw.
CORE_FIELDS = (
    "hostname", "cpu", "cpu_vendor", "cpu_physical_cores", "cpu_logical_cores", "cpu_usable_cores",
    "cpu_cgroup_quota", "cpu_max_mhz", "memory_total_bytes", "os_release", "kernel", "architecture",
    "python_version", "python_implementation", "numpy_version", "convbench_version",
)  # fmt: skip
#: backend info fields left out of the difference: paths differ between checkouts, and
#: ``peaks`` are measurements taken by the run (convbench.peaks), not facts about it.
BACKEND_IGNORED = ("python", "reason", "name", "peaks")


def environment_facts(meta: RunRecord | dict[str, Any]) -> dict[str, str]:
    """Flat ``{field: shown value}`` of what machine and software a run saw."""
    record = as_record(meta)
    core = record.core
    recorded = core.model_fields_set | set(core.model_extra or {})
    facts = {f: show(core.get(f)) for f in CORE_FIELDS if f in recorded}
    for name, value in (core.thread_env or {}).items():
        facts[f"env.{name}"] = show(value)
    if "gpus" in recorded:
        gpus = core.gpus
        facts["gpus"] = "none" if not gpus else "; ".join(f"{g.get('name')} (driver {g.get('driver_version')})" for g in gpus)
    for key, info in sorted(record.environment.backends.items()):
        if not isinstance(info, dict):
            continue
        for f, value in info.items():
            if f in BACKEND_IGNORED:
                continue
            if f == "environment" and isinstance(value, dict):
                for ef, ev in value.items():
                    facts[f"{key}.{ef}"] = show(ev)
            else:
                facts[f"{key}.{f}"] = show(value)
    for f, value in record.timing.items():
        facts[f"timing.{f}"] = show(value)
    return facts


def _side_facts(metas: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Facts of several runs: one value, or the distinct values joined with ' | '."""
    merged: dict[str, list[str]] = {}
    for meta in metas:
        for k, v in environment_facts(meta).items():
            merged.setdefault(k, [])
            if v not in merged[k]:
                merged[k].append(v)
    return {k: " | ".join(v) for k, v in merged.items()}


def environment_diff(base_metas: Sequence[dict[str, Any]], new_metas: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """``[{"field", "base", "new"}]`` for every fact that differs between the sides
    (CPU, memory, OS, GPUs and driver, Python and library versions, each backend's
    framework version and build facts, thread variables, timing options); a fact only
    one side recorded shows ``absent`` on the other."""
    base, new = _side_facts(base_metas), _side_facts(new_metas)
    rows = []
    for key in dict.fromkeys([*base, *new]):
        b, n = base.get(key, "absent"), new.get(key, "absent")
        if b != n:
            rows.append({"field": key, "base": b, "new": n})
    return rows


def run_info(meta: RunRecord | dict[str, Any]) -> dict[str, Any]:
    """Name, folder, suite, start time and git revision of a run (for headers)."""
    record = as_record(meta)
    return {
        "name": record.get("_name"),
        "dir": record.get("_dir"),
        "suite": record.suite,
        "started": record.started,
        "git_revision": record.core.git_revision,
        "git_dirty": record.core.git_dirty,
        "host": record.core.hostname,
    }
