"""--filter's own grammar (convbench.case_filter): what it means, and that no filter runs code."""

from __future__ import annotations

from pathlib import Path

import pytest

from convbench.case_filter import MAX_DEPTH, FilterSyntaxError, compile_filter
from tests.conftest import run_cli

COLUMNS = ("workload", "variant", "batch", "threads", "mode")
ROWS = [
    {"workload": "dw1", "variant": "native", "batch": 1, "threads": None, "mode": "training"},
    {"workload": "dw1", "variant": "diagonalwise", "batch": 32, "threads": 2, "mode": "inference"},
    {"workload": "dw2", "variant": "native", "batch": 32, "threads": float("nan"), "mode": "inference"},
]


def chosen(expr: str) -> list[int]:
    keep = compile_filter(expr, COLUMNS)
    return [i for i, row in enumerate(ROWS) if keep(row)]


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("batch == 32", [1, 2]),
        ("batch >= 2 and variant == 'native'", [2]),
        ('workload == "dw1" or batch < 2', [0, 1]),
        ("not (batch == 32)", [0]),
        ("~(batch == 32) | mode == 'inference'", [0, 1, 2]),
        ("batch == 32 & workload != 'dw1'", [2]),
        ("variant in ['native', 'x']", [0, 2]),
        ("variant not in ('native',)", [1]),
        ("variant.str.startswith('diag')", [1]),
        ("workload.str.endswith('2')", [2]),
        ("variant.str.contains('gon')", [1]),
        ("threads.isna()", [0, 2]),
        ("threads.notna()", [1]),
        ("threads == None", [0, 2]),
        ("threads > 1", [1]),
        ("threads == 2.0", [1]),
        ("mode == 'it\\'s'", []),
        ("batch == 1 or batch == 32 and workload == 'dw2'", [0, 2]),  # and binds tighter
        ("batch == 'x'", []),  # a string never equals a number
        ("batch != 'x'", [0, 1, 2]),
    ],
)
def test_meaning(expr: str, want: list[int]) -> None:
    assert chosen(expr) == want


#: Payload families: pandas eval's @-variables, Python attribute access, calls, dunders,
#: imports, lambdas, comprehensions, f-strings, statements, backticks, non-ASCII lookalikes.
PAYLOADS = [
    "batch == 2 and @os.system('touch {x}') == 0",
    "@pd.io.common.os.system('touch {x}')",
    "__import__('os').system('touch {x}') == 0",
    "batch.__class__.__mro__ == 1",
    "variant.str.startswith('d').__class__ == 1",
    "variant.str.__getattribute__('x') == 1",
    "open('{x}', 'w') == 1",
    "batch == (lambda: __import__('os').system('touch {x}'))()",
    "batch in [__import__('os').system('touch {x}')]",
    "batch == [i for i in ().__class__.__base__.__subclasses__()]",
    "batch == f'{{__import__(\"os\").system(\"touch {x}\")}}'",
    "batch == 1; __import__('os').system('touch {x}')",
    "`batch` == 1",
    "batch == 1 if __import__('os').system('touch {x}') else 0",
    "variant.str.startswith(__import__('os').system('touch {x}'))",
    "eval('__import__(\"os\").system(\"touch {x}\")') == 0",
    "batch == 1e9999999",  # parses (inf): harmless, but must not crash
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_payload_runs_code(payload: str, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    expr = payload.replace("{x}", str(target))
    try:
        keep = compile_filter(expr, COLUMNS)
    except FilterSyntaxError:
        pass
    else:
        [keep(row) for row in ROWS]
    assert not target.exists()


def test_every_call_or_attribute_outside_the_grammar_is_refused_at_parse_time() -> None:
    for payload in PAYLOADS[:-1]:
        with pytest.raises(FilterSyntaxError):
            compile_filter(payload.replace("{x}", "/nonexistent"), COLUMNS)


def test_bounded_length_and_depth() -> None:
    with pytest.raises(FilterSyntaxError, match="nested more than"):
        compile_filter("(" * (MAX_DEPTH + 1) + "batch == 1" + ")" * (MAX_DEPTH + 1), COLUMNS)
    with pytest.raises(FilterSyntaxError, match="nested more than"):
        compile_filter("not " * (MAX_DEPTH + 1) + "batch == 1", COLUMNS)
    with pytest.raises(FilterSyntaxError, match="longer than"):
        compile_filter("batch == 1 or " * 2000 + "batch == 1", COLUMNS)
    assert chosen("(" * MAX_DEPTH + "batch == 1" + ")" * MAX_DEPTH) == [0]


def test_the_cli_refuses_the_payload_of_the_report_and_runs_nothing(tmp_path: Path) -> None:
    proc = run_cli("run", "suites/smoke.yaml", "--dry-run", "--filter", "batch == 2 and @os.system('touch x') == 0", cwd=None)
    assert proc.returncode == 2
    assert "--filter" in proc.stderr and "unexpected character '@'" in proc.stderr
    proc = run_cli("check", str(Path("suites/smoke.yaml").resolve()), "--filter", "__import__('os').system('touch x') == 0", cwd=tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "x").exists()
