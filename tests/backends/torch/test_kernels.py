"""The Triton kernels of the ``kernel`` variant, in Triton's CPU interpreter, against the
float64 reference under the tolerance rules of verification (convbench.verify).

TRITON_INTERPRET=1 is set before the kernel modules are imported (``triton.jit`` reads it
then) and stays set for the process (triton's own jit helpers read it at every call).
The interpreter costs tens of milliseconds per program instance, so shapes are tiny and
each config launches a handful of programs; odd sizes make every tile partial.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported, by anything
torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from convbench_torch.kernels import depthwise, shift, unavailable_reason  # noqa: E402

if unavailable_reason("cpu") is not None:
    pytest.skip(
        f"Triton interpreter unusable here: {unavailable_reason('cpu')}", allow_module_level=True
    )

from convbench_torch import TorchBackend  # noqa: E402

from convbench.backend import UnsupportedCase  # noqa: E402
from convbench.cases import DEFAULT_TOLERANCE, Case  # noqa: E402
from convbench.data import make_cotangents, make_tensors  # noqa: E402
from convbench.graph import GraphBuilder  # noqa: E402
from convbench.reference import conv2d, conv2d_grads, run_reference  # noqa: E402
from convbench.reference import shift as reference_shift  # noqa: E402
from convbench.verify import verify  # noqa: E402
from convbench.workloads import build_graph  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def to_torch(a: np.ndarray, dtype: str, nhwc: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a)).to(DTYPES[dtype])
    return t.contiguous(memory_format=torch.channels_last) if nhwc and t.dim() == 4 else t


def f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).contiguous().numpy()


def check_conv(
    k: int, stride: int, nhwc: bool, dtype: str, *, multiplier: int = 1, bias: bool = False,
    pad: int | None = None, shape: tuple[int, int, int, int] = (2, 3, 7, 6), config: depthwise.Config | None = None,
) -> None:  # fmt: skip
    """Forward, input and weight (and bias) gradients against the float64 reference."""
    rng = np.random.default_rng(k * 100 + stride * 10 + multiplier)
    n, c, h, w = shape
    pad = k // 2 if pad is None else pad
    x = rng.standard_normal(shape)
    wt = rng.standard_normal((c * multiplier, 1, k, k))
    b = rng.standard_normal(c * multiplier) if bias else None
    want_y = conv2d(x, wt, b, stride, pad, 1, c)
    g = rng.standard_normal(want_y.shape)
    want_gx, want_gw = conv2d_grads(x, wt, g, stride, pad, 1, c)
    want = {"y": want_y, "grad:x": want_gx, "grad:w": want_gw}
    if bias:
        want["grad:b"] = g.sum(axis=(0, 2, 3))

    xt, wtt = to_torch(x, dtype, nhwc), to_torch(wt, dtype)
    gt = to_torch(g, dtype, nhwc)
    bt = to_torch(b, dtype) if bias else None
    if config is None:  # through the autograd Function, as the variant runs it
        xt.requires_grad_()
        wtt.requires_grad_()
        if bt is not None:
            bt.requires_grad_()
        y = depthwise.conv2d(xt, wtt, bt, stride, pad, 1, c)
        y.backward(gt)
        got = {"y": f64(y), "grad:x": f64(xt.grad), "grad:w": f64(wtt.grad)}
        if bias:
            got["grad:b"] = f64(bt.grad)
        assert y.is_contiguous(
            memory_format=torch.channels_last if nhwc else torch.contiguous_format
        )
        assert xt.grad.is_contiguous(
            memory_format=torch.channels_last if nhwc else torch.contiguous_format
        )
    else:  # the launchers with an explicit tiling
        y = depthwise.forward(xt, wtt, bt, stride, pad, config)
        got = {
            "y": f64(y),
            "grad:x": f64(depthwise.grad_input(gt, wtt, tuple(x.shape), xt, stride, pad, config)),
            "grad:w": f64(depthwise.grad_weight(xt, gt, tuple(wt.shape), stride, pad, config)),
        }
        if bias:
            got["grad:b"] = want["grad:b"]  # the bias gradient is torch's, tested above
    result = verify(got, want, DEFAULT_TOLERANCE[dtype])
    assert result.ok, (
        f"k={k} s={stride} nhwc={nhwc} {dtype}: error {result.error:.3g} in {result.worst}"
    )


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("stride", depthwise.STRIDES)
@pytest.mark.parametrize("k", depthwise.KERNEL_SIZES)
def test_depthwise_forward_and_gradients_in_every_supported_config(
    k: int, stride: int, nhwc: bool, dtype: str
) -> None:
    check_conv(
        k,
        stride,
        nhwc,
        dtype,
        bias=dtype == "float32",
        multiplier=2 if nhwc and dtype == "float16" else 1,
    )


@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
def test_small_tiles_split_reduction_and_padding_edge_cases(nhwc: bool) -> None:
    """Tiles smaller than the shape (masked edges in every kernel) and SPLIT > 1 partial
    weight-gradient sums; then no padding and more padding than half the kernel."""
    check_conv(
        3, 2, nhwc, "float32", multiplier=2, bias=True, config=depthwise.Config(2, 8, 4, split=3)
    )
    check_conv(3, 1, nhwc, "float32", pad=0)
    check_conv(5, 2, nhwc, "float32", pad=3, shape=(1, 2, 6, 5))


def test_gpu_tilings_compute_the_same_in_the_interpreter() -> None:
    """The tile shapes chosen for a GPU (not the interpreter's) are correct too."""
    for nhwc in (False, True):
        for kind in ("fwd", "dgrad", "wgrad"):
            cfg = depthwise.choose_config(kind, 3, 42, nhwc, batch=2, interpret=False, sm_count=4)
            assert cfg.block_c * cfg.block_p <= 1024 and cfg.split >= 1
        cfg = depthwise.choose_config("wgrad", 3, 42, nhwc, batch=2, interpret=False, sm_count=4)
        check_conv(3, 1, nhwc, "float32", config=cfg)


def test_unsupported_convs_are_refused_with_the_reason() -> None:
    assert depthwise.supports((1, 4, 8, 8), (4, 1, 3, 3), 1, 1, 1, 4) is None
    assert "kernel 7x7" in depthwise.supports((1, 4, 8, 8), (4, 1, 7, 7), 1, 3, 1, 4)
    assert "stride (3, 3)" in depthwise.supports((1, 4, 8, 8), (4, 1, 3, 3), 3, 1, 1, 4)
    assert "dilation" in depthwise.supports((1, 4, 8, 8), (4, 1, 3, 3), 1, 1, 2, 4)
    assert "not depthwise" in depthwise.supports((1, 4, 8, 8), (4, 2, 3, 3), 1, 1, 1, 2)
    with pytest.raises(ValueError, match="kernel 7x7"):
        depthwise.conv2d(torch.zeros(1, 4, 8, 8), torch.zeros(4, 1, 7, 7), None, 1, 3, 1, 4)


@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
def test_ir_shift_kernel_and_its_gradient_match_the_reference(nhwc: bool) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 5, 4))
    offsets = [tuple(int(v) for v in o) for o in rng.integers(-2, 3, (9, 2))]
    g = rng.standard_normal(x.shape)
    xt = to_torch(x, "float32", nhwc).requires_grad_()
    y = shift.shift(xt, offsets)
    y.backward(to_torch(g, "float32", nhwc))
    want = {"y": reference_shift(x, offsets), "grad:x": reference_shift(g, offsets, sign=-1)}
    result = verify({"y": f64(y), "grad:x": f64(xt.grad)}, want, 1e-6)
    assert result.ok, result


