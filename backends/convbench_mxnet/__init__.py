"""convbench's MXNet backend (MXNet 1.9.1, Gluon).

Importing this package never imports mxnet: :class:`MxnetBackend` does so lazily. MXNet
needs NumPy < 1.24, so it runs from its own environment (``make mxnet-venv`` creates
``.venv-mxnet``), which the runner uses for this backend when it exists.
"""

from convbench_mxnet.backend import MxnetBackend

__all__ = ["MxnetBackend"]
