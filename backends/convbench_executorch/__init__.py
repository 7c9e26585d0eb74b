"""convbench's ExecuTorch backend: the torch lowering exported to a ``.pte`` program and
run by ExecuTorch's Python runtime.

Importing this package imports neither torch nor executorch:
:class:`ExecutorchBackend` does so lazily, inside its worker process (whose interpreter
is the ``.venv-executorch`` environment's: ``make executorch-venv``).
"""

from convbench_executorch.backend import ExecutorchBackend

__all__ = ["ExecutorchBackend"]
