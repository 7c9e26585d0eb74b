"""JAX's persistent compilation cache for these tests, as tests/test_conformance.py uses it.

XLA's compile is most of this folder's CPU time: op-by-op (eager) execution compiles every
primitive for every shape, and the training graphs compile their gradients. A program found
in the cache (keyed by its HLO, XLA flags, devices and versions) loads instead of being
compiled (test_graphs[all_ops-training-*]: 18 CPU s cold, 5 s cached on this 2-core
machine); a missing or stale entry is compiled again, so no result depends on it. Set here,
before any test module imports jax (its configuration reads these at import), and so also
in the environment of the subprocesses these tests start. CONVBENCH_TEST_JAX_CACHE names
another folder; empty disables the cache.
"""

from __future__ import annotations

import os

from tests.conftest import ROOT

JAX_CACHE = os.environ.get("CONVBENCH_TEST_JAX_CACHE", str(ROOT / "build" / "jax-compilation-cache"))
if JAX_CACHE:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", JAX_CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2**30))  # LRU-evicted beyond 1 GiB
