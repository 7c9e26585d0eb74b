"""convbench's LiteRT backend: TFLite models run by the ``ai-edge-litert`` interpreter.

Importing this package imports neither ai_edge_litert nor tensorflow:
:class:`LitertBackend` does so lazily, inside its worker process.
"""

from convbench_litert.backend import LitertBackend

__all__ = ["LitertBackend"]
