"""Faults and misuse around a run: an output that cannot be a folder, a full disk, a
resume given other cases: a clear message and a defined exit code, nothing lost."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from convbench.cli import main
from convbench.results import RunFolder
from tests.conftest import ROOT
from tests.test_end_to_end import cases_of, write_suite


def test_out_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", ["a"], backend="reference")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", str(suite), "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the run folder" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_resume_refuses_a_filter_or_a_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--resume", str(tmp_path), "--filter", "batch == 1"]) == 2
    assert "takes no --filter" in capsys.readouterr().err


def test_a_full_disk_ends_the_run_with_the_resume_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", ["a", "b", "c"], backend="reference")
    out = tmp_path / "run"
    real_add = RunFolder.add
    calls = {"n": 0}

    def add(self: RunFolder, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, *args, **kwargs)

    monkeypatch.setattr(RunFolder, "add", add)
    assert main(["run", str(suite), "--out", str(out)]) == 1
    err = capsys.readouterr().err.replace("\n", "")
    assert "No space left on device" in err and f"convbench run --resume {out}" in err
    assert len(cases_of(out)) == 1  # the case finished before the fault is kept
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(RunFolder, "add", real_add)
    assert main(["run", "--resume", str(out)]) == 0
    assert sorted(cases_of(out).workload) == ["a", "b", "c"]


def test_report_and_merge_into_a_file_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    published = sorted((ROOT / "results" / "published").glob("*/run.json"))[:1]
    assert published, "results/published holds runs"
    run = str(published[0].parent)
    assert main(["report", run, "-o", str(blocker / "site")]) == 2
    assert "cannot write the site" in capsys.readouterr().err
    assert main(["merge", run, "-o", str(blocker / "merged")]) == 2
    assert "cannot create the merged run folder" in capsys.readouterr().err
