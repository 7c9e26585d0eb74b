"""Do bad run folders crash convbench? A benchmark (not a test) of corrupted copies.

Thousands of mutations of a small real run folder (tests/data/tiny-run: 6 reference
cases of suites/smoke.yaml): run.json text and structure, parquet bytes, parquet columns
(see tests/folder_fuzz.py for the mutations and how an outcome is judged). Each mutation
is given to one command in turn (load, compare, report, history, merge, run --resume;
``--every``: all of them), in this process through ``convbench.cli.main``. ``run
--resume`` runs no case (the progress loop is replaced by one that finishes at once):
what is under test is reading, checking and rewriting the folder.

An outcome is ``clean`` (success, or exit 2 naming the corrupted folder with the input
unchanged) or a failure: ``traceback``, ``unnamed`` (exit 2 without naming the file),
``modified`` (a failed command changed its input), ``accepted`` (``load`` read, as if it
were fine, a table that must be refused: duplicated rows, unknown statuses, strings
where numbers belong) or ``rc=N``.

    .venv/bin/python benchmarks/fuzz_folders.py                      # current code -> fuzz_folders.md
    .venv/bin/python benchmarks/fuzz_folders.py -n 300 --no-write
    # another convbench (the code before the change, extracted from git); its TimingConfig
    # forbids the later options.timing.allocator, so it corrupts a copy of the fixture
    # without that one field (--old-fixture writes it):
    mkdir /tmp/fz-before && git archive b9333b7 convbench | tar -x -C /tmp/fz-before
    .venv/bin/python benchmarks/fuzz_folders.py --old-fixture /tmp/fz-tiny-old
    .venv/bin/python benchmarks/fuzz_folders.py --source /tmp/fz-before --fixture /tmp/fz-tiny-old --label before --source-note "commit b9333b7 (git archive)"

fuzz_folders.md holds one section per label (rewritten between its markers; the notes
around them are written by hand).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "tiny-run"
MD = Path(__file__).resolve().parent / "fuzz_folders.md"


def section(label: str, rec: dict) -> str:
    lines = [f"<!-- fuzz:{label} -->", f"### {label}", ""]
    lines.append(f"{rec['mutations']} mutations of {rec['fixture']}, {rec['tried']} commands tried, seed {rec['seed']}, "
                 f"{rec['seconds']:.0f} s on {rec['machine']} (Python {rec['python']}), {rec['when']}, "
                 f"convbench from {rec['source']}.")  # fmt: skip
    lines += ["", "| command | tried | clean | failures | of which |", "|---|---:|---:|---:|---|"]
    for cmd, c in rec["by_command"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(c["kinds"].items())) or "-"
        lines.append(f"| {cmd} | {c['tried']} | {c['clean']} | {c['failures']} | {kinds} |")
    t = rec["total"]
    lines.append(f"| **all** | **{t['tried']}** | **{t['clean']}** | **{t['failures']}** | |")
    lines += ["", "By mutation kind (failures / tried): " + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in rec["by_mutator"].items()), ""]
    if rec["examples"]:
        lines += ["Distinct failures (first seen; at most 25):", ""]
        lines += [f"- {e}" for e in rec["examples"][:25]]
        lines.append("")
    lines.append(f"<!-- /fuzz:{label} -->")
    return "\n".join(lines)


def write_md(label: str, rec: dict) -> None:
    text = MD.read_text() if MD.exists() else "# Corrupted run folders: do the commands fail cleanly?\n\n"
    block = section(label, rec)
    pattern = re.compile(rf"<!-- fuzz:{re.escape(label)} -->.*?<!-- /fuzz:{re.escape(label)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    MD.write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=2400, help="mutations (default 2400)")
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--every", action="store_true", help="every command on each mutation (slower)")
    p.add_argument("--source", type=Path, help="import convbench from this checkout instead")
    p.add_argument("--label", default="current")
    p.add_argument("--fixture", type=Path, default=FIXTURE, help="the good run folder to corrupt (default tests/data/tiny-run)")
    p.add_argument("--source-note", help="what --source is, for the record (where it is not a git checkout)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--old-fixture", type=Path, help="only write a copy of the fixture without options.timing.allocator here (for b9333b7)")
    args = p.parse_args()
    if args.old_fixture:
        shutil.copytree(FIXTURE, args.old_fixture)
        meta = json.loads((args.old_fixture / "run.json").read_text())
        del meta["options"]["timing"]["allocator"]
        (args.old_fixture / "run.json").write_text(json.dumps(meta, indent=2))
        return 0
    if args.source:
        sys.path.insert(0, str(args.source.resolve()))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(args.source.resolve()), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ.setdefault("COLUMNS", "400")
    import folder_fuzz

    import convbench

    where = Path(convbench.__file__).parent.parent
    print(f"convbench from {where}", file=sys.stderr)
    git = ["git", "-C", str(where)]
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "convbench"], capture_output=True, text=True, check=False).stdout.strip()
    source = args.source_note or f"commit {rev or '?'}" + (" with uncommitted changes to convbench/" if dirty else "")
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    mutators: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    examples, seen = [], set()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-folders-") as scratch:
        for k, r in enumerate(folder_fuzz.fuzz(args.fixture, Path(scratch), args.n, args.seed, every=args.every)):
            counts[r["command"]][r["outcome"]] += 1
            mutators[r["mutator"]][0] += 1
            if r["outcome"] != "clean":
                mutators[r["mutator"]][1] += 1
                key = (r["command"], r["outcome"], r["detail"][:60])
                if key not in seen:
                    seen.add(key)
                    examples.append(f"{r['command']}: {r['outcome']} on `{r['mutation']}`: {r['detail'][:160]}".replace("|", "/"))
            if k % 200 == 0:
                print(f"{k} commands, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - start
    by_command = {}
    for cmd in folder_fuzz.COMMANDS:
        c = counts.get(cmd, collections.Counter())
        tried = sum(c.values())
        by_command[cmd] = {"tried": tried, "clean": c["clean"], "failures": tried - c["clean"], "kinds": {k: v for k, v in c.items() if k != "clean"}}
    total = {f: sum(c[f] for c in by_command.values()) for f in ("tried", "clean", "failures")}
    rec = {
        "fixture": str(args.fixture.resolve().relative_to(ROOT)) if args.fixture.resolve().is_relative_to(ROOT) else "tests/data/tiny-run without options.timing.allocator (--old-fixture)",
        "mutations": args.n, "tried": total["tried"], "seed": args.seed, "seconds": seconds, "source": source,
        "machine": platform.machine(), "python": platform.python_version(),
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "by_command": by_command, "total": total, "by_mutator": dict(mutators), "examples": examples,
    }  # fmt: skip
    print(json.dumps({k: rec[k] for k in ("tried", "total", "by_command")}, indent=1))
    if not args.no_write:
        write_md(args.label, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
