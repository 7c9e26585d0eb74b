"""Run one suite across a fleet of machines joined in a Ray cluster.

Each node advertises its devices as Ray custom resources, one per device kind:
``cpu:<arch>`` (``cpu:x86_64``, ``cpu:aarch64``) and ``cuda:<gpu name>``
(``cuda:nvidia-h100-80gb-hbm3``), with the device count as amount (:func:`node_resources`
computes them; ``convbench fleet node-resources`` prints the ``--resources`` JSON a node
starts with). Names are normalised by :func:`normalise_label`.

The driver (:class:`FleetRunner`) groups cases as the local runner does (variants of
one case run side by side in one worker) and places each group on one *slot* (a node
and one of its device resources) whose name matches the group's requirement: by
default ``<device>:*`` (any CPU, any GPU), narrowed with placement rules
(``--place cpu:aarch64`` or ``--place "cpu:labela=workload == 'dw_small'"``). A group
asks for one whole unit of the resource, with a hard affinity to the chosen node, so
a device runs one group at a time. On the node a Ray task runs the ordinary
:class:`~convbench.runner.Runner` into a temporary run folder and streams back the
node's environment, each row as it finishes, then the worker logs; the driver writes
each row into the one run folder at once (``host_id``, ``device_label`` and
``attempts`` say where and how it ran, ``environment.hosts`` holds each node's
environment).

A node that dies mid-group turns its unfinished cases into ``error`` rows; they are
retried once on another live node whose resource matches (the new row replaces the
error row, ``attempts`` keeps the history). Cases no live node can take are
``skipped`` with the reason. Ray is imported only here, and only when a cluster is used.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import platform
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convbench.cases import Case
from convbench.results import RunFolder, empty_row, now_iso
from convbench.runner import finished_planned, resolve_threads

#: Device kinds that can be resources; a resource name is ``<device>:<label>``.
DEVICES = ("cpu", "cuda")
#: Overrides of a node's labels: ``cpu=labela,cuda=mygpu`` (as ``--label`` options).
LABELS_ENV = "CONVBENCH_FLEET_LABELS"
INSTALL_HINT = (
    "pip install 'convbench[fleet]' (or: pip install ray) on the driver and on every node"
)
#: Architecture aliases, so an Apple Silicon Mac and a Graviton box both say aarch64.
ARCH_ALIASES = {
    "arm64": "aarch64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "i686": "x86",
    "i386": "x86",
}
#: How many times a group is re-queued after failing before it started on a node.
MAX_PLACEMENT_FAILURES = 3
OnResult = Callable[[dict[str, Any]], None]


class FleetError(Exception):
    """Bad fleet input or an unusable cluster (missing ray, unreachable address)."""


# --------------------------------------------------------------------------- resources
def normalise_label(text: str, pattern: bool = False) -> str:
    """A label usable in a Ray resource name: lowercase ``[a-z0-9._-]``, every other run
    of characters one dash (``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``);
    with ``pattern``, the glob characters ``*`` and ``?`` are kept."""
    allowed = r"a-z0-9._\-" + (r"*?" if pattern else "")
    label = re.sub(f"[^{allowed}]+", "-", str(text).strip().lower()).strip("-")
    label = ARCH_ALIASES.get(label, label)
    return label or "unknown"


def resource_name(device: str, label: str, pattern: bool = False) -> str:
    """``<device>:<normalised label>``; ValueError for an unknown device kind."""
    if device not in DEVICES:
        raise ValueError(f"unknown device kind {device!r} (expected one of {', '.join(DEVICES)})")
    return f"{device}:{normalise_label(label, pattern)}"


def parse_labels(items: list[str] | str | None) -> dict[str, str]:
    """``["cpu=labela", "cuda=x"]`` (or one comma-separated string) -> ``{device: label}``."""
    if isinstance(items, str):
        items = items.split(",")
    labels: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in items or [])):
        device, sep, label = item.partition("=")
        if not sep or device.strip() not in DEVICES or not label.strip():
            raise FleetError(
                f"label {item!r}: expected DEVICE=LABEL with DEVICE one of {', '.join(DEVICES)}"
            )
        labels[device.strip()] = label.strip()
    return labels


def node_resources(
    env: dict[str, Any] | None = None, labels: dict[str, str] | None = None
) -> dict[str, int]:
    """The device resources this node should advertise: ``cpu:<arch>`` (one unit: the
    whole CPU) and one ``cuda:<name>`` per GPU model (amount: how many). ``labels``
    (else :data:`LABELS_ENV`) replaces a device's label, e.g. to let one machine pose as
    two device kinds in a test; a CUDA label applies to every GPU of the node."""
    if env is None:
        from convbench.environment import capture

        env = capture()
    if labels is None:
        labels = parse_labels(os.environ.get(LABELS_ENV))
    arch = env.get("architecture") or platform.machine() or "unknown"
    out = {resource_name("cpu", labels.get("cpu", arch)): 1}
    for gpu in env.get("gpus") or []:
        name = resource_name("cuda", labels.get("cuda", gpu.get("name") or "unknown"))
        out[name] = out.get(name, 0) + 1
    return out


def device_resources(resources: dict[str, Any]) -> dict[str, int]:
    """The convbench device resources among a Ray node's resources."""
    return {
        k: int(v)
        for k, v in resources.items()
        if k.split(":", 1)[0] in DEVICES and ":" in k and v >= 1
    }


