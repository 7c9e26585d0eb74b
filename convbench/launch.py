"""Which runner runs a run's cases: the local :class:`~convbench.runner.Runner`, or,
for a run with a ``fleet`` record, the Ray :class:`~convbench.fleet.FleetRunner`
(:mod:`convbench.fleet` is imported only then, so a local run never loads it)."""

from __future__ import annotations

from typing import Any

from convbench.results import RunFolder
from convbench.runner import ResultCallback, Runner, RunOptions


def make_runner(folder: RunFolder, options: RunOptions, on_result: ResultCallback, fleet: dict[str, Any] | None = None) -> Any:
    """A runner with ``run(cases)``; ``fleet`` is the run's fleet record
    (:func:`convbench.fleet.connect`: address, placement rule texts, cpus spec)."""
    if not fleet:
        return Runner(folder, options, on_result)
    from convbench.fleet import FleetRunner, parse_place

    rules = [parse_place(t) for t in fleet.get("placement") or []]
    return FleetRunner(folder, options, on_result, address=fleet["address"], placement=rules, cpus=fleet.get("cpus"))
