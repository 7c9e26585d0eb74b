"""What machine and software a run saw.

:func:`capture` returns a flat, JSON-serialisable dict (``gpus`` is a list of dicts and
``thread_env`` a dict, ``cpu_clusters`` a list of dicts, see :mod:`convbench.cpu_topology`;
everything else is a scalar). ``emulated``/``emulator`` say whether the process runs
under an emulator (:mod:`convbench.emulation`). It never raises: every probe is
wrapped, and a fact that cannot be found is ``None``. It never imports a framework:
framework versions, CUDA and cuDNN come from each backend's ``info().environment``
inside its worker. GPUs are found with ``nvidia-smi`` alone.
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convbench.arm_parts import ARM_IMPLEMENTERS, ARM_PARTS
from convbench.display import show

#: Environment variables that change how many threads or which devices a framework uses.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)

_TIMEOUT_S = 5.0


def _safe(probe: Callable[[], Any]) -> Any:
    """Run ``probe``; any exception means "unknown"."""
    try:
        return probe()
    except Exception:
        return None


def _run(args: list[str], cwd: str | Path | None = None) -> str | None:
    """stdout of a command, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _int_code(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


# -- CPU -------------------------------------------------------------------------------
def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Facts from the text of ``/proc/cpuinfo`` (x86 or ARM); a pure function.

    Returns ``model_name``, ``vendor``, ``implementer`` and ``part`` (ARM, decoded where
    known, else the hex code), ``implementer_code``/``part_code`` (as in the file),
    ``logical_cores``, ``physical_cores`` (distinct physical id/core id pairs, when the
    file has them) and ``mhz``; a missing fact is None.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip().lower()] = value.strip()
    if current:
        blocks.append(current)
    processors = [b for b in blocks if "processor" in b] or blocks
    first = processors[0] if processors else {}
    # Some ARM kernels put "Hardware"/"model name" in a trailing block without "processor".
    merged = {k: v for b in reversed(blocks) for k, v in b.items()}

    def field(*names: str) -> str | None:
        for name in names:
            value = first.get(name) or merged.get(name)
            if value:
                return value
        return None

    impl_text, part_text = field("cpu implementer"), field("cpu part")
    impl, part = _int_code(impl_text), _int_code(part_text)
    cores = {(b.get("physical id"), b["core id"]) for b in processors if "core id" in b}
    mhz = field("cpu mhz")
    return {
        "model_name": field("model name", "cpu model", "hardware"),
        "vendor": field("vendor_id") or (ARM_IMPLEMENTERS.get(impl) if impl is not None else None),
        "implementer_code": impl_text,
        "part_code": part_text,
        "implementer": ARM_IMPLEMENTERS.get(impl, impl_text) if impl is not None else impl_text,
        "part": ARM_PARTS.get((impl, part), part_text) if part is not None else part_text,
        "logical_cores": sum(1 for b in blocks if "processor" in b) or None,
        "physical_cores": len(cores) or None,
        "mhz": _safe(lambda: float(mhz)) if mhz else None,
    }