# --------------------------------------------------------------------------- placement
@dataclass(frozen=True)
class PlacementRule:
    """Cases of ``pattern``'s device (and matching ``where``, a filter expression) need a
    resource matching ``pattern`` (a glob such as ``cpu:aarch64`` or ``cuda:nvidia-a100*``)."""

    pattern: str
    where: str | None = None

    @property
    def device(self) -> str:
        return self.pattern.split(":", 1)[0]

    def text(self) -> str:
        return self.pattern + (f"={self.where}" if self.where else "")


def parse_place(text: str) -> PlacementRule:
    """``DEVICE:LABEL`` or ``DEVICE:LABEL=QUERY`` -> :class:`PlacementRule`."""
    spec, sep, where = text.partition("=")
    device, colon, label = spec.strip().partition(":")
    if not colon or device not in DEVICES or not label.strip():
        raise FleetError(
            f'--place {text!r}: expected DEVICE:LABEL[=QUERY], e.g. cpu:aarch64 or "cpu:x86_64=batch > 1"'
        )
    if sep and not where.strip():
        raise FleetError(f"--place {text!r}: empty query after '='")
    return PlacementRule(resource_name(device, label, pattern=True), where.strip() or None)


def requirements(cases: list[Case], rules: list[PlacementRule]) -> dict[str, str]:
    """case id -> resource pattern: the first rule that matches, else ``<device>:*``."""
    from convbench.suite import SuiteError, filter_cases

    out: dict[str, str] = {}
    for rule in rules:
        candidates = [c for c in cases if c.device == rule.device and c.case_id not in out]
        try:
            chosen = filter_cases(candidates, rule.where) if rule.where else candidates
        except SuiteError as exc:
            raise FleetError(f"--place {rule.text()!r}: {exc}") from None
        out.update({c.case_id: rule.pattern for c in chosen})
    return {c.case_id: out.get(c.case_id, f"{c.device}:*") for c in cases}


