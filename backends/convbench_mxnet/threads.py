"""The OpenMP thread count this worker process last gave MXNet (MXNet cannot be asked:
the backend records each setting here, and a prepared case reads it back)."""

from __future__ import annotations

_THREADS: list[int] = []


def record_threads(threads: int) -> None:
    _THREADS.append(int(threads))


def current_threads() -> int | None:
    return _THREADS[-1] if _THREADS else None
