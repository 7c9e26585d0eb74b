"""The worker: a subprocess that hosts one backend and runs cases sent as JSON lines.

Started as ``python -m convbench.worker --backend NAME`` with the backend's interpreter.
Protocol (one JSON object per line): the worker first writes ``{"event": "hello",
"info": {...}}``; then for each command read from stdin it answers:

* ``{"cmd": "run", "cases": [...], "timing": {...}, "tolerance": {...}, "verify_only": b}``:
  the cases of one group (they differ only in variant). For each case the worker emits
  ``{"event": "start", "case_id"}``, then ``{"event": "result", "row": {...},
  "samples": [...]}``; then ``{"event": "done"}``.
* ``{"cmd": "profile", "cases": [...], "steps": n, "timing": {...}, "tolerance": {...}}``:
  each case is built and verified as for ``run``, then profiled with the framework's own
  profiler (:meth:`Prepared.profile`); per case ``{"event": "profile", "case_id",
  "status", "reason", "rows": [...]}``; then ``{"event": "done"}``.
* ``{"cmd": "prepare", "cases": [...], "timing": {...}, "tolerance": {...}}``: the cases
  are built and verified as for ``run`` and held, untimed, for another process to time
  (``convbench ab``): per case ``{"event": "start"}``, then ``{"event": "prepared",
  "case_id", "row"}`` for a case that verified, or ``{"event": "result", ...}`` for one
  that did not (skipped, mismatch, error); then ``{"event": "done"}``.
* ``{"cmd": "sample", "case_id", "n"}``: ``n`` iterations of a held case, timed here
  (device events or host wall clock, as for ``run``): ``{"event": "sample", "seconds"}``,
  or ``{"event": "sample_error", "reason"}``.
* ``{"cmd": "release"}``: the held cases are closed; ``{"event": "done"}``.
* ``{"cmd": "exit"}``: the worker exits.

A ``run`` message may carry ``"peaks"``, the device peaks the run already knows; the
worker measures the ones it lacks (once per dtype, see :mod:`convbench.peaks`) before
timing and reports each as ``{"event": "peaks", "key", "peaks"}``.

Timers: a case whose backend offers a device sampler (torch on CUDA: CUDA events) is
timed by it, and the host wall clock is read around the same calls
(:class:`~convbench.timing.DeviceTimed`): ``median`` is device time (the headline,
``timer = device_events``), ``host_median`` the host wall time of the same samples, and
``launch_bound`` flags a host time at least :data:`LAUNCH_BOUND_RATIO` times the device
time. Every other case is host-timed and its ``host_median`` equals ``median``, so
``host_median`` compares all backends on one timer. The CUDA paths have run only against
fakes on a CPU (tests/backends/torch/test_torch_gpu_paths.py), never on a GPU.

The protocol uses a private duplicate of stdout; the real stdout is redirected to
stderr, so whatever a framework prints never corrupts the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections import OrderedDict
from dataclasses import asdict
from typing import IO, Any

import numpy as np

from convbench import __version__, gpuclocks
from convbench.allocator import describe as describe_allocator
from convbench.backend import Backend, BackendInfo, Prepared, UnsupportedCase, load_backend
from convbench.cases import DEFAULT_TOLERANCE, ITEMSIZE, Case
from convbench.contention import Monitor, Reader, own_faults
from convbench.cpu_topology import format_cpu_list
from convbench.data import make_cotangents, make_tensors, native_tensors
from convbench.peaks import (
    cache_state,
    case_work_split,
    measure_peaks,
    peak_key,
    peak_timing,
    roofline_split,
)
from convbench.rows import rates, sample_rows, threads_all_cores, timing_fields
from convbench.schema import SCHEMA_ID, empty_row, now_iso
from convbench.speed_probe import Speed, SpeedProbe
from convbench.timing import (
    DeviceTimed,
    Guard,
    Measurement,
    TimingConfig,
    host_sampler,
    measure,
    measure_interleaved,
    summarize,
)
from convbench.variants import backend_variants, native_gradients, parse_variant
from convbench.verify import verify
from convbench.workloads import build_graph

REFERENCE_CACHE_SIZE = 2
#: A device-timed case is flagged ``launch_bound`` when its host wall time per iteration
#: is at least this many times its device time: the device idles between kernels,
#: waiting for the host to launch them (small layers, eager training steps).
LAUNCH_BOUND_RATIO = 1.5


class Protocol:
    """Writes events as JSON lines on a private copy of stdout."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def send(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **fields}, default=_jsonable) + "\n")
        self.stream.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class CaseRunner:
    """Builds, verifies and times the cases of one backend."""

    def __init__(self, backend: Backend, protocol: Protocol) -> None:
        self.backend = backend
        self.protocol = protocol
        self._reference: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
        self._work: dict[str, tuple[float, float, float]] = {}  #: case_id -> (FLOPs, FMA-only FLOPs, bytes)
        self._cold = False  #: the current group's timing.cold_cache
        self.peaks: dict[str, dict[str, Any] | None] = {}  #: peak_key -> measured peaks
        self.reader = Reader()  #: this process's CPU time and the machine's counters
        self.held: dict[str, tuple[Prepared, Any]] = {}  #: case_id -> (prepared, sampler), for `prepare`
        self.speed_reference: Speed | None = None  #: the run's machine speed (convbench.speed_probe)
        self._probe: SpeedProbe | None = None

    def probe_for(self, device: str, timing: TimingConfig) -> SpeedProbe | None:
        """The speed probe for a CPU case group, when the runner sent a reference and the
        timing judges speed (None otherwise: a GPU's timing does not hang on the host's speed)."""
        if device != "cpu" or self.speed_reference is None or not timing.speed_tolerance:
            return None
        if self._probe is None:
            self._probe = SpeedProbe()
        self._probe.reference = self.speed_reference
        return self._probe

    def reference(self, case: Case, graph, tensors, cotangents) -> dict[str, np.ndarray]:  # noqa: ANN001
        """Float64 reference of the native graph, cached across variants of one workload."""
        from convbench.reference import run_reference

        key = (case.kind, json.dumps(case.params, sort_keys=True), case.batch, case.mode)
        if key not in self._reference:
            self._reference[key] = run_reference(graph, tensors, cotangents, case.mode)
            while len(self._reference) > REFERENCE_CACHE_SIZE:
                self._reference.popitem(last=False)
        return self._reference[key]

    def run_group(self, cases: list[Case], timing: TimingConfig, tolerance: dict[str, float], verify_only: bool) -> None:
        rows: dict[str, dict[str, Any]] = {}
        ready: dict[str, Prepared] = {}
        self.backend.configure(timing)
        try:
            for case in cases:
                self.protocol.send("start", case_id=case.case_id)
                row = empty_row(case)
                row["worker_pid"] = os.getpid()
                row["threads_all_cores"] = threads_all_cores(case.threads, case.device)
                rows[case.case_id] = row
                try:
                    prepared = self.prepare_and_verify(case, row, tolerance)
                except Exception as exc:  # a failing case never stops the group
                    row.update(status="error", reason=f"{type(exc).__name__}: {exc}", details=traceback.format_exc(limit=8))
                    prepared = None
                if prepared is not None and row["status"] == "ok" and not verify_only:
                    ready[case.case_id] = prepared
                elif prepared is not None:
                    prepared.close()
                if case.case_id not in ready:
                    self.finish(row, [])
            if ready:
                self.protocol.send("timing", case_ids=list(ready))
                self.time_cases(cases, rows, ready, timing)
        finally:
            for prepared in ready.values():
                prepared.close()

    def prepare_and_verify(self, case: Case, row: dict[str, Any], tolerance: dict[str, float]) -> Prepared | None:
        graph = build_graph(case.kind, case.params, case.batch)
        variant = parse_variant(case.variant)
        itemsize = ITEMSIZE[case.dtype]
        row.update(macs=graph.macs(), flops=2 * graph.macs(), bytes=graph.bytes_moved(itemsize), param_count=graph.param_count())
        if not variant.applies(graph):
            row.update(status="skipped", reason=f"variant {case.variant} changes nothing in workload {case.workload}")
            return None
        executed = variant.apply(graph)
        row["executed_macs"] = executed.macs()
        self._work[case.case_id] = case_work_split(graph, case.mode, itemsize)
        own = (set(variant.name.split("+")) & backend_variants()) - set(self.backend.variants)
        reason = f"{self.backend.name}: no {'/'.join(sorted(own))} variant in this backend" if own else None
        reason = reason or self.backend.skip_reason(case)
        if reason:
            row.update(status="skipped", reason=reason)
            return None
        self.backend.set_threads(case.threads)
        tensors = make_tensors(executed, case.data_seed)
        cotangents = make_cotangents(graph, case.data_seed)
        native = native_tensors(graph, case.data_seed, tensors)
        want = self.reference(case, graph, native, cotangents)
        try:
            prepared = self.backend.prepare(case, executed, tensors, cotangents)
        except UnsupportedCase as exc:
            row.update(status="skipped", reason=str(exc))
            return None
        got = native_gradients(executed, prepared.check())  # an expanded parameter's gradient, as the compact weight's
        tol = tolerance.get(case.dtype, DEFAULT_TOLERANCE[case.dtype])
        result = verify(got, want, tol)
        details = {"execution_used": self.backend.executions.get(case.execution, case.execution), **prepared.details()}
        if not result.ok and not result.missing and case.mode == "training":
            from convbench.kinks import verify_at_ties

            ties = verify_at_ties(graph, native, cotangents, got, want, tol, case.dtype)
            if ties is not None and ties.verification.ok:
                details.update(
                    verify_error_unflipped=result.error,
                    kink_flips=[t.describe() for t in ties.flips],
                    kink_ties=ties.ties,
                    kink_tried=ties.tried,
                )
                result = ties.verification
        if executed.param_count() != graph.param_count():  # diagonalwise(param=expanded): the parameters trained
            details["executed_param_count"] = executed.param_count()
        row.update(verify_error=result.error, verify_tolerance=tol, verify_worst=result.worst, details=details)
        if result.ok:
            row["status"] = "ok"
        else:
            missing = f"; missing {', '.join(result.missing)}" if result.missing else ""
            row.update(status="mismatch", reason=f"relative error {result.error:.3g} in {result.worst} exceeds {tol:g}{missing}")
        return prepared

    def time_cases(self, cases: list[Case], rows: dict[str, dict], ready: dict[str, Prepared], timing: TimingConfig) -> None:
        samplers, timers = {}, {}
        self._cold = bool(timing.cold_cache)
        for cid, p in ready.items():
            device = p.device_sampler()
            flush = p.cache_flusher() if timing.cold_cache and device is None else None
            if timing.cold_cache and device is None:
                rows[cid]["details"] = {**(rows[cid]["details"] or {}), "cold_cache_host": "flushed before each iteration" if flush else "not supported by this backend: timed warm"}
            # device events and, around the same calls, host wall time (DeviceTimed)
            samplers[cid] = DeviceTimed(device) if device else host_sampler(p.step, p.sync, before=flush)
            timers[cid] = "device_events" if device else "host_wall_sync"
        order = [c.case_id for c in cases if c.case_id in ready]
        if timing.roofline:
            for case in cases:
                if case.case_id in ready:
                    self.ensure_peaks(case, timing)
        baseline = next((c.case_id for c in cases if c.case_id in ready and c.variant == "native"), order[0])
        baseline_variant = next(c.variant for c in cases if c.case_id == baseline)
        monitor = Monitor(self.reader, timing.rule(), probe=self.probe_for(cases[0].device, timing))
        guard = Guard.for_case(monitor, timing, cases[0].device)
        if timing.interleave and len(order) > 1:
            result = measure_interleaved({cid: samplers[cid] for cid in order}, timing, baseline, guard=guard)
            for cid in order:
                ratios = result.ratios.get(cid)
                extra: dict[str, Any] = {"baseline": baseline_variant, "rounds": result.rounds}
                if cid in result.ratio_stats:
                    rs = result.ratio_stats[cid]
                    extra.update(ratio=rs.median, ratio_ci_low=rs.ci_low, ratio_ci_high=rs.ci_high)
                self.record_timing(rows[cid], ready[cid], result.members[cid], timers[cid], extra, ratios, samplers[cid])
        else:
            for cid in order:
                m = measure(samplers[cid], timing, guard=guard)
                self.record_timing(rows[cid], ready[cid], m, timers[cid], {}, None, samplers[cid])

    def record_timing(
        self, row: dict, prepared: Prepared, m: Measurement, timer: str, extra: dict, ratios: list[float] | None,
        sampler: Any = None,
    ) -> None:  # fmt: skip
        row.update(timing_fields(m, timer), peak_memory=prepared.peak_memory_bytes(), **extra)
        row.update(rates(row))
        host = host_fields(row, m, sampler)
        if gpuclocks.wanted(row["device"]):  # clocks, temperature, throttling (nvidia-smi)
            row.update(gpuclocks.read(_gpu_index(row["device"])))
        median = row["median"]
        if median and median > 0:
            key = peak_key(row["dtype"], row["device"], row["threads"])
            work = self._work.get(row["case_id"], (0.0, 0.0, 0.0))
            bound = roofline_split(*work, self.peaks.get(key))
            if bound is not None:
                row.update(roofline_bound=bound[0], roofline_limit=bound[1], roofline_fraction=bound[0] / median, roofline_peak=bound[2])
            row["cache_state"] = cache_state(self._cold, work[2], self.peaks.get(key))
        samples = sample_rows(row["case_id"], m, ratios)
        for sample, seconds in zip(samples, host, strict=False):
            sample["host_seconds"] = seconds
        self.finish(row, samples)

    def ensure_peaks(self, case: Case, timing: TimingConfig) -> None:
        """Measure the device's peaks for ``case``'s dtype (and threads) unless known."""
        key = peak_key(case.dtype, case.device, case.threads)
        if key in self.peaks:
            return
        try:
            work = self.backend.peak_work(case.device, case.dtype)
            peaks = measure_peaks(work, peak_timing(timing)) if work is not None else None
        except Exception as exc:  # a failed measurement only loses the roofline columns
            peaks = {"error": f"{type(exc).__name__}: {exc}"}
        self.peaks[key] = peaks
        if peaks is not None:
            self.protocol.send("peaks", key=key, peaks=peaks)

    def hold_group(self, cases: list[Case], timing: TimingConfig, tolerance: dict[str, float]) -> None:
        """Build and verify ``cases`` and hold the verified ones for remote sampling."""
        self.release()
        self.backend.configure(timing)
        for case in cases:
            self.protocol.send("start", case_id=case.case_id)
            row = empty_row(case)
            row.update(worker_pid=os.getpid(), threads_all_cores=threads_all_cores(case.threads, case.device))
            try:
                prepared = self.prepare_and_verify(case, row, tolerance)
            except Exception as exc:
                row.update(status="error", reason=f"{type(exc).__name__}: {exc}", details=traceback.format_exc(limit=8))
                prepared = None
            if prepared is not None and row["status"] == "ok":
                device = prepared.device_sampler()
                sampler = device or host_sampler(prepared.step, prepared.sync)
                row["timer"] = "device_events" if device else "host_wall_sync"
                row["peak_memory"] = None
                self.held[case.case_id] = (prepared, sampler)
                self.protocol.send("prepared", case_id=case.case_id, row=row)
                continue
            if prepared is not None:
                prepared.close()
            self.finish(row, [])

    def sample(self, case_id: str, n: int) -> None:
        """Time ``n`` iterations of a held case and send the seconds."""
        try:
            before = own_faults()
            seconds = self.held[case_id][1](int(n))
            after = own_faults()
        except Exception as exc:
            self.protocol.send("sample_error", case_id=case_id, reason=f"{type(exc).__name__}: {exc}")
            return
        faults = None if before is None or after is None else after - before
        self.protocol.send("sample", case_id=case_id, seconds=seconds, faults=faults)

    def release(self) -> None:
        """Close every held case."""
        for prepared, _ in self.held.values():
            prepared.close()
        self.held.clear()

    def profile_group(self, cases: list[Case], steps: int, timing: TimingConfig, tolerance: dict[str, float]) -> None:
        """Build, verify and profile each case; one ``profile`` event per case."""
        from convbench.profile import categorize

        self.backend.configure(timing)
        for case in cases:
            self.protocol.send("start", case_id=case.case_id)
            row = empty_row(case)
            prepared, rows = None, []
            try:
                prepared = self.prepare_and_verify(case, row, tolerance)
                if prepared is not None and row["status"] == "ok":
                    for _ in range(max(timing.warmup_iters, 1)):
                        prepared.step()
                    prepared.sync()
                    rows = prepared.profile(steps)
                    if rows is None:
                        row.update(status="skipped", reason=f"{self.backend.name}: no profiler hook (Prepared.profile)")
                        rows = []
                    graph = build_graph(case.kind, case.params, case.batch)
                    categorize(rows, graph, parse_variant(case.variant).apply(graph))
            except Exception as exc:
                row.update(status="error", reason=f"{type(exc).__name__}: {exc}", details=traceback.format_exc(limit=8))
            finally:
                if prepared is not None:
                    prepared.close()
            self.protocol.send("profile", case_id=case.case_id, status=row["status"], reason=row["reason"], rows=rows, details=row["details"])

    def finish(self, row: dict[str, Any], samples: list[dict[str, Any]]) -> None:
        row["finished_at"] = now_iso()
        self.protocol.send("result", row=row, samples=samples)


