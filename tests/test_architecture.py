"""The layers hold: import-linter's contracts (pyproject.toml [tool.importlinter]):
no import cycles, a core that imports no framework, commands below cli, report and
compare above nothing that runs cases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def import_contracts() -> dict:
    """import-linter's configuration (pyproject.toml [tool.importlinter])."""
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def core_contract(config: dict) -> dict:
    """The contract that forbids the core every framework and backend."""
    return next(c for c in config["contracts"] if c.get("source_modules") == ["convbench"])


def frameworks() -> list[str]:
    """The frameworks the core never imports (the core contract's non-plugin modules)."""
    return [m for m in core_contract(import_contracts())["forbidden_modules"] if not m.startswith("convbench_")]


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


def test_a_local_run_and_its_resume_never_load_the_fleet(tmp_path: Path) -> None:
    """``convbench run`` without ``--cluster`` (and ``--resume`` of it) runs through the
    local runner: convbench.fleet (the Ray side) is never imported."""
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: local\nworkloads:\n  - {id: w, kind: depthwise, params: {channels: 4, size: 6}}\n"
        "matrix: {backend: [reference], batch: [1]}\n"
        "timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.05, guard: flag}\n"
    )
    out = tmp_path / "run"
    code = (
        "import sys, json; from convbench.cli import main\n"
        f"codes = [main(['run', {str(suite)!r}, '--out', {str(out)!r}]), main(['run', '--resume', {str(out)!r}])]\n"
        "print(json.dumps({'codes': codes, 'fleet': 'convbench.fleet' in sys.modules}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == '{"codes": [0, 0], "fleet": false}', proc.stdout[-2000:]


def test_the_shared_backend_info_says_why_and_how_to_install() -> None:
    """Backend.info (shared by the plugins): a framework that does not import makes the
    backend unavailable with the import error and its install_hint; a probe that raises
    makes it unavailable too; an available answer is kept."""
    from convbench.backend import Backend, BackendInfo

    class Missing(Backend):
        name, install_hint, requires = "missing", "pip install nothing-here", ("convbench_no_such_framework",)

        def prepare(self, case, graph, tensors, cotangents):  # noqa: ANN001,ANN201
            raise NotImplementedError

    class Probed(Missing):
        requires = ("json",)
        calls = 0

        def probe(self) -> BackendInfo:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("no devices yet")
            return BackendInfo(self.name, True, devices=["cpu"])

    info = Missing().info()
    assert not info.available and info.reason is not None
    assert info.reason.startswith("missing is not importable (ModuleNotFoundError") and info.reason.endswith(": pip install nothing-here")
    probed = Probed()
    assert "failed to report its environment: RuntimeError: no devices yet" in (probed.info().reason or "")
    assert probed.info().available and probed.info().available and probed.calls == 2


def test_every_plugin_declares_without_importing_its_framework() -> None:
    """The core reads what every registered plugin declares (executions, venv,
    conformance) in its own process: loading the plugins imports no framework, and
    changes neither the environment nor anything else the workers inherit."""
    code = (
        "import json, os, sys\n"
        "from convbench.backend import backend_names, declarations, execution_vocabulary, unloadable_backends\n"
        "from convbench.runner import interpreter_for\n"
        "before = dict(os.environ)\n"
        "declared = declarations(); vocabulary = execution_vocabulary(); [interpreter_for(b) for b in backend_names()]\n"
        f"frameworks = [m for m in {frameworks()!r} if m in sys.modules]\n"
        "print(json.dumps({'declared': sorted(declared), 'unloadable': unloadable_backends(), 'frameworks': frameworks,"
        " 'environ': sorted(set(os.environ.items()) ^ set(before.items()))}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backends"), str(ROOT)])}
    env.pop("CONVBENCH_EXTRA_BACKENDS", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["unloadable"] == [] and {"reference", "torch", "mxnet"} <= set(out["declared"])
    assert out["frameworks"] == [] and out["environ"] == []


def test_every_plugin_package_is_under_the_import_contracts() -> None:
    """A backend's package is named in import-linter's configuration (pyproject.toml):
    analysed, free of cycles, and forbidden to the core."""
    from convbench.backend import backend_targets

    config = import_contracts()
    core = core_contract(config)
    acyclic = next(c for c in config["contracts"] if c["type"] == "acyclic_siblings")
    for name, target in backend_targets().items():
        package = target.partition(":")[0].split(".")[0]
        if package == "convbench":
            continue  # the reference backend is the core's
        assert package in config["root_packages"], f"{name}: add {package} to [tool.importlinter] root_packages"
        assert package in acyclic["ancestors"], f"{name}: add {package} to the acyclic_siblings contract's ancestors"
        assert package in core["forbidden_modules"], f"{name}: add {package} to the core contract's forbidden_modules"
