"""What this process's torch can do: environment facts and small capability probes.

Every function imports torch lazily and never raises for a missing capability: it
returns a reason string (or None when the capability works). Probes are cached per
process, since a worker asks once per case.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from typing import Any


def torch_version() -> str | None:
    """torch's version, or None when torch cannot be imported."""
    try:
        import torch
    except Exception:  # an import can fail with more than ImportError (broken CUDA libs)
        return None
    return str(torch.__version__)


@functools.cache
def import_error() -> str | None:
    """Why ``import torch`` fails here, or None."""
    try:
        import torch  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def cuda_available() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _nvidia_driver_version() -> str | None:
    """The NVIDIA driver version, from NVML (pynvml) or nvidia-smi, when either exists."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except Exception:
        return None
    versions = sorted({line.strip() for line in out.splitlines() if line.strip()})
    return ", ".join(versions) or None


def environment() -> dict[str, Any]:
    """torch, CUDA, cuDNN, GPU, driver, threads and oneDNN facts of this process."""
    import torch

    env: dict[str, Any] = {
        "torch": str(torch.__version__),
        "torch_git": getattr(torch.version, "git_version", None),
        "cuda": torch.version.cuda,
        "cudnn": None,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "mkl": bool(torch.backends.mkl.is_available()),
        "openmp": bool(torch.backends.openmp.is_available()),
        "cpu_capability": None,
        "gpus": [],
        "gpu_capabilities": [],
        "cuda_driver_api": None,
        "driver": None,
        "cudnn_conv_fp32_precision": None,
    }
    with contextlib.suppress(Exception):
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if cuda_available():
        with contextlib.suppress(Exception):
            env["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            try:
                env["gpus"].append(torch.cuda.get_device_name(i))
                env["gpu_capabilities"].append(
                    ".".join(map(str, torch.cuda.get_device_capability(i)))
                )
            except Exception:
                pass
        with contextlib.suppress(Exception):
            env["cuda_driver_api"] = int(torch._C._cuda_getDriverVersion())
        env["driver"] = _nvidia_driver_version()
        env["cudnn_conv_fp32_precision"] = _conv_fp32_precision()
    return env


def _conv_fp32_precision() -> str | None:
    import torch

    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return str(conv.fp32_precision)
    return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"


def set_strict_fp32() -> str:
    """Make float32 convs and matmuls on CUDA true IEEE float32 (no TF32); returns the setting.

    torch lets cuDNN convolutions use TF32 by default on Ampere and newer, which misses
    the float32 tolerance (1e-4) and would time a different arithmetic than asked for.
    """
    import torch

    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:  # older torch: the legacy switches
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return "ieee"


@functools.cache
def dtype_reason(device: str, dtype: str) -> str | None:
    """Why ``dtype`` cannot train and infer a small conv/BN/pool net on ``device``, or None.

    Runs the ops convbench lowers (grouped conv, batch norm in both modes, pools, the
    activations, linear) forward and backward in that dtype and an SGD step.
    """
    if dtype == "float32":
        return None
    import torch
    import torch.nn.functional as F

    tdtype = getattr(torch, dtype)
    if device == "cuda" and dtype == "bfloat16":
        try:
            if not torch.cuda.is_bf16_supported():
                return f"torch {torch.__version__}: this GPU does not support bfloat16"
        except Exception:
            pass
    try:
        dev = torch.device(device)
        kw: dict[str, Any] = {"dtype": tdtype, "device": dev}
        x = torch.randn(2, 4, 6, 6, **kw).contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        w = torch.randn(8, 1, 3, 3, **kw, requires_grad=True)
        g = torch.ones(8, **kw, requires_grad=True)
        b = torch.zeros(8, **kw, requires_grad=True)
        mean, var = torch.zeros(8, **kw), torch.ones(8, **kw)
        y = F.conv2d(x, w, None, 1, 1, 1, 4)
        y = F.batch_norm(y, mean, var, g, b, True, 0.1, 1e-5)
        y = F.relu6(y) + torch.sigmoid(y)
        y = F.avg_pool2d(y, 3, 2, 1, count_include_pad=False) * F.max_pool2d(y, 3, 2, 1)
        z = F.linear(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1), torch.randn(3, 8, **kw))
        z.sum().backward()
        with torch.no_grad():
            F.batch_norm(x, mean[:4], var[:4], g[:4], b[:4], False)
        opt = torch.optim.SGD([w, g, b], lr=0.01, foreach=True)
        opt.step()
        for t in (z, x.grad, w.grad, w):
            if t is None or not bool(torch.isfinite(t.float()).all()):
                return f"torch {torch.__version__}: {dtype} on {device} gives non-finite values"
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"torch {torch.__version__}: {dtype} not supported on {device}: {msg}"
    return None


def _cxx_compiler() -> str | None:
    try:
        from torch._inductor import config

        configured = config.cpp.cxx
        names = (
            [c for c in configured if c] if isinstance(configured, (tuple, list)) else [configured]
        )
    except Exception:
        names = []
    for name in [*names, "g++", "c++", "clang++"]:
        if isinstance(name, str) and shutil.which(name):
            return name
    return None


@functools.cache
def compile_reason(device: str) -> str | None:
    """Why ``torch.compile`` cannot work on ``device`` here, or None (a cheap check)."""
    try:
        import torch
    except Exception:
        return "torch is not importable"
    try:
        if not torch._dynamo.is_dynamo_supported():
            return f"torch {torch.__version__}: torch.compile does not support this Python"
    except Exception as exc:
        return f"torch {torch.__version__}: torch.compile unavailable: {exc}"
    if device == "cpu" and _cxx_compiler() is None:
        return "torch.compile on cpu needs a C++ compiler (g++ or clang++) on PATH"
    if device == "cuda":
        try:
            from torch.utils._triton import has_triton

            if not has_triton():
                return "torch.compile on cuda needs Triton (pip install triton)"
        except Exception as exc:
            return f"torch.compile on cuda: cannot check for Triton: {exc}"
    return None
