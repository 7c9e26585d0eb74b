"""The suites ship inside the package: a bare name runs one from anywhere; a path still wins."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from convbench.suite import load_suite, locate_suite, packaged_suites
from tests.conftest import ROOT, run_cli


def test_every_packaged_suite_loads_and_the_checkout_path_is_the_same_file() -> None:
    suites = packaged_suites()
    assert {"depthwise", "smoke", "networks"} <= set(suites)
    for name, path in suites.items():
        assert load_suite(path).name, name
    assert (ROOT / "suites" / "depthwise.yaml").resolve() == suites["depthwise"].resolve()


def test_a_bare_name_is_a_packaged_suite_and_a_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert locate_suite("depthwise") == packaged_suites()["depthwise"]
    assert locate_suite("depthwise.yaml") == packaged_suites()["depthwise"]
    (tmp_path / "depthwise.yaml").write_text("name: mine\n")
    assert locate_suite("depthwise.yaml") == Path("depthwise.yaml")  # the user's own file
    assert locate_suite("nowhere/depthwise.yaml") == Path("nowhere/depthwise.yaml")  # a path is never replaced


def test_run_and_list_by_name_from_another_folder(tmp_path: Path) -> None:
    proc = run_cli("run", "smoke", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "26 cases from" in proc.stdout and "smoke.yaml" in proc.stdout
    listed = run_cli("list", "--suites", cwd=tmp_path)
    assert listed.returncode == 0 and "depthwise" in listed.stdout and "smoke" in listed.stdout
    missing = run_cli("check", "nosuch", cwd=tmp_path)
    assert missing.returncode == 2 and "packaged suites: " in missing.stderr
    named = missing.stderr.split("packaged suites: ", 1)[1].split(")")[0].split(", ")
    assert {"depthwise", "smoke", "networks"} <= set(named) and named == sorted(named)  # every suite, by name


def test_the_wheel_carries_the_suites(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("convbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"convbench/suites/{n}.yaml" for n in packaged_suites()} <= set(names)
