"""Suites: a YAML file of workloads and a matrix -> validated :class:`Suite` -> cases.

Schema (every mapping rejects unknown fields)::

    name: depthwise                 # optional, defaults to the file's stem
    description: "..."              # optional
    workloads:                      # required, non-empty; ids unique, [A-Za-z0-9_.-]+
      - id: conv_dw_1
        kind: depthwise             # a key of convbench.workloads.WORKLOADS
        params: {channels: 32, size: 112, kernel: 3, stride: 1}   # the kind's params_model
    matrix:                         # a mapping or a list of mappings (default: one, all defaults)
      workload: [conv_dw_1]         # default: every workload, in file order
      variant: [native, diagonalwise]       # default [native]
      backend: [torch]              # default [torch]
      device: [cpu]                 # cpu | cuda, default [cpu]
      mode: [inference, training]   # default [inference]
      batch: [1, 32]                # integers >= 1, default [1]
      dtype: [float32]              # float32 | float16 | bfloat16, default [float32]
      layout: [nchw]                # nchw | nhwc, default [nchw]
      execution: [eager]            # default [eager]: eager | compiled (each backend's
                                    # default compiled form) | a name an installed backend
                                    # plugin declares: graph, xla (tensorflow), jit (jax),
                                    # hybridized (mxnet), disabled, basic, extended, layout,
                                    # all (onnxruntime)... (convbench list shows them all);
                                    # a backend without that form skips its cases
      threads: [null]               # integers >= 1 or null (the machine's cores), default [null]
    exclude:                        # optional; a case matching every field given is dropped
      - {mode: training, batch: [1, 2]}     # keys as in matrix, plus kind; a list is any-of
    timing: {...}                   # convbench.timing.TimingConfig fields
    timeout: 600                    # seconds per case, > 0
    tolerance: {float16: 0.02}      # per-dtype overrides of cases.DEFAULT_TOLERANCE
    interpreters: {mxnet: .venv-mxnet/bin/python}
    cpus: big                       # pin workers: big | little | clusterN | a CPU list like 0-3
    presets:                        # optional; `full` means "no overrides" unless defined
      quick:
        description: "..."          # optional
        workloads: [conv_dw_1]      # keep only these workload ids
        matrix: {...}               # replaces the matrix
        exclude: [...]              # appended to exclude
        timing: {...}               # merged over timing
        timeout: 120                # replaces timeout
        cpus: little                # replaces cpus

Every axis of a matrix mapping is a list (a scalar counts as a one-element list); the
mapping is the cartesian product of its axes. The cases of all mappings are joined,
excluded ones dropped and duplicates removed, keeping the first; the order is the order
of the YAML lists, with the workload outermost in the order of ``workloads:``.

Interpreter paths: an absolute path is kept; a relative path with a directory part
(``.venv-mxnet/bin/python``) is resolved against the current working directory, like
any path given on the command line; a bare name (``python3.9``) is looked up on PATH.

API:

* :func:`load_suite` (file) and :func:`loads_suite` (text) -> :class:`Suite`, validated:
  schema, workload kinds, their params (normalised with defaults, and the graph built
  once at batch 1), variants (canonical labels), backends, literals, references to
  workload ids, presets' timing. Any bad input raises :class:`SuiteError`.
* :meth:`Suite.resolved` (preset) -> :class:`ResolvedSuite`: the cases and everything
  the runner needs (timing, timeout, tolerance, interpreters), the preset applied.
* :func:`expand` (suite, preset) -> list of :class:`~convbench.cases.Case`.
* :func:`filter_cases` (cases, expr): ``--filter``, a condition (:mod:`convbench.case_filter`) over
  :data:`FILTER_COLUMNS`; a bad expression raises :class:`FilterError`.

Reading the YAML safely is :mod:`convbench.suite_yaml`; locating each problem (file,
line, field) and wording it is :mod:`convbench.suite_errors`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from convbench.backend import backend_names, execution_vocabulary, unloadable_backends
from convbench.case_filter import FilterSyntaxError, compile_filter
from convbench.cases import (
    DEFAULT_TOLERANCE,
    KEY_FIELDS,
    Case,
    Device,
    DType,
    Layout,
    Mode,
)
from convbench.suite_errors import (
    FilterError,
    Issue,
    Loc,
    Locator,
    SuiteError,
    format_loc,
    show_value,
    unknown_value,
    validation_issues,
    validation_message,
)
from convbench.suite_yaml import MAX_SUITE_BYTES, parse_yaml
from convbench.timing import TimingConfig
from convbench.variants import parse_variant
from convbench.workloads import WORKLOADS

#: Columns a ``--filter`` expression can use (``threads`` is NaN for the machine's cores).
FILTER_COLUMNS = (
    "workload",
    "kind",
    "variant",
    "backend",
    "device",
    "mode",
    "batch",
    "dtype",
    "layout",
    "execution",
    "threads",
)

#: Axes of a matrix mapping, outermost first: the order cases are expanded in.
MATRIX_AXES = KEY_FIELDS

#: The preset that means "no overrides" when a suite does not define it.
FULL_PRESET = "full"


# -- field types -----------------------------------------------------------------------
def _as_list(value: Any) -> Any:
    """A scalar stands for a one-element list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _as_matrix_list(value: Any) -> Any:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    raise ValueError(f"expected a mapping or a list of mappings, got {show_value(value)}")


