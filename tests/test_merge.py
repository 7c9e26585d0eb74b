"""`convbench merge`: runs made on different machines become one run folder that keeps
each case's environment; report and compare read it; conflicts and bad input are clear."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from convbench.merge import MergeError, merge_runs
from convbench.results import load
from tests.conftest import ROOT, run_cli

SMOKE = str(ROOT / "suites" / "smoke.yaml")
ONLY = "backend == 'reference' and mode == 'inference' and workload == '{}'"


def _run(out: Path, workload: str, hostname: str) -> Path:
    proc = run_cli("run", SMOKE, "--filter", ONLY.format(workload), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())  # pose as another machine
    meta["environment"]["core"].update(hostname=hostname, cpu=f"{hostname} CPU")
    (out / "run.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("merge")
    return {
        "a": _run(tmp / "a", "dw_small", "box-a"),
        "b": _run(tmp / "b", "dw_odd", "box-b"),
        "a2": _run(tmp / "a2", "dw_small", "box-c"),  # the same cases again: other results
    }


def test_merge_keeps_each_cases_machine_and_report_and_compare_read_it(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    proc = run_cli("merge", str(runs["a"]), str(runs["b"]), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "4 cases from 2 runs on 2 machines" in proc.stdout
    meta = json.loads((out / "run.json").read_text())
    hosts = meta["environment"]["hosts"]
    assert set(hosts) == {"box-a", "box-b"} and hosts["box-b"]["core"]["cpu"] == "box-b CPU"
    assert meta["environment"]["core"]["hostname"] == "box-a | box-b"
    assert "reference:cpu" in hosts["box-a"]["backends"]
    assert len(meta["cases"]) == 4 and [s["name"] for s in meta["merged_from"]] == ["a", "b"]
    frame = load(out)
    assert dict(zip(frame.workload, frame.host, strict=True)) == {
        "dw_small": "box-a",
        "dw_odd": "box-b",
    }
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples.case_id) == set(frame.case_id)
    # the same cases in both: merging a merged run with one of its sources is no conflict
    again = tmp_path / "again"
    assert run_cli("merge", str(out), str(runs["a"]), "-o", str(again)).returncode == 0
    assert set(json.loads((again / "run.json").read_text())["environment"]["hosts"]) == {
        "box-a",
        "box-b",
    }
    # report and compare take merged runs
    assert run_cli("report", str(out), "-o", str(tmp_path / "site")).returncode == 0
    html = "".join(p.read_text() for p in (tmp_path / "site").glob("*.html"))
    assert "box-b" in html
    cmp = run_cli("compare", str(runs["a2"]), str(out), "--format", "json", "--fail-on", "failed", "--inconclusive-ok")
    assert cmp.returncode == 0, cmp.stderr
    verdicts = {r["workload"]: r["verdict"] for r in json.loads(cmp.stdout)["cases"]}
    assert set(verdicts) == {"dw_small", "dw_odd"} and verdicts["dw_odd"] == "added"


def test_conflicting_duplicates_are_an_error_unless_a_policy_picks_one(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    proc = run_cli("merge", str(runs["a"]), str(runs["a2"]), "-o", str(tmp_path / "m"))
    assert proc.returncode == 2
    assert "different results" in proc.stderr and "--on-duplicate" in proc.stderr
    assert str(runs["a2"] / "cases.parquet") in proc.stderr.replace("\n", "")
    assert not (tmp_path / "m" / "run.json").exists()
    for policy, host in (("first", "box-a"), ("last", "box-c")):
        out = tmp_path / policy
        assert (
            run_cli(
                "merge", str(runs["a"]), str(runs["a2"]), "-o", str(out), "--on-duplicate", policy
            ).returncode
            == 0
        )
        assert set(load(out).host) == {host}


def test_bad_inputs_name_the_file(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_cli("merge", str(runs["a"]), str(tmp_path / "empty"), "-o", str(tmp_path / "m"))
    assert proc.returncode == 2 and "empty" in proc.stderr and "no run.json" in proc.stderr
    broken = tmp_path / "broken"
    shutil.copytree(runs["b"], broken)
    (broken / "cases.parquet").write_bytes(b"not parquet")
    with pytest.raises(MergeError, match=f"{broken / 'cases.parquet'}: unreadable"):
        merge_runs([runs["a"], broken], tmp_path / "m2")
    with pytest.raises(MergeError, match="already holds a run"):
        merge_runs([runs["b"]], runs["a"])
    with pytest.raises(MergeError, match="policy"):
        merge_runs([runs["b"]], tmp_path / "m3", on_duplicate="newest")
