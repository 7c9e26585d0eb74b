"""convbench's command line: the parser of every subcommand (one module each under
:mod:`convbench.commands`) and the entry point."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from rich.markup import escape

from convbench import __version__
from convbench.commands import register_all
from convbench.commands.common import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, err_console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convbench", description="Benchmark the convolutions of compact CNNs across frameworks.")
    parser.add_argument("--version", action="version", version=f"convbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    register_all(sub)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (a CI timeout, ``kill``) ends a run as Ctrl-C does: finished cases kept,
    the folder marked interrupted, the resume command printed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except UsageError as exc:
        err_console.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)  # "[fleet]" is not markup
        return EXIT_USAGE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
