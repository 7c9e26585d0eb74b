"""The GPU command (scripts/gpu/evidence.sh) selects cases from the real suites.

A GPU machine is lent rarely and briefly: a filter that does not parse or selects no case
would waste its minutes. Each ``$CB run`` / ``$CB profile`` step of evidence.sh (the GPU
branch and the rehearsal) is dry-run here with its suite, preset and filter (CUDA cases
are listed without a GPU), and so is the fidelity step's default selection. Seconds.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from convbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu" / "evidence.sh"


def _steps(branch: str) -> list[tuple[str, list[str]]]:
    """(step name, its convbench arguments) of evidence.sh's ``gpu`` or ``rehearsal`` branch."""
    text = SCRIPT.read_text()
    rehearsal, gpu = re.search(r"if \[ \$REHEARSAL = 1 \]; then\n  T=(.*?)\nelse\n(.*?)\nfi\n", text, re.S).groups()
    lines = rehearsal.splitlines()[1:] if branch == "rehearsal" else gpu.splitlines()
    tiny = rehearsal.splitlines()[0].strip()
    out = []
    for line in lines:
        words = shlex.split(line.replace("$T", tiny))
        assert words[0] == "step", line
        out.append((words[1], words[4:]))
    return out


def _dry_run(args: list[str], capsys) -> str:  # noqa: ANN001
    """``convbench run SUITE [--preset P] --filter F --dry-run``; the output."""
    keep = []
    i = 0
    while i < len(args):
        if args[i] in ("--preset", "--filter"):
            keep += args[i : i + 2]
            i += 2
        elif args[i] in ("--out", "--steps", "-o"):
            i += 2
        else:
            keep.append(args[i])
            i += 1
    suite = keep[0]
    rc = main(["run", str(ROOT / suite), *keep[1:], "--dry-run"])
    text = capsys.readouterr().out
    assert rc == 0, (args, text)
    return text


def _count(text: str) -> int:
    m = re.search(r"(\d+) cases? from", text)
    assert m, text
    return int(m.group(1))


@pytest.mark.parametrize("branch", ["gpu", "rehearsal"])
def test_every_convbench_step_of_the_gpu_command_selects_cases(branch: str, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(ROOT)
    steps = _steps(branch)
    names = [name for name, _ in steps]
    assert names == ["depthwise", "fidelity", "kernels", "shift", "paper", "profile"]
    for name, words in steps:
        if words[0] == "$FIDELITY":
            continue
        assert words[0] == "$CB" and words[1] in ("run", "profile"), (name, words)
        text = _dry_run(words[2:], capsys)
        n = _count(text)
        assert n > 0, name
        if branch == "gpu":
            assert "│ cpu " not in text, f"{name}: CPU cases in the GPU command"
            if name == "profile":  # one network, native and diagonalwise: a profile is slow
                assert n == 2 and "mobilenet_v1_1.0_224" in text
            if name == "depthwise":
                assert "cudagraph" in text and "eager" in text
            if name == "shift":
                assert "kernel" in text and "addrshift" in text


def test_the_fidelity_step_compares_five_depthwise_layers(capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(ROOT)
    spec = importlib.util.spec_from_file_location("gpu_fidelity", ROOT / "scripts" / "gpu" / "fidelity.py")
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    gpu = dict(_steps("gpu"))["fidelity"]
    assert "--filter" not in gpu and "--cpu-stand-in" not in gpu  # the default: five layers on CUDA
    suite = gpu[gpu.index("--suite") + 1]
    text = _dry_run([suite, "--filter", fidelity.DEFAULT_FILTER], capsys)
    assert _count(text) == 5 and "│ cuda " in text and "cudagraph" not in text
    text = _dry_run([suite, "--filter", fidelity.CPU_FILTER], capsys)
    assert _count(text) == 5
    rehearsal = dict(_steps("rehearsal"))["fidelity"]
    suite, filt = rehearsal[rehearsal.index("--suite") + 1], rehearsal[rehearsal.index("--filter") + 1]
    assert _count(_dry_run([suite, "--filter", filt], capsys)) >= 1


def test_host_do_bench_follows_do_bench_s_schedule() -> None:
    """The CPU stand-in: estimate from 5 calls, warm-up and repetitions by time, a flush
    before each timed call, the median in ms."""
    spec = importlib.util.spec_from_file_location("gpu_fidelity", ROOT / "scripts" / "gpu" / "fidelity.py")
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    now = [0.0]
    calls = {"fn": 0, "flush": 0}

    def fn() -> None:
        calls["fn"] += 1
        now[0] += 0.002  # 2 ms a call

    def flush() -> None:
        calls["flush"] += 1

    ms = fidelity.host_do_bench(fn, lambda: None, flush, warmup=10, rep=20, clock=lambda: now[0])
    assert ms == pytest.approx(2.0)
    assert calls == {"fn": 1 + 5 + 5 + 10, "flush": 5 + 10}
