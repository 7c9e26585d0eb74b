"""Is this process running under an instruction-set emulator (qemu-user, Rosetta)?

Timings taken under emulation say nothing about the emulated CPU, so such runs are
labelled (``environment.core.emulated``/``emulator``), marked in the report and never
compared with native runs (:func:`convbench.compare.check_emulation`).

Signals, first match wins:

* ``CONVBENCH_EMULATED`` = 1/true/yes (emulated) or 0/false/no (native) forces the answer;
* the process's real memory map names the emulator (``qemu-aarch64-static``, Rosetta's
  ``rosetta``). qemu-user rewrites ``/proc/self/maps`` to show only the guest, but not
  ``/proc/thread-self/maps`` nor ``maps`` opened relative to a ``/proc`` directory fd;
* ``/proc/cpuinfo`` describes another architecture than ``platform.machine()`` (qemu-user
  before 8.2 passes the host's x86 cpuinfo through to an aarch64 guest);
* on macOS, ``sysctl.proc_translated`` = 1 (Rosetta 2).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from typing import Any

ENV_VAR = "CONVBENCH_EMULATED"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_EMULATOR_RE = re.compile(
    r"^(qemu-[A-Za-z0-9_]+(?:-static)?|[a-z0-9_]+-binfmt-[A-Z]*|rosetta|box64|FEXInterpreter|FEXLoader)$"
)
_ARM = ("aarch64", "arm64", "armv7l", "armv8l", "armv6l")
_X86 = ("x86_64", "amd64", "i386", "i686")


def emulator_in_maps(maps: str) -> str | None:
    """The emulator a ``/proc/PID/maps`` text shows mapped (basename), or None."""
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6:
            match = _EMULATOR_RE.search(os.path.basename(fields[5].strip()))
            if match:
                return match.group(1)
    return None


def cpuinfo_arch(cpuinfo: str) -> str | None:
    """The architecture family a ``/proc/cpuinfo`` text describes: arm, x86 or None."""
    keys = {line.partition(":")[0].strip().lower() for line in cpuinfo.splitlines()}
    if "cpu implementer" in keys or "cpu part" in keys:
        return "arm"
    if "vendor_id" in keys and "flags" in keys:
        return "x86"
    return None


def machine_family(machine: str) -> str | None:
    """arm, x86 or None for a ``platform.machine()`` value."""
    machine = machine.lower()
    if machine in _ARM or machine.startswith("arm"):
        return "arm"
    if machine in _X86:
        return "x86"
    return None


def classify(
    machine: str,
    env_value: str | None = None,
    maps: str | None = None,
    cpuinfo: str | None = None,
    translated: str | None = None,
) -> dict[str, Any]:
    """``{"emulated", "emulator", "emulation_evidence"}`` from the signals; pure.

    ``env_value`` is ``CONVBENCH_EMULATED``; ``maps`` the real memory map; ``cpuinfo``
    the text of ``/proc/cpuinfo``; ``translated`` macOS's ``sysctl.proc_translated``.
    """
    if env_value is not None and env_value.strip().lower() in _TRUE | _FALSE:
        emulated = env_value.strip().lower() in _TRUE
        emulator = (emulator_in_maps(maps or "") or "unknown") if emulated else None
        return {
            "emulated": emulated,
            "emulator": emulator,
            "emulation_evidence": f"{ENV_VAR}={env_value.strip()}",
        }
    found = emulator_in_maps(maps or "")
    if found:
        return {
            "emulated": True,
            "emulator": found,
            "emulation_evidence": f"{found} mapped in the process",
        }
    described, family = cpuinfo_arch(cpuinfo or ""), machine_family(machine)
    if described and family and described != family:
        emulator = "qemu-user" if family == "arm" or described == "arm" else "unknown"
        return {
            "emulated": True,
            "emulator": emulator,
            "emulation_evidence": f"/proc/cpuinfo describes {described}, the machine is {machine}",
        }
    if (translated or "").strip() == "1":
        return {
            "emulated": True,
            "emulator": "rosetta",
            "emulation_evidence": "sysctl.proc_translated = 1",
        }
    return {"emulated": False, "emulator": None, "emulation_evidence": None}


def _real_maps() -> str | None:
    """This process's memory map as the kernel sees it (past qemu-user's rewriting)."""
    try:
        fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for rel in ("thread-self/maps", f"{os.getpid()}/task/{os.getpid()}/maps", "self/maps"):
            try:
                with open(rel, opener=lambda path, flags: os.open(path, flags, dir_fd=fd)) as f:
                    text = f.read()
            except OSError:
                continue
            if text:
                return text
    finally:
        os.close(fd)
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _proc_translated() -> str | None:
    if platform.system() != "Darwin":
        return None
    try:
        done = subprocess.run(
            ["sysctl", "-n", "sysctl.proc_translated"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def detect() -> dict[str, Any]:
    """Whether this process runs emulated: ``emulated``, ``emulator``, ``emulation_evidence``
    (the emulator names qemu's CPU model when ``QEMU_CPU`` chose one)."""
    found = classify(
        platform.machine(),
        env_value=os.environ.get(ENV_VAR),
        maps=_real_maps(),
        cpuinfo=_read("/proc/cpuinfo"),
        translated=_proc_translated(),
    )
    model = os.environ.get("QEMU_CPU")
    if (
        found["emulated"]
        and model
        and str(found["emulator"]).startswith(("qemu", "aarch64-binfmt"))
    ):
        found["emulator"] = f"{found['emulator']} (cpu {model})"
    return found


# -- runs ---------------------------------------------------------------------------------
def _emulated_flags(value: Any) -> list[bool]:
    """Every ``emulated`` flag in a run.json ``environment`` (core, and any nested one
    such as a merged run's per-node environments)."""
    if isinstance(value, dict):
        own = [value["emulated"]] if isinstance(value.get("emulated"), bool) else []
        return own + [f for k, v in value.items() if k != "emulated" for f in _emulated_flags(v)]
    if isinstance(value, list):
        return [f for v in value for f in _emulated_flags(v)]
    return []


def run_emulated(meta: dict[str, Any]) -> bool:
    """Whether a run (its run.json) was taken, even in part, under emulation."""
    return any(_emulated_flags(meta.get("environment") or {}))


def run_emulator(meta: dict[str, Any]) -> str | None:
    """The emulator a run recorded (``qemu-aarch64-static``...), or None."""
    core = (meta.get("environment") or {}).get("core") or {}
    return core.get("emulator") if core.get("emulated") else None


def emulation_mismatch(
    base_metas: list[dict[str, Any]], new_metas: list[dict[str, Any]]
) -> str | None:
    """Why these runs must not be compared (emulated with native), or None if they may."""

    def label(metas: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        names = [str(m.get("_dir") or m.get("_name") or m.get("suite") or "run") for m in metas]
        flags = [run_emulated(m) for m in metas]
        return [n for n, f in zip(names, flags, strict=True) if f], [
            n for n, f in zip(names, flags, strict=True) if not f
        ]

    emulated, native = (a + b for a, b in zip(label(base_metas), label(new_metas), strict=True))
    if emulated and native:
        return (
            f"emulated run(s) {', '.join(emulated)} cannot be compared with native run(s) {', '.join(native)}: "
            "timings under an emulator say nothing about the emulated CPU (pass --allow-emulated to compare anyway)"
        )
    return None