def parse_lscpu(text: str) -> dict[str, str]:
    """``lscpu`` output as a {field: value} dict (e.g. "Model name", "CPU max MHz")."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            out.setdefault(key.strip(), value.strip())
    return out


def _sysfs_physical_cores() -> int | None:
    pairs = set()
    for topo in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology"):
        package = _read(f"{topo}/physical_package_id")
        core = _read(f"{topo}/core_id")
        if core is not None:
            pairs.add((package and package.strip(), core.strip()))
    return len(pairs) or None


def _max_mhz(lscpu: dict[str, str]) -> float | None:
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz and khz.strip().isdigit():
        return int(khz) / 1000
    value = lscpu.get("CPU max MHz")
    return float(value) if value else None


def _cpu() -> dict[str, Any]:
    info = _safe(lambda: parse_cpuinfo(_read("/proc/cpuinfo") or "")) or {}
    lscpu = _safe(lambda: parse_lscpu(_run(["lscpu"]) or "")) or {}
    lscpu_cores = _safe(lambda: int(lscpu["Core(s) per socket"]) * int(lscpu.get("Socket(s)", "1")))
    model = info.get("model_name") or lscpu.get("Model name")
    if model is None and info.get("part"):
        model = " ".join(str(x) for x in (info.get("implementer"), info.get("part")) if x)
    return {
        "cpu": model or _safe(platform.processor) or None,
        "cpu_vendor": info.get("vendor") or lscpu.get("Vendor ID"),
        "cpu_implementer": info.get("implementer"),
        "cpu_part": info.get("part"),
        "cpu_physical_cores": info.get("physical_cores")
        or _safe(_sysfs_physical_cores)
        or lscpu_cores,
        "cpu_logical_cores": os.cpu_count(),
        "cpu_usable_cores": _safe(lambda: len(os.sched_getaffinity(0))),
        "cpu_cgroup_quota": _safe(_cgroup_cpu_quota),
        "cpu_mhz": info.get("mhz"),
        "cpu_max_mhz": _safe(lambda: _max_mhz(lscpu)),
    }


def _cpu_clusters() -> list[dict[str, Any]] | None:
    """CPU clusters (big.LITTLE), fastest first; None when unknown."""
    from convbench.cpu_topology import clusters

    return clusters() or None


def _emulation() -> dict[str, Any]:
    from convbench.emulation import detect

    return detect()


def _selected(text: str | None) -> str | None:
    """The bracketed choice of a sysfs setting (``always [madvise] never`` -> madvise)."""
    if text is None:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip() or None


def memory_management(sys_root: str = "/sys") -> dict[str, Any]:
    """Kernel memory management that can move a timing: transparent huge pages (mode and
    defrag) and DAMON, the kernel's access monitor, whose schemes (e.g. ``pageout`` of
    memory it finds cold: proactive reclaim, as some VMs ship it) act on the memory of
    the process being timed. ``damon`` lists each kdamond: state, operations set and
    scheme actions (``None``: no DAMON sysfs interface)."""
    mm = Path(sys_root) / "kernel" / "mm"
    damon: list[str] | None = None
    kdamonds = mm / "damon" / "admin" / "kdamonds"
    if kdamonds.is_dir():
        damon = []
        for kd in sorted((d for d in kdamonds.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)):
            state = (_read(str(kd / "state")) or "?").strip()
            parts = [f"kdamond {kd.name}: {state}"]
            for ctx in sorted(p for p in (kd / "contexts").glob("[0-9]*")):
                ops = (_read(str(ctx / "operations")) or "?").strip()
                actions = [(_read(str(a / "action")) or "?").strip() for a in sorted((ctx / "schemes").glob("[0-9]*"))]
                parts.append(f"{ops} ({', '.join(actions) or 'no schemes'})")
            damon.append(", ".join(parts))
    return {
        "thp": _selected(_read(str(mm / "transparent_hugepage" / "enabled"))),
        "thp_defrag": _selected(_read(str(mm / "transparent_hugepage" / "defrag"))),
        "damon": damon,
    }


def _cgroup_cpu_quota() -> float | None:
    """CPUs this container may use (cgroup v2 ``cpu.max``), or None when unlimited."""
    parts = (_read("/sys/fs/cgroup/cpu.max") or "").split()
    if not parts or parts[0] == "max":
        return None
    period = int(parts[1]) if len(parts) > 1 else 100_000
    return int(parts[0]) / period


# -- memory, OS, software --------------------------------------------------------------
def _memory_total() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _os_release() -> str | None:
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def _numpy_version() -> str | None:
    import numpy

    return numpy.__version__


def _convbench_version() -> str | None:
    import convbench

    return convbench.__version__


def git_revision(directory: str | Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, dirty) of the checkout holding ``directory`` (default: convbench's
    source); (None, None) when it is not a git checkout or git is missing. Dirty means
    tracked files differ from HEAD (untracked files are ignored)."""
    directory = Path(directory or Path(__file__).resolve().parent)
    if shutil.which("git") is None:
        return None, None
    # An installed (non-editable) copy inside some other repository is not a checkout.
    if _run(["git", "ls-files", "--error-unmatch", "--", "."], cwd=directory) is None:
        return None, None
    head = _run(["git", "rev-parse", "HEAD"], cwd=directory)
    if not head:
        return None, None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory)
    return head.strip(), (bool(status.strip()) if status is not None else None)


