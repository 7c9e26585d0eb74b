"""convbench's darknet backend: the IR as a darknet ``.cfg`` and weights file, run by
libdarknet (Debian's ``darknet`` package) through ctypes.

Importing this package loads no library: :class:`DarknetBackend` does so lazily.
"""

from convbench_darknet.backend import DarknetBackend

__all__ = ["DarknetBackend"]
