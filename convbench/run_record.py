"""The run record: ``run.json`` of a run folder as a typed, validated model.

:class:`RunRecord` is the one reader of ``run.json``: :func:`convbench.results.read_run`
reads, migrates and validates it, and every module that needs the suite, the options,
the environment (``core``, ``backends`` and, for fleet and merged runs, ``hosts``), the
status or the times asks the record instead of walking the JSON by hand. Writers may
keep building plain dicts (``RunFolder.meta``): :func:`validate` checks them before they
are written and the reader checks them again when they are read.

The models are deliberately partial: they type what readers use and allow every other
field (``extra="allow"``), so nothing a run recorded is lost when a record is read and
written back. A field of the wrong type (``environment`` a list, ``status`` a number,
``options.timing`` a string) is an error naming the file and the field.

Schema versions (``schema_version``)

* 1: every run folder written before the field existed (all of ``results/published``):
  no ``schema_version``; ``environment``, ``options``, ``canary`` and ``cases`` may be
  missing or null (readers then treated them as empty).
* 2: ``schema_version: 2``; the same fields, never null when present.

:func:`migrate` turns a version-1 record into a version-2 one (explicitly: the fields it
changes are listed there), and refuses a version it does not know (a newer convbench).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The version of run.json this convbench writes (see the module docstring).
SCHEMA_VERSION = 2


class ResultsError(Exception):
    """A results path is missing, unreadable or not a convbench run."""


class _Record(BaseModel):
    """A part of run.json: typed where readers need it, every other field kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def get(self, name: str, default: Any = None) -> Any:
        """A field by name, typed or extra (``default`` when absent or None)."""
        if name in type(self).model_fields:
            value = getattr(self, name)
        else:
            value = (self.model_extra or {}).get(name)
        return default if value is None else value

    def to_dict(self) -> dict[str, Any]:
        """This part as the dict it was read from (fields never given left out)."""
        return self.model_dump(mode="python", exclude_unset=True)


class Core(_Record):
    """``environment.core``: the machine and software a run saw (convbench.environment)."""

    hostname: str | None = None
    cpu: Any = None
    git_revision: str | None = None
    git_dirty: bool | None = None
    convbench_version: str | None = None
    thread_env: dict[str, Any] | None = None
    gpus: list[dict[str, Any]] | None = None


class Host(_Record):
    """One machine of a fleet or merged run: ``environment.hosts[host_id]``."""

    core: Core = Field(default_factory=Core)
    backends: dict[str, Any] = Field(default_factory=dict)


class Environment(_Record):
    core: Core = Field(default_factory=Core)
    #: one entry per backend worker (``"torch:cpu"``: its framework, versions, build facts)
    backends: dict[str, Any] = Field(default_factory=dict)
    #: fleet and merged runs: one entry per machine
    hosts: dict[str, Host] = Field(default_factory=dict)


class Options(_Record):
    timing: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = None
    #: verification tolerance per dtype
    tolerance: dict[str, float] | None = None
    interpreters: dict[str, Any] | None = None
    cpus: dict[str, Any] | None = None


