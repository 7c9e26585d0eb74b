"""The worker allocator setting (convbench.allocator) and the page faults the timing loops record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from convbench.allocator import STEADY_TUNABLES, describe, worker_environment
from convbench.timing import TimingConfig, measure, measure_interleaved

from .test_timing import FakeClock, FakeOp

CONFIG = TimingConfig(warmup_iters=1, warmup_time=0.0, min_sample_time=0.001, min_samples=5, max_samples=5, max_time=10.0)


def test_steady_adds_the_tunables_and_system_leaves_the_environment() -> None:
    env = worker_environment("steady", {"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert dict(item.split("=") for item in env["GLIBC_TUNABLES"].split(":")) == STEADY_TUNABLES
    assert worker_environment("system", {"PATH": "/bin"}) == {"PATH": "/bin"}


def test_tunables_the_user_set_win() -> None:
    env = worker_environment("steady", {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1:glibc.cpu.x86_ibt=on"})
    got = dict(item.split("=") for item in env["GLIBC_TUNABLES"].split(":"))
    assert got["glibc.malloc.trim_threshold"] == "1"
    assert got["glibc.cpu.x86_ibt"] == "on"
    assert got["glibc.malloc.mmap_threshold"] == STEADY_TUNABLES["glibc.malloc.mmap_threshold"]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="allocator must be one of"):
        worker_environment("jemalloc", {})


def test_config_validates_allocator() -> None:
    assert TimingConfig().allocator == "steady"
    with pytest.raises(ValueError):
        TimingConfig(allocator="tcmalloc")


def test_describe_names_the_tunables() -> None:
    assert describe({"GLIBC_TUNABLES": "a=1"})["glibc_tunables"] == "a=1"
    assert describe({})["glibc_tunables"] is None


class Faults:
    """A fault counter the fake op advances: ``per_iteration`` faults per step."""

    def __init__(self, op: FakeOp, per_iteration: float) -> None:
        self.op, self.per_iteration = op, per_iteration

    def __call__(self) -> float:
        return self.op.iterations * self.per_iteration


def test_measure_records_faults_per_iteration() -> None:
    clock = FakeClock()
    op = FakeOp(clock, 1e-4)
    m = measure(op, CONFIG, clock=clock, faults=Faults(op, 3.0))
    assert m.faults and all(f == pytest.approx(3.0) for f in m.faults)
    assert m.page_faults == pytest.approx(3.0)
    unknown = measure(FakeOp(clock, 1e-4), CONFIG, clock=clock, faults=lambda: None)
    assert unknown.page_faults is None and all(f is None for f in unknown.faults)


def test_interleaved_counts_each_member_in_its_own_process() -> None:
    clock = FakeClock()
    a, b = FakeOp(clock, 1e-4), FakeOp(clock, 2e-4)
    r = measure_interleaved({"a": a, "b": b}, CONFIG, baseline="a", clock=clock, faults={"a": Faults(a, 0.0), "b": Faults(b, 10.0)})
    assert r.members["a"].page_faults == 0.0
    assert r.members["b"].page_faults == pytest.approx(10.0)
    assert len(r.members["b"].faults) == r.rounds


# A process that allocates, touches and frees 64 MiB blocks, like a step writing a large
# output: glibc mmaps blocks that large and munmaps them on free (past its largest dynamic
# threshold), so every block is page-faulted again unless the tunables keep the memory.
ALLOCATING = """
import json, resource
import numpy as np
def faults():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_minflt + u.ru_majflt
for _ in range(3):
    np.ones(16 * 2**20, dtype=np.float32)
before = faults()
for _ in range(10):
    np.ones(16 * 2**20, dtype=np.float32)
print(json.dumps((faults() - before) / 10))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
@pytest.mark.parametrize("mode", ["steady", "system"])
def test_steady_allocator_stops_page_faults_in_a_real_process(mode: str) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", ALLOCATING], env=worker_environment(mode, environ), capture_output=True, text=True, check=True
    )
    per_block = json.loads(out.stdout)
    huge_pages = 64 * 2**20 // (2 * 2**20)  # numpy asks for transparent huge pages: >= 1 fault per 2 MiB
    if mode == "steady":
        assert per_block < 1
    else:
        assert per_block >= huge_pages
