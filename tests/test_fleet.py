"""The fleet: resource names and placement rules, then a real local Ray cluster (a head
and two worker nodes on loopback posing as two CPU kinds, ``cpu:labela`` and
``cpu:labelb``): a suite split across the labels, and a worker node killed mid-case."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from convbench.cases import Case
from convbench.fleet import (
    FleetError,
    node_resources,
    normalise_label,
    parse_labels,
    parse_place,
    requirements,
)
from convbench.results import read_table
from tests.conftest import ROOT, cli_env, run_cli

BIN = Path(sys.executable).parent
BACKENDS = "faulty=fake_backends:FaultyBackend,fleetfake=fleet_backend:FleetBackend"


# --------------------------------------------------------------------------- no cluster
def test_labels_are_normalised_into_valid_resource_names() -> None:
    assert normalise_label("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert normalise_label("arm64") == "aarch64" and normalise_label("AMD64") == "x86_64"
    assert normalise_label("  ") == "unknown"
    env = {
        "architecture": "x86_64",
        "gpus": [{"name": "NVIDIA A100-SXM4-40GB"}, {"name": "NVIDIA A100-SXM4-40GB"}],
    }
    assert node_resources(env, {}) == {"cpu:x86_64": 1, "cuda:nvidia-a100-sxm4-40gb": 2}
    assert node_resources(env, {"cpu": "Label A"}) == {
        "cpu:label-a": 1,
        "cuda:nvidia-a100-sxm4-40gb": 2,
    }
    assert parse_labels("cpu=a, cuda=b") == {"cpu": "a", "cuda": "b"}
    with pytest.raises(FleetError, match="DEVICE=LABEL"):
        parse_labels(["tpu=x"])


def _case(workload: str, device: str = "cpu") -> Case:
    return Case(
        suite="s",
        workload=workload,
        kind="depthwise",
        params={},
        backend="reference",
        device=device,
    )


def test_placement_rules_first_match_wins_and_default_is_any_device_of_the_kind() -> None:
    cases = [_case("a"), _case("b"), _case("c", "cuda")]
    rules = [parse_place("cpu:LabelA=workload == 'a'"), parse_place("cpu:*")]
    assert rules[0].pattern == "cpu:labela" and rules[0].where == "workload == 'a'"
    needs = requirements(cases, rules)
    assert [needs[c.case_id] for c in cases] == ["cpu:labela", "cpu:*", "cuda:*"]
    for bad in ("labela", "tpu:x", "cpu:", "cpu:x="):
        with pytest.raises(FleetError, match="--place"):
            parse_place(bad)
    with pytest.raises(FleetError, match="unknown column"):
        requirements(cases, [parse_place("cpu:x=colour == 1")])


def test_missing_ray_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from convbench.cli import main\n"
        f"sys.exit(main(['run', {str(ROOT / 'suites' / 'smoke.yaml')!r}, '--cluster', 'auto', '--out', {str(tmp_path / 'r')!r}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'convbench[fleet]'" in proc.stderr
    assert not (tmp_path / "r").exists()  # nothing made before the cluster is reachable


def test_the_core_does_not_import_ray() -> None:
    code = "import sys, convbench.cli, convbench.runner, convbench.results, convbench.fleet; print('ray' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------- a cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    tmp: Path
    marker: Path
    groups: dict[str, int] = field(default_factory=dict)  #: node name -> process group

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(
            CONVBENCH_EXTRA_BACKENDS=BACKENDS,
            RAY_TMPDIR=str(self.tmp),
            RAY_USAGE_STATS_ENABLED="0",
            **extra,
        )

    def start(self, name: str, args: list[str], **env: str) -> None:
        proc = subprocess.Popen(
            [str(BIN / "ray"), "start", *args, "--node-ip-address", "127.0.0.1", "--disable-usage-stats"],
            env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its daemons stay in this process group: killed as one
        )  # fmt: skip
        self.groups[name] = proc.pid
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"ray start ({name}) failed:\n{out[-3000:]}"

    def kill(self, name: str) -> None:
        """Kill a node at once, as a power cut would: its process group (raylet, agents)
        and every process descended from them (Ray's workers, the benchmark worker)."""
        pgid = self.groups.pop(name)
        procs = _processes()
        doomed = {pid for pid, (_, group) in procs.items() if group == pgid}
        while True:
            more = {pid for pid, (parent, _) in procs.items() if parent in doomed} - doomed
            if not more:
                break
            doomed |= more
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Tear down every node this test started (by process group, never by name: other
        Ray clusters on the machine are left alone), workers first."""
        names = sorted(self.groups, key=lambda n: n == "head")
        pgids = [self.groups[n] for n in names]
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for pgid in pgids:
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
        self.groups.clear()


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process, from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            out[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return out


def _resources(label: str) -> str:
    proc = run_cli("fleet", "node-resources", "--label", f"cpu={label}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A head (no devices) and two worker nodes, ``cpu:labela`` and ``cpu:labelb``. Node B
    hangs in ``hang*`` cases; node A holds ``gate*`` cases until B has started one."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed: `make test` installs convbench[fleet]")
        pytest.skip("ray is not installed (pip install 'convbench[fleet]')")
    tmp = Path(tempfile_dir := str(tmp_path_factory.mktemp("ray")))
    short = Path("/tmp") / f"cbray-{os.getpid()}"  # Ray's socket paths must stay short
    short.mkdir(exist_ok=True)
    port = _free_port()
    c = Cluster(f"127.0.0.1:{port}", short, tmp / "hang-started")
    t0 = time.monotonic()
    try:
        c.start("head", ["--head", f"--port={port}", "--num-cpus=0", f"--temp-dir={short}", "--include-dashboard=false", f"--ray-client-server-port={_free_port()}"],
                RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3", RAY_health_check_initial_delay_ms="0")  # fmt: skip
        c.start(
            "a",
            [f"--address={c.address}", "--num-cpus=1", f"--resources={_resources('labelA')}"],
            CONVBENCH_TEST_GATE=str(c.marker),
        )
        c.start(
            "b",
            [f"--address={c.address}", "--num-cpus=1", f"--resources={_resources('labelB')}"],
            CONVBENCH_TEST_HANG=str(c.marker),
        )
        print(f"cluster up in {time.monotonic() - t0:.1f} s ({tempfile_dir})")
        yield c
    finally:
        c.stop()
        subprocess.run(["rm", "-rf", str(short)], check=False)


def _suite(path: Path, workloads: list[str], backend: str) -> Path:
    lines = ["name: fleet", "workloads:"]
    lines += [
        f"  - {{id: {w}, kind: depthwise, params: {{channels: 4, size: 6}}}}" for w in workloads
    ]
    lines += [
        "matrix:",
        f"  variant: [native, diagonalwise]\n  backend: [{backend}]\n  device: [cpu]\n  mode: [inference]\n  batch: [1]",
        "timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.05, guard: flag}",
        "timeout: 60",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _hosts(run: Path) -> dict[str, dict]:
    return json.loads((run / "run.json").read_text())["environment"]["hosts"]


@pytest.mark.fleet
@pytest.mark.timeout(240)
def test_a_suite_split_across_two_labels_runs_each_case_on_a_node_with_its_label(
    cluster: Cluster, tmp_path: Path
) -> None:
    suite = _suite(tmp_path / "split.yaml", ["a1", "a2", "b1", "b2"], "reference")
    out = tmp_path / "run"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "convbench.cli", "run", str(suite), "--out", str(out), "--cluster", cluster.address,
         "--place", "cpu:labelA=workload.str.startswith('a')", "--place", "cpu:labelB"],
        env=cluster.env(), capture_output=True, text=True, timeout=180, check=False, cwd=ROOT,
    )  # fmt: skip
    print(f"split run: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stderr[-4000:]
    cases = pd.read_parquet(out / "cases.parquet")
    assert len(cases) == 8 and (cases.status == "ok").all(), cases[
        ["case_id", "status", "reason"]
    ].to_string()
    expected = cases.workload.map(lambda w: "cpu:labela" if w.startswith("a") else "cpu:labelb")
    assert (cases.device_label == expected).all()
    hosts = _hosts(out)
    for _, row in cases.iterrows():  # the node it ran on advertises the label
        assert row.device_label in hosts[row.host_id]["resources"], (row.case_id, row.host_id)
        assert json.loads(row.attempts)[-1]["node_id"] == hosts[row.host_id]["node_id"]
    assert (
        cases.groupby("device_label").host_id.nunique().eq(1).all() and cases.host_id.nunique() == 2
    )
    assert all(h["core"]["hostname"] and h["core"]["cpu_logical_cores"] for h in hosts.values())
    assert (cases.threads == os.cpu_count()).all()  # resolved on the node
    assert (
        (cases.ratio[cases.variant == "diagonalwise"]).notna().all()
    )  # variants still side by side
    # reports work on a fleet run: convbench.load names each row's own host
    from convbench.results import load

    assert load(out)["host"].notna().all()
    assert run_cli("report", str(out), "-o", str(tmp_path / "site")).returncode == 0
    # resuming finds every case finished (threads resolved on the nodes still match the plan)
    again = subprocess.run(
        [sys.executable, "-m", "convbench.cli", "run", "--resume", str(out), "--cluster", cluster.address],
        env=cluster.env(), capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert again.returncode == 0 and "8 of 8 cases already finished" in again.stderr, again.stderr[
        -3000:
    ]
    assert pd.read_parquet(out / "cases.parquet").equals(cases)


@pytest.mark.fleet
@pytest.mark.timeout(240)
def test_cpus_pins_the_workers_of_each_node_to_that_nodes_cpus(cluster: Cluster, tmp_path: Path) -> None:
    """The cpus spec travels to the nodes and each resolves it against its own CPUs; a
    spec a node cannot satisfy gives error rows that name the node, nothing timed."""
    suite = _suite(tmp_path / "pin.yaml", ["a1", "b1"], "reference")
    place = ["--place", "cpu:labelA=workload.str.startswith('a')", "--place", "cpu:labelB"]
    for spec, out in (("1", tmp_path / "pinned"), ("cluster9", tmp_path / "unpinnable")):
        proc = subprocess.run(
            [sys.executable, "-m", "convbench.cli", "run", str(suite), "--out", str(out), "--cluster", cluster.address, "--cpus", spec, *place],
            env=cluster.env(), capture_output=True, text=True, timeout=180, check=False, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        meta = json.loads((out / "run.json").read_text())
        assert meta["options"]["cpus"] == {"spec": spec, "resolved": "on each node"}
        cases = pd.read_parquet(out / "cases.parquet")
        assert len(cases) == 4 and cases.host_id.nunique() == 2
        if spec == "1":
            assert (cases.status == "ok").all() and (cases.threads == 1).all()
            for host in _hosts(out).values():
                assert host["core"]["cpu_pinning"]["cpus"] == "1"
        else:
            assert (cases.status == "error").all() and cases["median"].isna().all()
            assert cases.reason.str.contains("cluster9").all() and cases.reason.str.startswith("node ").all()


@pytest.mark.fleet
@pytest.mark.timeout(240)
def test_killing_a_node_mid_case_loses_no_finished_case_and_retries_elsewhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    # gate_a holds node A until hang_any has started on node B (so B gets it); b_fast
    # finishes on B first; hang_any (any CPU) hangs on B, which is then killed: it is
    # retried on A; b_late needs labelb, which no live node offers any more.
    suite = _suite(tmp_path / "kill.yaml", ["gate_a", "b_fast", "hang_any", "b_late"], "fleetfake")
    suite.write_text(
        suite.read_text().replace("variant: [native, diagonalwise]", "variant: [native]")
    )
    out = tmp_path / "run"
    t0 = time.monotonic()
    driver = subprocess.Popen(
        [sys.executable, "-m", "convbench.cli", "run", str(suite), "--out", str(out), "--cluster", cluster.address,
         "--place", "cpu:labela=workload == 'gate_a'", "--place", "cpu:labelb=workload.str.startswith('b_')"],
        env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not cluster.marker.exists():
            assert driver.poll() is None, driver.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "hang_any never started on node B"
            time.sleep(0.2)
        finished_before = read_table(out)  # the run is going: its journal
        pid = int(cluster.marker.read_text())
        assert pid in _processes()
        cluster.kill("b")  # raylet, its workers and agents: the node dies mid-case
        killed_at = time.monotonic()
        while pid in _processes() and time.monotonic() - killed_at < 10:  # a zombie until reaped
            time.sleep(0.1)
        assert pid not in _processes()  # the benchmark worker went with its node
        _, err = driver.communicate(timeout=150)
    finally:
        if driver.poll() is None:
            driver.kill()
    print(
        f"kill run: {time.monotonic() - t0:.1f} s, {time.monotonic() - killed_at:.1f} s after the kill"
    )
    assert driver.returncode == 0, err[-4000:]
    cases = pd.read_parquet(out / "cases.parquet").set_index("workload")
    assert "b_fast" in set(finished_before.workload)  # finished on B before the kill...
    assert (
        cases.loc["b_fast", "status"] == "ok"
        and cases.loc["b_fast", "device_label"] == "cpu:labelb"
    )  # ...and kept
    assert (
        cases.loc["gate_a", "status"] == "ok"
        and cases.loc["gate_a", "device_label"] == "cpu:labela"
    )
    hang = cases.loc["hang_any"]
    attempts = json.loads(hang["attempts"])
    assert [a["status"] for a in attempts] == ["error", "ok"], attempts
    assert "died" in attempts[0]["reason"] and attempts[0]["device_label"] == "cpu:labelb"
    assert (
        hang["status"] == "ok"
        and hang["device_label"] == "cpu:labela"
        and attempts[1]["node_id"] != attempts[0]["node_id"]
    )
    assert (
        cases.loc["b_late", "status"] == "skipped" and "cpu:labelb" in cases.loc["b_late", "reason"]
    )
    assert len(cases) == 4  # the retried row replaced the error row
