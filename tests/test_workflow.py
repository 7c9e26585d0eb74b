"""The GitHub workflow passes zizmor (the GitHub Actions linter), offline: actions pinned
to commit SHAs, no credentials persisted into the uploaded artifact."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def _zizmor() -> str:
    found = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    if found is None:
        pytest.fail("zizmor is not installed: it is in the dev extra (make test installs it)")
    return found


def test_zizmor_finds_nothing() -> None:
    proc = subprocess.run([_zizmor(), "--offline", "--format", "json", str(WORKFLOWS)], capture_output=True, text=True, timeout=120)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], [f.get("ident") for f in findings]
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_action_is_pinned_to_a_commit_with_its_version_named() -> None:
    for workflow in WORKFLOWS.glob("*.yml"):
        for line in workflow.read_text().splitlines():
            if "uses:" in line and not line.strip().startswith("#"):
                assert re.search(r"uses: [\w./-]+@[0-9a-f]{40}\s+# v\d", line), f"{workflow.name}: {line.strip()}"
