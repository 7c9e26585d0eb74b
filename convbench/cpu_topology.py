"""CPU clusters (big.LITTLE) and pinning a worker to some of them.

A *cluster* is a set of CPUs with the same core type and speed: on Linux the per-CPU
``CPU implementer``/``CPU part`` of ``/proc/cpuinfo`` together with
``/sys/devices/system/cpu/cpuN/cpufreq/cpuinfo_max_freq`` and ``cpu_capacity``; on macOS
the ``hw.perflevelN`` sysctls (Apple's performance and efficiency cores). Clusters are
ordered fastest first and named ``cluster0``, ``cluster1``, ...; where there are two or
more, ``big`` is the fastest and ``little`` the slowest.

Every parser here is a pure function of text; the readers take a root directory so the
tests can point them at a fake ``/proc`` and ``/sys``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Names a ``--cpus`` option accepts besides ``clusterN`` and a CPU list.
CLUSTER_ALIASES = ("big", "little")


class CpuSpecError(ValueError):
    """A ``--cpus`` value that names no CPU or cluster of this machine."""


# -- CPU lists --------------------------------------------------------------------------
#: Largest CPU number Linux supports (NR_CPUS is at most 8192).
MAX_CPU_INDEX = 8191


def parse_cpu_list(text: str) -> list[int]:
    """CPUs of a kernel-style list (``0-3,6``) in ascending order; raises ValueError."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r}: {part!r} is not N or N-M")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"bad CPU list {text!r}: range {part!r} runs backwards")
        if last > MAX_CPU_INDEX:
            raise ValueError(f"bad CPU list {text!r}: CPU {last} is past the largest a Linux kernel numbers ({MAX_CPU_INDEX})")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError(f"bad CPU list {text!r}: no CPU")
    return sorted(cpus)


def format_cpu_list(cpus: list[int] | set[int]) -> str:
    """The kernel-style list of ``cpus`` (``[0, 1, 2, 3, 6]`` -> ``0-3,6``)."""
    out: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


# -- Linux --------------------------------------------------------------------------------
def parse_cpuinfo_processors(text: str) -> dict[int, dict[str, str]]:
    """Per ``processor`` block of ``/proc/cpuinfo``: its fields (lower-case keys)."""
    out: dict[int, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current.get("processor", "").isdigit():
                out[int(current["processor"])] = current
            current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip().lower()] = value.strip()
    return out


def _code(text: str | None) -> int | None:
    try:
        return int(text, 0) if text else None
    except ValueError:
        return None


def core_name(implementer: str | None, part: str | None) -> str | None:
    """A core's name from its cpuinfo codes (``0x41``, ``0xd0b`` -> ``Cortex-A76``)."""
    from convbench.arm_parts import ARM_PARTS

    impl, code = _code(implementer), _code(part)
    if code is None:
        return None
    return ARM_PARTS.get((impl, code), part)


def group_clusters(
    processors: dict[int, dict[str, str]],
    max_khz: dict[int, int | None] | None = None,
    capacity: dict[int, int | None] | None = None,
) -> list[dict[str, Any]]:
    """Clusters from per-CPU facts: CPUs sharing part, max frequency and capacity.

    ``processors`` as from :func:`parse_cpuinfo_processors`; ``max_khz`` and
    ``capacity`` per CPU (missing or None: unknown). Each cluster is a dict with
    ``name``, ``cpus`` (kernel-style list), ``cpu_list``, ``count``, ``part`` (decoded
    core name or code, None on x86), ``part_code``, ``max_mhz`` and ``capacity``;
    fastest first (capacity, then frequency), named as the module docstring says.
    """
    max_khz, capacity = max_khz or {}, capacity or {}
    groups: dict[tuple[Any, ...], list[int]] = {}
    for cpu in sorted(processors):
        info = processors[cpu]
        key = (
            info.get("cpu implementer"),
            info.get("cpu part"),
            max_khz.get(cpu),
            capacity.get(cpu),
        )
        groups.setdefault(key, []).append(cpu)

    def speed(item: tuple[tuple[Any, ...], list[int]]) -> tuple[int, int, int]:
        (_, _, khz, cap), cpus = item
        return (-(cap or 0), -(khz or 0), cpus[0])

    clusters = []
    for (impl, part, khz, cap), cpus in sorted(groups.items(), key=speed):
        clusters.append(
            {
                "name": f"cluster{len(clusters)}",
                "cpus": format_cpu_list(cpus),
                "cpu_list": cpus,
                "count": len(cpus),
                "part": core_name(impl, part),
                "part_code": part,
                "max_mhz": khz / 1000 if khz else None,
                "capacity": cap,
            }
        )
    return name_clusters(clusters)


