"""``convbench merge RUN... -o DIR``: one run folder from runs made on different machines.

Each case keeps the environment of the machine that ran it (``environment.hosts`` in the
merged run.json, ``host_id`` per row); ``convbench report`` and ``convbench compare``
read the merged folder like any run. A case id found in two runs with different results
is an error unless ``--on-duplicate first|last`` picks one. See docs/fleet.md.
"""

from __future__ import annotations

import argparse


def cmd_merge(args: argparse.Namespace) -> int:
    from convbench.commands.common import UsageError, console
    from convbench.merge import merge_runs
    from convbench.results import ResultsError

    try:
        folder = merge_runs(args.runs, args.out, on_duplicate=args.on_duplicate)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"-o {args.out}: cannot create the merged run folder: {exc.strerror or exc}") from None
    hosts = folder.meta["environment"]["hosts"]
    sources = folder.meta["merged_from"]
    console.print(
        f"{len(folder.rows)} cases from {len(sources)} runs on {len(hosts)} machines ({', '.join(sorted(hosts))}) merged into {folder.path}",
        highlight=False,
        markup=False,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge", help="merge run folders made on different machines into one", description=__doc__
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or folders holding runs")
    p.add_argument(
        "-o", "--out", required=True, metavar="DIR", help="the merged run folder to create"
    )
    p.add_argument(
        "--on-duplicate",
        choices=["error", "first", "last"],
        default="error",
        help="a case id with different results in two runs: error (default), or keep the first or last run's row (argument order)",
    )
    p.set_defaults(func=cmd_merge)
