"""What every inference-only plugin (litert, tvm) shows alike: an unavailable framework's
reason says how to install it (and is every case's skip reason), and ``convbench list``
shows its version and devices. Each plugin's own cases: tests/test_<name>_backend.py."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Future
from importlib.metadata import version
from importlib.util import find_spec

import pytest

#: name -> (the module hidden to make it unavailable, its execution, the modules it needs, its distribution)
PLUGINS = {
    "litert": ("ai_edge_litert", "xnnpack", ("ai_edge_litert", "tensorflow"), "ai-edge-litert"),
    "tvm": ("tvm", "default", ("tvm", "onnx"), "apache-tvm"),
}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_unavailable_reason_says_how_to_install(name: str) -> None:
    hidden, execution, _, _ = PLUGINS[name]
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
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True, text=True).stdout
    available, reason, skip = json.loads(out.strip().splitlines()[-1])
    assert not available
    assert f"pip install 'convbench[{name}]'" in reason and skip == reason


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_list_shows_version_and_devices(probed: dict[str, Future], name: str) -> None:
    _, _, modules, distribution = PLUGINS[name]
    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install 'convbench[{name}]'")
    proc = probed["list"].result()  # `convbench list SMOKE` (tests/conftest.py): the backends table as `list` prints it
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.strip("│ ").startswith(f"{name} "))
    assert "yes" in row and version(distribution) in row and "cpu" in row, row
