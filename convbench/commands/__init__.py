"""Extra subcommands of the ``convbench`` command line, one module each.

Every module in this package that defines ``register(subparsers)`` is picked up by
:func:`convbench.cli.build_parser`: ``register`` adds its parser(s) and sets
``func`` (a callable taking the parsed namespace and returning the exit code), in the
order of the modules' ``ORDER`` (default 100), then their names. Raise
:class:`convbench.commands.common.UsageError` for bad input (printed as one message,
exit code 2). What commands share lives in :mod:`convbench.commands.common`; a command
module imports neither another command nor :mod:`convbench.cli`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil


def register_all(subparsers: argparse._SubParsersAction) -> None:
    """Call ``register`` of every module of this package, by ``ORDER`` then name."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
