"""How worker processes allocate memory: the ``timing: allocator`` setting.

glibc's malloc serves large blocks (a conv's output at batch 32 is megabytes) with
``mmap`` and gives them back with ``munmap`` on free, and it moves that threshold as a
process runs, so one process reuses its memory while the next, doing the same work,
page-faults every page of every output again. Measured on a 2-core VM with torch 2.13:
a 32x1024x7x7 depthwise conv took 2.1-2.8 ms with no page faults, or 4-6 ms with
~2,000 faults per call, depending only on which process ran it; at 32x32x112x112 it
was 25 ms against 111 ms (37,600 faults per call). Timings then measure the kernel's
page-fault handling, differently in every process.

``steady`` (the default) starts workers with glibc tunables that keep freed memory in
the process (no mmap threshold, no trimming), so after warm-up a step allocates from
memory it already touched: the same state in every process, as the allocators PyTorch's
CPU tuning guide recommends (jemalloc, tcmalloc) give. ``system`` leaves the allocator
as the system configures it (set ``GLIBC_TUNABLES`` yourself to try others). A
``GLIBC_TUNABLES`` already in the environment is kept; its own malloc settings win.
Elsewhere than glibc (macOS, musl) both modes are the system allocator. The page faults
per iteration of every sample are recorded either way (``page_faults``).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

__all__ = ["ALLOCATOR_MODES", "STEADY_TUNABLES", "describe", "worker_environment"]

ALLOCATOR_MODES = ("steady", "system")

#: glibc malloc tunables of ``steady``: never mmap a block (keep every block in the
#: heap, whatever its size) and never trim the heap back to the OS.
STEADY_TUNABLES = {
    "glibc.malloc.mmap_threshold": "4294967296",
    "glibc.malloc.trim_threshold": "4294967296",
}


def _parse(tunables: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in tunables.split(":") if "=" in item)
    return {k: v for k, v in pairs}


def worker_environment(mode: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a worker starts with under allocator ``mode`` (``environ`` plus,
    for ``steady``, :data:`STEADY_TUNABLES` merged under any ``GLIBC_TUNABLES`` given)."""
    if mode not in ALLOCATOR_MODES:
        raise ValueError(f"allocator must be one of {ALLOCATOR_MODES}, got {mode!r}")
    env = dict(environ)
    if mode == "steady":
        given = _parse(env.get("GLIBC_TUNABLES", ""))
        merged = {**STEADY_TUNABLES, **given}
        env["GLIBC_TUNABLES"] = ":".join(f"{k}={v}" for k, v in merged.items())
    return env


def describe(environ: Mapping[str, str]) -> dict[str, str | None]:
    """What a process allocates with: its C library and the ``GLIBC_TUNABLES`` it got."""
    lib, version = platform.libc_ver()
    return {
        "libc": f"{lib} {version}".strip() or None,
        "glibc_tunables": environ.get("GLIBC_TUNABLES"),
    }