def import_ray() -> Any:
    """The ray module, or a :class:`FleetError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise FleetError(
            f"--cluster needs Ray, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


# --------------------------------------------------------------------------- on the node
class _StreamingFolder(RunFolder):
    """A node-local run folder that hands each finished case to a queue instead of
    writing parquet (the driver's folder is the one that persists)."""

    def __init__(self, path: Path, meta: dict[str, Any], out: queue.Queue) -> None:
        super().__init__(path, meta)
        self.out = out

    def add(self, row: dict[str, Any], samples: Any = ()) -> None:
        self.rows.append(row)
        self.out.put((row, list(samples)))


def _drop_ray_thread_env() -> None:
    """Ray sets OMP_NUM_THREADS=1 in its workers when the node did not set it; the
    benchmark workers must see the node's own environment instead."""
    if "OMP_NUM_THREADS" not in os.environ:
        return
    try:  # the raylet (parent) holds the node's environment
        parent = Path(f"/proc/{os.getppid()}/environ").read_bytes().split(b"\0")
    except OSError:
        return
    if not any(v.startswith(b"OMP_NUM_THREADS=") for v in parent):
        os.environ.pop("OMP_NUM_THREADS", None)


def node_task(cases: list[dict[str, Any]], options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run ``cases`` (one group) on this node with the local runner; yield the node's
    environment (``hello``), each row as it finishes (``row``) and the worker logs and
    backend environments (``done``). Runs inside a Ray task."""
    from convbench.cpu_topology import CpuSpecError, available_cpus, clusters, resolve_cpus
    from convbench.environment import capture
    from convbench.runner import Runner, RunOptions
    from convbench.timing import TimingConfig

    _drop_ray_thread_env()
    env = capture()
    planned = [Case.model_validate(c) for c in cases]
    spec, pinning = options.get("cpus"), None
    try:  # the run's cpus spec (big, little, clusterN, a list) names *this* node's CPUs
        pinning = resolve_cpus(spec, clusters(), available_cpus(), option="cpus") if spec else None
    except CpuSpecError as exc:
        yield {"event": "hello", "core": env, "pid": os.getpid(), "raylet_pid": os.getppid()}
        for case in planned:  # this node cannot pin as asked: error rows, nothing timed
            row = {**empty_row(case), "status": "error", "reason": f"node {platform.node()}: {exc}", "finished_at": now_iso()}
            yield {"event": "row", "planned_id": case.case_id, "row": row, "samples": []}
        yield {"event": "done", "backends": {}, "logs": {}}
        return
    env["cpu_pinning"] = pinning.record() if pinning else None
    resolved = [resolve_threads(c, len(pinning.cpus) if pinning else None) for c in planned]
    yield {"event": "hello", "core": env, "pid": os.getpid(), "raylet_pid": os.getppid()}
    run_options = RunOptions(
        TimingConfig.model_validate(options["timing"]), options["timeout"], options["tolerance"],
        options["interpreters"], options.get("verify_only", False),
        tuple(pinning.cpus) if pinning else None,
    )  # fmt: skip
    planned_of = {r.case_id: p.case_id for r, p in zip(resolved, planned, strict=True)}
    with tempfile.TemporaryDirectory(prefix="convbench-fleet-") as tmp:
        out: queue.Queue = queue.Queue()
        folder = _StreamingFolder(Path(tmp), {"environment": {"core": env, "backends": {}}}, out)
        (folder.path / "logs").mkdir()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                Runner(folder, run_options).run(resolved)
            except BaseException as exc:  # reported to the driver below
                failure.append(exc)
            finally:
                out.put(None)

        threading.Thread(target=work, daemon=True).start()
        while (item := out.get()) is not None:
            row, samples = item
            yield {
                "event": "row",
                "planned_id": planned_of.get(row["case_id"], row["case_id"]),
                "row": row,
                "samples": samples,
            }
        if failure:
            raise RuntimeError(f"the runner failed on the node: {failure[0]!r}")
        logs = {
            p.name: p.read_text(errors="replace")[-200_000:]
            for p in sorted((folder.path / "logs").glob("*.log"))
        }
        yield {
            "event": "done",
            "backends": folder.record.environment.backends,
            "logs": logs,
        }


# --------------------------------------------------------------------------- the driver
@dataclass
class Slot:
    """One device resource of one live node."""

    node_id: str
    resource: str
    capacity: int
    address: str = ""
    used: int = 0


@dataclass
class Unit:
    """A group of cases placed together, with its attempts so far."""

    cases: list[Case]
    pattern: str
    attempt: int = 0
    tried: set[str] = field(default_factory=set)  #: node ids it ran (or failed) on
    placement_failures: int = 0
    history: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict
    )  #: planned id -> attempts
    finished: set[str] = field(default_factory=set)
    error_ids: dict[str, str] = field(
        default_factory=dict
    )  #: planned id -> case id of its error row


@dataclass
class _Flight:
    unit: Unit
    slot: Slot
    ref: Any
    host_id: str | None = None
    threads: int | None = None


class FleetRunner:
    """Runs cases on a Ray cluster into one :class:`RunFolder` (same interface as
    :class:`~convbench.runner.Runner`: construct, then :meth:`run`)."""

    def __init__(
        self,
        folder: RunFolder,
        options: Any,
        on_result: OnResult | None = None,
        *,
        address: str,
        placement: list[PlacementRule] | None = None,
        refresh_s: float = 2.0,
        cpus: str | None = None,
    ) -> None:
        self.folder = folder
        self.cpus = cpus  #: pinning spec, resolved by each node against its own CPUs
        self.options = options
        self.on_result = on_result or (lambda row: None)
        self.address = address
        self.placement = placement or []
        self.refresh_s = refresh_s
        self.slots: dict[tuple[str, str], Slot] = {}
        self.dead: set[str] = set()
        self.events: queue.Queue = queue.Queue()
        self.active: dict[int, _Flight] = {}
        self.refreshed = 0.0
        self.ray: Any = None

    # -- cluster ---------------------------------------------------------------------
    def connect(self) -> None:
        connect(self.address, [])
        ray = self.ray = import_ray()
        self.remote = ray.remote(num_returns="streaming", max_retries=0, num_cpus=0)(node_task)

    def refresh(self) -> None:
        """Re-read the live nodes and their device resources (keeps slots in use)."""
        live: dict[tuple[str, str], Slot] = {}
        for node in self.ray.nodes():
            if not node.get("Alive") or node["NodeID"] in self.dead:
                continue
            for res, amount in device_resources(node.get("Resources") or {}).items():
                key = (node["NodeID"], res)
                slot = self.slots.get(key) or Slot(
                    node["NodeID"], res, amount, node.get("NodeManagerAddress", "")
                )
                slot.capacity = amount
                live[key] = slot
        self.slots = live
        self.refreshed = time.monotonic()

    def cluster_summary(self) -> str:
        names = sorted({s.resource for s in self.slots.values()})
        return ", ".join(names) if names else "no device resources"

    # -- rows ------------------------------------------------------------------------
    def _record(
        self, row: dict[str, Any], samples: list[dict[str, Any]], replaces: str | None = None
    ) -> None:
        self.folder.add(row, samples, replaces=replaces)
        self.on_result(row)

    def _fail_rows(self, unit: Unit, flight: _Flight | None, status: str, reason: str) -> None:
        """``status`` rows for the unfinished cases of ``unit`` (error rows remembered, so
        a successful retry replaces them)."""
        for planned_case in unit.cases:
            planned, case = planned_case.case_id, planned_case
            if planned in unit.finished:
                continue
            if (
                flight is not None
                and flight.threads
                and case.device == "cpu"
                and case.threads is None
            ):
                case = case.model_copy(update={"threads": flight.threads})
            row = empty_row(case)
            row.update(status=status, reason=reason, finished_at=now_iso())
            if flight is not None:
                unit.history.setdefault(planned, []).append(
                    self._attempt(unit, flight, status, reason)
                )
                row.update(host_id=flight.host_id, device_label=flight.slot.resource)
            if unit.history.get(planned):
                row["attempts"] = json.dumps(unit.history[planned])
            self._record(row, [], replaces=unit.error_ids.get(planned))
            if status == "error":
                unit.error_ids[planned] = row["case_id"]

    @staticmethod
    def _attempt(unit: Unit, flight: _Flight, status: str, reason: str | None) -> dict[str, Any]:
        return {
            "attempt": unit.attempt, "node_id": flight.slot.node_id, "host_id": flight.host_id,
            "device_label": flight.slot.resource, "status": status, "reason": reason, "finished_at": now_iso(),
        }  # fmt: skip

    # -- scheduling ------------------------------------------------------------------
    def _dispatch(self, unit: Unit, slot: Slot) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        slot.used += 1
        unit.attempt += 1
        unit.tried.add(slot.node_id)
        opts = {
            "timing": self.options.timing.model_dump(), "timeout": self.options.timeout,
            "tolerance": dict(self.options.tolerance), "interpreters": dict(self.options.interpreters),
            "verify_only": self.options.verify_only, "cpus": self.cpus,
        }  # fmt: skip
        ref = self.remote.options(
            resources={slot.resource: 1},
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=False),
        ).remote([c.model_dump() for c in unit.cases if c.case_id not in unit.finished], opts)
        flight = _Flight(unit, slot, ref)
        self.active[id(flight)] = flight
        threading.Thread(target=self._follow, args=(flight,), daemon=True).start()

    def _follow(self, flight: _Flight) -> None:
        """Forward the streamed events of one task to the driver's queue."""
        try:
            for ref in flight.ref:
                self.events.put((flight, self.ray.get(ref), None))
            self.events.put((flight, {"event": "end"}, None))
        except Exception as exc:
            self.events.put((flight, {"event": "failed"}, exc))

    def _unplaceable(self, unit: Unit) -> None:
        if unit.error_ids:  # a retry with nowhere to go: its error rows stay, saying why
            reason = f"not retried: no other live node offers {unit.pattern}"
            for cid in unit.error_ids.values():
                row = next((r for r in self.folder.rows if r["case_id"] == cid), None)
                if row is not None:
                    self._record({**row, "reason": f"{row['reason']}; {reason}"}, [])
            return
        self._fail_rows(
            unit,
            None,
            "skipped",
            f"no live node of the Ray cluster offers a {unit.pattern} device (it offers: {self.cluster_summary()})",
        )

    def run(self, cases: list[Case]) -> None:
        """Run every case not yet finished in the folder; Ctrl-C cancels what is in flight."""
        if self.ray is None:
            self.connect()
        done = finished_planned(self.folder, cases)
        todo = [c for c in cases if c.case_id not in done]
        needs = requirements(todo, self.placement)
        groups: dict[tuple[str, str], list[Case]] = {}
        for case in todo:
            groups.setdefault((case.group_key, needs[case.case_id]), []).append(case)
        pending = [Unit(g, pattern) for (_, pattern), g in groups.items()]
        self.refresh()
        try:
            while pending or self.active:
                if time.monotonic() - self.refreshed > self.refresh_s:
                    self.refresh()
                waiting = []
                for unit in pending:
                    avoid = unit.tried if unit.error_ids else set()
                    matching = [
                        s
                        for s in self.slots.values()
                        if fnmatch.fnmatchcase(s.resource, unit.pattern) and s.node_id not in avoid
                    ]
                    if not matching:
                        self._unplaceable(unit)
                    elif free := [s for s in matching if s.used < s.capacity]:
                        self._dispatch(unit, free[0])
                    else:
                        waiting.append(unit)
                pending = waiting
                try:
                    flight, event, exc = self.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                retry = self._handle(flight, event, exc)
                if event["event"] in ("end", "failed"):
                    self.active.pop(id(flight), None)
                    flight.slot.used = max(flight.slot.used - 1, 0)
                    if retry is not None:
                        pending.insert(0, retry)
        except BaseException:
            for flight in self.active.values():
                self._try_cancel(flight)
            raise

    def _try_cancel(self, flight: _Flight) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(flight.ref, force=True)

    def _handle(
        self, flight: _Flight, event: dict[str, Any], exc: BaseException | None
    ) -> Unit | None:
        """Apply one event; returns a unit to run again (a retry), if any."""
        unit, kind = flight.unit, event["event"]
        if kind == "hello":
            core = event["core"]
            flight.host_id = f"{core.get('hostname') or 'host'}-{flight.slot.node_id[:8]}"
            flight.threads = core.get("cpu_logical_cores")
            hosts = self.folder.meta.setdefault("environment", {}).setdefault("hosts", {})
            node = next((n for n in self.ray.nodes() if n["NodeID"] == flight.slot.node_id), {})
            hosts.setdefault(flight.host_id, {}).update(
                node_id=flight.slot.node_id, address=flight.slot.address, core=core,
                resources=device_resources(node.get("Resources") or {}), pid=event.get("pid"), raylet_pid=event.get("raylet_pid"),
            )  # fmt: skip
            self.folder.save_meta()
        elif kind == "row":
            row, planned = dict(event["row"]), event["planned_id"]
            history = unit.history.setdefault(planned, [])
            history.append(self._attempt(unit, flight, row["status"], row.get("reason")))
            row.update(
                host_id=flight.host_id,
                device_label=flight.slot.resource,
                attempts=json.dumps(history),
            )
            unit.finished.add(planned)
            self._record(
                row, event.get("samples") or [], replaces=unit.error_ids.pop(planned, None)
            )
        elif kind == "done":
            host = self.folder.meta["environment"]["hosts"].setdefault(
                flight.host_id or "unknown", {}
            )
            host.setdefault("backends", {}).update(event.get("backends") or {})
            shared = self.folder.meta["environment"].setdefault("backends", {})
            for key, info in (event.get("backends") or {}).items():
                shared.setdefault(key, info)
            for name, text in (event.get("logs") or {}).items():
                (self.folder.path / "logs" / f"{flight.host_id}-{name}").write_text(text)
            self.folder.save_meta()
        elif kind == "end":
            if any(c.case_id not in unit.finished for c in unit.cases):
                self._fail_rows(unit, flight, "error", f"node {flight.host_id} returned no result")
        elif kind == "failed":
            return self._failed(flight, exc)
        return None

    def _failed(self, flight: _Flight, exc: BaseException | None) -> Unit | None:
        unit = flight.unit
        ray_exc = self.ray.exceptions
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        if isinstance(exc, ray_exc.RayTaskError):  # the task itself raised: not the node's fault
            self._fail_rows(unit, flight, "error", f"on node {flight.host_id}: {message}")
            return None
        if flight.host_id is None:  # it never started: the node is gone or unusable
            self.dead.add(flight.slot.node_id)
            unit.placement_failures += 1
            unit.attempt -= 1
            unit.tried.discard(flight.slot.node_id)
            self.refresh()
            if unit.placement_failures < MAX_PLACEMENT_FAILURES:
                return unit
            self._fail_rows(unit, flight, "error", f"could not start on the cluster: {message}")
            return None
        if isinstance(
            exc, (ray_exc.NodeDiedError, ray_exc.LocalRayletDiedError)
        ) or not self._alive(flight.slot.node_id):
            self.dead.add(flight.slot.node_id)
        self._fail_rows(unit, flight, "error", f"node {flight.host_id} died mid-case ({message})")
        self.refresh()
        if unit.attempt >= 2:
            return None
        retry = Unit(
            [c for c in unit.cases if c.case_id not in unit.finished],
            unit.pattern,
            unit.attempt,
            set(unit.tried),
        )
        retry.history, retry.error_ids = unit.history, unit.error_ids
        return retry

    def _alive(self, node_id: str) -> bool:
        try:
            return any(n["NodeID"] == node_id and n.get("Alive") for n in self.ray.nodes())
        except Exception:
            return False


# --------------------------------------------------------------------------- CLI glue
def connect(address: str, place: list[str]) -> dict[str, Any]:
    """Parse ``--place`` rules, import ray and connect to the cluster at ``address``;
    returns the run's ``fleet`` record (address, placement rule texts)."""
    rules = [parse_place(p) for p in place]
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level="WARNING",
                configure_logging=False,
            )
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError...
            raise FleetError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "address": address,
        "placement": [r.text() for r in rules],
        "nodes_at_start": len(nodes),
    }
