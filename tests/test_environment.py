"""convbench.environment: what machine and software a run saw."""

from __future__ import annotations

import json
import subprocess
import sys

from rich.console import Console

from convbench import environment
from convbench.environment import capture, format_environment, parse_cpuinfo, parse_nvidia_smi

FRAMEWORKS = ("torch", "tensorflow", "mxnet", "onnxruntime", "jax", "triton")

ARM_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 50.00
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""

X86_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
cpu MHz\t\t: 2500.000
physical id\t: 0
core id\t\t: 0

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
cpu MHz\t\t: 2500.000
physical id\t: 0
core id\t\t: 0

processor\t: 2
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
cpu MHz\t\t: 2500.000
physical id\t: 0
core id\t\t: 1
"""

EXPECTED_TYPES: dict[str, tuple[type, ...]] = {
    "timestamp": (str,),
    "hostname": (str,),
    "os": (str,),
    "kernel": (str,),
    "architecture": (str,),
    "cpu": (str, type(None)),
    "cpu_physical_cores": (int, type(None)),
    "cpu_logical_cores": (int, type(None)),
    "cpu_mhz": (float, type(None)),
    "memory_total_bytes": (int,),
    "python_version": (str,),
    "python_executable": (str,),
    "numpy_version": (str,),
    "convbench_version": (str,),
    "git_revision": (str, type(None)),
    "git_dirty": (bool, type(None)),
    "thread_env": (dict,),
    "gpus": (list, type(None)),
}


def test_capture_keys_and_types() -> None:
    env = capture()
    for key, types in EXPECTED_TYPES.items():
        assert key in env, key
        assert isinstance(env[key], types), (key, env[key])
    assert env["memory_total_bytes"] > 0
    assert env["convbench_version"] == __import__("convbench").__version__
    assert set(env["thread_env"]) >= {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES"}
    assert env["timestamp"].endswith("+00:00")
    if env["git_revision"] is not None:
        assert len(env["git_revision"]) == 40
    json.dumps(env)  # stored in run.json as is


def test_parse_cpuinfo_arm() -> None:
    info = parse_cpuinfo(ARM_CPUINFO)
    assert info["implementer_code"] == "0x41"
    assert info["part_code"] == "0xd0c"
    assert info["implementer"] == "ARM"
    assert info["part"] == "Neoverse-N1"
    assert info["vendor"] == "ARM"
    assert info["logical_cores"] == 2
    assert info["model_name"] is None
    assert info["physical_cores"] is None  # no core ids on ARM: capture asks sysfs/lscpu


def test_parse_cpuinfo_arm_unknown_part_keeps_code() -> None:
    info = parse_cpuinfo(ARM_CPUINFO.replace("0xd0c", "0xfff"))
    assert info["implementer"] == "ARM"
    assert info["part"] == "0xfff"


def test_parse_cpuinfo_x86() -> None:
    info = parse_cpuinfo(X86_CPUINFO)
    assert info["model_name"] == "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    assert info["vendor"] == "GenuineIntel"
    assert info["logical_cores"] == 3
    assert info["physical_cores"] == 2
    assert info["mhz"] == 2500.0
    assert info["implementer"] is None and info["part"] is None


def test_parse_cpuinfo_garbage() -> None:
    assert parse_cpuinfo("")["model_name"] is None
    assert parse_cpuinfo("no colons here\n\n:::\n")["logical_cores"] is None


def test_parse_nvidia_smi() -> None:
    text = "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB\nNVIDIA A10, 550.54.15, 23028 MiB\n"
    gpus = parse_nvidia_smi(text)
    assert gpus == [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "driver_version": "550.54.15",
            "memory_total": "81559 MiB",
        },
        {"name": "NVIDIA A10", "driver_version": "550.54.15", "memory_total": "23028 MiB"},
    ]


def test_gpus_from_fake_nvidia_smi(monkeypatch) -> None:
    monkeypatch.setattr(environment.shutil, "which", lambda name: f"/usr/bin/{name}")
    real_run = environment._run

    def fake_run(args, cwd=None):
        if args[0] == "nvidia-smi":
            return "NVIDIA H200, 560.35.03, 143771 MiB\n"
        return real_run(args, cwd)

    monkeypatch.setattr(environment, "_run", fake_run)
    assert capture()["gpus"] == [
        {"name": "NVIDIA H200", "driver_version": "560.35.03", "memory_total": "143771 MiB"}
    ]


def test_capture_never_raises(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("probe failed")

    monkeypatch.setattr(environment, "_read", boom)
    monkeypatch.setattr(environment, "_run", boom)
    monkeypatch.setattr(environment.platform, "release", boom)
    env = capture()
    assert env["kernel"] is None
    assert env["gpus"] is None or isinstance(env["gpus"], list)
    assert env["git_revision"] is None
    assert env["python_version"]


def test_git_revision_outside_a_checkout(tmp_path) -> None:
    assert environment.git_revision(tmp_path) == (None, None)


def test_no_framework_imported() -> None:
    code = (
        "import sys, convbench.environment as e; e.capture(); "
        f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_format_environment() -> None:
    env = capture()
    console = Console(width=200, record=True)
    console.print(format_environment(env))
    text = console.export_text()
    assert "python_version" in text and env["python_version"] in text
    assert "OMP_NUM_THREADS" in text
    assert "memory_total" in text and "GiB" in text


def test_format_environment_gpus_and_unknowns() -> None:
    env = {
        "hostname": None,
        "gpus": [{"name": "NVIDIA H100", "driver_version": "550", "memory_total": "80 GiB"}],
        "thread_env": {"OMP_NUM_THREADS": "4"},
    }
    rows = dict(environment.environment_rows(env))
    assert rows["hostname"] == "unknown"
    assert rows["gpu 0"] == "NVIDIA H100, 550, 80 GiB"
    assert rows["OMP_NUM_THREADS"] == "4"


def test_memory_management_reads_thp_and_damon(tmp_path) -> None:
    """THP's selected mode and each kdamond's state, operations and scheme actions, from a
    fake sysfs (this VM's: DAMON on physical memory paging out cold regions)."""
    mm = tmp_path / "kernel" / "mm"
    (mm / "transparent_hugepage").mkdir(parents=True)
    (mm / "transparent_hugepage" / "enabled").write_text("always [madvise] never\n")
    (mm / "transparent_hugepage" / "defrag").write_text("always defer defer+madvise [madvise] never\n")
    assert environment.memory_management(str(tmp_path)) == {"thp": "madvise", "thp_defrag": "madvise", "damon": None}
    kd = mm / "damon" / "admin" / "kdamonds" / "0"
    (kd / "contexts" / "0" / "schemes" / "0").mkdir(parents=True)
    (kd / "state").write_text("on\n")
    (kd / "contexts" / "0" / "operations").write_text("paddr\n")
    (kd / "contexts" / "0" / "schemes" / "0" / "action").write_text("pageout\n")
    (mm / "damon" / "admin" / "kdamonds" / "nr_kdamonds").write_text("1\n")
    assert environment.memory_management(str(tmp_path))["damon"] == ["kdamond 0: on, paddr (pageout)"]
    (kd / "state").write_text("off\n")
    assert environment.memory_management(str(tmp_path))["damon"] == ["kdamond 0: off, paddr (pageout)"]
