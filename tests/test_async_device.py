"""The timer waits for a device that returns before its work is done.

tests/fake_device.py's backend queues FAKE work (sleeps on a thread) in ``step()`` and
returns at once; ``sync()`` waits. A host clock read without the synchronize would
measure microseconds; the protocol must measure the work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from convbench.timing import host_sampler
from tests.conftest import run_cli
from tests.fake_device import FakeStream

WORK_MS = 15
EXTRA = "faulty=fake_backends:FaultyBackend,asyncfake=fake_device:AsyncBackend"


def test_fake_device_is_asynchronous_and_the_host_sampler_waits() -> None:
    stream = FakeStream()
    seconds = WORK_MS / 1000

    start = time.perf_counter()
    for _ in range(3):
        stream.submit(seconds)
    returned = time.perf_counter() - start
    stream.synchronize()
    assert returned < seconds, "the fake must return before its work is done, or this test proves nothing"

    sample = host_sampler(lambda: stream.submit(seconds), stream.synchronize)
    assert sample(4) >= 4 * seconds

    flushes: list[float] = []
    cold = host_sampler(lambda: stream.submit(seconds), stream.synchronize, before=lambda: flushes.append(1))
    assert cold(3) >= 3 * seconds and len(flushes) == 3


def suite(path: Path, extra: str = "", variants: str = "native") -> Path:
    path.write_text(
        "name: async\n"
        "workloads:\n  - {id: dw, kind: depthwise, params: {channels: 4, size: 6}}\n"
        f"matrix: {{backend: [asyncfake], variant: [{variants}], batch: [1]}}\n"
        "timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.2, guard: flag"
        + extra
        + "}\n"
    )
    return path


def test_a_run_on_the_async_device_times_the_work_not_the_launch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("run", str(suite(tmp_path / "s.yaml")), "--out", str(out), CONVBENCH_EXTRA_BACKENDS=EXTRA, CONVBENCH_FAKE_WORK_MS=str(WORK_MS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = pd.read_parquet(out / "cases.parquet").iloc[0]
    assert row["status"] == "ok", row["reason"]
    details = json.loads(row["details"])
    assert details["step_return_seconds"] < WORK_MS / 1000  # the launch returned early ...
    assert row["timer"] == "host_wall_sync"
    assert row["min"] >= 0.95 * WORK_MS / 1000  # ... and every sample still holds the work
    assert row["median"] < 10 * WORK_MS / 1000


def test_cold_cache_flushes_before_each_iteration_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    path = suite(tmp_path / "s.yaml", ", cold_cache: true, rotate_inputs: 3, autotune: true", "native, kernel")
    proc = run_cli("run", str(path), "--out", str(out), CONVBENCH_EXTRA_BACKENDS=EXTRA, CONVBENCH_FAKE_WORK_MS="2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_parquet(out / "cases.parquet").set_index("variant")
    # a backend-implemented variant that this backend lacks is skipped, never run as native
    assert rows.loc["kernel", "status"] == "skipped" and "no kernel variant" in rows.loc["kernel", "reason"]
    row = rows.loc["native"]
    assert row["status"] == "ok", row["reason"]
    assert json.loads(row["details"])["cold_cache_host"] == "flushed before each iteration"
    timing = json.loads((out / "run.json").read_text())["options"]["timing"]
    assert timing["cold_cache"] is True and timing["rotate_inputs"] == 3 and timing["autotune"] is True
