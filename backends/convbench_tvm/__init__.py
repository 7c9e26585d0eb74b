"""convbench's TVM backend: convbench's ONNX lowering imported by TVM's Relax frontend.

Importing this package imports neither tvm nor onnx: :class:`TvmBackend` does so lazily,
inside its worker process.
"""

from convbench_tvm.backend import TvmBackend

__all__ = ["TvmBackend"]