def name_clusters(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds ``alias`` (big / little / None) to clusters ordered fastest first."""
    for i, cluster in enumerate(clusters):
        cluster["alias"] = None
        if len(clusters) > 1 and i == 0:
            cluster["alias"] = "big"
        elif len(clusters) > 1 and i == len(clusters) - 1:
            cluster["alias"] = "little"
    return clusters


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def linux_clusters(root: str | Path = "/") -> list[dict[str, Any]]:
    """The clusters of a Linux machine whose ``/proc`` and ``/sys`` are under ``root``."""
    root = Path(root)
    try:
        processors = parse_cpuinfo_processors((root / "proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        processors = {}
    sysfs = root / "sys/devices/system/cpu"
    if not processors:  # no cpuinfo (or no processor blocks): the CPUs sysfs lists
        online = sorted(int(p.name[3:]) for p in sysfs.glob("cpu[0-9]*") if p.name[3:].isdigit())
        processors = {cpu: {} for cpu in online}
    max_khz = {cpu: _read_int(sysfs / f"cpu{cpu}/cpufreq/cpuinfo_max_freq") for cpu in processors}
    capacity = {cpu: _read_int(sysfs / f"cpu{cpu}/cpu_capacity") for cpu in processors}
    return group_clusters(processors, max_khz, capacity)


# -- macOS --------------------------------------------------------------------------------
def parse_sysctl(text: str) -> dict[str, str]:
    """``sysctl NAME...`` output (``name: value`` lines) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def darwin_clusters(sysctl: dict[str, str]) -> list[dict[str, Any]]:
    """Clusters from the ``hw.perflevelN.*`` sysctls (0 = the fastest, on Apple Silicon).

    macOS neither numbers the CPUs of a level nor lets a process pin itself, so
    ``cpus``/``cpu_list`` are None; ``count`` is the level's logical CPUs.
    """
    levels = _code(sysctl.get("hw.nperflevels")) or 0
    clusters = []
    for level in range(levels):
        prefix = f"hw.perflevel{level}."
        count = _code(sysctl.get(prefix + "logicalcpu"))
        clusters.append(
            {
                "name": f"cluster{level}",
                "cpus": None,
                "cpu_list": None,
                "count": count,
                "part": sysctl.get(prefix + "name"),
                "part_code": None,
                "max_mhz": None,
                "capacity": None,
            }
        )
    return name_clusters(clusters)


def _darwin_sysctl() -> dict[str, str]:
    names = ["hw.nperflevels"]
    for level in range(4):
        names += [f"hw.perflevel{level}.name", f"hw.perflevel{level}.logicalcpu"]
    # One sysctl per name: an unknown name fails the whole command.
    out: dict[str, str] = {}
    for name in names:
        try:
            done = subprocess.run(
                ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.strip():
            out[name] = done.stdout.strip()
    return out


def clusters() -> list[dict[str, Any]]:
    """This machine's CPU clusters (empty when unknown)."""
    system = platform.system()
    if system == "Linux":
        return linux_clusters("/")
    if system == "Darwin":
        return darwin_clusters(_darwin_sysctl())
    return []


# -- pinning ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pinning:
    """The CPUs a worker is pinned to, and the cluster named (None for a plain list)."""

    spec: str
    cpus: tuple[int, ...]
    cluster: str | None = None
    part: str | None = None

    @property
    def cpu_text(self) -> str:
        return format_cpu_list(list(self.cpus))

    def record(self) -> dict[str, Any]:
        """What run.json keeps (``options.cpus`` and the environment)."""
        return {
            "spec": self.spec,
            "cpus": self.cpu_text,
            "count": len(self.cpus),
            "cluster": self.cluster,
            "part": self.part,
        }


def _describe(clusters: list[dict[str, Any]]) -> str:
    if not clusters:
        return "no clusters known"
    return "; ".join(
        f"{c['name']}{'/' + c['alias'] if c.get('alias') else ''} = cpus {c['cpus']}"
        + (f" ({c['part']})" if c.get("part") else "")
        for c in clusters
    )


def resolve_cpus(
    spec: str, clusters: list[dict[str, Any]], available: set[int], option: str = "--cpus"
) -> Pinning:
    """The CPUs ``spec`` names: ``big``, ``little``, ``clusterN`` or a list like ``0-3``.

    ``available`` is the set of CPUs this process may use; a CPU outside it, an unknown
    cluster, or a single-cluster machine asked for big/little raises :class:`CpuSpecError`
    naming ``option``.
    """
    spec = spec.strip()
    by_name = {c["name"]: c for c in clusters}
    by_name.update({c["alias"]: c for c in clusters if c.get("alias")})
    cluster = by_name.get(spec)
    if cluster is None and (spec in CLUSTER_ALIASES or spec.startswith("cluster")):
        why = "this machine has a single cluster" if len(clusters) == 1 else "no such cluster"
        raise CpuSpecError(f"{option} {spec}: {why} ({_describe(clusters)})")
    if cluster is not None:
        if not cluster.get("cpu_list"):
            raise CpuSpecError(
                f"{option} {spec}: this platform does not say which CPUs form {cluster['name']}, so it cannot be pinned"
            )
        cpus = list(cluster["cpu_list"])
    else:
        try:
            cpus = parse_cpu_list(spec)
        except ValueError as exc:
            raise CpuSpecError(
                f"{option} {spec}: expected big, little, clusterN or a CPU list like 0-3,6 ({exc})"
            ) from None
    missing = sorted(set(cpus) - available)
    if missing:
        raise CpuSpecError(
            f"{option} {spec}: CPU(s) {format_cpu_list(missing)} not available to this process (available: {format_cpu_list(available)})"
        )
    part = cluster["part"] if cluster is not None else None
    if cluster is None:  # a plain list that is exactly one cluster still names it
        match = next(
            (c for c in clusters if c.get("cpu_list") and set(c["cpu_list"]) == set(cpus)), None
        )
        if match is not None and len(clusters) > 1:
            cluster, part = match, match["part"]
    name = (cluster.get("alias") or cluster["name"]) if cluster is not None else None
    return Pinning(spec=spec, cpus=tuple(cpus), cluster=name, part=part)


def pin_current_process(cpus: list[int] | tuple[int, ...]) -> None:
    """Restrict this process (and threads it starts later) to ``cpus`` (Linux only)."""
    if not hasattr(os, "sched_setaffinity"):
        raise CpuSpecError(
            "--cpus: pinning needs os.sched_setaffinity (Linux); this platform has none"
        )
    os.sched_setaffinity(0, set(cpus))


def available_cpus() -> set[int]:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))
