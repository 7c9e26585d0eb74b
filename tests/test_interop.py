"""pytest-benchmark interop, checked against the real pytest-benchmark package: its JSON
into a run folder, and a run out to JSON that `pytest-benchmark compare` reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import convbench
from convbench.cli import main
from convbench.interop import (
    export_pytest_benchmark,
    import_pytest_benchmark,
    pytest_benchmark_stats,
)
from convbench.results import load
from tests.test_compare import lognormal, write_run

pb_stats = pytest.importorskip("pytest_benchmark.stats")

BENCH_TESTS = '''
import pytest

@pytest.mark.parametrize("n", [100, 2000])
def test_sum(benchmark, n):
    benchmark(sum, range(n))

def test_sorted(benchmark):
    benchmark.group = "sorting"
    benchmark.extra_info["size"] = 300
    benchmark(sorted, list(range(300, 0, -1)))
'''


@pytest.fixture(scope="module")
def pb_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSON file written by pytest-benchmark itself (with data: --benchmark-json)."""
    root = tmp_path_factory.mktemp("pb")
    (root / "test_bench.py").write_text(BENCH_TESTS)
    out = root / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bench.py", f"--benchmark-json={out}",
         "--benchmark-max-time=0.02", "--benchmark-min-rounds=15"],
        cwd=root, capture_output=True, text=True, timeout=300, check=False,
        # not as an xdist worker (make test runs pytest -n 2): pytest-benchmark skips timing there
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def same_stat(ours: object, theirs: object) -> bool:
    """Equal strings (outliers "a;b"), or numbers equal to rounding."""
    if isinstance(theirs, str) or isinstance(ours, str):
        return ours == theirs
    return ours == pytest.approx(theirs, rel=1e-12)


def pb_compare(*files: Path, cwd: Path) -> pd.DataFrame:
    """`pytest-benchmark compare FILES --csv`: the benchmarks it read, as a frame."""
    csv = cwd / "compare.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", *map(str, files), "--columns", "median,rounds", "--csv", str(csv)],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and "Failed to load" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return pd.read_csv(csv)


