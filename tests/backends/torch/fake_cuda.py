"""A fake of the ``torch.cuda`` calls the torch backend makes, for CPU-side tests of its
CUDA paths (peak memory, device-event timing, CUDA graphs).

:func:`fake_cuda` patches ``torch.cuda`` with host-clock events, a no-op synchronize,
memory counters the test drives, and a CUDA graph whose "replay" re-runs the captured
function eagerly (keeping its output and gradient tensors, as a real replay does). A
prepared case built on the CPU is then pointed at ``cuda`` (:func:`as_cuda`): every
branch that tests ``device.type == "cuda"`` runs, on CPU tensors. What this proves is
the plumbing (what is called, in which order, what is recorded), never a GPU's
behaviour: none of this has run on a GPU.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch


class FakeEvent:
    def __init__(self, enable_timing: bool = False) -> None:
        self.t: float | None = None

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.t is not None and end.t is not None
        return (end.t - self.t) * 1000.0  # milliseconds, as CUDA's


class FakeStream:
    def wait_stream(self, other: Any) -> None:
        pass


class FakeMemory:
    """allocated/peak bytes; ``on_step`` (set by a test) adds to them."""

    def __init__(self) -> None:
        self.allocated = 1000
        self.peak = 1000
        self.resets = 0

    def max_memory_allocated(self, device: Any = None) -> int:
        return self.peak

    def memory_allocated(self, device: Any = None) -> int:
        return self.allocated

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        self.resets += 1
        self.peak = self.allocated


class FakeGraph:
    """``torch.cuda.CUDAGraph``: capture runs the body once; replay runs it again eagerly."""

    captured: list[FakeGraph] = []

    def __init__(self) -> None:
        self.body: Any = None
        self.replays = 0
        FakeGraph.captured.append(self)

    def replay(self) -> None:
        self.replays += 1
        self.body()


def fake_cuda(monkeypatch: Any) -> FakeMemory:
    memory = FakeMemory()
    FakeGraph.captured = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: FakeStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", memory.max_memory_allocated)
    monkeypatch.setattr(torch.cuda, "memory_allocated", memory.memory_allocated)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", memory.reset_peak_memory_stats)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    return memory


def as_cuda(prepared: Any) -> Any:
    """Point a CPU-built TorchPrepared at ``cuda`` so its CUDA branches run (on CPU tensors)."""
    prepared.device = torch.device("cuda", 0)
    return prepared