def host_fields(row: dict[str, Any], m: Measurement, sampler: Any) -> list[float | None]:
    """Fill ``row``'s host-time columns; return the host seconds per sample (or Nones).

    A device-timed case (``sampler`` a :class:`~convbench.timing.DeviceTimed`) gets the
    host wall time of the very calls its device samples came from: ``host_median`` and
    its CI over the same samples the statistics used, ``device_median`` (= ``median``,
    the headline: ``timer`` says ``device_events``), their ratio, and ``launch_bound``
    when the host takes at least :data:`LAUNCH_BOUND_RATIO` times the device time. A
    host-timed case has ``host_median`` = ``median`` (so ``host_median`` compares every
    backend on one timer) and no device columns.
    """
    if not isinstance(sampler, DeviceTimed):
        row.update(host_median=row["median"], host_ci_low=row["ci_low"], host_ci_high=row["ci_high"])
        return []
    host = sampler.host_samples(len(m.samples))
    if len(host) != len(m.samples):  # an interrupted round: no honest pairing
        return []
    used = [i for i, k in enumerate(m.kept) if k] if m.kept and sum(m.kept) >= 3 else list(range(len(host)))
    stats = summarize([host[i] for i in used])
    ratio = stats.median / row["median"] if row["median"] else None
    row.update(
        host_median=stats.median, host_ci_low=stats.ci_low, host_ci_high=stats.ci_high, device_median=row["median"],
        host_device_ratio=ratio, launch_bound=None if ratio is None else bool(ratio >= LAUNCH_BOUND_RATIO),
    )  # fmt: skip
    return list(host)


