"""ARM: core names and big.LITTLE clusters, pinning workers to a cluster, emulated runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convbench import cpu_topology, emulation
from convbench.cpu_topology import (
    CpuSpecError,
    darwin_clusters,
    format_cpu_list,
    group_clusters,
    linux_clusters,
    parse_cpu_list,
    parse_cpuinfo_processors,
    parse_sysctl,
    resolve_cpus,
)
from convbench.emulation import classify, emulation_mismatch, emulator_in_maps, run_emulated
from convbench.environment import capture, environment_rows, parse_cpuinfo
from tests.conftest import run_cli


def _arm_block(
    cpu: int,
    part: str,
    variant: str = "0x4",
    revision: int = 1,
    features: str = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
) -> str:
    return (
        f"processor\t: {cpu}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n"
    )


#: Raspberry Pi 5 (BCM2712): four Cortex-A76 at 2.4 GHz, with the board's trailing block.
PI5 = "".join(_arm_block(i, "0xd0b") for i in range(4)) + (
    "Revision\t: d04170\nSerial\t\t: 3b2a61c09ea5e1ab\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
)
#: Rockchip RK3588: four Cortex-A55 (0-3) and four Cortex-A76 (4-7) in two frequency domains.
RK3588 = "".join(_arm_block(i, "0xd05", "0x2", 0) for i in range(4)) + "".join(
    _arm_block(i, "0xd0b", "0x4", 0) for i in range(4, 8)
)
RK3588_MAX_KHZ = {
    0: 1800000,
    1: 1800000,
    2: 1800000,
    3: 1800000,
    4: 2256000,
    5: 2256000,
    6: 2304000,
    7: 2304000,
}
RK3588_CAPACITY = {0: 414, 1: 414, 2: 414, 3: 414, 4: 1024, 5: 1024, 6: 1024, 7: 1024}
#: AWS Graviton3 (c7g.16xlarge): 64 Neoverse-V1, no cpufreq in the guest.
GRAVITON3 = "".join(
    _arm_block(
        i,
        "0xd40",
        "0x1",
        1,
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng",
    )
    for i in range(64)
)
#: NVIDIA Jetson AGX Orin: twelve Cortex-A78AE at 2.2 GHz.
ORIN = "".join(_arm_block(i, "0xd42", "0x1", 1) for i in range(12))
#: Apple M2 Pro (`sysctl hw.nperflevels hw.perflevel0.name ...`).
M2_PRO_SYSCTL = """hw.nperflevels: 2
hw.perflevel0.name: Performance
hw.perflevel0.logicalcpu: 8
hw.perflevel1.name: Efficiency
hw.perflevel1.logicalcpu: 4
"""
X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 avx avx2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 avx avx2
"""


# -- CPU lists and core names --------------------------------------------------------------
def test_cpu_lists_round_trip() -> None:
    assert parse_cpu_list("0-3,6, 8-9") == [0, 1, 2, 3, 6, 8, 9]
    assert format_cpu_list([9, 8, 6, 3, 2, 1, 0]) == "0-3,6,8-9"
    assert format_cpu_list({5}) == "5"
    for bad in ("", "a", "3-1", "1-", "-2"):
        with pytest.raises(ValueError, match="bad CPU list"):
            parse_cpu_list(bad)


@pytest.mark.parametrize(
    ("text", "part"),
    [
        (PI5, "Cortex-A76"),
        (GRAVITON3, "Neoverse-V1"),
        (ORIN, "Cortex-A78AE"),
        (RK3588, "Cortex-A55"),
    ],
)
def test_parse_cpuinfo_names_real_arm_cores(text: str, part: str) -> None:
    info = parse_cpuinfo(text)
    assert (info["implementer"], info["vendor"], info["part"]) == ("ARM", "ARM", part)


# -- clusters --------------------------------------------------------------------------------
def test_pi5_is_one_cluster_of_a76() -> None:
    (cluster,) = group_clusters(parse_cpuinfo_processors(PI5), dict.fromkeys(range(4), 2400000))
    assert (
        cluster["cpus"] == "0-3"
        and cluster["part"] == "Cortex-A76"
        and cluster["max_mhz"] == 2400.0
    )
    assert cluster["alias"] is None  # no big or little on a single cluster


