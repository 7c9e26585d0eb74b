"""The tvm backend's ``tuned`` execution where no C/C++ compiler is installed.

Run on its own (``pytest tests/backends/tvm``): it imports tvm. Measured in the arm64
Debian rootfs of ``make arm-emulated``, which has no compiler: the tuning child failed in
``export_library`` with "expected str, bytes or os.PathLike object, not NoneType", TVM's
way of saying it found no ``cc``; the case is a skipped row naming the install instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tvm")

from convbench_tvm import prepared  # noqa: E402

from convbench.backend import UnsupportedCase  # noqa: E402


def test_without_a_compiler_tuned_is_skipped_with_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(prepared.tvm_cc, "get_cc", lambda: None)
    with pytest.raises(UnsupportedCase, match=r"C/C\+\+ compiler .* apt-get install g\+\+"):
        prepared.tune(None, None, 2, tmp_path, "float32")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())  # nothing was started


def test_the_check_is_tvms_own_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty PATH and no $CXX / $CC: TVM finds no compiler (the arm64 rootfs's case)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    assert prepared.tvm_cc.get_cc() is None
