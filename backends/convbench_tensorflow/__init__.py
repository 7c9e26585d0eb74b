"""convbench's TensorFlow backend.

Importing this package never imports tensorflow: :class:`TensorflowBackend` does so
lazily, so the entry point loads (and reports TensorFlow as unavailable) without it.
"""

from convbench_tensorflow.backend import TensorflowBackend

__all__ = ["TensorflowBackend"]