def test_rk3588_big_little_and_frequency_domains() -> None:
    clusters = group_clusters(parse_cpuinfo_processors(RK3588), RK3588_MAX_KHZ, RK3588_CAPACITY)
    summary = [
        (c["name"], c["alias"], c["cpus"], c["part"], c["max_mhz"], c["capacity"]) for c in clusters
    ]
    assert summary == [
        ("cluster0", "big", "6-7", "Cortex-A76", 2304.0, 1024),
        ("cluster1", None, "4-5", "Cortex-A76", 2256.0, 1024),
        ("cluster2", "little", "0-3", "Cortex-A55", 1800.0, 414),
    ]


def test_two_clusters_without_capacity_order_by_frequency() -> None:
    max_khz = {cpu: (2400000 if cpu >= 4 else 1800000) for cpu in range(8)}
    clusters = group_clusters(parse_cpuinfo_processors(RK3588), max_khz)
    assert [(c["alias"], c["cpus"], c["part"]) for c in clusters] == [
        ("big", "4-7", "Cortex-A76"),
        ("little", "0-3", "Cortex-A55"),
    ]


def test_graviton_and_orin_are_single_clusters() -> None:
    (graviton,) = group_clusters(parse_cpuinfo_processors(GRAVITON3))
    assert (graviton["cpus"], graviton["count"], graviton["part"], graviton["max_mhz"]) == (
        "0-63",
        64,
        "Neoverse-V1",
        None,
    )
    (orin,) = group_clusters(parse_cpuinfo_processors(ORIN), dict.fromkeys(range(12), 2201600))
    assert (orin["cpus"], orin["part"], orin["max_mhz"]) == ("0-11", "Cortex-A78AE", 2201.6)


def _fake_root(
    root: Path, cpuinfo: str, max_khz: dict[int, int], capacity: dict[int, int] | None = None
) -> Path:
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(cpuinfo)
    for cpu, khz in max_khz.items():
        d = root / f"sys/devices/system/cpu/cpu{cpu}"
        (d / "cpufreq").mkdir(parents=True)
        (d / "cpufreq/cpuinfo_max_freq").write_text(f"{khz}\n")
        if capacity:
            (d / "cpu_capacity").write_text(f"{capacity[cpu]}\n")
    return root


def test_linux_clusters_read_proc_and_sysfs(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, RK3588, RK3588_MAX_KHZ, RK3588_CAPACITY)
    clusters = linux_clusters(root)
    assert [c["cpus"] for c in clusters] == ["6-7", "4-5", "0-3"]
    assert clusters[-1]["alias"] == "little" and clusters[-1]["part"] == "Cortex-A55"


def test_apple_silicon_perflevels() -> None:
    clusters = darwin_clusters(parse_sysctl(M2_PRO_SYSCTL))
    assert [(c["alias"], c["part"], c["count"], c["cpus"]) for c in clusters] == [
        ("big", "Performance", 8, None),
        ("little", "Efficiency", 4, None),
    ]
    assert darwin_clusters(parse_sysctl("")) == []  # an Intel Mac has no perf levels