def _canonical_variant(label: str) -> str:
    return parse_variant(label).label


def _check_backend(name: str, info: ValidationInfo) -> str:
    known = (info.context or {}).get("backends") or backend_names()
    if name not in known:
        raise ValueError(unknown_value("backend", name, known))
    return name


def _check_execution(name: Any, info: ValidationInfo) -> Any:
    """A name of the execution vocabulary: a generic one or one an installed plugin declares
    (which backends run it is theirs to say: a skipped row)."""
    known = (info.context or {}).get("executions") or execution_vocabulary()
    if isinstance(name, str) and name not in known:
        unloaded = unloadable_backends()
        plugins = "plugins" if len(unloaded) > 1 else "plugin"
        note = f"; not known here: the executions of {', '.join(unloaded)}, whose {plugins} did not load" if unloaded else ""
        raise ValueError(unknown_value("execution", name, known) + note)
    return name


def _check_kind(name: str) -> str:
    if name not in WORKLOADS:
        raise ValueError(unknown_value("workload kind", name, WORKLOADS))
    return name


Id = Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
#: A pinning spec: big, little, clusterN or a CPU list (checked against the machine at run time).
CpuSpec = Annotated[str, BeforeValidator(lambda v: str(v) if type(v) is int else v), StringConstraints(min_length=1, pattern=r"^(big|little|cluster[0-9]+|[0-9][0-9,\s-]*)$")]
#: Largest batch and thread count a suite may ask for (far past any machine; past them
#: a row cannot be stored, or a run would only fail later).
MAX_BATCH = 1 << 20
MAX_THREADS = 4096
#: Largest integer workload parameter (channels, sizes...): a tensor dimension.
MAX_PARAM_INT = (1 << 31) - 1
BatchSize = Annotated[int, Strict(), Field(ge=1, le=MAX_BATCH)]
ThreadCount = Annotated[int, Strict(), Field(ge=1, le=MAX_THREADS)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
VariantLabel = Annotated[str, AfterValidator(_canonical_variant)]
BackendName = Annotated[str, AfterValidator(_check_backend)]
KindName = Annotated[str, AfterValidator(_check_kind)]
ExecutionName = Annotated[str, BeforeValidator(_check_execution)]


def _axis(item: Any) -> Any:
    """A non-empty list of ``item``; a scalar is accepted as a one-element list."""
    return Annotated[list[item], BeforeValidator(_as_list), Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkloadSpec(_Model):
    """A named workload: a kind and its parameters (normalised, defaults filled, once loaded)."""

    id: Id
    kind: KindName
    params: dict[str, Any] = Field(default_factory=dict)

    def params_model(self) -> BaseModel:
        return WORKLOADS[self.kind].params_model.model_validate(self.params)

    def build(self, batch: int = 1) -> Any:
        """The workload's :class:`~convbench.graph.Graph` at ``batch``."""
        return WORKLOADS[self.kind].build(self.params_model(), batch)


class Matrix(_Model):
    """One mapping of a matrix: the cartesian product of its axes."""

    workload: _axis(Id) | None = None  #: None: every workload
    variant: _axis(VariantLabel) = ["native"]
    backend: _axis(BackendName) = ["torch"]
    device: _axis(Device) = ["cpu"]
    mode: _axis(Mode) = ["inference"]
    batch: _axis(BatchSize) = [1]
    dtype: _axis(DType) = ["float32"]
    layout: _axis(Layout) = ["nchw"]
    execution: _axis(ExecutionName) = ["eager"]
    threads: _axis(ThreadCount | None) = [None]


class ExcludeRule(_Model):
    """Drops the cases whose value is among the listed ones for every field given."""

    workload: _axis(Id) = []
    kind: _axis(KindName) = []
    variant: _axis(VariantLabel) = []
    backend: _axis(BackendName) = []
    device: _axis(Device) = []
    mode: _axis(Mode) = []
    batch: _axis(BatchSize) = []
    dtype: _axis(DType) = []
    layout: _axis(Layout) = []
    execution: _axis(ExecutionName) = []
    threads: _axis(ThreadCount | None) = []

    @model_validator(mode="after")
    def _not_empty(self) -> ExcludeRule:
        if not self.model_fields_set:
            raise ValueError("an exclude rule needs at least one field (it would drop every case)")
        return self

    def matches(self, case: Case) -> bool:
        return all(getattr(case, name) in getattr(self, name) for name in self.model_fields_set)


MatrixList = Annotated[list[Matrix], BeforeValidator(_as_matrix_list), Field(min_length=1)]


class Preset(_Model):
    """Overrides applied by ``--preset NAME``."""

    description: str | None = None
    workloads: Annotated[list[Id], Field(min_length=1)] | None = None  #: keep only these
    matrix: MatrixList | None = None  #: replaces the suite's matrix
    exclude: list[ExcludeRule] = []  #: appended to the suite's
    timing: dict[str, Any] | None = None  #: merged over the suite's (checked on load)
    timeout: PositiveFloat | None = None  #: replaces the suite's
    cpus: CpuSpec | None = None  #: replaces the suite's


class Suite(_Model):
    """A validated suite file. Load with :func:`load_suite`; expand with :meth:`resolved`."""

    name: Annotated[str, Field(validate_default=True)] = ""  #: default: the file's stem
    description: str | None = None
    workloads: Annotated[list[WorkloadSpec], Field(min_length=1)]
    matrix: MatrixList = [Matrix()]
    exclude: list[ExcludeRule] = []
    timing: TimingConfig = Field(default_factory=TimingConfig)
    timeout: PositiveFloat = 600.0
    tolerance: dict[DType, PositiveFloat] = {}
    interpreters: dict[BackendName, Annotated[str, StringConstraints(min_length=1)]] = {}
    cpus: CpuSpec | None = None  #: pin workers (see convbench.cpu_topology); --cpus replaces it
    presets: dict[Id, Preset] = {}

    _path: Path | None = PrivateAttr(default=None)
    _lines: dict[str, int | None] = PrivateAttr(default_factory=dict)  #: field (e.g. presets.quick.matrix) -> its line

    @field_validator("name")
    @classmethod
    def _default_name(cls, value: str, info: ValidationInfo) -> str:
        return value or (info.context or {}).get("stem") or "suite"

    @property
    def path(self) -> Path | None:
        """The file the suite was loaded from (None when loaded from text)."""
        return self._path

    @property
    def preset_names(self) -> list[str]:
        """Presets ``--preset`` accepts: the defined ones, and ``full``."""
        return list(dict.fromkeys([*self.presets, FULL_PRESET]))

    def workload(self, workload_id: str) -> WorkloadSpec:
        return next(w for w in self.workloads if w.id == workload_id)

    def preset(self, name: str | None) -> Preset:
        """The preset ``name`` (an empty one for None and an undefined ``full``)."""
        if name is None or (name == FULL_PRESET and name not in self.presets):
            return Preset()
        if name not in self.presets:
            raise SuiteError(f"{self._file}: {unknown_value('preset', name, self.preset_names)}")
        return self.presets[name]

    def resolved(self, preset: str | None = None) -> ResolvedSuite:
        """The suite with ``preset`` applied: cases, timing, timeout, tolerance, interpreters."""
        p = self.preset(preset)
        timing = TimingConfig.model_validate(
            {**self.timing.model_dump(exclude_unset=True), **(p.timing or {})}
        )
        cases = self._cases(p)
        if not cases:
            where = f" with preset {preset!r}" if preset else ""
            field = f"presets.{preset}.matrix" if p.matrix else "matrix"
            raise SuiteError(Issue(field, f"the matrix{where} expands to no cases (all excluded?)", self.line_of(field)).format(self._file))
        return ResolvedSuite(
            suite=self,
            preset=preset,
            cases=cases,
            timing=timing,
            timeout=p.timeout if p.timeout is not None else self.timeout,
            tolerance={**DEFAULT_TOLERANCE, **self.tolerance},
            interpreters={b: resolve_interpreter(v) for b, v in self.interpreters.items()},
            cpus=p.cpus if p.cpus is not None else self.cpus,
        )

    def line_of(self, field: str) -> int | None:
        """The line of ``field`` (``matrix``, ``cpus``, ``presets.NAME.cpus``...) in the suite file."""
        return self._lines.get(field)

    def where(self, field: str) -> str:
        """``FILE:LINE: FIELD`` for messages about ``field``."""
        return Issue(field, "", self.line_of(field)).format(self._file).removesuffix(": ")

    @property
    def _file(self) -> str:
        return str(self._path) if self._path is not None else self.name

    def _cases(self, p: Preset) -> list[Case]:
        order = {w.id: i for i, w in enumerate(self.workloads)}
        keep = set(p.workloads) if p.workloads is not None else set(order)
        rules = [*self.exclude, *p.exclude]
        cases: dict[str, Case] = {}
        for m in p.matrix or self.matrix:
            axes = [m.workload or list(order), *(getattr(m, name) for name in MATRIX_AXES[1:])]
            for values in itertools.product(*axes):
                key = dict(zip(MATRIX_AXES, values, strict=True))
                if key["workload"] not in keep:
                    continue
                spec = self.workload(key["workload"])
                case = Case(suite=self.name, kind=spec.kind, params=spec.params, **key)
                if not any(rule.matches(case) for rule in rules):
                    cases.setdefault(case.case_id, case)
        return sorted(cases.values(), key=lambda c: order[c.workload])


@dataclass(frozen=True)
class ResolvedSuite:
    """A suite with a preset applied: what a run executes.

    ``cases`` in run order; ``timing`` the preset's timing merged over the suite's;
    ``timeout`` seconds per case; ``tolerance`` per dtype (defaults merged in);
    ``interpreters`` per backend, resolved paths (a backend not listed runs in the
    current interpreter).
    """

    suite: Suite
    preset: str | None
    cases: list[Case]
    timing: TimingConfig
    timeout: float
    tolerance: dict[str, float]
    interpreters: dict[str, str] = field(default_factory=dict)
    cpus: str | None = None  #: the ``cpus`` pinning spec, resolved on the machine that runs

    @property
    def name(self) -> str:
        return self.suite.name

    @property
    def path(self) -> Path | None:
        return self.suite.path

    def interpreter(self, backend: str) -> str | None:
        """The Python interpreter that hosts ``backend``'s worker (None: the current one)."""
        return self.interpreters.get(backend)

    def filtered(self, expr: str | None) -> ResolvedSuite:
        """The same suite keeping only the cases ``expr`` selects (see :func:`filter_cases`)."""
        return self if not expr else replace(self, cases=filter_cases(self.cases, expr))


def resolve_interpreter(value: str) -> str:
    """Absolute path of an interpreter named in a suite (see the module docstring)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    if len(path.parts) > 1 or value.startswith("."):
        return str(Path.cwd() / path)
    return shutil.which(value) or value


def _check_params(raw: Any, locator: Locator) -> tuple[dict[int, dict[str, Any]], list[Issue]]:
    """Validate each workload's params with its kind's model and build its graph once."""
    normalised: dict[int, dict[str, Any]] = {}
    issues: list[Issue] = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            continue
        if item["kind"] not in WORKLOADS:
            continue
        kind = WORKLOADS[item["kind"]]
        params = item.get("params", {})
        if not isinstance(params, dict):
            continue  # reported by the schema
        loc: Loc = ("workloads", i, "params")
        huge = [k for k, v in params.items() if type(v) is int and abs(v) > MAX_PARAM_INT]
        if huge:
            issues += [locator.issue((*loc, k), f"expected at most {MAX_PARAM_INT:,}, got {show_value(params[k])}") for k in huge]
            continue
        try:
            model = kind.params_model.model_validate(params, strict=True)  # channels: true or "32" is a mistake
        except ValidationError as exc:
            issues += validation_issues(exc, kind.params_model, loc, locator)
            continue
        try:
            kind.build(model, 1)
        except Exception as exc:  # a builder's complaint, e.g. a kernel larger than the input
            issues.append(locator.issue(loc, f"cannot build a {kind.name} workload: {exc}"))
            continue
        normalised[i] = model.model_dump(mode="json")
    return normalised, issues


def _check_references(suite: Suite, raw: dict[str, Any], locator: Locator) -> list[Issue]:
    """Duplicate workload ids, references to unknown ids, presets' merged timing."""
    issues: list[Issue] = []
    ids: dict[str, int] = {}
    for i, w in enumerate(suite.workloads):
        if w.id in ids:
            first = locator.issue(("workloads", ids[w.id], "id"), "")
            issues.append(
                locator.issue(
                    ("workloads", i, "id"),
                    f"duplicate workload id {w.id!r} (first defined on line {first.line})",
                )
            )
        ids.setdefault(w.id, i)

    def refs(loc: Loc, names: Sequence[str] | None) -> None:
        for j, name in enumerate(names or []):
            if name not in ids:
                issues.append(locator.issue((*loc, j), unknown_value("workload id", name, ids)))

    def matrix_refs(loc: Loc, matrices: Sequence[Matrix], rules: Sequence[ExcludeRule]) -> None:
        for k, m in enumerate(matrices):
            refs((*loc, "matrix", k, "workload"), m.workload)
        for k, rule in enumerate(rules):
            refs((*loc, "exclude", k, "workload"), rule.workload)

    matrix_refs((), suite.matrix, suite.exclude)
    base_timing = raw.get("timing") if isinstance(raw.get("timing"), dict) else {}
    for name, preset in suite.presets.items():
        loc: Loc = ("presets", name)
        refs((*loc, "workloads"), preset.workloads)
        matrix_refs(loc, preset.matrix or [], preset.exclude)
        if preset.timing is not None:
            try:
                TimingConfig.model_validate({**base_timing, **preset.timing})
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    own = not err["loc"] or err["loc"][0] in preset.timing
                    at: Loc = (*loc, "timing") if own else ("timing",)
                    issues.append(
                        locator.issue((*at, *err["loc"]), validation_message(err, TimingConfig), err["type"])
                    )
    return issues


def max_cases() -> int:
    """The most cases a suite may expand to (:data:`MAX_CASES`, or CONVBENCH_MAX_CASES)."""
    value = os.environ.get(MAX_CASES_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_CASES


def _check_sizes(suite: Suite, locator: Locator) -> list[Issue]:
    """Matrices that expand past :func:`max_cases` (counted before exclusions, without
    expanding them) and more than MAX_EXCLUDE_RULES exclude rules."""
    issues: list[Issue] = []
    limit = max_cases()
    n_workloads = len(suite.workloads)

    def size(matrices: Sequence[Matrix]) -> int:
        total = 0
        for m in matrices:
            count = len(m.workload) if m.workload else n_workloads
            for name in MATRIX_AXES[1:]:
                count *= max(1, len(getattr(m, name)))
            total += count
        return total

    plans: list[tuple[Loc, Sequence[Matrix], int]] = [(("matrix",), suite.matrix, len(suite.exclude))]
    for name, preset in suite.presets.items():
        own = bool(preset.matrix)
        plans.append((("presets", name, "matrix") if own else ("presets", name), preset.matrix or suite.matrix, len(suite.exclude) + len(preset.exclude)))
    for loc, matrices, rules in plans:
        n = size(matrices)
        if n > limit:
            issues.append(locator.issue(loc, f"expands to {n:,} cases before exclusions; the limit is {limit:,} (set {MAX_CASES_ENV} to raise it)"))
        if rules > MAX_EXCLUDE_RULES:
            issues.append(locator.issue(loc, f"{rules:,} exclude rules; at most {MAX_EXCLUDE_RULES:,}"))
    return issues


def loads_suite(text: str, path: str | os.PathLike[str] = "<suite>") -> Suite:
    """Parse and validate suite ``text``; ``path`` names it in errors and gives its name."""
    file = str(path)
    data, root, duplicates = parse_yaml(text, file)
    locator = Locator(root)
    if not isinstance(data, dict):
        got = "an empty file" if root is None else show_value(data)
        raise SuiteError.from_issues(
            file, [locator.issue((), f"expected a mapping with a 'workloads' list, got {got}")]
        )
    issues = [Issue(format_loc(loc), msg, m.line + 1, m.column + 1) for loc, m, msg in duplicates]
    params, param_issues = _check_params(data.get("workloads"), locator)
    issues += param_issues
    context = {"stem": Path(file).stem, "backends": backend_names(), "executions": execution_vocabulary()}
    try:
        suite = Suite.model_validate(data, context=context)
    except ValidationError as exc:
        raise SuiteError.from_issues(file, issues + validation_issues(exc, Suite, (), locator)) from None
    issues += _check_references(suite, data, locator)
    issues += _check_sizes(suite, locator)
    if issues:
        raise SuiteError.from_issues(file, issues)
    workloads = [w.model_copy(update={"params": params[i]}) for i, w in enumerate(suite.workloads)]
    suite = suite.model_copy(update={"workloads": workloads})
    suite._path = Path(path) if file != "<suite>" else None
    fields: list[Loc] = [("matrix",), ("cpus",)] + [("presets", n, f) for n in suite.presets for f in ("matrix", "cpus")]
    suite._lines = {format_loc(loc): locator.issue(loc, "").line for loc in fields}
    return suite


#: Bounds on what a suite expands to (suite files themselves: convbench.suite_yaml).
MAX_EXCLUDE_RULES = 10_000
#: Cases one suite (or preset) may expand to; CONVBENCH_MAX_CASES raises it.
MAX_CASES = 100_000
MAX_CASES_ENV = "CONVBENCH_MAX_CASES"


#: The suites installed with convbench (``convbench list --suites``).
PACKAGED_SUITES = Path(__file__).resolve().parent / "suites"


def packaged_suites() -> dict[str, Path]:
    """The suites installed with convbench, by name (the file name without ``.yaml``)."""
    return {p.stem: p for p in sorted(PACKAGED_SUITES.glob("*.yaml"))}


def locate_suite(spec: str | os.PathLike[str]) -> Path:
    """The suite file ``spec`` names: a path that exists wins; else a bare name
    (``depthwise`` or ``depthwise.yaml``) of a packaged suite; else ``spec`` as given."""
    path = Path(spec)
    if path.exists() or len(path.parts) != 1:
        return path
    packaged = packaged_suites().get(path.name.removesuffix(".yaml").removesuffix(".yml"))
    return packaged if packaged is not None else path


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate the suite file at ``path`` (or the packaged suite of that name,
    see :func:`locate_suite`); any problem raises :class:`SuiteError`."""
    path = locate_suite(path)
    file = str(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise SuiteError.from_issues(file, [Issue("", "not a regular file (a pipe, a device or a socket): give a suite file")])
        if info.st_size > MAX_SUITE_BYTES:
            raise SuiteError.from_issues(file, [Issue("", f"{info.st_size:,} bytes: a suite file is at most {MAX_SUITE_BYTES:,}")])
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = f"no such suite file (packaged suites: {', '.join(packaged_suites()) or 'none'})"
    except IsADirectoryError:
        problem = "is a directory, not a suite file"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    else:
        return loads_suite(text, path)
    raise SuiteError.from_issues(file, [Issue("", problem)])


def expand(suite: Suite, preset: str | None = None) -> list[Case]:
    """The cases of ``suite`` with ``preset`` applied, deduplicated, in run order."""
    return suite.resolved(preset).cases


# -- filtering -------------------------------------------------------------------------
def cases_frame(cases: Sequence[Case]) -> pd.DataFrame:
    """The key columns of ``cases`` (``threads`` a float, NaN for the machine's cores)."""
    rows = [{c: getattr(case, c) for c in FILTER_COLUMNS} for case in cases]
    frame = pd.DataFrame(rows, columns=list(FILTER_COLUMNS))
    frame["threads"] = pd.to_numeric(frame["threads"], errors="coerce").astype(float)
    return frame


def filter_cases(cases: Sequence[Case], expr: str) -> list[Case]:
    """The cases for which the filter ``expr`` holds, e.g. ``batch > 1 and variant ==
    "native"`` or ``variant.str.startswith("diag")`` (the grammar of
    :mod:`convbench.case_filter`: conditions over :data:`FILTER_COLUMNS`, never code);
    :class:`FilterError` when ``expr`` is not one."""
    if not expr or not expr.strip():
        return list(cases)
    columns = ", ".join(FILTER_COLUMNS)
    try:
        keep = compile_filter(expr, FILTER_COLUMNS)
        return [case for case in cases if keep({c: getattr(case, c) for c in FILTER_COLUMNS})]
    except FilterSyntaxError as exc:
        raise FilterError(f"--filter {expr!r}: {exc} (columns: {columns})") from None


__all__ = [
    "FILTER_COLUMNS",
    "ExcludeRule",
    "FilterError",
    "Issue",
    "Matrix",
    "Preset",
    "ResolvedSuite",
    "Suite",
    "SuiteError",
    "WorkloadSpec",
    "cases_frame",
    "expand",
    "filter_cases",
    "load_suite",
    "loads_suite",
    "resolve_interpreter",
]
