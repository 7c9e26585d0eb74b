"""What every inference-only plugin (litert, tvm, executorch) shows alike: an unavailable framework's
reason says how to install it (and is every case's skip reason), and ``convbench list``
shows its version and devices. Each runs with the interpreter its workers get
(executorch: its own venv). Each plugin's own cases: its tests/test_<name>_backend.py or
tests/backends/<name>/."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import Future

import pytest

from convbench.runner import interpreter_for

#: name -> (the module hidden to make it unavailable, its execution, the modules it needs,
#: its distribution, how its reason says to install it)
PLUGINS = {
    "litert": ("ai_edge_litert", "xnnpack", ("ai_edge_litert", "tensorflow"), "ai-edge-litert", "pip install 'convbench[litert]'"),
    "tvm": ("tvm", "default", ("tvm", "onnx"), "apache-tvm", "pip install 'convbench[tvm]'"),
    "executorch": ("executorch", "xnnpack", ("executorch", "torch"), "executorch", "make executorch-venv"),
}


def installed_version(name: str) -> str | None:
    """The plugin's distribution version in its workers' interpreter, or None when one of
    the modules it needs is missing there."""
    _, _, modules, distribution, _ = PLUGINS[name]
    code = (
        "import importlib.util, importlib.metadata, json\n"
        f"missing = [m for m in {list(modules)!r} if importlib.util.find_spec(m) is None]\n"
        f"print(json.dumps(None if missing else importlib.metadata.version({distribution!r})))\n"
    )
    out = subprocess.run([interpreter_for(name), "-c", code], check=True, timeout=60, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_unavailable_reason_says_how_to_install(name: str) -> None:
    hidden, execution, _, _, install = PLUGINS[name]
    code = (
        "import sys, json\n"
        f"sys.modules[{hidden!r}] = None\n"
        "from convbench.backend import load_backend\n"
        "from convbench.cases import Case\n"
        f"b = load_backend({name!r})\n"
        "info = b.info()\n"
        f"case = Case(suite='s', workload='w', kind='depthwise', params={{}}, backend={name!r}, execution={execution!r})\n"
        "print(json.dumps([info.available, info.reason, b.skip_reason(case)]))\n"
    )
    out = subprocess.run([interpreter_for(name), "-c", code], check=True, timeout=60, capture_output=True, text=True).stdout
    available, reason, skip = json.loads(out.strip().splitlines()[-1])
    assert not available
    assert install in reason and skip == reason


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_list_shows_version_and_devices(probed: dict[str, Future], name: str) -> None:
    release = installed_version(name)
    if release is None:
        pytest.skip(f"{name} not installed for its workers: {PLUGINS[name][4]}")
    proc = probed["list"].result()  # `convbench list SMOKE` (tests/conftest.py): the backends table as `list` prints it
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.strip("│ ").startswith(f"{name} "))
    assert "yes" in row and release in row and "cpu" in row, row
