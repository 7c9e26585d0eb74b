"""``convbench list`` and ``convbench env``: what convbench knows, and what a run records."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.markup import escape
from rich.table import Table

from convbench.commands.common import EXIT_OK, backend_infos, console, load_cases

#: The order of this module's commands in ``convbench --help`` (after run and check).
ORDER = 1


def _workloads_table() -> Table:
    """Every workload kind; networks at their default parameters and every named
    configuration, with its figures against the published ones."""
    from convbench.workloads import catalogue
    from convbench.workloads.render import published_figures

    table = Table(title="workloads (batch 1; MACs: multiply-adds of convs and FC; parameters: trainable)")
    for col in ("kind", "configuration", "input", "parameters", "MACs (M)", "published", "agrees", "source"):
        table.add_column(col, justify="right" if col in ("parameters", "MACs (M)") else "left")
    for r in catalogue():
        if "macs" not in r:
            table.add_row(r["kind"], "-", "", "", "", "", "", r["description"])
            continue
        pub = r["published"]
        shown = published_figures(r)
        agrees = "-" if not shown else "[green]yes[/]" if not r["mismatches"] else f"[red]{'; '.join(r['mismatches'])}[/]"
        note = f"{pub.source}{' (' + pub.note + ')' if pub.note else ''}" if pub else r["description"]
        table.add_row(r["kind"], r["config"], "x".join(map(str, r["input"])), f"{r['parameters']:,}", f"{r['macs'] / 1e6:.2f}", shown, agrees, note)
    return table


def _suites_table() -> Table:
    """The packaged suites: name, description, workloads and cases (all presets' own counts aside)."""
    from convbench.suite import SuiteError, expand, load_suite, packaged_suites

    table = Table(title="suites installed with convbench (run one by name: convbench run NAME)")
    for col in ("name", "description", "workloads", "cases", "presets", "file"):
        table.add_column(col, justify="right" if col in ("workloads", "cases") else "left")
    for name, path in packaged_suites().items():
        try:
            suite = load_suite(path)
        except SuiteError as exc:
            table.add_row(escape(name), f"[red]invalid: {escape(str(exc))}[/]", "", "", "", escape(str(path)))
            continue
        table.add_row(
            escape(name), escape(suite.description or ""), str(len(suite.workloads)), str(len(expand(suite))),
            escape(", ".join(suite.presets)), escape(str(path)),
        )  # fmt: skip
    return table


def cmd_list(args: argparse.Namespace) -> int:
    from convbench.backend import execution_vocabulary
    from convbench.variants import known_variants
    from convbench.workloads import WORKLOADS

    if args.workloads and args.format == "markdown":
        from convbench.workloads.render import markdown_table

        sys.stdout.write(markdown_table())
        return EXIT_OK
    if args.workloads:
        console.print(_workloads_table())
        return EXIT_OK
    if args.suites:
        console.print(_suites_table())
        return EXIT_OK
    if args.suite:
        suite, _, _ = load_cases(argparse.Namespace(suite=args.suite, preset=None, filter=None))
        table = Table(title=escape(f"workloads of {args.suite} (batch 1)"))
        for col in ("id", "kind", "params", "input", "parameters", "MACs"):
            table.add_column(col, justify="right" if col in ("parameters", "MACs") else "left")
        for w in suite.workloads:
            g = WORKLOADS[w.kind].build(w.params, 1)
            table.add_row(w.id, w.kind, escape(json.dumps(w.params, sort_keys=True)), "x".join(map(str, g.inputs[0].shape)), f"{g.param_count():,}", f"{g.macs():,}")
        console.print(table)
    table = Table(title="workload kinds (networks at their default parameters, batch 1)")
    for col in ("kind", "family", "description", "parameters", "MACs"):
        table.add_column(col)
    for kind in WORKLOADS.values():
        params = macs = ""
        if kind.family == "network":
            g = kind.build({}, 1)
            params, macs = f"{g.param_count():,}", f"{g.macs():,}"
        table.add_row(kind.name, kind.family, kind.description, params, macs)
    console.print(table)
    table = Table(title="variants")
    for col in ("variant", "defaults", "description"):
        table.add_column(col)
    for v in known_variants().values():
        table.add_row(v.name, json.dumps(v.defaults), v.description)
    console.print(table)
    table = Table(title="executions (generic, then those the installed backends declare)")
    for col in ("execution", "description"):
        table.add_column(col)
    for name, description in execution_vocabulary().items():
        table.add_row(escape(name), escape(description))
    console.print(table)
    console.print(_backends_table(backend_infos()))
    return EXIT_OK


def _backends_table(infos: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="backends")
    for col in ("backend", "available", "version", "devices", "python / reason"):
        table.add_column(col)
    for name, info in infos.items():
        ok = "[green]yes[/]" if info.get("available") else "[red]no[/]"
        note = info.get("python") if info.get("available") else info.get("reason")
        table.add_row(escape(name), ok, escape(str(info.get("version") or "-")), escape(", ".join(info.get("devices") or [])), escape(str(note or "")))
    return table


def cmd_env(args: argparse.Namespace) -> int:
    from convbench.environment import capture, format_environment

    env = capture()
    infos = backend_infos()
    if args.json:
        print(json.dumps({"core": env, "backends": infos}, indent=2, default=str))
        return EXIT_OK
    console.print(format_environment(env))
    console.print(_backends_table(infos))
    for name, info in infos.items():
        if info.get("environment"):
            console.print(format_environment({f"{name}.{k}": v for k, v in info["environment"].items()}))
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers
    lst = sub.add_parser("list", help="workloads, variants and backends")
    lst.add_argument("suite", nargs="?", help="also list this suite's workloads")
    lst.add_argument("--suites", action="store_true", help="only the suites installed with convbench (run one by its name: convbench run depthwise)")
    lst.add_argument("--workloads", action="store_true", help="only the workloads: networks and their named configurations with parameters and MACs against the published figures")
    lst.add_argument("--format", choices=["table", "markdown"], default="table", help="with --workloads: a terminal table or Markdown (docs/networks.md is the latter)")
    lst.set_defaults(func=cmd_list)

    env = sub.add_parser("env", help="the machine and software a run would record")
    env.add_argument("--json", action="store_true")
    env.set_defaults(func=cmd_env)
