"""convbench.suite: YAML -> validated Suite -> expanded cases; errors name file, line, field."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict, Field

from convbench.backend import execution_vocabulary
from convbench.cases import DEFAULT_TOLERANCE, GENERIC_EXECUTIONS, Case
from convbench.suite import (
    FILTER_COLUMNS,
    FilterError,
    SuiteError,
    expand,
    filter_cases,
    load_suite,
    loads_suite,
)
from convbench.workloads import WORKLOADS

SUITES = sorted((Path(__file__).resolve().parent.parent / "suites").glob("*.yaml"))

BASE = """\
workloads:
  - id: dw1
    kind: depthwise
    params: {channels: 32, size: 16}
  - id: dw2
    kind: depthwise
    params: {channels: 8, size: 8, kernel: 5, stride: 2}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def suite_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text))
    return str(info.value)


def assert_at(message: str, line: int, field: str, *words: str) -> None:
    """The message names the file, the line, the field and each of ``words``."""
    assert f"s.yaml:{line}:" in message, message
    assert f": {field}: " in message, message
    for word in words:
        assert word in message, message


def keys(cases) -> list[tuple]:
    return [(c.workload, c.variant, c.mode, c.batch) for c in cases]


# -- bad input -------------------------------------------------------------------------
def test_unknown_top_level_field(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrx: {batch: 1}\n")
    assert_at(msg, 8, "matrx", "unknown field 'matrx'", "did you mean 'matrix'")


def test_unknown_nested_field(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix:\n  batch: 1\n  varaint: native\n")
    assert_at(msg, 10, "matrix.varaint", "did you mean 'variant'", "allowed: workload, variant")


def test_wrong_type(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix:\n  batch: [1, big]\n")
    assert_at(msg, 9, "matrix.batch[1]", "expected an integer", "got 'big'")


def test_bool_is_not_an_integer(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix: {batch: true}\n")
    assert_at(msg, 8, "matrix.batch", "expected an integer, got true")


def test_value_out_of_range(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "timeout: -5\n")
    assert_at(msg, 8, "timeout", "expected a number > 0, got -5")


def test_workload_param_out_of_range(tmp_path) -> None:
    text = BASE.replace(
        "params: {channels: 8, size: 8, kernel: 5, stride: 2}",
        "params:\n      channels: -3\n      size: 8",
    )
    msg = suite_error(tmp_path, text)
    assert_at(msg, 8, "workloads[1].params.channels", "expected an integer >= 1, got -3")


def test_unknown_workload_kind(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE.replace("kind: depthwise", "kind: depthwize", 1))
    assert_at(
        msg, 3, "workloads[0].kind", "unknown workload kind 'depthwize'", "did you mean 'depthwise'"
    )


def test_bad_workload_params(tmp_path) -> None:
    msg = suite_error(
        tmp_path, BASE.replace("{channels: 32, size: 16}", "{channels: 32, size: 16, colour: red}")
    )
    assert_at(msg, 4, "workloads[0].params.colour", "unknown field 'colour'", "allowed: channels")


def test_missing_workload_param(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE.replace("{channels: 32, size: 16}", "{channels: 32}"))
    assert_at(msg, 4, "workloads[0].params.size", "required field is missing")


def test_workload_that_cannot_build(tmp_path, monkeypatch) -> None:
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: int = Field(ge=1)

    def builder(params, batch):
        raise ValueError(f"n={params.n} is too odd")

    kind = SimpleNamespace(name="broken", params_model=Params, build=builder)
    monkeypatch.setitem(WORKLOADS, "broken", kind)
    msg = suite_error(tmp_path, BASE + "  - id: b\n    kind: broken\n    params: {n: 3}\n")
    assert_at(msg, 10, "workloads[2].params", "cannot build", "n=3 is too odd")


def test_unknown_variant(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix:\n  variant: [native, diagwise]\n")
    assert_at(msg, 9, "matrix.variant[1]", "unknown variant 'diagwise'", "known: native")


def test_bad_variant_argument(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix:\n  variant: 'diagonalwise(group_size=0)'\n")
    assert_at(msg, 9, "matrix.variant", "group_size")


def test_unknown_backend(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix:\n  - {batch: 1}\n  - backend: [torch, tensorflw]\n")
    assert_at(msg, 10, "matrix[1].backend[1]", "unknown backend 'tensorflw'", "known:")


def test_unknown_literal(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix: {device: gpu}\n")
    assert_at(msg, 8, "matrix.device", "expected 'cpu' or 'cuda', got 'gpu'")


def test_unknown_execution_names_file_line_field_and_the_vocabulary(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix: {backend: [torch], execution: [eager, jitt]}\n")
    assert_at(msg, 8, "matrix.execution[1]", "unknown execution 'jitt'", "did you mean 'jit'?", "known: eager, compiled, ", "graph")
    msg = suite_error(tmp_path, BASE + "exclude:\n  - {execution: XLA}\n")
    assert_at(msg, 9, "exclude[0].execution", "unknown execution 'XLA'")
    msg = suite_error(tmp_path, BASE + "matrix: {execution: 3}\n")
    assert_at(msg, 8, "matrix.execution", "got 3")


def test_every_execution_of_the_vocabulary_expands_for_every_backend(tmp_path) -> None:
    """Which backend runs a name is the backend's to say (a skipped row), not the suite's."""
    vocabulary = list(execution_vocabulary())
    suite = load_suite(write(tmp_path, BASE + f"matrix: {{backend: [torch, reference], execution: [{', '.join(vocabulary)}]}}\n"))
    cases = expand(suite)
    assert [c.execution for c in cases if c.workload == "dw1" and c.backend == "torch"] == vocabulary
    assert len(cases) == 2 * 2 * len(vocabulary)


def test_a_plugin_adds_its_executions_to_the_vocabulary(tmp_path, monkeypatch) -> None:
    """Suites accept the generic names and those of every registered plugin; a plugin that
    does not load declares none, and the error says so."""
    monkeypatch.delenv("CONVBENCH_EXTRA_BACKENDS", raising=False)
    text = BASE + "matrix: {backend: [reference], execution: [warp]}\n"
    msg = suite_error(tmp_path, text)
    assert_at(msg, 8, "matrix.execution[0]", "unknown execution 'warp'", "known: eager, compiled, ")
    monkeypatch.setenv("CONVBENCH_EXTRA_BACKENDS", "warpfake=tests.fake_backends:WarpBackend,broken=no_such_module:Nothing")
    assert [c.execution for c in expand(load_suite(write(tmp_path, text)))] == ["warp", "warp"]
    assert execution_vocabulary()["warp"] == "warpfake: the reference executor, at warp speed"
    assert "warpfake: as warp" in execution_vocabulary()["compiled"]
    msg = suite_error(tmp_path, BASE + "matrix: {execution: [warpp]}\n")
    assert_at(msg, 8, "matrix.execution[0]", "did you mean 'warp'?", "not known here: the executions of broken, whose plugin did not load")


def test_backends_skip_an_execution_they_lack_naming_the_forms_they_have() -> None:
    from convbench.cases import Case
    from convbench.reference_backend import ReferenceBackend

    class Two(ReferenceBackend):
        name = "two"
        executions = {"eager": "eager", "fast": "fast", "compiled": "fast"}

        def skip_reason(self, case):  # noqa: ANN001,ANN201
            return super(ReferenceBackend, self).skip_reason(case)

    case = Case(suite="s", workload="w", kind="depthwise", params={}, backend="two", execution="graph")
    reason = Two().skip_reason(case)
    assert reason == "two: no execution 'graph' in this backend (it runs: eager, fast, compiled (fast))"
    assert Two().skip_reason(case.model_copy(update={"execution": "compiled"})) is None


def test_unknown_preset(tmp_path) -> None:
    suite = load_suite(write(tmp_path, BASE + "presets:\n  quick: {timeout: 10}\n"))
    with pytest.raises(SuiteError) as info:
        expand(suite, "quik")
    msg = str(info.value)
    assert "s.yaml" in msg and "unknown preset 'quik'" in msg
    assert "did you mean 'quick'" in msg and "known: quick, full" in msg


def test_duplicate_workload_id(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE.replace("id: dw2", "id: dw1"))
    assert_at(msg, 5, "workloads[1].id", "duplicate workload id 'dw1'", "line 2")


def test_duplicate_yaml_key(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "timeout: 3\ntimeout: 4\n")
    assert_at(msg, 9, "timeout", "given twice", "line 8")


def test_unknown_workload_reference(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix:\n  workload: [dw1, dw3]\n")
    assert_at(msg, 9, "matrix.workload[1]", "unknown workload id 'dw3'", "did you mean")


def test_preset_unknown_workload(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "presets:\n  quick:\n    workloads: [dw1, nope]\n")
    assert_at(msg, 10, "presets.quick.workloads[1]", "unknown workload id 'nope'")


def test_preset_timing_checked_merged(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "presets:\n  quick:\n    timing: {min_samples: 5000}\n")
    assert_at(msg, 10, "presets.quick.timing", "min_samples")


def test_bad_exclude(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "exclude:\n  - {mode: trainig}\n  - {}\n")
    assert_at(msg, 9, "exclude[0].mode", "expected 'inference' or 'training'")
    assert_at(msg, 10, "exclude[1]", "at least one field")


def test_bad_tolerance_key_points_at_key(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "tolerance: {float64: 0.1}\n")
    assert_at(msg, 8, "tolerance.float64", "got 'float64'")
    assert "s.yaml:8:13:" in msg


def test_yaml_syntax_error(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix: {batch: [1, 2}\n")
    assert "s.yaml:8:" in msg and "invalid YAML" in msg


def test_yaml_tab_error(tmp_path) -> None:
    msg = suite_error(tmp_path, BASE + "matrix:\n\tbatch: 1\n")
    assert "s.yaml:9:" in msg and "invalid YAML" in msg


def test_missing_file(tmp_path) -> None:
    with pytest.raises(SuiteError) as info:
        load_suite(tmp_path / "nothere.yaml")
    assert "nothere.yaml" in str(info.value) and "no such suite file" in str(info.value)


def test_directory_is_not_a_suite(tmp_path) -> None:
    with pytest.raises(SuiteError, match="is a directory"):
        load_suite(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null\n",
        "- 1\n- 2\n",
        "workloads: 3\n",
        "workloads: []\n",
        "workloads: [[]]\n",
        "workloads: [{}]\n",
        "workloads: [{id: a, kind: [depthwise]}]\n",
        "{1: 2}\n",
        "a: !!python/object:os.system {}\n",
        "---\nworkloads: []\n---\nb: 1\n",
        BASE + "matrix: 5\n",
        BASE + "matrix: [5]\n",
        BASE + "matrix: {variant: [{a: 1}]}\n",
        BASE + "timeout: .inf\n",
        BASE + "presets: {quick: 3, 'bad name': {}}\n",
        BASE + "interpreters: {nope: python, torch: ''}\n",
    ],
)
def test_bad_input_is_always_a_suite_error(tmp_path, text) -> None:
    msg = suite_error(tmp_path, text)
    assert msg.startswith(str(tmp_path / "s.yaml")), msg
    assert "Traceback" not in msg


def test_all_errors_reported_in_line_order(tmp_path) -> None:
    text = BASE + "matrix:\n  device: gpu\n  batch: 0\ncolour: red\n"
    lines = suite_error(tmp_path, text).splitlines()
    assert [line.split(":")[1] for line in lines] == ["9", "10", "11"]


# -- good suites -----------------------------------------------------------------------
def test_expand_order_and_count(tmp_path) -> None:
    text = BASE + textwrap.dedent(
        """\
        matrix:
          variant: [native, diagonalwise]
          mode: [inference, training]
          batch: [1, 32]
        """
    )
    suite = load_suite(write(tmp_path, text))
    cases = expand(suite)
    assert len(cases) == 2 * 2 * 2 * 2
    assert keys(cases)[:5] == [
        ("dw1", "native", "inference", 1),
        ("dw1", "native", "inference", 32),
        ("dw1", "native", "training", 1),
        ("dw1", "native", "training", 32),
        ("dw1", "diagonalwise", "inference", 1),
    ]
    assert keys(cases)[8] == ("dw2", "native", "inference", 1)
    first = cases[0]
    assert first.suite == "s" and first.kind == "depthwise" and first.backend == "torch"
    assert (first.device, first.dtype, first.layout, first.execution, first.threads) == (
        "cpu",
        "float32",
        "nchw",
        "eager",
        None,
    )
    assert len({c.case_id for c in cases}) == len(cases)


def test_params_are_normalised(tmp_path) -> None:
    suite = load_suite(write(tmp_path, BASE))
    assert suite.workloads[0].params["kernel"] == 3  # the kind's default, filled in
    assert expand(suite)[0].params == suite.workloads[0].params
    assert suite.workloads[1].build(batch=2).batch == 2


def test_defaults(tmp_path) -> None:
    suite = load_suite(write(tmp_path, BASE))
    assert suite.name == "s" and suite.path == tmp_path / "s.yaml"
    resolved = suite.resolved()
    assert keys(resolved.cases) == [
        ("dw1", "native", "inference", 1),
        ("dw2", "native", "inference", 1),
    ]
    assert resolved.timeout == 600
    assert resolved.tolerance == DEFAULT_TOLERANCE
    assert resolved.timing == suite.timing


def test_scalars_lists_of_mappings_dedup_and_workload_order(tmp_path) -> None:
    text = BASE + textwrap.dedent(
        """\
        name: mine
        matrix:
          - {workload: [dw2, dw1], variant: native, batch: 1}
          - {workload: dw1, variant: ["diagonalwise(group_size=32)", native], batch: 1}
        """
    )
    suite = load_suite(write(tmp_path, text))
    cases = expand(suite)
    assert suite.name == "mine" and cases[0].suite == "mine"
    # workload outermost in file order; "diagonalwise(group_size=32)" is the default label
    assert keys(cases) == [
        ("dw1", "native", "inference", 1),
        ("dw1", "diagonalwise", "inference", 1),
        ("dw2", "native", "inference", 1),
    ]


def test_variant_labels_are_canonical(tmp_path) -> None:
    suite = load_suite(
        write(tmp_path, BASE + "matrix: {variant: 'diagonalwise( group_size = 16 )'}\n")
    )
    assert {c.variant for c in expand(suite)} == {"diagonalwise(group_size=16)"}


def test_exclude(tmp_path) -> None:
    text = BASE + textwrap.dedent(
        """\
        matrix:
          mode: [inference, training]
          batch: [1, 2, 32]
          threads: [null, 4]
        exclude:
          - {mode: training, batch: [1, 2]}
          - {workload: dw2, threads: null}
          - {kind: depthwise, batch: 32, threads: 4}
        """
    )
    cases = expand(load_suite(write(tmp_path, text)))
    got = {(c.workload, c.mode, c.batch, c.threads) for c in cases}
    assert ("dw1", "training", 1, None) not in got
    assert ("dw1", "training", 32, None) in got
    assert not any(w == "dw2" and t is None for w, _, _, t in got)
    assert not any(b == 32 and t == 4 for _, _, b, t in got)
    # dw1: 3 batches x 2 threads x inference (minus b32/t4) = 5; training: b32/None = 1
    # dw2: threads 4 only: inference b1, b2 = 2; training: none
    assert len(cases) == 5 + 1 + 2


def test_presets(tmp_path) -> None:
    text = BASE + textwrap.dedent(
        """\
        matrix: {variant: [native, diagonalwise], batch: [1, 8]}
        timing: {max_time: 2.0, min_samples: 3}
        timeout: 300
        presets:
          quick:
            description: smoke test
            workloads: [dw2]
            exclude: [{variant: diagonalwise}]
            timing: {max_samples: 5}
            timeout: 30
          wide:
            matrix: {batch: [64], dtype: [float32, float16]}
        """
    )
    suite = load_suite(write(tmp_path, text))
    assert suite.preset_names == ["quick", "wide", "full"]
    full = suite.resolved()
    assert len(full.cases) == 8 and full.timeout == 300
    assert expand(suite, "full") == full.cases

    quick = suite.resolved("quick")
    assert keys(quick.cases) == [
        ("dw2", "native", "inference", 1),
        ("dw2", "native", "inference", 8),
    ]
    assert quick.timeout == 30 and quick.preset == "quick"
    assert (quick.timing.max_samples, quick.timing.max_time, quick.timing.min_samples) == (
        5,
        2.0,
        3,
    )

    wide = suite.resolved("wide")
    assert [(c.workload, c.batch, c.dtype) for c in wide.cases] == [
        ("dw1", 64, "float32"),
        ("dw1", 64, "float16"),
        ("dw2", 64, "float32"),
        ("dw2", 64, "float16"),
    ]
    assert wide.timeout == 300


def test_defined_full_preset_is_used(tmp_path) -> None:
    text = BASE + "presets:\n  full: {workloads: [dw1]}\n"
    assert [c.workload for c in expand(load_suite(write(tmp_path, text)), "full")] == ["dw1"]


def test_everything_excluded_is_an_error(tmp_path) -> None:
    suite = load_suite(write(tmp_path, BASE + "exclude: [{kind: depthwise}]\n"))
    with pytest.raises(SuiteError, match="no cases"):
        expand(suite)


def test_tolerance_and_interpreters(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = (
        BASE
        + "tolerance: {float16: 0.02}\ninterpreters: {torch: .venv-t/bin/python, reference: /usr/bin/python3}\n"
    )
    resolved = load_suite(write(tmp_path, text)).resolved()
    assert resolved.tolerance == {**DEFAULT_TOLERANCE, "float16": 0.02}
    assert resolved.interpreter("torch") == str(tmp_path / ".venv-t/bin/python")
    assert resolved.interpreter("reference") == "/usr/bin/python3"
    assert resolved.interpreter("onnxruntime") is None


def test_loads_suite_from_text() -> None:
    suite = loads_suite(BASE, "inline.yaml")
    assert suite.name == "inline" and len(expand(suite)) == 2


# -- filter ----------------------------------------------------------------------------
@pytest.fixture
def cases(tmp_path):
    text = (
        BASE
        + "matrix: {variant: [native, 'diagonalwise(group_size=16)'], batch: [1, 32], threads: [null, 2]}\n"
    )
    return expand(load_suite(write(tmp_path, text)))


def test_filter(cases) -> None:
    assert len(cases) == 16
    assert len(filter_cases(cases, "batch > 1")) == 8
    assert len(filter_cases(cases, 'workload == "dw1" and variant == "native"')) == 4
    assert len(filter_cases(cases, 'variant.str.startswith("diag")')) == 8
    assert len(filter_cases(cases, "threads.isna()")) == 8
    assert len(filter_cases(cases, "threads == 2 and kind == 'depthwise'")) == 8
    assert len(filter_cases(cases, 'backend in ["torch", "reference"]')) == 16
    assert filter_cases(cases, "  ") == cases
    kept = filter_cases(cases, "batch == 32")
    assert kept == [c for c in cases if c.batch == 32]  # order kept


def test_filter_on_resolved(tmp_path) -> None:
    resolved = load_suite(write(tmp_path, BASE)).resolved()
    assert [c.workload for c in resolved.filtered("workload == 'dw2'").cases] == ["dw2"]
    assert resolved.filtered(None) is resolved


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("batchh > 1", "unknown column 'batchh' at position 1; did you mean 'batch'?"),
        ("batch = 1", "unexpected character '=' at position 7 (use '==' to compare)"),
        ("batch + 1", "unexpected character '+' at position 7"),
        ("batch >", "expected a value (a quoted string, a number, True, False or None) at position 8, got the end"),
        ("batch > 1 and", "expected a column"),
        ("(batch > 1", "expected ')' at position 11, got the end"),
        ("mode > 1", "cannot order"),
        ("batch", "expected a comparison"),
    ],
)
def test_bad_filter(cases, expr, reason) -> None:
    with pytest.raises(FilterError) as info:
        filter_cases(cases, expr)
    msg = str(info.value)
    assert repr(expr) in msg and reason in msg
    assert ", ".join(FILTER_COLUMNS) in msg


# -- the suites we ship ----------------------------------------------------------------
@pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
def test_shipped_suites_load(path) -> None:
    suite = load_suite(path)
    for preset in suite.preset_names:
        assert expand(suite, preset)


def test_the_vocabulary_is_the_generic_names_then_the_plugins_own() -> None:
    from convbench.backend import declarations

    vocabulary = execution_vocabulary()
    assert list(vocabulary)[: len(GENERIC_EXECUTIONS)] == list(GENERIC_EXECUTIONS)
    assert set(vocabulary) == {*GENERIC_EXECUTIONS, *(e for cls in declarations().values() for e in cls.executions)}
    assert vocabulary["jit"] == "jax: jax.jit of the whole step, the same as its compiled"
    assert "torch: torch.compile" in vocabulary["compiled"] and "tensorflow: as xla" in vocabulary["compiled"]
    assert Case.model_fields["execution"].annotation is str  # validated when a suite loads
