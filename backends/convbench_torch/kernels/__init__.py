"""Hand-written Triton kernels of the torch backend's ``kernel`` variant.

* :mod:`convbench_torch.kernels.depthwise`: depthwise conv2d forward, input gradient and
  weight gradient, wrapped in a ``torch.autograd.Function``;
* :mod:`convbench_torch.kernels.shift`: the IR's ``shift`` and AddressNet's address shift
  as pure indexing, with their adjoints;
* :mod:`convbench_torch.kernels.variant`: puts them into a lowered graph.

Importing this package imports neither torch nor triton. Triton compiles for GPUs only;
on a CPU the kernels run in Triton's interpreter, which must be switched on with
``TRITON_INTERPRET=1`` *before* triton (and these modules) are imported, and which costs
tens of milliseconds per program instance: tiny shapes only. The variable must stay set
while the kernels run (triton's own helpers read it at every call).
"""

from __future__ import annotations

import os

INSTALL_HINT = "pip install 'convbench[kernels]' (triton)"
#: Most Triton program instances one step may launch in the interpreter (~35 ms each).
INTERPRETER_PROGRAM_LIMIT = 64


def interpret_requested() -> bool:
    """Whether TRITON_INTERPRET asks for the interpreter (triton's own reading of it)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on", "y")


def unavailable_reason(device: str) -> str | None:
    """Why the Triton kernels cannot run on ``device`` in this process, or None."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return f"kernel variant needs triton, which is not importable ({type(exc).__name__}: {exc}): {INSTALL_HINT}"
    import triton.language as tl

    from convbench_torch.kernels import depthwise

    interpreted = depthwise.interpreted()
    if not interpreted == _is_interpreted(tl.cdiv) == interpret_requested():
        return (
            "kernel variant: TRITON_INTERPRET changed after triton or the kernels were imported "
            "(triton reads it at import and at every call); set it before convbench starts"
        )
    if device == "cpu" and not interpreted:
        return (
            "kernel variant on cpu: Triton compiles for GPUs only; set TRITON_INTERPRET=1 before "
            "convbench starts to run the kernels in Triton's interpreter (tiny shapes only)"
        )
    if device == "cuda" and interpreted:
        return (
            "kernel variant on cuda: TRITON_INTERPRET=1 is set, so the kernels would run in "
            "Triton's CPU interpreter instead of on the GPU; unset it"
        )
    return None


def _is_interpreted(fn: object) -> bool:
    return type(fn).__name__ == "InterpretedFunction"