def test_darwin_capture_runs_sysctl_n(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "hw.nperflevels": "2",
        "hw.perflevel0.name": "Performance",
        "hw.perflevel0.logicalcpu": "8",
        "hw.perflevel1.name": "Efficiency",
        "hw.perflevel1.logicalcpu": "4",
    }
    calls = []

    class Done:
        def __init__(self, name: str) -> None:
            self.returncode = 0 if name in values else 1
            self.stdout = values.get(name, "") + "\n"

    def fake_run(args: list[str], **kw: object) -> Done:
        calls.append(args)
        assert args[:2] == ["sysctl", "-n"]
        return Done(args[2])

    monkeypatch.setattr(cpu_topology.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(cpu_topology.subprocess, "run", fake_run)
    assert [(c["alias"], c["part"], c["count"]) for c in cpu_topology.clusters()] == [
        ("big", "Performance", 8),
        ("little", "Efficiency", 4),
    ]
    assert calls


def test_capture_records_clusters_and_environment_rows() -> None:
    env = capture()
    assert isinstance(env["cpu_clusters"], list) and env["cpu_clusters"]
    cpus = {cpu for c in env["cpu_clusters"] for cpu in c["cpu_list"]}
    assert cpus == set(range(len(cpus))) and len(cpus) >= 1
    json.dumps(env)  # still JSON-serialisable
    rows = dict(
        environment_rows(
            {
                **env,
                "cpu_clusters": group_clusters(
                    parse_cpuinfo_processors(RK3588), RK3588_MAX_KHZ, RK3588_CAPACITY
                ),
            }
        )
    )
    assert rows["cpu cluster big"] == "cpus 6-7, Cortex-A76, 2304 MHz, capacity 1024"
    assert rows["cpu cluster little"] == "cpus 0-3, Cortex-A55, 1800 MHz, capacity 414"


# -- resolving --cpus ----------------------------------------------------------------------------
RK = group_clusters(parse_cpuinfo_processors(RK3588), RK3588_MAX_KHZ, RK3588_CAPACITY)


def test_resolve_cluster_names_and_lists() -> None:
    every = set(range(8))
    big = resolve_cpus("big", RK, every)
    assert (big.cpus, big.cluster, big.part) == ((6, 7), "big", "Cortex-A76")
    assert resolve_cpus("little", RK, every).cpu_text == "0-3"
    assert resolve_cpus("cluster1", RK, every).record() == {
        "spec": "cluster1",
        "cpus": "4-5",
        "count": 2,
        "cluster": "cluster1",
        "part": "Cortex-A76",
    }
    same = resolve_cpus("0-3", RK, every)  # a list that is exactly a cluster names it
    assert (same.cluster, same.part) == ("little", "Cortex-A55")
    mixed = resolve_cpus("3-4", RK, every)
    assert (mixed.cpus, mixed.cluster) == ((3, 4), None)


@pytest.mark.parametrize(
    ("spec", "clusters", "message"),
    [
        ("middle", RK, "expected big, little, clusterN or a CPU list"),
        ("cluster7", RK, "no such cluster"),
        ("big", group_clusters(parse_cpuinfo_processors(PI5)), "single cluster"),
        ("0-9", RK, r"CPU\(s\) 8-9 not available"),
    ],
)
def test_resolve_errors_name_the_option(spec: str, clusters: list, message: str) -> None:
    with pytest.raises(CpuSpecError, match=message) as err:
        resolve_cpus(spec, clusters, set(range(8)))
    assert str(err.value).startswith(f"--cpus {spec}:")


def test_darwin_clusters_cannot_be_pinned() -> None:
    with pytest.raises(CpuSpecError, match="cannot be pinned"):
        resolve_cpus("big", darwin_clusters(parse_sysctl(M2_PRO_SYSCTL)), set(range(12)))


SUITE = """\
name: pinned
workloads:
  - {id: dw, kind: depthwise, params: {channels: 8, size: 8, kernel: 3, stride: 1}}
matrix: {backend: [reference], device: [cpu], mode: [inference], batch: [1]}
timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.05, guard: flag}
"""


def _affinity(run: Path) -> tuple[dict, dict, dict]:
    meta = json.loads((run / "run.json").read_text())
    return (
        meta["options"]["cpus"],
        meta["environment"]["core"]["cpu_pinning"],
        {k: v["cpu_affinity"] for k, v in meta["environment"]["backends"].items()},
    )


def test_run_pins_the_worker_to_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convbench.cli import main

    # Synthetic clusters on this machine's CPUs 0 and 1: cpu 1 is "big".
    fake = group_clusters(
        {
            0: {"cpu part": "0xd05", "cpu implementer": "0x41"},
            1: {"cpu part": "0xd0b", "cpu implementer": "0x41"},
        },
        {0: 1800000, 1: 2400000},
    )
    monkeypatch.setattr(cpu_topology, "clusters", lambda: fake)
    monkeypatch.setattr(cpu_topology, "available_cpus", lambda: {0, 1})
    suite = tmp_path / "pinned.yaml"
    suite.write_text(SUITE + "cpus: 0\n")  # the suite's cpus, replaced by --cpus
    assert main(["run", str(suite), "--cpus", "big", "--out", str(tmp_path / "big")]) == 0
    options, pinning, workers = _affinity(tmp_path / "big")
    assert (
        options
        == pinning
        == {"spec": "big", "cpus": "1", "count": 1, "cluster": "big", "part": "Cortex-A76"}
    )
    assert workers == {"reference:cpu": "1"}  # what the worker itself saw
    meta = json.loads((tmp_path / "big" / "run.json").read_text())
    assert [c["threads"] for c in meta["cases"]] == [1]  # threads default to the pinned count
    assert main(["run", str(suite), "--out", str(tmp_path / "suite")]) == 0
    assert _affinity(tmp_path / "suite")[2] == {"reference:cpu": "0"}


def test_unknown_cluster_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    suite = tmp_path / "pinned.yaml"
    suite.write_text(SUITE)
    done = run_cli("run", str(suite), "--cpus", "little", "--dry-run")
    assert done.returncode == 2
    assert "--cpus little: this machine has a single cluster" in done.stderr
    suite.write_text(SUITE + "cpus: 0-99\n")
    done = run_cli("run", str(suite), "--dry-run")
    assert done.returncode == 2 and "pinned.yaml:6: cpus: 0-99: CPU(s)" in done.stderr
    suite.write_text(SUITE + "cpus: medium\n")
    done = run_cli("run", str(suite), "--dry-run")
    assert done.returncode == 2 and "cpus: expected a string matching" in done.stderr


# -- emulation ------------------------------------------------------------------------------------
QEMU_MAPS = """\
00400000-00401000 r--p 00000000 fd:00 1234 /usr/libexec/qemu-binfmt/aarch64-binfmt-P
5500000000-5500001000 r-xp 00000000 fd:00 99 /opt/venv/bin/python3.11
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 [heap]
"""
NATIVE_MAPS = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:00 99 /usr/bin/python3.11
7ffd5b9a1000-7ffd5b9c2000 rw-p 00000000 00:00 0 [stack]
"""


def test_emulator_in_maps() -> None:
    assert emulator_in_maps(QEMU_MAPS) == "aarch64-binfmt-P"
    assert (
        emulator_in_maps("00400000-00401000 r-xp 00000000 fd:00 1 /usr/bin/qemu-aarch64-static\n")
        == "qemu-aarch64-static"
    )
    assert emulator_in_maps(NATIVE_MAPS) is None
    assert (
        emulator_in_maps("00400000-00401000 r-xp 00000000 fd:00 1 /data/qemu-results.txt\n") is None
    )


def test_classify_signals() -> None:
    assert classify("aarch64", maps=QEMU_MAPS, cpuinfo=PI5)["emulator"] == "aarch64-binfmt-P"
    mismatch = classify("aarch64", maps=NATIVE_MAPS, cpuinfo=X86_CPUINFO)
    assert mismatch["emulated"] is True and "describes x86" in mismatch["emulation_evidence"]
    assert classify("aarch64", maps=NATIVE_MAPS, cpuinfo=PI5)["emulated"] is False  # a real Pi
    assert classify("x86_64", maps=NATIVE_MAPS, cpuinfo=X86_CPUINFO)["emulated"] is False
    assert classify("x86_64", cpuinfo=PI5)["emulated"] is True  # x86 guest on an ARM host
    assert classify("x86_64", translated="1")["emulator"] == "rosetta"
    assert classify("arm64", translated="0")["emulated"] is False
    forced = classify("x86_64", env_value="1", maps=NATIVE_MAPS, cpuinfo=X86_CPUINFO)
    assert (forced["emulated"], forced["emulation_evidence"]) == (True, "CONVBENCH_EMULATED=1")
    assert classify("aarch64", env_value="0", maps=QEMU_MAPS)["emulated"] is False


def test_detect_here_is_native_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVBENCH_EMULATED", raising=False)
    assert emulation.detect()["emulated"] is False
    assert emulation._real_maps()  # the process map is readable here
    monkeypatch.setenv("CONVBENCH_EMULATED", "1")
    env = capture()
    assert (env["emulated"], env["emulator"]) == (True, "unknown")


def _make_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    from tests.report_data import make_run

    native = make_run(tmp_path / "native", host="x86-box", failures=False)
    emulated = make_run(tmp_path / "emulated", host="arm-guest", seed=1, failures=False)
    other = make_run(tmp_path / "emulated2", host="arm-guest", seed=2, failures=False)
    for run in (emulated, other):
        meta = json.loads((run / "run.json").read_text())
        meta["environment"]["core"].update(
            architecture="aarch64", emulated=True, emulator="qemu-aarch64-static"
        )
        (run / "run.json").write_text(json.dumps(meta))
    return native, emulated, other


def test_compare_refuses_emulated_against_native(tmp_path: Path) -> None:
    native, emulated, other = _make_runs(tmp_path)
    assert run_emulated(json.loads((emulated / "run.json").read_text()))
    assert not run_emulated(json.loads((native / "run.json").read_text()))
    done = run_cli("compare", str(native), str(emulated))
    assert done.returncode == 2
    assert "cannot be compared with native" in done.stderr and "--allow-emulated" in done.stderr
    assert run_cli("compare", str(native), str(emulated), "--allow-emulated").returncode in (0, 1)
    assert run_cli("compare", str(emulated), str(other)).returncode in (
        0,
        1,
    )  # emulated vs emulated is fine
    # mixing on one side counts too
    assert (
        run_cli("compare", "--base", str(emulated), "--new", str(other), str(native)).returncode
        == 2
    )


def test_emulation_mismatch_sees_nested_environments() -> None:
    merged = {
        "_dir": "merged",
        "environment": {"core": {"emulated": False}, "nodes": {"pi": {"core": {"emulated": True}}}},
    }
    assert emulation_mismatch(
        [merged], [{"_dir": "x86", "environment": {"core": {"emulated": False}}}]
    )
    assert (
        emulation_mismatch([{"environment": {}}], [{"environment": {"core": {"emulated": False}}}])
        is None
    )


def test_report_labels_emulated_runs(tmp_path: Path) -> None:
    from convbench.report.render import render_site

    native, emulated, _ = _make_runs(tmp_path)
    site = tmp_path / "site"
    render_site([native, emulated], site)
    pages = {p.name: p.read_text() for p in site.glob("*.html")}
    run_pages = {name: text for name, text in pages.items() if name.startswith("run-")}
    labelled = [name for name, text in run_pages.items() if 'class="badge emulated"' in text]
    assert len(run_pages) == 2 and len(labelled) == 1 and "emulated" in labelled[0]
    assert "Emulated run</strong>: taken under qemu-aarch64-static" in run_pages[labelled[0]]
    suite_page = next(text for name, text in pages.items() if name.startswith("suite-"))
    assert suite_page.count('class="badge emulated"') == 1 and "emulated-banner" in suite_page
    assert "EMULATED (qemu-aarch64-static)" in pages["index.html"]


def test_detect_names_qemus_cpu_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVBENCH_EMULATED", raising=False)
    monkeypatch.setenv("QEMU_CPU", "neoverse-n1")
    monkeypatch.setattr(emulation, "_real_maps", lambda: QEMU_MAPS)
    assert emulation.detect()["emulator"] == "aarch64-binfmt-P (cpu neoverse-n1)"
    monkeypatch.setattr(emulation, "_real_maps", lambda: NATIVE_MAPS)
    assert emulation.detect()["emulated"] is False  # QEMU_CPU alone proves nothing
