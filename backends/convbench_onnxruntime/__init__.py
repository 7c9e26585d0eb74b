"""convbench's ONNX Runtime backend, and the ONNX lowering behind ``convbench export``.

Importing this package imports neither onnx nor onnxruntime: :class:`OnnxruntimeBackend`
does so lazily.
"""

from convbench_onnxruntime.backend import OnnxruntimeBackend

__all__ = ["OnnxruntimeBackend"]
