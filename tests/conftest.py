"""Shared fixtures: run the convbench CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
#: Runs in tests keep their machine-speed history (convbench.speed_probe) apart from the user's.
os.environ["CONVBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="convbench-test-cache-")


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a convbench subprocess: tests importable, fake backends registered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["CONVBENCH_EXTRA_BACKENDS"] = "faulty=fake_backends:FaultyBackend"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """``convbench ARGS`` in a fresh interpreter; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "convbench.cli", *args],
        cwd=cwd or ROOT,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def probed() -> Iterator[dict[str, Future]]:
    """`convbench list suites/smoke.yaml` and `convbench env --json`, started together once
    for the session: each probes every backend in a worker of its own (~25 s quiet, most of
    it importing frameworks). Read by tests/test_end_to_end.py and the litert test (its row
    of the backends table, which `list SUITE` prints as `list` does, after the suite's
    workloads), instead of a probe each."""
    with ThreadPoolExecutor(2) as pool:
        yield {"list": pool.submit(run_cli, "list", str(ROOT / "suites" / "smoke.yaml")), "env": pool.submit(run_cli, "env", "--json")}