class RunRecord(_Record):
    """``run.json``. Build one with :func:`parse` (or ``convbench.results.read_run``)."""

    schema_version: int = SCHEMA_VERSION
    suite: str | None = None
    preset: str | None = None
    filter: str | None = None
    suite_path: str | None = None
    suite_text: str | None = None
    kind: str | None = None
    #: the planned cases (each a convbench.cases.Case as a dict)
    cases: list[dict[str, Any]] = Field(default_factory=list)
    options: Options = Field(default_factory=Options)
    environment: Environment = Field(default_factory=Environment)
    status: str | None = None
    started: str | None = None
    finished: str | None = None
    convbench_version: str | None = None
    #: canary measurements at the start and end of the run (convbench.canary)
    canary: list[dict[str, Any]] = Field(default_factory=list)
    #: ``convbench ab``: each side's interpreter and convbench version
    ab: dict[str, Any] | None = None
    #: runs made on a fleet (convbench.fleet)
    fleet: dict[str, Any] | None = None
    #: merged runs (convbench.merge): one entry per source run
    merged_from: list[dict[str, Any]] | None = None
    #: runs imported from pytest-benchmark (convbench.interop)
    pytest_benchmark: dict[str, Any] | None = None

    # -- typed access ---------------------------------------------------------------
    @property
    def core(self) -> Core:
        return self.environment.core

    @property
    def hostname(self) -> str | None:
        return self.environment.core.hostname

    @property
    def timing(self) -> dict[str, Any]:
        return self.options.timing

    def host_names(self) -> dict[str, str | None]:
        """``{host_id: hostname}`` of a fleet or merged run ({} for one machine)."""
        return {h: info.core.hostname for h, info in self.environment.hosts.items()}

    def planned_cases(self) -> list[Any]:
        """The planned cases as :class:`convbench.cases.Case` (ResultsError if one is not)."""
        from convbench.cases import Case

        out = []
        for i, c in enumerate(self.cases):
            try:
                out.append(Case.model_validate(c))
            except ValidationError as exc:
                raise ResultsError(f"cases[{i}] is not a case ({_first_error(exc)})") from None
        return out

    def check_resumable(self) -> None:
        """Raise ResultsError unless a run can be resumed from this record: its planned
        cases and the options a runner needs (timing, timeout, tolerance, interpreters)."""
        if "cases" not in self.model_fields_set:
            raise ResultsError("no planned cases (cases): not a run that can be resumed")
        if self.suite is None:
            raise ResultsError("no suite name (suite): not a run that can be resumed")
        self.planned_cases()
        missing = [f for f in ("timeout", "tolerance", "interpreters") if getattr(self.options, f) is None]
        missing += [] if "timing" in self.options.model_fields_set else ["timing"]
        if missing or "options" not in self.model_fields_set:
            raise ResultsError(f"options lack {', '.join(missing) or 'everything'}: not a run that can be resumed")
        cpus = (self.options.cpus or {}).get("cpus")
        if cpus:
            from convbench.cpu_topology import parse_cpu_list

            try:
                parse_cpu_list(cpus if isinstance(cpus, str) else "?")
            except ValueError as exc:
                raise ResultsError(f"options.cpus.cpus: {exc}") from None
        if not math.isfinite(self.options.timeout) or self.options.timeout <= 0:
            raise ResultsError(f"options.timeout is {self.options.timeout}, not a positive number of seconds")
        from convbench.timing import TimingConfig

        try:
            TimingConfig.model_validate(self.options.timing)
        except ValidationError as exc:
            raise ResultsError(f"options.timing is not valid ({_first_error(exc)})") from None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = []
    for e in errors[:3]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "the record"
        parts.append(f"{where}: {e.get('msg')}")
    more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(parts) + more


#: Fields a version-1 record may hold as null, meaning "not recorded".
_V1_NULLABLE = ("environment", "options", "canary", "cases")


def migrate(data: Any) -> dict[str, Any]:
    """``data`` (run.json as parsed) as a current record's dict. Raises ResultsError when it
    is not a JSON object or declares a version this convbench cannot read.

    Version 1 -> 2: ``schema_version`` is set to 2; ``environment``, ``options``,
    ``canary`` and ``cases`` given as null are dropped (read as not recorded), and so are
    null ``environment.core`` / ``environment.backends`` / ``environment.hosts``.
    """
    if not isinstance(data, dict):
        raise ResultsError(f"not a JSON object but {_kind(data)}")
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ResultsError(f"schema_version is {version!r}, not a number")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"schema_version {version}: written by a newer convbench (this one reads up to {SCHEMA_VERSION})")
    if version < 1:
        raise ResultsError(f"schema_version {version} is not a convbench run.json version")
    data = dict(data)
    if version == 1:
        for f in _V1_NULLABLE:
            if f in data and data[f] is None:
                del data[f]
        env = data.get("environment")
        if isinstance(env, dict):
            data["environment"] = {k: v for k, v in env.items() if not (k in ("core", "backends", "hosts") and v is None)}
        data["schema_version"] = SCHEMA_VERSION
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def parse(data: Any) -> RunRecord:
    """A record from run.json as parsed (migrated, validated); ResultsError if it is not one."""
    data = migrate(data)
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        raise ResultsError(f"not a convbench run record ({_first_error(exc)})") from None


def validate(meta: dict[str, Any]) -> RunRecord:
    """Check a dict a writer is about to store as run.json (ValueError if it is not a record)."""
    try:
        return parse(meta)
    except ResultsError as exc:
        raise ValueError(f"run.json to write is not valid: {exc}") from None


def as_record(meta: RunRecord | dict[str, Any]) -> RunRecord:
    """``meta`` as a record: a RunRecord as it is, a run.json dict parsed (ResultsError)."""
    return meta if isinstance(meta, RunRecord) else parse(meta)
