"""convbench's PyTorch backend.

Importing this package never imports torch: :class:`TorchBackend` does so lazily, so the
entry point loads (and reports torch as unavailable) where torch is not installed.
"""

from convbench_torch.backend import TorchBackend

__all__ = ["TorchBackend"]
