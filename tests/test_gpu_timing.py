"""Host wall time beside device time (convbench.timing.DeviceTimed, convbench.worker.host_fields),
on a fake device sampler: the plumbing of the CUDA timer, which has not run on a GPU."""

from __future__ import annotations

import time

from convbench.results import CASE_COLUMNS, SAMPLE_COLUMNS
from convbench.rows import timing_fields
from convbench.timing import DeviceTimed, TimingConfig, measure
from convbench.worker import LAUNCH_BOUND_RATIO, host_fields

CONFIG = TimingConfig(warmup_iters=1, warmup_time=0.0, min_sample_time=0.001, min_samples=3, max_samples=5, precision=0.5, max_time=0.1)


def device(per_iteration: float, launch: float):  # noqa: ANN201
    """n iterations of ``per_iteration`` device seconds that take ``launch`` host seconds each."""

    def sample(n: int) -> float:
        time.sleep(n * launch)
        return n * per_iteration

    return sample


def row_of(sampler: DeviceTimed) -> tuple[dict, list]:
    m = measure(sampler, CONFIG)
    row = {**dict.fromkeys(CASE_COLUMNS), **timing_fields(m, "device_events")}
    return row, (m, host_fields(row, m, sampler))


def test_host_time_is_recorded_beside_device_time_and_launch_bound_flagged() -> None:
    for launch, bound in ((0.004, True), (0.0, False)):
        sampler = DeviceTimed(device(0.001, launch))
        row, (m, host) = row_of(sampler)
        assert row["median"] == row["device_median"] == 0.001  # the headline: device events
        assert len(host) == len(m.samples) and len(sampler.calls) > len(m.samples)  # warm-up left out
        assert row["host_ci_low"] <= row["host_median"] <= row["host_ci_high"]
        if bound:
            assert row["host_median"] >= 0.004 and row["host_device_ratio"] >= LAUNCH_BOUND_RATIO
        assert row["launch_bound"] is bound


def test_a_host_timed_case_has_host_median_equal_to_median() -> None:
    m = measure(lambda n: n * 0.001, CONFIG)
    row = {**dict.fromkeys(CASE_COLUMNS), **timing_fields(m, "host_wall_sync")}
    assert host_fields(row, m, None) == []
    assert row["host_median"] == row["median"] and row["device_median"] is None and row["launch_bound"] is None


def test_the_new_columns_are_appended() -> None:
    assert CASE_COLUMNS[-2:] == ["roofline_peak", "cache_state"] and "launch_bound" in CASE_COLUMNS
    assert SAMPLE_COLUMNS[-1] == "host_seconds"