def parse_nvidia_smi(text: str) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader``."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0]:
            gpus.append({"name": parts[0], "driver_version": parts[1], "memory_total": parts[2]})
    return gpus


def _gpus() -> list[dict[str, str]] | None:
    """NVIDIA GPUs as nvidia-smi sees them; None when nvidia-smi is absent or fails."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = _run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    )
    return None if out is None else parse_nvidia_smi(out)


def capture() -> dict[str, Any]:
    """A snapshot of the machine and core software; never raises, unknown facts are None."""
    revision, dirty = _safe(git_revision) or (None, None)
    env: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": _safe(socket.gethostname),
        "os": _safe(platform.system) or None,
        "os_release": _safe(_os_release),
        "kernel": _safe(platform.release) or None,
        "architecture": _safe(platform.machine) or None,
    }
    env.update(_safe(_cpu) or {})
    env["cpu_clusters"] = _safe(_cpu_clusters)
    env.update(_safe(_emulation) or {"emulated": None, "emulator": None, "emulation_evidence": None})
    env.update(
        {
            "memory_total_bytes": _safe(_memory_total),
            **(_safe(memory_management) or {"thp": None, "thp_defrag": None, "damon": None}),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "python_executable": sys.executable or None,
            "numpy_version": _safe(_numpy_version),
            "convbench_version": _safe(_convbench_version),
            "git_revision": revision,
            "git_dirty": dirty,
            "thread_env": {name: os.environ.get(name) for name in THREAD_ENV_VARS},
            "gpus": _safe(_gpus),
        }
    )
    return env


# -- display ---------------------------------------------------------------------------
_ARM_ONLY = ("cpu_implementer", "cpu_part", "emulator", "emulation_evidence", "cpu_pinning")


def environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of ``env`` with nested values flattened, memory in GiB."""
    rows: list[tuple[str, str]] = []
    for key, value in env.items():
        if key in _ARM_ONLY and value is None:
            continue
        if key == "thread_env" and isinstance(value, dict):
            rows += [(name, v if v is not None else "unset") for name, v in value.items()]
        elif key == "gpus" and isinstance(value, list):
            if not value:
                rows.append(("gpus", "none"))
            for i, gpu in enumerate(value):
                rows.append((f"gpu {i}", ", ".join(str(v) for v in gpu.values())))
        elif key == "cpu_clusters" and isinstance(value, list):
            rows += [(f"cpu cluster {c.get('alias') or c.get('name')}", cluster_text(c)) for c in value]
        elif key == "cpu_pinning" and isinstance(value, dict):
            rows.append(("cpu_pinning", pinning_text(value)))
        elif key == "memory_total_bytes" and isinstance(value, int):
            rows.append(("memory_total", f"{value / 2**30:.1f} GiB"))
        else:
            rows.append((key, show(value)))
    return rows


def cluster_text(cluster: dict[str, Any]) -> str:
    """One line for a cluster: ``cpus 4-7, Cortex-A76, 2400 MHz, capacity 1024``."""
    parts = [f"cpus {cluster['cpus']}" if cluster.get("cpus") else f"{cluster.get('count')} cpus"]
    if cluster.get("part"):
        parts.append(str(cluster["part"]))
    if cluster.get("max_mhz"):
        parts.append(f"{cluster['max_mhz']:g} MHz")
    if cluster.get("capacity"):
        parts.append(f"capacity {cluster['capacity']}")
    return ", ".join(parts)


def pinning_text(pinning: dict[str, Any]) -> str:
    """``cpus 4-7 (big, Cortex-A76)`` for a run's ``cpu_pinning``."""
    extra = ", ".join(str(x) for x in (pinning.get("cluster"), pinning.get("part")) if x)
    return f"cpus {pinning.get('cpus')}" + (f" ({extra})" if extra else "")


def format_environment(env: dict[str, Any], title: str = "environment") -> Any:
    """A two-column rich Table of ``env`` for ``convbench env``."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), show_header=True, header_style="bold")
    table.add_column("field", style="cyan", no_wrap=True)
    table.add_column("value")
    for key, value in environment_rows(env):
        table.add_row(escape(str(key)), escape(str(value)))  # host names, CPU models: text, not markup
    return table
