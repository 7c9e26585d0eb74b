"""The torch backend's CUDA paths, run on a CPU against tests/backends/torch/fake_cuda.py.

These prove the plumbing of the GPU fixes (what is measured when, what is recorded);
none of it has run on a GPU (docs/gpu.md).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from convbench_torch import TorchBackend  # noqa: E402

from convbench.timing import TimingConfig  # noqa: E402
from tests.backends import graphs  # noqa: E402
from tests.backends.graphs import gb  # noqa: E402
from tests.backends.torch.fake_cuda import as_cuda, fake_cuda  # noqa: E402


def small_graph():  # noqa: ANN201
    b, x = gb((2, 4, 6, 6))
    y = b.act(b.batchnorm(b.conv2d(x, 4, 3, groups=4, name="dw")), "relu")
    return b.build([b.conv2d(y, 6, 1, name="pw")])


def test_peak_memory_is_measured_after_warm_up_not_on_the_first_call(monkeypatch) -> None:  # noqa: ANN001
    backend = TorchBackend()
    prepared, _ = graphs.prepare(backend, small_graph(), mode="training")
    memory = fake_cuda(monkeypatch)
    as_cuda(prepared)
    real_run = prepared._run
    steps = []

    def run():  # noqa: ANN202
        steps.append(1)
        # the first call pays a 10 MB autotuning workspace, later ones 1 MB
        memory.peak = memory.allocated + (10_000_000 if len(steps) == 1 else 1_000_000)
        return real_run()

    monkeypatch.setattr(prepared, "_run", run)
    prepared.check()
    first = prepared.details()["peak_memory_first_call"]
    assert first >= 10_000_000
    for _ in range(3):  # the warm-up and timing the worker runs
        prepared.step()
    peak = prepared.peak_memory_bytes()
    assert 1_000_000 <= peak < 2_000_000, peak  # a step of its own, after warm-up
    assert prepared.peak_memory_bytes() == peak and len(steps) == 5  # measured once
    prepared.close()


def test_dynamo_is_reset_once_per_group_not_per_case(monkeypatch) -> None:  # noqa: ANN001
    import torch._dynamo

    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # no inductor: the plumbing only
    backend = TorchBackend()
    backend.configure(TimingConfig())
    assert resets == [1]
    cases = []
    for variant in ("native", "native"):
        prepared, _ = graphs.prepare(backend, small_graph(), mode="training", execution="compiled", variant=variant)
        prepared.check()
        cases.append(prepared)
        assert prepared.details()["dynamo_reset"].startswith("once per case group")
    for prepared in cases:
        prepared.close()
    assert resets == [1]  # neither building nor closing a case reset the group's code


def fake_capture(prepared):  # noqa: ANN001, ANN201
    """capture_graph for the fake: the body runs once; a replay zeroes the gradients in
    place and runs it again, writing its outputs into the static ones (as a replay)."""
    from tests.backends.torch.fake_cuda import FakeGraph

    def capture(body, device):  # noqa: ANN001, ANN202
        static = [t.detach() for t in body()]
        graph = FakeGraph()

        def replay() -> None:
            leaves = [*prepared.module.parameters(), *prepared.inputs]
            for t in leaves:
                if t.grad is not None:
                    t.grad.zero_()
            for out, new in zip(static, body(), strict=True):
                out.copy_(new.detach())

        graph.body = replay
        return graph, static

    return capture


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_cudagraph_execution_captures_once_replays_and_verifies(monkeypatch, mode: str) -> None:  # noqa: ANN001
    import convbench_torch.prepared as prepared_module

    from convbench.verify import verify

    backend = TorchBackend()
    assert "cudagraph" in backend.executions
    assert "CUDA" in backend.skip_reason(graphs.make_case(execution="cudagraph"))
    prepared, want = graphs.prepare(backend, small_graph(), mode=mode)
    memory = fake_cuda(monkeypatch)
    as_cuda(prepared)
    monkeypatch.setattr(prepared_module, "capture_graph", fake_capture(prepared))
    prepared._capture()
    graph = prepared._graph
    assert graph is not None and "captured" in prepared.details()["cudagraph"]
    tol = 1e-4
    assert verify(prepared.check(), want, tol).ok
    sampler = prepared.device_sampler()
    assert sampler(3) > 0
    assert graph.replays == 4  # check() and the 3 timed steps are replays, nothing eager
    assert verify(prepared.check(), want, tol).ok  # a replay from the initial weights again
    memory.peak = memory.allocated
    assert prepared.peak_memory_bytes() == prepared._capture_bytes + prepared._resident_bytes()
    prepared.close()


def test_device_sampler_times_with_events_and_the_worker_reads_host_time_too(monkeypatch) -> None:  # noqa: ANN001
    from convbench.timing import DeviceTimed

    prepared, _ = graphs.prepare(TorchBackend(), small_graph(), mode="training")
    fake_cuda(monkeypatch)
    as_cuda(prepared)
    timed = DeviceTimed(prepared.device_sampler())
    assert timed(2) > 0 and timed.calls[0][0] == 2 and timed.calls[0][1] >= 0
    prepared.close()


def test_cuda_core_fma_peak_of_known_gpus() -> None:
    from convbench_torch.device import fma_peak

    h100 = fma_peak(9, 0, 132, 1980, "float32")
    assert h100 == pytest.approx(66.9e12, rel=0.01)  # NVIDIA's H100 SXM FP32 figure: 67 TFLOP/s
    assert fma_peak(9, 0, 132, 1980, "float16") == 2 * h100
    assert fma_peak(8, 6, 84, 1860, "float16") == fma_peak(8, 6, 84, 1860, "float32")
    assert fma_peak(3, 0, 10, 1000, "float32") is None and fma_peak(9, 0, 132, 0, "float32") is None
