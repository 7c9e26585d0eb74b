"""User strings are text everywhere they are shown: rich markup, Markdown and paths."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import convbench
from convbench.commands.common import default_out, slug
from convbench.compare_render import _md
from tests.conftest import run_cli

HOSTILE = "[/][bold red]x[/bold red] <b>|`y`|</b> ../../../tmp"


def hostile_suite(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(
        "name: '" + HOSTILE.replace("'", "''") + "'\n"
        "description: '[link=http://e]click[/link]'\n"
        "workloads:\n  - {id: w, kind: depthwise, params: {channels: 4, size: 6}}\n"
        "matrix:\n  variant: [native, diagonalwise]\n  backend: [reference]\n  device: [cpu]\n  mode: [inference]\n  batch: [1]\n"
        "timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.05, guard: flag}\n"
    )
    return path


def test_markup_and_paths_in_a_suite_name_are_text(tmp_path: Path) -> None:
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    suite = hostile_suite(work)
    commands = (["check", str(suite)], ["run", str(suite), "--dry-run"], ["list", str(suite)], ["run", str(suite)])
    with ThreadPoolExecutor(2) as pool:  # independent (only the last writes): `list` alone probes every backend
        procs = list(pool.map(lambda args: run_cli(*args, cwd=work), commands))
    for args, proc in zip(commands, procs, strict=True):
        assert proc.returncode == 0, (args, proc.stderr[-3000:])
        assert "MarkupError" not in proc.stderr and "Traceback" not in proc.stderr
    assert "[/][bold red]x[/bold red]" in proc.stdout  # the summary's title, literally
    (run,) = (work / "results").iterdir()  # the name's ../../../tmp did not leave results/
    assert run.name.startswith("bold-red-x-bold-red-b-y-b-tmp-")
    assert sorted(p.name for p in tmp_path.rglob("run.json")) == ["run.json"]
    assert convbench.load(run).suite.iloc[0] == HOSTILE
    md = run_cli("compare", str(run), str(run), "--format", "md", cwd=work)
    assert md.returncode in (0, 3), md.stderr[-2000:]
    assert "<b>" not in md.stdout and "&lt;b&gt;" in md.stdout


def test_the_default_run_folder_stays_inside_results() -> None:
    for name in ("../../x", "/etc", "..", "[/]", "a/../../b", "C:\\\\win"):
        out = default_out(name)
        assert out.parts[0] == "results" and len(out.parts) == 2 and not out.parts[1].startswith(".")
    assert slug("../../x") == "x" and slug("[/]") == "run" and slug("depthwise") == "depthwise"
    assert len(slug("y" * 500)) <= 60


def test_markdown_text_cannot_add_markup() -> None:
    text = _md("| [x](http://e) ![i](http://e/i.png) <script>alert(1)</script> **b** `c`\nnext")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "](" not in text.replace("\\](", "").replace("\\]\\(", "")
    assert "\n" not in text and "\\|" in text and "\\*\\*b\\*\\*" in text
