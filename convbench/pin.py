"""Run a module pinned to some CPUs: ``python -m convbench.pin CPUS MODULE [ARGS...]``.

The runner starts a pinned worker as ``python -m convbench.pin 4-7 convbench.worker
--backend torch``: the affinity is set here, before the worker module (and with it
NumPy and the framework, whose thread pools size themselves on import) is imported.
Only the standard library is imported before the affinity is set.
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m convbench.pin CPUS MODULE [ARGS...]")
    from convbench.cpu_topology import parse_cpu_list, pin_current_process

    cpus, module, *rest = argv
    pin_current_process(parse_cpu_list(cpus))
    os.environ["CONVBENCH_PINNED_CPUS"] = cpus
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