def test_import_keeps_statistics_samples_and_machine(pb_json: Path, tmp_path: Path) -> None:
    doc = json.loads(pb_json.read_text())
    run = import_pytest_benchmark(pb_json, tmp_path / "run").path
    cases = load(run).set_index("workload")
    samples = load(run, samples=True)
    assert len(cases) == 3 and set(cases["backend"]) == {"pytest-benchmark"} and (cases["status"] == "ok").all()
    for bench in doc["benchmarks"]:
        row = cases.loc[bench["fullname"]]
        stats = bench["stats"]
        assert row["median"] == stats["median"] and row["n"] == stats["rounds"] and row["inner"] == stats["iterations"]
        assert row["stdev"] == stats["stddev"] and row["timer"] == bench["options"]["timer"]
        assert row["ci_low"] <= row["median"] <= row["ci_high"]
        got = samples[samples["case_id"] == row["case_id"]].sort_values("index")["seconds"].tolist()
        assert got == stats["data"]
        assert json.loads(row["params"])["name"] == bench["name"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["started"] == doc["datetime"] and meta["status"] == "complete"
    core = meta["environment"]["core"]
    assert core["hostname"] == doc["machine_info"]["node"] and core["cpu"] == doc["machine_info"]["cpu"]["brand_raw"]
    assert meta["pytest_benchmark"]["machine_info"] == doc["machine_info"]


def test_an_imported_run_compares_and_round_trips(pb_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pytest-benchmark", "import", str(pb_json), "-o", str(tmp_path / "run")]) == 0
    assert "3 benchmarks" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "run"), str(tmp_path / "run"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["same"] == 3 and all(c["p_value"] is not None for c in doc["cases"])
    assert main(["pytest-benchmark", "export", str(tmp_path / "run"), "-o", str(tmp_path / "back.json")]) == 0
    original, back = json.loads(pb_json.read_text()), json.loads((tmp_path / "back.json").read_text())
    for key in ("machine_info", "commit_info", "datetime", "version"):
        assert back[key] == original[key]
    by_name = {b["fullname"]: b for b in back["benchmarks"]}
    for bench in original["benchmarks"]:
        again = by_name[bench["fullname"]]
        assert {k: again[k] for k in bench if k != "stats"} == {k: v for k, v in bench.items() if k != "stats"}
        for field, value in bench["stats"].items():
            assert same_stat(again["stats"][field], value), field
    table = pb_compare(pb_json, tmp_path / "back.json", cwd=tmp_path)
    assert len(table) == 6 and table.groupby("name")["median"].nunique().eq(1).all()


def test_export_matches_pytest_benchmark_statistics_and_its_compare_reads_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = {"dw": lognormal(rng, 41, 0.05, outliers=0.1), "sep": lognormal(rng, 20, 0.05, scale=2e-3), "one": np.array([1e-3])}
    run = write_run(tmp_path / "run", {**samples, "broken": np.ones(3)}, {"broken": "mismatch"})
    path, written, left_out = export_pytest_benchmark(run, tmp_path / "out.json")
    assert (written, left_out) == (3, 1)
    doc = json.loads(path.read_text())
    assert doc["commit_info"]["id"] == "abc" and doc["machine_info"]["cpu"]["brand_raw"] == "AMD EPYC"
    for bench in doc["benchmarks"]:
        data = bench["stats"]["data"]
        reference = pb_stats.Stats()
        for value in data:
            reference.update(value)
        for field in pb_stats.Stats.fields:
            assert same_stat(bench["stats"][field], getattr(reference, field)), (bench["name"], field)
        assert bench["extra_info"]["convbench_case_id"].startswith(bench["name"].split("[")[0] + "|")
        assert bench["params"]["backend"] == "torch" and bench["params"]["threads"] == 2
    assert {b["name"] for b in doc["benchmarks"]} == {f"{w}[native-torch-cpu-inference-b1-float32-nchw-eager-t2]" for w in samples}
    # Two exports of runs on this machine, read by pytest-benchmark itself.
    other = write_run(tmp_path / "run2", {k: v * 1.1 for k, v in samples.items()})
    export_pytest_benchmark(other, tmp_path / "out2.json")
    table = pb_compare(path, tmp_path / "out2.json", cwd=tmp_path)
    assert len(table) == 6
    medians = table.groupby("name")["median"].agg(["min", "max"])
    assert np.allclose(medians["max"] / medians["min"], 1.1)


def test_pytest_benchmark_stats_edge_cases() -> None:
    for data in ([2.0], [1.0, 3.0], [1.0, 2.0, 3.0, 10.0, 4.0], list(np.linspace(1, 2, 7)), list(np.linspace(1, 2, 8))):
        reference = pb_stats.Stats()
        for value in data:
            reference.update(value)
        ours = pytest_benchmark_stats(data)
        for field in pb_stats.Stats.fields:
            assert same_stat(ours[field], getattr(reference, field)), (data, field)


def test_import_without_data_is_not_tested_by_compare(pb_json: Path, tmp_path: Path) -> None:
    doc = json.loads(pb_json.read_text())
    for bench in doc["benchmarks"]:
        del bench["stats"]["data"]
    (tmp_path / "nodata.json").write_text(json.dumps(doc))
    run = import_pytest_benchmark(tmp_path / "nodata.json", tmp_path / "run").path
    assert load(run, samples=True).empty
    from convbench.compare import compare_paths

    table = compare_paths(run, run).table
    assert (table["verdict"] == "inconclusive").all() and table["reason"].str.startswith("not tested").all()
    _, written, _ = export_pytest_benchmark(run, tmp_path / "back.json")  # original statistics come back
    assert written == 3
    back = {b["fullname"]: b for b in json.loads((tmp_path / "back.json").read_text())["benchmarks"]}
    for bench in doc["benchmarks"]:
        assert back[bench["fullname"]]["stats"]["median"] == bench["stats"]["median"]


@pytest.mark.parametrize(
    "content,message",
    [
        ("not json", "not readable JSON"),
        ('{"benchmarks": {}}', "expected an object with a 'benchmarks' list"),
        ('{"benchmarks": []}', "'benchmarks' is empty"),
        ('{"benchmarks": [{"name": "a"}]}', "benchmarks[0]: missing 'stats' object"),
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "rounds": 1}}]}', "benchmarks[0].stats.median: expected a finite number"),
        ('{"benchmarks": [{"stats": {}}]}', "needs 'fullname' or 'name'"),
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1, "data": ["x"]}}]}', "stats.data: expected a list of finite numbers"),
        # wrongly typed fields, and numbers no table can hold: refused, nothing written
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1000000000000000000000000000000}}]}', "stats.rounds: expected a positive whole number"),
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 2.5}}]}', "stats.rounds: expected a positive whole number"),
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": true, "median": 1, "rounds": 1}}]}', "stats.mean: expected a finite number"),
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1, "iterations": "3"}}]}', "stats.iterations: expected a positive whole number"),
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1, "q1": "x"}}]}', "stats.q1: expected a finite number or nothing"),
        ('{"benchmarks": [{"name": "a", "options": [1], "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1}}]}', "benchmarks[0].options: expected an object"),
        ('{"benchmarks": [{"name": ["a"], "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1}}]}', "benchmarks[0].name: expected a string"),
        ('{"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1, "data": [true]}}]}', "stats.data: expected a list of finite numbers"),
    ],
)
def test_bad_pytest_benchmark_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["import", "pytest-benchmark", str(bad), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert message in err and str(bad) in err
    assert not (tmp_path / "run").exists()


def test_bad_import_and_export_targets_exit_2(pb_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "pytest-benchmark", str(tmp_path / "missing.json"), "-o", str(tmp_path / "r")]) == 2
    assert main(["import", "pytest-benchmark", str(pb_json), "-o", str(tmp_path / "r")]) == 0
    assert main(["import", "pytest-benchmark", str(pb_json), "-o", str(tmp_path / "r")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    write_run(tmp_path / "two" / "a", {"w": np.ones(3)})
    write_run(tmp_path / "two" / "b", {"w": np.ones(3)})
    assert main(["pytest-benchmark", "export", str(tmp_path / "two"), "-o", str(tmp_path / "x.json")]) == 2
    assert "holds 2 runs" in capsys.readouterr().err
    write_run(tmp_path / "untimed", {"w": np.ones(3)}, {"w": "error"})
    assert main(["pytest-benchmark", "export", str(tmp_path / "untimed"), "-o", str(tmp_path / "x.json")]) == 2
    assert "no timed case" in capsys.readouterr().err


def test_import_keeps_its_short_spelling_and_the_old_export_spelling_says_where_it_went(
    pb_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `convbench import pytest-benchmark` is the same import (import has no other meaning)
    assert main(["import", "pytest-benchmark", str(pb_json), "-o", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "cases.parquet").exists()
    capsys.readouterr()
    # `convbench export` writes ONNX models now: the old spelling is one message, exit 2
    assert main(["export", "pytest-benchmark", str(tmp_path / "run"), "-o", str(tmp_path / "x.json")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "convbench pytest-benchmark export RUN -o FILE" in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("field", ["machine_info", "commit_info", "datetime", "version"])
@pytest.mark.parametrize("value", [[1], "x", 3, None])
def test_wrongly_typed_optional_fields_are_read_as_absent(tmp_path: Path, field: str, value: object) -> None:
    doc = {"benchmarks": [{"name": "a", "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "rounds": 1}}], field: value}
    if field == "machine_info":
        doc[field] = {"cpu": value, "node": "n"}  # (a nested field wrongly typed too)
    src = tmp_path / "pb.json"
    src.write_text(json.dumps(doc))
    assert main(["import", "pytest-benchmark", str(src), "-o", str(tmp_path / "run")]) == 0
    assert len(convbench.load(tmp_path / "run")) == 1
