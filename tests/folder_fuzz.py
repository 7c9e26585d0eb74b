"""Corrupted copies of a run folder, and the commands run on them in-process.

Used by tests/test_folder_fuzz.py (a few hundred mutations) and by
benchmarks/fuzz_folders.py (thousands). Self-contained on purpose: it needs only
``convbench.cli.main`` (so it also runs against an older convbench, for "before").

A mutation corrupts one file of a copy of a good run folder: the text or structure of
run.json (another JSON type, non-UTF-8 bytes, cut short, a field removed or wrongly
typed), the bytes of a parquet file (cut short, flipped, emptied) or its columns (one
dropped, one retyped, rows duplicated, a zero, negative or string median). Every command
(load, compare, report, history, merge, run --resume) then runs on it, and an outcome is

* ``clean``: success (exit 0, or 1 where the command gives a verdict: compare), or exit 2
  with a message naming the corrupted folder or file, with the input left as it was;
* a failure otherwise: ``traceback`` (an exception escaped), ``unnamed`` (exit 2 without
  naming the file), ``modified`` (a failed command changed its input), ``accepted``
  (``load`` read a table no reader may accept: duplicated rows, unknown statuses, strings
  where numbers belong), ``rc=N``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import shutil
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

COMMANDS = ("load", "compare", "report", "history", "merge", "resume")
MUTANT = "mutant"  # the corrupted folder's name: a message naming it names the file
REJECT = " (must be refused)"  # a mutation whose result no reader may accept silently

WRONG_VALUES: list[Any] = [None, [], [1, 2], "x", "", 0, -1, 10**30, 1.5, True, {}, {"a": 1}, float("nan")]
JSON_FIELDS = [
    (), ("environment",), ("environment", "core"), ("environment", "backends"), ("environment", "hosts"),
    ("environment", "core", "hostname"), ("options",), ("options", "timing"), ("options", "timeout"),
    ("options", "tolerance"), ("options", "interpreters"), ("options", "timing", "min_samples"),
    ("cases",), ("cases", 0), ("cases", 0, "params"), ("suite",), ("status",), ("started",), ("finished",),
    ("canary",), ("preset",), ("schema_version",), ("convbench_version",), ("filter",),
]  # fmt: skip


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


# --------------------------------------------------------------------------- mutations
def _set_path(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node or isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return data
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = value
    return data


def _del_path(data: Any, path: tuple) -> Any:
    node = data
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)
    return data


def mutate_json(rng: random.Random, folder: Path) -> str:
    file = folder / "run.json"
    raw = file.read_bytes()
    kind = rng.choice(["type", "type", "type", "delete", "whole", "bytes", "cut", "utf8"])
    if kind == "whole":
        value = rng.choice([[], [1], "run", None, 3, True])
        file.write_text(json.dumps(value))
        return f"run.json is {json.dumps(value)}"
    if kind == "bytes":
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        file.write_bytes(bytes(data))
        return "run.json: bytes flipped"
    if kind == "cut":
        n = rng.randrange(len(raw))
        file.write_bytes(raw[:n])
        return f"run.json cut at {n}"
    if kind == "utf8":
        file.write_bytes(b"\xff\xfe" + raw[2:] if rng.random() < 0.5 else raw.replace(b'"', b'"\xe9', 1))
        return "run.json: not UTF-8"
    data = json.loads(raw)
    path = rng.choice(JSON_FIELDS[1:] if kind == "delete" else JSON_FIELDS[1:])
    if kind == "delete":
        _del_path(data, path)
        file.write_text(json.dumps(data))
        return f"run.json: {'.'.join(map(str, path))} removed"
    value = rng.choice(WRONG_VALUES)
    if path == ("schema_version",):
        value = rng.choice([99, "2", -1, None, 2.5])
    data = _set_path(data, path, value)
    file.write_text(json.dumps(data))
    return f"run.json: {'.'.join(map(str, path))} = {value!r}"


def mutate_parquet_bytes(rng: random.Random, folder: Path) -> str:
    file = folder / rng.choice(["cases.parquet", "samples.parquet"])
    raw = file.read_bytes()
    kind = rng.choice(["cut", "flip", "empty", "garbage", "remove"])
    if kind == "cut":
        file.write_bytes(raw[: rng.randrange(len(raw))])
    elif kind == "flip":
        data = bytearray(raw)
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        file.write_bytes(bytes(data))
    elif kind == "empty":
        file.write_bytes(b"")
    elif kind == "garbage":
        file.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
    else:
        file.unlink()
    return f"{file.name}: {kind}"


def mutate_columns(rng: random.Random, folder: Path) -> str:
    name = rng.choice(["cases.parquet", "cases.parquet", "samples.parquet"])
    file = folder / name
    table = pq.read_table(file)
    cols = table.column_names
    kind = rng.choice(["drop", "drop", "retype", "retype", "duplicate", "median", "status", "null"])
    if name == "samples.parquet" and kind in ("median", "status"):
        kind = "retype"
    n = table.num_rows
    reject = False  # whether a reader must refuse the result (not read it as if it were fine)
    if kind == "drop":
        col = rng.choice(["case_id", "status", "median", "seconds", "side", "suite", rng.choice(cols)])
        if col in cols:
            table = table.drop([col])
        what = f"column {col} dropped"
    elif kind == "retype":
        col = rng.choice(["median", "status", "case_id", "seconds", "n", "ratio", "batch", "threads", rng.choice(cols)])
        if col not in cols:
            col = rng.choice(cols)
        new = rng.choice([pa.array([str(i) for i in range(n)]), pa.array(list(range(n)), pa.int64()), pa.array([[1]] * n), pa.array([1.5] * n)])
        table = table.set_column(cols.index(col), col, new)
        what = f"column {col} retyped to {new.type}"
        # strings or lists where numbers belong, numbers or lists where strings do, statuses
        # that are not statuses
        numeric = pa.types.is_integer(new.type) or pa.types.is_floating(new.type)
        reject = (col in ("median", "seconds", "n", "ratio") and not numeric) or (col == "case_id" and not pa.types.is_string(new.type)) or col == "status"
    elif kind == "duplicate":
        table = pa.concat_tables([table, table])
        what = "rows duplicated"
        reject = name == "cases.parquet"
    elif kind == "median":
        value = rng.choice([0.0, -1.0, float("inf"), float("nan"), 1e300])
        table = table.set_column(cols.index("median"), "median", pa.array([value] * n))
        what = f"median = {value}"
    elif kind == "status":
        value = rng.choice(["okay", "", None, "OK"])
        table = table.set_column(cols.index("status"), "status", pa.array([value] * n, pa.string()))
        what = f"status = {value!r}"
        reject = True
    else:
        col = rng.choice(["case_id", "status", "median", "seconds", rng.choice(cols)])
        if col not in cols:
            col = rng.choice(cols)
        table = table.set_column(cols.index(col), col, pa.nulls(n, table.schema.field(col).type))
        what = f"column {col} all null"
        reject = col in ("case_id", "status")
    pq.write_table(table, file)
    return f"{name}: {what}" + (REJECT if reject else "")


MUTATORS: list[Callable[[random.Random, Path], str]] = [mutate_json, mutate_parquet_bytes, mutate_columns]


# --------------------------------------------------------------------------- commands
def _cli(argv: list[str]) -> tuple[int | None, str, str | None]:
    """``convbench ARGV`` in-process: (exit status, stderr, traceback or None)."""
    from convbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - an escaped exception is what we count
            return None, err.getvalue(), traceback.format_exc()
    return rc, err.getvalue(), None


def _load(mutant: Path) -> tuple[int | None, str, str | None]:
    import convbench
    from convbench.results import ResultsError

    try:
        convbench.load(mutant)
        from convbench.results import load

        load(mutant, samples=True)
    except ResultsError as exc:
        return 2, str(exc), None
    except BaseException:  # noqa: BLE001
        return None, "", traceback.format_exc()
    return 0, "", None


@contextlib.contextmanager
def _no_cases_run() -> Iterator[None]:
    """``run --resume`` without running cases (the reading, checking and writing of the
    folder is what is under test): the progress loop replaced by one that finishes."""
    import importlib

    patched = []
    for module, name in (("convbench.commands.run", "execute"), ("convbench.cli", "_execute")):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(mod, name):
            patched.append((mod, name, getattr(mod, name)))
            setattr(mod, name, lambda *a, **k: True)
    try:
        yield
    finally:
        for mod, name, old in patched:
            setattr(mod, name, old)


def run_command(command: str, mutant: Path, good: Path, scratch: Path, reject: bool = False) -> tuple[str, str]:
    """Run ``command`` on the corrupted folder ``mutant`` (beside the good run ``good``);
    returns (outcome, detail): ``clean`` or the kind of failure. ``reject``: the mutation
    must be refused, so ``load`` succeeding on it is a failure (``accepted``)."""
    before = _digest(mutant)
    out = scratch / f"out-{command}"
    shutil.rmtree(out, ignore_errors=True)
    ok_codes = {0}
    if command == "load":
        rc, err, tb = _load(mutant)
    elif command == "compare":
        rc, err, tb = _cli(["compare", str(good), str(mutant)])
        ok_codes = {0, 1, 3}  # (1, 3: a verdict: a regression, inconclusive)
    elif command == "report":
        rc, err, tb = _cli(["report", str(good), str(mutant), "-o", str(out)])
    elif command == "history":
        rc, err, tb = _cli(["history", str(good), str(mutant)])
    elif command == "merge":
        rc, err, tb = _cli(["merge", str(mutant), "-o", str(out)])
    elif command == "resume":
        copy = scratch / "resume" / MUTANT
        shutil.rmtree(copy.parent, ignore_errors=True)
        shutil.copytree(mutant, copy)
        with _no_cases_run():
            rc, err, tb = _cli(["run", "--resume", str(copy)])
        if rc not in ok_codes and tb is None and _digest(copy) != before:
            return "modified", f"a failed resume (exit {rc}) changed the folder: {err.strip()[-300:]}"
    else:
        raise ValueError(command)
    if tb is not None:
        return "traceback", tb.strip().splitlines()[-1]
    if command != "resume" and _digest(mutant) != before:
        return "modified", f"{command} changed its input"
    if rc in ok_codes:
        if reject and command == "load":
            return "accepted", "loaded as if it were a good run"
        return "clean", ""
    if rc == 2:
        if MUTANT in "".join(err.split()):  # (rich folds long lines at the console width)
            return "clean", ""
        return "unnamed", " ".join(err.split())[-300:]
    return f"rc={rc}", " ".join(err.split())[-300:]


def fuzz(good: Path, scratch: Path, n: int, seed: int = 0, commands: tuple[str, ...] = COMMANDS,
         every: bool = True) -> Iterator[dict[str, Any]]:
    """``n`` mutations of the run folder ``good``: one record per (mutation, command) run.
    ``every``: every command on each mutation, else one (in turn)."""  # fmt: skip
    rng = random.Random(seed)
    scratch.mkdir(parents=True, exist_ok=True)
    base = scratch / "good"
    if not base.exists():
        shutil.copytree(good, base)
    for i in range(n):
        mutant = scratch / "m" / MUTANT
        shutil.rmtree(mutant.parent, ignore_errors=True)
        shutil.copytree(good, mutant)
        mutator = MUTATORS[i % len(MUTATORS)]
        try:
            what = mutator(rng, mutant)
        except Exception as exc:  # noqa: BLE001 - a mutation that does not apply
            what = f"{mutator.__name__}: not applied ({exc})"
        # (one command each: in turn over every (mutator, command) pair, not in step with
        # the mutators, so each command sees every kind of mutation)
        for command in commands if every else (commands[(i // len(MUTATORS)) % len(commands)],):
            outcome, detail = run_command(command, mutant, base, scratch, reject=what.endswith(REJECT))
            yield {"i": i, "mutation": what, "mutator": mutator.__name__, "command": command, "outcome": outcome, "detail": detail}
