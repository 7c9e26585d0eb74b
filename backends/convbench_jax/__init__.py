"""convbench's JAX backend.

Importing this package never imports jax: :class:`JaxBackend` does so lazily, so the
entry point loads (and reports JAX as unavailable) without it.
"""

from convbench_jax.backend import JaxBackend

__all__ = ["JaxBackend"]
