"""The layers hold: import-linter's contracts (pyproject.toml [tool.importlinter]):
no import cycles, a core that imports no framework, commands below cli, report and
compare above nothing that runs cases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is not installed: import-linter is in the dev extra (make test installs it)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backends"), str(ROOT)])}
    proc = subprocess.run([lint, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 broken" in proc.stdout, proc.stdout[-2000:]


def test_python_dash_m_convbench_is_the_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "convbench", "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("convbench ")
