"""``convbench profile`` through the one scheduler: :class:`ProfileRunner` is the
:class:`~convbench.runner.Runner` whose workers get the ``profile`` command
(:mod:`convbench.worker`) instead of ``run``. Grouping, one worker per backend and
device, ``cpus`` pinning, the allocator, and what a dying or hanging worker costs (its
case is an ``error`` row, a fresh worker takes the rest) are the runner's; the rows go
to ``profile.parquet`` (:mod:`convbench.profile`), not to the run folder's tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from convbench.cases import Case
from convbench.profile import PROFILE_COLUMNS, case_rows, save
from convbench.results import RunFolder, empty_row
from convbench.runner import Runner, RunOptions

#: The file of a run folder that holds the profile rows.
PROFILE_FILE = "profile.parquet"
OnCase = Callable[[dict[str, Any]], None]


class ProfileRunner(Runner):
    """Profiles ``steps`` steps of each verified case into ``folder/profile.parquet``
    (saved after every case); the workers' environments go to run.json's
    ``profile.backends`` (a run folder's own ``environment`` stays the run's)."""

    command = "profile"

    def __init__(self, folder: RunFolder, options: RunOptions, steps: int, on_case: OnCase | None = None) -> None:
        super().__init__(folder, options)
        self.steps = steps
        self.on_case = on_case or (lambda row: None)
        self.out = folder.path / PROFILE_FILE
        self.rows: list[dict[str, Any]] = []
        self.cases: dict[str, Case] = {}

    def run(self, cases: list[Case]) -> None:
        self.cases = {c.case_id: c for c in cases}
        super().run(cases)

    def finished(self, cases: list[Case]) -> set[str]:
        return set()  # a profile runs every case it is given, whatever the folder holds

    def backend_envs(self) -> dict[str, Any]:
        return self.folder.meta.setdefault("profile", {}).setdefault("backends", {})

    def message(self, env: dict[str, Any]) -> dict[str, Any]:
        return {"timing": self.options.timing.model_dump(), "tolerance": self.options.tolerance, "steps": self.steps}

    def canary(self, at: str) -> None:
        """No canary: nothing is timed."""

    def pass_count(self) -> int:
        return 1  # nothing is timed: one pass whatever ``passes`` says

    def run_group(self, group: list[Case]) -> None:
        self.run_group_once(group, self._record)  # one process whatever ``processes`` says

    def result_of(self, event: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A ``profile`` event as a row (status, reason, details) and its profile rows."""
        row = empty_row(self.cases[event["case_id"]])
        row.update(status=event.get("status"), reason=event.get("reason"), details=event.get("details"))
        return row, list(event.get("rows") or [])

    def _record(self, row: dict[str, Any], samples: list[dict[str, Any]] | None = None) -> None:
        new = case_rows(self.cases[row["case_id"]], {**row, "rows": samples or []}, self.steps)
        self.rows.extend(new)
        save(self.out, self.rows)
        self.on_case(new[0])


def profile_cases(
    folder: RunFolder, cases: list[Case], options: RunOptions, steps: int, on_case: OnCase | None = None
) -> pd.DataFrame:
    """Profile ``cases`` into ``folder`` (see :class:`ProfileRunner`); the rows."""
    runner = ProfileRunner(folder, options, steps, on_case)
    runner.run(cases)
    return pd.DataFrame(runner.rows, columns=PROFILE_COLUMNS)
