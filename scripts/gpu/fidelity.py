"""Timer fidelity (goal P1): convbench's median against ``triton.testing.do_bench``.

On five depthwise layers of MobileNetV1 (suites/depthwise.yaml's quick layers, native,
batch 64 on CUDA), each case is built and verified against the float64 reference exactly
as a run does (``convbench.worker.CaseRunner.prepare_and_verify``: no case is timed
unverified), then timed by both timers on the same callable, alternated:

* ``convbench``: :func:`convbench.timing.measure` over the case's own sampler, as the
  worker times a case alone (CUDA: ``DeviceTimed`` around the CUDA-event sampler of
  ``TorchPrepared.device_sampler``), with the suite's timing and ``cold_cache: true``
  (a buffer twice the L2 overwritten before every iteration, iterations timed one by one);
* ``do_bench``: ``triton.testing.do_bench(prepared.step, warmup=WARMUP_MS, rep=REP_MS,
  return_mode="median")``. do_bench (triton 3.x) runs ``fn`` once, estimates its time
  from 5 calls, then warms up for ``warmup`` ms and times ``rep`` ms of calls one by one
  with CUDA events, zeroing a 256 MB buffer (its L2 flush) before every call; it returns
  milliseconds. So both timers are cold-cache, per-iteration device-event timers.

Each round times every case with both, in an order that alternates from round to round
(convbench first in even rounds, do_bench first in odd ones); the figure per timer is the
median over rounds, and ``within`` says whether they agree to ``--tolerance`` (3 %).

On a CPU (``--cpu-stand-in``, the rehearsal) do_bench cannot run (it needs a GPU driver):
the stand-in is :func:`host_do_bench`, do_bench's algorithm (the same estimate, warm-up,
repetitions and a flush before each call) on the host clock with a synchronize around
each call. It checks the script, not a timer's fidelity on a GPU; the table says so.

Writes ``fidelity.tsv`` and ``fidelity.json`` into ``--out``. Exit status 0 when every case
was measured (whatever the verdict: the verdict is in the table), 1 when a case could not
be built, verified or timed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WARMUP_MS = 25  #: do_bench's defaults
REP_MS = 100
LAYERS = ["conv_dw_1", "conv_dw_2", "conv_dw_5", "conv_dw_8", "conv_dw_13"]
DEFAULT_FILTER = (
    "device == 'cuda' and batch == 64 and variant == 'native' and mode == 'inference' and execution == 'eager' "
    f"and workload in {LAYERS!r}"
)
CPU_FILTER = (
    "device == 'cpu' and batch == 1 and variant == 'native' and mode == 'inference' "
    f"and workload in {LAYERS!r}"
)


class _Events:
    """The worker's event stream, kept in memory (prepare_and_verify sends none we need)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})


