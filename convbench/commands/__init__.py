"""Extra subcommands of the ``convbench`` command line, one module each.

Every module in this package that defines ``register(subparsers)`` is picked up by
:func:`convbench.cli.build_parser`: ``register`` adds its parser(s) and sets
``func`` (a callable taking the parsed namespace and returning the exit code). Raise
:class:`convbench.cli.UsageError` for bad input (printed as one message, exit code 2).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil


def register_all(subparsers: argparse._SubParsersAction) -> None:
    """Call ``register`` of every module of this package, in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