def _gpu_index(device: str) -> int:
    """The GPU nvidia-smi should report on: CUDA_VISIBLE_DEVICES' first entry, else 0."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def _open_protocol() -> Protocol:
    proto_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed from now on goes to stderr
    sys.stdout = sys.stderr
    return Protocol(os.fdopen(proto_fd, "w", buffering=1))


def info_of(name: str) -> BackendInfo:
    try:
        return load_backend(name).info()
    except Exception as exc:
        return BackendInfo(name=name, available=False, reason=f"cannot load backend {name!r}: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbench.worker")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--info", action="store_true", help="print the backend's info and exit")
    args = parser.parse_args(argv)
    protocol = _open_protocol()
    info = info_of(args.backend)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    protocol.send("hello", info=asdict(info), pid=os.getpid(), python=sys.executable, cpus=cpus and format_cpu_list(cpus),
                  schema=SCHEMA_ID, convbench=__version__, allocator=describe_allocator(os.environ))  # fmt: skip
    if args.info:
        return 0
    backend = load_backend(args.backend) if info.available else _Unavailable(info)
    runner = CaseRunner(backend, protocol)
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("cmd") == "exit":
            break
        if msg.get("cmd") == "run":
            cases = [Case.model_validate(c) for c in msg["cases"]]
            timing = TimingConfig.model_validate(msg.get("timing", {}))
            started = time.perf_counter()
            runner.peaks.update(msg.get("peaks") or {})
            runner.speed_reference = Speed.from_dict(msg.get("speed_reference"))
            runner.run_group(cases, timing, msg.get("tolerance", {}), bool(msg.get("verify_only")))
            protocol.send("done", seconds=time.perf_counter() - started)
        if msg.get("cmd") == "prepare":
            cases = [Case.model_validate(c) for c in msg["cases"]]
            runner.hold_group(cases, TimingConfig.model_validate(msg.get("timing", {})), msg.get("tolerance", {}))
            protocol.send("done")
        if msg.get("cmd") == "sample":
            runner.sample(msg["case_id"], msg["n"])
        if msg.get("cmd") == "release":
            runner.release()
            protocol.send("done")
        if msg.get("cmd") == "profile":
            cases = [Case.model_validate(c) for c in msg["cases"]]
            timing = TimingConfig.model_validate(msg.get("timing", {}))
            started = time.perf_counter()
            runner.profile_group(cases, int(msg.get("steps", 10)), timing, msg.get("tolerance", {}))
            protocol.send("done", seconds=time.perf_counter() - started)
    return 0


class _Unavailable(Backend):
    """Stands in for a backend that cannot load: every case is skipped with its reason."""

    def __init__(self, info: BackendInfo) -> None:
        self._info = info
        self.name = info.name

    def info(self) -> BackendInfo:
        return self._info

    def prepare(self, case, graph, tensors, cotangents):  # noqa: ANN001,ANN201
        raise UnsupportedCase(self._info.reason or "backend unavailable")


if __name__ == "__main__":
    sys.exit(main())