def host_do_bench(
    fn: Callable[[], None],
    sync: Callable[[], None],
    flush: Callable[[], None] | None,
    warmup: float = WARMUP_MS,
    rep: float = REP_MS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """do_bench's algorithm on the host clock (the CPU stand-in); the median in ms."""
    flush = flush or (lambda: None)
    fn()
    sync()
    t0 = clock()
    for _ in range(5):
        flush()
        fn()
    sync()
    estimate_ms = max((clock() - t0) * 1000.0 / 5, 1e-6)
    n_warmup = max(1, int(warmup / estimate_ms))
    n_repeat = max(1, int(rep / estimate_ms))
    for _ in range(n_warmup):
        fn()
    sync()
    times = []
    for _ in range(n_repeat):
        flush()
        sync()
        start = clock()
        fn()
        sync()
        times.append((clock() - start) * 1000.0)
    return statistics.median(times)


def _cases(suite_path: str, filter_text: str, preset: str | None) -> tuple[Any, list[Any]]:
    from convbench.suite import expand, filter_cases, load_suite

    suite = load_suite(suite_path)
    cases = filter_cases(expand(suite, preset), filter_text)
    return suite, cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="suites/depthwise.yaml")
    parser.add_argument("--filter", default=None, help="cases to compare (default: the five layers, native, inference)")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    parser.add_argument("--tolerance", type=float, default=0.03, help="relative agreement wanted (default 0.03)")
    parser.add_argument("--cpu-stand-in", action="store_true", help="CPU: compare against host_do_bench, not do_bench")
    parser.add_argument("--max-time", type=float, default=None, help="replace the suite's timing.max_time (seconds)")
    parser.add_argument("--out", required=True, help="folder for fidelity.tsv and fidelity.json")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    from convbench.backend import load_backend
    from convbench.results import empty_row
    from convbench.timing import DeviceTimed, host_sampler, measure
    from convbench.worker import CaseRunner

    filter_text = args.filter or (CPU_FILTER if args.cpu_stand_in else DEFAULT_FILTER)
    suite, cases = _cases(args.suite, filter_text, args.preset)
    if not cases:
        print(f"fidelity: the filter selects no case of {args.suite}: {filter_text}", file=sys.stderr)
        return 2
    resolved = suite.resolved(args.preset)
    update: dict[str, Any] = {"cold_cache": True, "interleave": False}
    if args.max_time is not None:
        update["max_time"] = args.max_time
    timing = resolved.timing.model_copy(update=update)
    reference = "host_do_bench (CPU stand-in for triton.testing.do_bench: its algorithm, host clock)" if args.cpu_stand_in else "triton.testing.do_bench"
    do_bench = None
    if not args.cpu_stand_in:
        import triton.testing

        do_bench = triton.testing.do_bench

    backend = load_backend("torch")
    runner = CaseRunner(backend, _Events())  # type: ignore[arg-type]
    backend.configure(timing)  # cold_cache: the prepared cases get their flush buffer
    rows: list[dict[str, Any]] = []
    failed = False
    for case in cases:
        if args.cpu_stand_in:  # one thread: on a shared CPU a second thread waits on others' jobs
            case = case.model_copy(update={"threads": 1})
        row = empty_row(case)
        out: dict[str, Any] = {"case_id": case.case_id, "workload": case.workload, "variant": case.variant,
                               "mode": case.mode, "device": case.device, "batch": case.batch}  # fmt: skip
        prepared = None
        try:
            prepared = runner.prepare_and_verify(case, row, resolved.tolerance)
            out.update(status=row["status"], verify_error=row.get("verify_error"))
            if prepared is None or row["status"] != "ok":
                out["reason"] = row.get("reason")
                failed = True
                rows.append(out)
                continue
            device = prepared.device_sampler()
            flush = prepared.cache_flusher()
            ours, theirs = [], []
            for r in range(args.rounds):
                order = ("convbench", "reference") if r % 2 == 0 else ("reference", "convbench")
                for who in order:
                    if who == "convbench":
                        sampler = DeviceTimed(device) if device else host_sampler(prepared.step, prepared.sync, before=flush)
                        ours.append(measure(sampler, timing).stats.median)
                    elif do_bench is not None:
                        theirs.append(do_bench(prepared.step, warmup=WARMUP_MS, rep=REP_MS, return_mode="median") / 1000.0)
                    else:
                        theirs.append(host_do_bench(prepared.step, prepared.sync, flush) / 1000.0)
            a, b = statistics.median(ours), statistics.median(theirs)
            diff = a / b - 1.0
            out.update(convbench_s=a, reference_s=b, rel_diff=diff, within=abs(diff) <= args.tolerance,
                       convbench_rounds=ours, reference_rounds=theirs, timer="device_events" if device else "host_wall_sync")  # fmt: skip
        except Exception as exc:  # one failing case never hides the others
            out.update(status="error", reason=f"{type(exc).__name__}: {exc}")
            failed = True
        finally:
            if prepared is not None:
                prepared.close()
        rows.append(out)
        print(f"fidelity: {case.case_id}: {out.get('status')} {out.get('rel_diff', out.get('reason'))}", file=sys.stderr)

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    measured = [r for r in rows if "rel_diff" in r]
    summary = {
        "goal": f"P1: convbench's median within {args.tolerance:.0%} of {reference}, cold cache",
        "reference": reference,
        "gpu": not args.cpu_stand_in,
        "suite": args.suite,
        "filter": filter_text,
        "rounds": args.rounds,
        "do_bench": {"warmup_ms": WARMUP_MS, "rep_ms": REP_MS, "return_mode": "median"},
        "timing": timing.model_dump(),
        "measured": len(measured),
        "within": sum(bool(r["within"]) for r in measured),
        "worst_rel_diff": max((abs(r["rel_diff"]) for r in measured), default=None),
        "cases": rows,
    }
    (folder / "fidelity.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    cols = ["case_id", "status", "timer", "convbench_s", "reference_s", "rel_diff", "within", "reason"]
    lines = ["# reference: " + reference, "\t".join(cols)]
    for r in rows:
        lines.append("\t".join("" if r.get(c) is None else (f"{r[c]:.6g}" if isinstance(r.get(c), float) else str(r[c])) for c in cols))
    (folder / "fidelity.tsv").write_text("\n".join(lines) + "\n")
    print(f"fidelity: {summary['within']}/{len(measured)} within {args.tolerance:.0%} of {reference}; "
          f"worst {summary['worst_rel_diff']}", file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
