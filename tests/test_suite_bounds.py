"""Suites that used to hang, exhaust memory or crash: each is a clear error (file, line,
field) within a bounded time, and a fuzz of mutated shipped suites finds no traceback."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from convbench.cpu_topology import parse_cpu_list
from convbench.suite import (
    MAX_CASES_ENV,
    MAX_SUITE_BYTES,
    SuiteError,
    load_suite,
    loads_suite,
    packaged_suites,
)
from tests.conftest import run_cli

HEAD = "name: s\nworkloads:\n  - {id: w, kind: depthwise, params: {channels: 4, size: 6}}\n"
MATRIX = "matrix:\n  variant: [native]\n  backend: [reference]\n"


def error_of(text: str) -> str:
    start = time.process_time()  # CPU seconds: a busy neighbour does not inflate them as it does wall time
    with pytest.raises(SuiteError) as info:
        loads_suite(text, "s.yaml")
    assert time.process_time() - start < 5, "took too long to refuse (the matrix was expanded?)"
    return str(info.value)


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    assert "expands to more than 200,000 values" in error_of("\n".join(lines) + "\n")


def test_recursive_aliases_and_deep_nesting() -> None:
    assert "s.yaml:1:" in error_of("batch: &r [1, *r]\n") and "recursive document" in error_of("batch: &r [1, *r]\n")
    assert "nested more than 64 levels deep" in error_of("x: " + "[" * 500 + "]" * 500 + "\n")
    assert "nested more than 64 levels deep" in error_of("x: " + "[" * 70 + "]" * 70 + "\n")


def test_merge_keys_may_override_what_they_merge() -> None:
    text = HEAD + MATRIX + "timing: &t {min_samples: 3, max_time: 0.1}\npresets:\n  quick: {timing: {<<: *t, max_time: 0.05}}\n"
    assert loads_suite(text, "s.yaml").resolved("quick").timing.max_time == 0.05
    assert "given twice (also on line" in error_of(HEAD + MATRIX + "timeout: 1\ntimeout: 2\n")


def test_control_characters_are_located_by_line_and_column() -> None:
    assert error_of("name: s\nx: ab\x01\n") == "s.yaml:2:6: invalid YAML: character U+0001 is not allowed in YAML text"


def test_values_past_their_bounds() -> None:
    msg = error_of(HEAD + MATRIX + "  batch: [18446744073709551616]\n")
    assert "matrix.batch[0]: expected an integer <= 1048576" in msg
    msg = error_of(HEAD.replace("channels: 4", "channels: 100000000000") + MATRIX)
    assert "workloads[0].params.channels: expected at most 2,147,483,647" in msg
    for loose in ("true", "'32'", "32.0"):
        assert "workloads[0].params.channels: expected an integer" in error_of(HEAD.replace("channels: 4", f"channels: {loose}") + MATRIX)
    with pytest.raises(ValueError, match="past the largest"):
        parse_cpu_list("0-99999999")


def test_matrix_size_is_limited_with_the_count_and_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    big = HEAD + "matrix:\n  variant: [native, diagonalwise]\n  backend: [reference]\n  batch: [" + ", ".join(map(str, range(1, 1001))) + "]\n  threads: [" + ", ".join(map(str, range(1, 101))) + "]\n"
    msg = error_of(big)
    assert "s.yaml:4:1: matrix: expands to 200,000 cases before exclusions; the limit is 100,000" in msg and MAX_CASES_ENV in msg
    monkeypatch.setenv(MAX_CASES_ENV, "300000")
    assert loads_suite(big, "s.yaml").name == "s"  # counted, not expanded: fast either way
    rules = HEAD + MATRIX + "exclude:\n" + "".join(f"  - {{batch: [{i}]}}\n" for i in range(1, 10_002))
    assert "10,001 exclude rules; at most 10,000" in error_of(rules)


def test_no_cases_names_the_line_of_the_matrix(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + MATRIX + "exclude:\n  - {variant: [native]}\n")
    with pytest.raises(SuiteError, match=r"s\.yaml:4: matrix: the matrix expands to no cases"):
        load_suite(path).resolved()


def test_only_regular_files_of_bounded_size(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SuiteError, match="not a regular file"):
        load_suite(fifo)
    with pytest.raises(SuiteError, match="not a regular file"):
        load_suite("/dev/zero")
    huge = tmp_path / "huge.yaml"
    huge.write_text("#" * (MAX_SUITE_BYTES + 1))
    with pytest.raises(SuiteError, match="a suite file is at most 1,048,576"):
        load_suite(huge)


def test_the_cli_says_file_line_and_field_for_a_bad_cpu_list(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + MATRIX + "cpus: 0-99999999\n")
    proc = run_cli("run", str(path), "--dry-run")
    assert proc.returncode == 2 and f"{path}:7: cpus:" in proc.stderr and "Traceback" not in proc.stderr


def test_long_values_are_shortened_in_messages() -> None:
    msg = error_of(HEAD + "matrix:\n  workload: [" + "y" * 100_000 + "]\n  variant: [native]\n  backend: [reference]\n")
    assert len(msg) < 2_000 and "unknown workload id" in msg


#: Tokens a careless or hostile edit inserts.
TOKENS = ["&a ", "*a", "[", "]", "{", "}", "<<: *a", "\x01", "\t", "- ", ": ", "[/]", "99999999999999999999", "-1", "0",
          "true", "null", "'", '"', "\n  ", "\n- {", "x" * 300, "0-99999999", "~", "!!python/object:os.system", "&r [*r]"]  # fmt: skip


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        op = rng.random()
        if op < 0.4:
            text = text[:at] + rng.choice(TOKENS) + text[at:]
        elif op < 0.7:
            text = text[:at] + text[at + rng.randint(1, 20) :]
        else:
            lines = text.splitlines(keepends=True)
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
            text = "".join(lines)
    return text


@pytest.mark.parametrize("seed", range(6))
def test_fuzzed_suites_give_a_suite_error_or_a_suite(seed: int) -> None:
    rng = random.Random(seed)
    sources = [p.read_text() for p in packaged_suites().values()]
    for _ in range(50):
        text = _mutate(rng.choice(sources), rng)
        start = time.process_time()  # CPU seconds, not wall: robust to a busy neighbour
        try:
            suite = loads_suite(text, "fuzz.yaml")
            for preset in suite.preset_names:
                suite.resolved(preset)
        except SuiteError as exc:
            assert str(exc).startswith("fuzz.yaml"), str(exc)[:300]
        assert time.process_time() - start < 10, text[:300]
