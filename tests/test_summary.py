"""The end-of-run summary: marks for unconverged, contended and all-cores cases."""

from __future__ import annotations

import pandas as pd

from convbench.summary import MARKS, cell, contention_lines, format_time, summary_table


def row(**kw: object) -> pd.Series:
    base = {"status": "ok", "median": 1e-3, "iqr": 1e-4, "converged": True, "contended": False, "threads_all_cores": False, "foreign_cpu": 0.01}
    return pd.Series({**base, **kw})


def test_cells_carry_their_marks() -> None:
    assert cell(row()) == "1 ms ±10%"
    assert cell(row(converged=False)) == "1 ms ±10%*"
    assert cell(row(contended=True)) == "1 ms ±10%[bold yellow]![/]"
    assert cell(row(threads_all_cores=True)) == "1 ms ±10%†"
    assert cell(row(contended=None, threads_all_cores=None)) == "1 ms ±10%"  # older runs: no telemetry
    assert cell(row(status="skipped")) == "[yellow]skipped[/]"


def test_contention_lines_count_and_name_the_worst_load() -> None:
    frame = pd.DataFrame([row(contended=True, foreign_cpu=0.82), row(contended=True, foreign_cpu=0.3), row(), row(threads_all_cores=True)])
    lines = contention_lines(frame)
    assert lines[0].startswith("! 2 of 4 timed cases were contended while timed (other processes used up to 0.82 cores)")
    assert lines[1].startswith("† 1 case(s) use as many threads as usable cores")
    assert contention_lines(pd.DataFrame([row()])) == []
    assert contention_lines(pd.DataFrame([{"status": "ok", "median": 1e-3}])) == []  # a run made before telemetry


def test_contention_lines_name_the_speed_probe_range() -> None:
    frame = pd.DataFrame([
        row(contended=True, foreign_cpu=0.0, speed_compute=1.42, speed_memory=1.05),
        row(contended=True, foreign_cpu=0.02, speed_compute=0.86, speed_memory=0.97),
        row(speed_compute=3.0, speed_memory=3.0),  # not contended: not counted
    ])  # fmt: skip
    assert contention_lines(frame)[0].startswith(
        "! 2 of 3 timed cases were contended while timed (other processes used up to 0.02 cores; "
        "the speed probe took 0.86-1.42x the machine's reference time)"
    )


def test_page_faulting_cases_are_named() -> None:
    frame = pd.DataFrame([row(page_faults=37635.0), row(page_faults=0.0), row(page_faults=None), row(status="error", page_faults=9.0)])
    lines = contention_lines(frame)
    assert lines == [
        "1 case(s) page-faulted in every step (up to 37,635 faults per iteration): their times include the "
        "kernel's page-fault handling (timing: allocator, docs/timing.md)"
    ]
    assert contention_lines(pd.DataFrame([row(page_faults=0.5)])) == []


def test_the_legend_explains_every_mark() -> None:
    cases = pd.DataFrame([
        {**row(contended=True).to_dict(), "workload": "w", "variant": "native", "backend": "torch", "device": "cpu", "mode": "inference",
         "batch": 1, "dtype": "float32", "layout": "nchw", "execution": "eager", "threads": 2, "verify_error": 0.0, "baseline": None, "ratio": None, "reason": None},
    ])  # fmt: skip
    caption = str(summary_table(cases).caption)
    assert all(f"{mark} = {text}" in caption for mark, text in MARKS.items())


def test_format_time_rounds_into_the_next_unit() -> None:
    assert format_time(0.0009996) == "1 ms" and format_time(2.5e-7) == "250 ns" and format_time(None) == "-"


def _case(device: str, variant: str, status: str = "ok", reason: str | None = None) -> dict:
    return {**row(status=status).to_dict(), "workload": "w", "variant": variant, "backend": "torch", "device": device, "mode": "inference",
            "batch": 1, "dtype": "float32", "layout": "nchw", "execution": "eager", "threads": None, "verify_error": 0.0,
            "baseline": None, "ratio": None, "reason": reason}  # fmt: skip


def test_groups_skipped_entirely_are_one_line_not_rows() -> None:
    from convbench.summary import status_lines, without_skipped_groups

    cases = pd.DataFrame([
        _case("cpu", "native"), _case("cpu", "diagonalwise", "skipped", "not on this backend"),
        _case("cuda", "native", "skipped", "CUDA is not available"), _case("cuda", "diagonalwise", "skipped", "CUDA is not available"),
    ])  # fmt: skip
    shown = without_skipped_groups(cases)
    assert list(shown["device"]) == ["cpu", "cpu"]  # a group with one case run keeps its skipped case as a cell
    assert summary_table(cases).row_count == 1
    assert status_lines(cases) == ["2 skipped: CUDA is not available", "1 skipped: not on this backend"]


def test_a_long_run_shows_its_first_groups_and_counts_the_rest() -> None:
    cases = pd.DataFrame([{**_case("cpu", "native"), "workload": f"w{i}"} for i in range(12)])
    table = summary_table(cases, limit=5)
    assert table.row_count == 5 and "7 more case groups not shown" in str(table.caption)
    assert summary_table(cases).row_count == 12