def address_reference(x: np.ndarray, a: np.ndarray, bound: str) -> np.ndarray:
    """out.flat[i] = x.flat[i + a_c(i)] within the block of i, else 0 (NCHW order)."""
    n, c, h, w = x.shape
    block = {"plane": h * w, "sample": c * h * w, "tensor": x.size}[bound]
    i = np.arange(x.size)
    src = i + a[(i // (h * w)) % c]
    ok = (src >= 0) & (src < x.size) & (src // block == i // block)
    out = np.zeros(x.size)
    out[ok] = x.reshape(-1)[src[ok]]
    return out.reshape(x.shape)


@pytest.mark.parametrize("bound", shift.BOUNDS)
def test_address_shift_and_its_adjoint(bound: str) -> None:
    """Forward against the definition; the gradient is the adjoint: <S x, g> = <x, S^T g>
    for random x and g, and S^T of a one-hot g is the column of S it selects."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 4, 3))
    a = rng.integers(-5, 6, 5)
    xt = to_torch(x, "float32", nhwc=bound == "sample").requires_grad_()
    y = shift.address_shift(xt, a, bound)
    assert np.allclose(f64(y), address_reference(x, a, bound), atol=1e-6)
    g = rng.standard_normal(x.shape)
    y.backward(torch.from_numpy(g).float())
    lhs = float((address_reference(x, a, bound) * g).sum())
    assert lhs == pytest.approx(float((x * f64(xt.grad)).sum()), rel=1e-5)
    for j in rng.choice(x.size, 5, replace=False):
        e = np.zeros(x.size)
        e[j] = 1
        column = np.array(
            [
                address_reference(np.eye(x.size)[k].reshape(x.shape), a, bound).reshape(-1)[j]
                for k in range(x.size)
            ]
        )
        got = shift._launch_address_adjoint(
            torch.from_numpy(e.reshape(x.shape)).float(), torch.as_tensor(a), bound
        )
        assert np.allclose(f64(got).reshape(-1), column)


def test_address_shift_matches_the_address_shift_workload_definition() -> None:
    """convbench.workloads.shift builds AddressNet's address shift from IR primitives."""
    shifts = pytest.importorskip("convbench.workloads.shift")
    b = GraphBuilder()
    x = b.input("x", (2, 7, 4, 5))
    graph = b.build([shifts.address_shift(b, x, name="addr")])
    data = make_tensors(graph, 3)
    want = run_reference(graph, data, make_cotangents(graph, 3), "inference")["addr"]
    offsets = shifts.address_offsets(7, 5)
    got = shift.address_shift(torch.from_numpy(data["x"]).float(), offsets, "plane")
    assert np.allclose(f64(got), want, atol=1e-6)


# -- the kernel variant in the torch backend ------------------------------------------------
def kernel_case(
    kind: str,
    params: dict,
    mode: str,
    layout: str = "nchw",
    variant: str = "kernel",
    batch: int = 2,
):
    graph = build_graph(kind, params, batch)
    case = Case(
        suite="t",
        workload="w",
        kind=kind,
        params=params,
        variant=variant,
        mode=mode,
        layout=layout,
        batch=batch,
    )
    tensors, cot = make_tensors(graph, 5), make_cotangents(graph, 5)
    return case, graph, tensors, cot


@pytest.mark.parametrize(("mode", "layout"), [("inference", "nhwc"), ("training", "nchw")])
def test_kernel_variant_runs_the_kernels_for_the_depthwise_nodes(mode: str, layout: str) -> None:
    params = {"in_channels": 6, "out_channels": 4, "size": 5, "kernel": 5, "stride": 2}
    case, graph, tensors, cot = kernel_case("separable", params, mode, layout)
    backend = TorchBackend()
    assert backend.skip_reason(case) is None
    prepared = backend.prepare(case, graph, tensors, cot)
    try:
        result = verify(
            prepared.check(), run_reference(graph, tensors, cot, mode), DEFAULT_TOLERANCE["float32"]
        )
        assert result.ok, result
        details = prepared.details()
        assert details["kernel_nodes"] == ["dw"] and details["triton_interpret"] is True
        assert details["kernel_programs_per_step"] >= (3 if mode == "training" else 1)
    finally:
        prepared.close()


def test_kernel_variant_on_shift_nodes_and_onehot_chains() -> None:
    params = {"channels": 9, "size": 5}
    for variant, node_op in (("kernel", "shift"), ("onehot+kernel", "conv2d")):
        case, graph, tensors, cot = kernel_case("shift", params, "training", variant=variant)
        from convbench.variants import parse_variant

        executed = parse_variant(variant).apply(graph)
        tensors = make_tensors(executed, 5)
        prepared = TorchBackend().prepare(case, executed, tensors, cot)
        try:
            want = run_reference(
                graph, {k: v for k, v in tensors.items() if k in graph}, cot, "training"
            )
            result = verify(prepared.check(), want, DEFAULT_TOLERANCE["float32"])
            assert result.ok, (variant, result)
            names = prepared.details()["kernel_nodes"]
            assert names and all(executed[n].op == node_op for n in names)
        finally:
            prepared.close()


def test_kernel_variant_falls_back_per_node_and_skips_what_it_cannot_run() -> None:
    b = GraphBuilder()
    x = b.input("x", (1, 4, 6, 6))
    y = b.conv2d(b.conv2d(x, 4, 7, groups=4, name="dw7"), 4, 3, groups=4, name="dw3")
    graph = b.build([y])
    case = Case(suite="t", workload="w", kind="k", params={}, variant="kernel")
    prepared = TorchBackend().prepare(
        case, graph, make_tensors(graph, 0), make_cotangents(graph, 0)
    )
    try:
        details = prepared.details()
        assert details["kernel_nodes"] == ["dw3"] and "7x7" in details["kernel_native_nodes"]["dw7"]
    finally:
        prepared.close()
    for params, message in (
        ({"in_channels": 4, "out_channels": 4, "size": 4}, "nothing the Triton kernels support"),
        ({"channels": 64, "size": 56}, "interpreter limit"),
    ):
        kind = "pointwise" if "in_channels" in params else "depthwise"
        case, graph, tensors, cot = kernel_case(kind, params, "training")
        with pytest.raises(UnsupportedCase, match=message):
            TorchBackend().prepare(case, graph, tensors, cot)


def test_kernel_cases_through_the_worker_run_interpreted_and_skip_without_it(tmp_path) -> None:  # noqa: ANN001
    """`convbench check` in a worker: with TRITON_INTERPRET=1 the kernel case verifies; a
    worker started without it skips it with the reason."""
    import json

    from tests.conftest import run_cli

    suite = tmp_path / "k.yaml"
    suite.write_text(
        "name: k\nworkloads:\n  - {id: dw, kind: depthwise, params: {channels: 4, size: 5, kernel: 3, stride: 2}}\n"
        "matrix: {backend: [torch], variant: [native, kernel], mode: [training], batch: [2]}\n"
    )
    for interpret in ("1", ""):
        proc = run_cli("check", str(suite), "--json", TRITON_INTERPRET=interpret)
        rows = {(r["backend"], r["variant"]): r for r in json.loads(proc.stdout)}
        assert len(rows) == 2, proc.stderr[-2000:]
        kernel = rows[("torch", "kernel")]
        if interpret:
            assert kernel["status"] == "ok" and kernel["verify_error"] < 1e-4
            assert json.loads(kernel["details"])["kernel_nodes"] == ["dw"]
        else:
            assert kernel["status"] == "skipped" and "TRITON_INTERPRET=1" in kernel["reason"]
        assert rows[("torch", "native")]["status"] == "ok"


def test_kernel_variant_builds_the_shift_tables_once_never_in_a_step(monkeypatch) -> None:  # noqa: ANN001
    """Fix for host-to-device copies in the timed step: the offset tables are module
    buffers built at install; a step (forward and backward) calls neither as_tensor nor
    unique (each a copy and a stream synchronize on CUDA)."""
    case, graph, tensors, cot = kernel_case("shift", {"channels": 9, "size": 5}, "training")
    prepared = TorchBackend().prepare(case, graph, tensors, cot)
    try:
        want = run_reference(graph, tensors, cot, "training")
        assert verify(prepared.check(), want, DEFAULT_TOLERANCE["float32"]).ok
        tables = [n for n, _ in prepared.module.named_buffers() if n.startswith("_kernel_shift_")]
        assert len(tables) == 4 and not any(k.startswith("_kernel_shift_") for k in prepared.module.state_dict())
        calls: list[str] = []
        for name in ("as_tensor", "tensor", "unique"):
            real = getattr(torch, name)
            monkeypatch.setattr(torch, name, lambda *a, _n=name, _r=real, **k: calls.append(_n) or _r(*a, **k))
        prepared.step()
        prepared.step()
        assert calls == []
        assert verify(prepared.check(), want, DEFAULT_TOLERANCE["float32"]).ok
    finally:
        prepared.close()


def test_address_shift_with_prebuilt_tables_matches_the_per_call_form() -> None:
    x = torch.randn(2, 5, 4, 3, requires_grad=True)
    offsets = [3, 1, 0, -1, -3]
    a, offs = shift.address_tables(offsets, 5, "cpu")
    y = shift.address_shift_with_tables(x, a, offs, "plane")
    y.sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    y2 = shift.address_shift(x, offsets, "plane")
    y2.sum().backward()
    assert torch.equal(y, y2) and torch.equal(g1, x.grad)


@pytest.mark.parametrize(("mode", "layout"), [("inference", "nhwc"), ("training", "nchw")])
def test_kernel_variant_replaces_the_address_shift_pattern_by_the_kernel(monkeypatch, mode: str, layout: str) -> None:  # noqa: ANN001
    """Fix 6 of the GPU issue: the IR's address shift (reshape, slices, pads, concat,
    reshape) runs as one address-shift kernel call in the ``kernel`` variant, verified
    against the float64 reference; the pattern's other nodes are elided and a step calls
    no torch.cat, F.pad or torch.narrow."""
    from convbench.variants import parse_variant
    from convbench.workloads.shift import address_offsets, match_address_shift

    params = {"channels": 7, "size": 5}
    case, graph, tensors, cot = kernel_case("address_shift", params, mode, layout)
    assert parse_variant("kernel").applies(graph)
    match = match_address_shift(graph["address_shift"], graph)
    assert match is not None and match.source == "x" and list(match.offsets) == address_offsets(7, 5)
    assert [n.name for n in graph.ops if match_address_shift(n, graph)] == ["address_shift"]
    prepared = TorchBackend().prepare(case, graph, tensors, cot)
    try:
        want = run_reference(graph, tensors, cot, mode)
        assert verify(prepared.check(), want, DEFAULT_TOLERANCE["float32"]).ok
        details = prepared.details()
        assert details["kernel_nodes"] == ["address_shift"]
        targets = {n.target for n in prepared.module.graph.nodes if n.op == "call_function"}
        assert shift.address_shift_with_tables in targets
        calls: list[str] = []
        for owner, name in ((torch, "cat"), (torch, "narrow"), (torch.nn.functional, "pad"), (torch, "unique")):
            real = getattr(owner, name)
            monkeypatch.setattr(owner, name, lambda *a, _n=name, _r=real, **k: calls.append(_n) or _r(*a, **k))
        prepared.module.recompile()
        prepared.step()
        assert calls == []
        assert verify(prepared.check(), want, DEFAULT_TOLERANCE["float32"]).ok
    finally:
        prepared.close()


def test_address_shift_matcher_refuses_other_slice_and_concat_patterns() -> None:
    from convbench.workloads.shift import match_address_shift

    for kind, params in (("channel_shift", {"channels": 6, "size": 4, "shift": 2}),
                         ("shortcut_shift", {"channels": 6, "size": 4, "branch_channels": 2}),
                         ("shift", {"channels": 9, "size": 5})):  # fmt: skip
        graph = build_graph(kind, params, 1)
        assert not any(match_address_shift(n, graph) for n in graph.nodes), kind
    b = GraphBuilder()  # a reshape after a concat that is not an address shift
    x = b.input("x", (1, 2, 3, 3))
    flat = b.reshape(x, (1, 2, 9), name="flat")
    part = b.add("slice", [flat], name="p", axis=1, start=0, stop=2)
    crop = b.add("slice", [part], name="crop", axis=2, start=1, stop=8)
    padded = b.pad(crop, ((0, 0), (0, 0), (1, 1)), name="pad")  # both ends zeroed: no move
    joined = b.add("concat", [padded], name="j", axis=1)
    y = b.reshape(joined, (1, 2, 3, 3), name="y")
    graph = b.build([y])
    assert match_address_shift(graph["y"], graph) is None
