"""`--executor ray`: a lab of simulated hosts (``ray.cluster_utils.Cluster`` nodes) measured by one driver.

The lab: a head without devices and three nodes. Node A carries the local profile on CPU 0 and a scripted
phone, node B the local profile on CPU 1 and two scripted phones (one vanishes after its first job), node C
the loopback Android phone (``tests/loopback_adb.py``: the real adb protocol over 127.0.0.1, driven by the
real Android agent inside the node's Ray worker) and a scripted phone (node C is removed mid-run in a test).
Scripted phones are :class:`tests.fakes.FakeAgent`, opened inside the node's Ray worker through their
registration's opener. Token authentication is on, as Ray 2.60 sets it up by default.

The cluster tests are slow (a node costs seconds on this 2-core box) and share one cluster; the checks of
artifact placement, target resolution and the install hint need no cluster.
"""

from __future__ import annotations

import _thread
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device_agents.base import ArtifactRef
from harness import orchestrate
from harness.measure.lab import device_host
from harness.measure import factory, session
from harness.results import store
from harness.split.configurations import configurations
from harness.measure.lab.device_host import Registration, place_artifact
from harness.core.errors import UserError
from harness.config.spec import load_spec
from tests.android_fixtures import FAST
from tests.fakes import FakeArtifact
from tests.loopback_adb import LoopbackPhone, write_tool_wrappers
from tests.ray_fakes import OPENER, lab_env, reload_ray_auth

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
SLOW_S = 0.15  # each scripted job takes this long, so a run lasts long enough to be interrupted
N_JOBS = 6  # tiny.toml: 3 configurations x 2 backends per device


# --------------------------------------------------------------------------------------------------
# Without a cluster


def _artifact(tmp_path: Path, name: str = "m.onnx", data: bytes = b"onnx bytes" * 100) -> ArtifactRef:
    path = tmp_path / "driver" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    (path.parent / (name + ".data")).write_bytes(b"external weights")
    return ArtifactRef.from_path(path, key="k1", backend="onnx")


def test_artifact_is_fetched_once_per_host_and_checked(tmp_path):
    ref = _artifact(tmp_path)
    payload = device_host.read_payload(ref)
    assert set(payload) == {"m.onnx", "m.onnx.data"}
    fetched = []

    def fetch():
        fetched.append(1)
        return payload

    cache = tmp_path / "host-cache"
    local, how = place_artifact(ref, fetch, mode="object-store", cache=cache)
    assert how == "object store" and fetched == [1]
    assert Path(local.path) == cache / ref.sha256 / "m.onnx" and Path(local.path).read_bytes() == payload["m.onnx"]
    assert (cache / ref.sha256 / "m.onnx.data").read_bytes() == b"external weights"
    again, how = place_artifact(ref, fetch, mode="object-store", cache=cache)
    assert how == "host cache" and fetched == [1] and again == local  # a second actor of the host: no transfer
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # nothing half-written left behind

    # auto: the driver's own path when this host sees the same bytes there (a shared file system)
    shared, how = place_artifact(ref, None, mode="auto", cache=tmp_path / "other-cache")
    assert how == "shared path" and shared == ref

    # bytes that differ from their hash are refused, and not kept
    bad = {**payload, "m.onnx": b"x" * len(payload["m.onnx"])}
    with pytest.raises(device_host.ArtifactPlacementError, match="other bytes than its sha256"):
        place_artifact(ref, lambda: bad, mode="object-store", cache=tmp_path / "c3")
    assert not any((tmp_path / "c3").iterdir())
    (tmp_path / "driver" / "m.onnx").write_bytes(b"changed on the driver's disk since the export" * 30)
    with pytest.raises(device_host.ArtifactPlacementError, match="shared file system"):
        place_artifact(ref, None, mode="shared", cache=tmp_path / "c4")


def test_spec_targets_resolve_to_one_registered_device():
    from harness.measure.lab.driver import resolve

    regs = {r.device_id: r for r in (
        Registration("local:a:cpu0", "cpu-1core:0", "a", {}), Registration("local:b:cpu0", "cpu-1core:0", "b", {}),
        Registration("R58N1", "android:R58N1", "b", {}))}
    assert resolve("android:R58N1", regs).host == "b"
    assert resolve("local:a:cpu0", regs).target == "cpu-1core:0"  # by device id
    with pytest.raises(UserError, match="names 2 devices.*by its device id"):
        resolve("cpu-1core:0", regs)
    with pytest.raises(session.DeviceUnreachable, match="no host of the cluster registered android:X.*android:R58N1"):
        resolve("android:X", regs)


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.delitem(sys.modules, "harness.measure.lab.driver", raising=False)
    with pytest.raises(UserError, match=r"--executor ray needs Ray .*pip install 'splitbench\[ray\]'"):
        factory.make_executor("ray", load_spec(FIXTURES / "tiny.toml"))


def test_an_address_where_no_cluster_answers_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    from harness.cli import main
    from tests.loopback_adb import free_port

    spec = tmp_path / "tiny.toml"
    spec.write_text((FIXTURES / "tiny.toml").read_text())
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    address = f"127.0.0.1:{free_port()}"
    code = main(["run", str(spec), "--out", str(tmp_path / "out"), "--executor", "ray", "--ray-address", address])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert f"no Ray cluster answers at {address}" in err and "splitbench cluster start-head" in err


def test_device_side_imports_neither_torch_nor_an_exporter():
    code = ("import sys, harness.measure.lab.device_host, harness.measure.session, harness.measure.lab.cluster, device_agents.local.agent; "
            "print([m for m in ('torch', 'onnx', 'harness.export.stage', 'harness.split.configurations', 'ray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    assert out.strip() == "[]"


def test_ray_start_command_of_a_device_server():
    from harness.measure.lab.cluster import ServeOptions, ray_start_command

    head = ray_start_command(ServeOptions(head=True, port=6380), {"phone:local:h:cpu1": 1.0})
    assert head[1:] == ["start", "--block", "--disable-usage-stats", '--resources={"phone:local:h:cpu1": 1.0}',
                        "--head", "--port=6380", "--include-dashboard=false"]
    host = ray_start_command(ServeOptions(head=False, address="10.0.0.1:6380"), {})
    assert host[-1] == "--address=10.0.0.1:6380" and "--head" not in host


# --------------------------------------------------------------------------------------------------
# The lab


class _FileArtifact(FakeArtifact):
    """A scripted artifact with real bytes, so it can travel to a host and be checked there."""

    def ref(self) -> ArtifactRef:
        return ArtifactRef.from_path(self.path, key=self.key, backend=self.backend)


def _fake_export(folder: Path):
    def export(spec, *, progress):
        out = []
        for c in configurations(spec):
            for b in spec.export.backends:
                path = folder / f"{c.name}__{b}.bin"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(f"{c.name} {b}".encode() * 50)
                out.append(_FileArtifact(config=c, backend=b, key=f"key-{c.name}-{b}", path=path))
        return out

    return export


@dataclasses.dataclass
class Lab:
    cluster: object
    address: str
    nodes: dict
    regs: dict
    tmp: Path
    phone: object = None  # the loopback Android phone of node C
    android: dict = dataclasses.field(default_factory=dict)  # its [android] table

    def add(self, name: str) -> None:
        """Start node ``name`` with its devices and register them (a host joining)."""
        regs = self.regs[name]
        node = self.cluster.add_node(num_cpus=0, resources=device_host.node_resources(regs))
        self.nodes[name] = node
        _register([dataclasses.replace(r, node_id=node.node_id) for r in regs], self.address)


def _register(regs, address):
    from harness.measure.lab import driver

    driver.connect(address)
    try:
        device_host.register(regs)
    finally:
        driver.disconnect()


def _fake(device_id: str, host: str, **options) -> Registration:
    return Registration(device_id, device_id, host, {"name": f"scripted {device_id}"}, options, OPENER)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    env = {**lab_env(tmp, "rt"), "SPLITBENCH_ADB_KEY": str(tmp / "adbkey" / "adbkey")}  # never the user's ~/.android
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    reload_ray_auth()  # Ray read RAY_AUTH_MODE when it was imported (as a lab's driver has it from the start)

    # Node processes inherit this environment: their workers import splitbench from this checkout.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    local = {cpu: device_host.host_registrations([f"cpu-1core:{cpu}"])[0][0] for cpu in (0, 1)}
    regs = {"A": [local[0], _fake("fake:a1", "hostA", slow_s=SLOW_S)],
            "B": [local[1], _fake("fake:b1", "hostB", slow_s=SLOW_S),
                  _fake("fake:v1", "hostB", vanish_after=2)],
            "C": [_fake("fake:c1", "hostC", slow_s=SLOW_S)]}
    the_lab = Lab(cluster, cluster.address, {}, regs, tmp)
    try:
        with LoopbackPhone(tmp / "phone") as phone:
            the_lab.phone, the_lab.android = phone, _android_options(tmp)
            regs["C"].insert(0, device_host.host_registrations([f"android:{phone.address}"],
                                                                 options={"android": the_lab.android})[0][0])
            for name in regs:
                the_lab.add(name)
            yield the_lab
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        mp.undo()
        reload_ray_auth()
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def _android_options(tmp: Path) -> dict:
    """The spec's [android] table for the loopback phone: the tools' stand-ins, fast cool-down polls."""
    tools = {k: str(v) for k, v in write_tool_wrappers(tmp / "android-tools").items()}
    return {**FAST, "tools": tools}


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """Scripted export (real files), no figures, no cloud timing: the run is the executor's."""
    monkeypatch.setattr(orchestrate, "export_artifacts", _fake_export(tmp_path / "art"))
    monkeypatch.setattr(orchestrate, "POST_RUN", ())


def _spec(targets, runs: int = 8):
    spec = load_spec(FIXTURES / "tiny.toml")
    return dataclasses.replace(spec, run=dataclasses.replace(spec.run, targets=tuple(targets), runs=runs))


def _run(lab, spec, out, **kw):
    return orchestrate.run_spec(spec, out, progress=False, executor="ray", ray_address=lab.address, **kw)


def _by_device(records):
    out: dict[str, list] = {}
    for r in records:
        out.setdefault(r.device_id, []).append(r)
    return out


def _wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _records_of(out: Path, device_id: str) -> list:
    folder = out / "records"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.glob("*.json"):
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("identity", {}).get("device_id") == device_id:
            found.append(p.name)
    return found


@pytest.mark.slow
def test_a_spec_across_three_hosts_gives_the_serial_records(lab, tmp_path, monkeypatch):
    """The real stack: a tiny model exported here, measured on CPU 0 of node A, CPU 1 of node B and the
    loopback phone of node C, its bytes sent through the object store; the same records (keys,
    identities, statuses) as the serial and devices executors on the same devices, and the hosts never
    import torch or an exporter."""
    monkeypatch.setenv("SPLITBENCH_RAY_ARTIFACTS", "object-store")
    monkeypatch.setattr(orchestrate, "POST_RUN", ())
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    cache = os.environ.get("SPLITBENCH_CACHE") or str(tmp_path / "cache")
    text = (FIXTURES / "tiny.toml").read_text().replace('backends = ["onnx", "litert"]', 'backends = ["onnx"]')
    text = text.replace('cuts = ["conv1", "conv2"]', 'cuts = ["conv2"]')  # conv2 and on-premise: 2 jobs a device
    phone = f"android:{lab.phone.address}"
    text = text.replace('targets = ["cpu-1core"]', f'targets = ["cpu-1core:0", "cpu-1core:1", "{phone}"]')
    text += "\n[android]\n" + "".join(f"{k} = {v}\n" for k, v in FAST.items())
    text += "\n[android.tools]\n" + "".join(f'{k} = "{v}"\n' for k, v in lab.android["tools"].items())
    (tmp_path / "tiny.toml").write_text(text.replace("[export]\n", f'[export]\ncache_dir = "{cache}"\n'))
    spec = load_spec(tmp_path / "tiny.toml")

    imported = {}
    from harness.measure.lab.driver import RayExecutor

    class Probe(RayExecutor):  # asks each host what it imported before the actors go
        def close(self):
            import ray

            names = ["torch", "onnx", "harness.export.stage", "harness.split.configurations", "harness.orchestrate"]
            for r in self.remotes.values():
                imported[r.reg.device_id] = ray.get(r.actor.imported.remote(names))
            super().close()

    monkeypatch.setattr("harness.measure.lab.driver.RayExecutor", Probe)
    runs = {name: orchestrate.run_spec(spec, tmp_path / name, progress=False, executor=name, ray_address=lab.address)
            for name in ("serial", "devices", "ray")}
    for name, outcome in runs.items():
        assert outcome.exit_code == 0, (name, [(r.config, r.device_id, r.status, r.reason) for r in outcome.records])
        assert len(outcome.records) == 6

    def essence(records):
        return sorted((r.record_key, json.dumps(r.identity.to_dict(), sort_keys=True), r.status) for r in records)

    assert essence(runs["ray"].records) == essence(runs["serial"].records) == essence(runs["devices"].records)
    local = {lab.regs["A"][0].device_id, lab.regs["B"][0].device_id}
    assert {r.device_id for r in runs["ray"].records} == local | {lab.phone.serial}
    for r in runs["ray"].records:
        if r.device_id in local:  # measured from the host's content cache, not the driver's path
            assert r.job["artifact_path"].startswith(os.environ["SPLITBENCH_DEVICE_CACHE"]), r.job["artifact_path"]
            assert list(r.result["pinned_cpus"]) == [int(r.device_id[-1])]
        else:  # pushed to the phone by its agent, from the host's cache
            assert r.target == "android" and r.job["artifact_path"].startswith("/data/local/tmp")
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["executor"]["name"] == "ray" and manifest["executor"]["artifacts"] == "object-store"
    nodes = {d["node_id"] for d in manifest["executor"]["devices"].values()}
    assert nodes == {lab.nodes[n].node_id for n in "ABC"}
    assert json.loads((tmp_path / "serial" / "manifest.json").read_text())["executor"] == {"name": "serial"}
    assert imported and all(not any(v.values()) for v in imported.values()), imported


@pytest.mark.slow
def test_a_host_lost_mid_run_keeps_its_records_and_resume_completes(lab, fakes, tmp_path):
    out = tmp_path / "out"
    spec = _spec(["fake:a1", "fake:c1"])
    result = {}
    runner = threading.Thread(target=lambda: result.update(outcome=_run(lab, spec, out)))
    runner.start()
    _wait_for(lambda: len(_records_of(out, "fake:c1")) >= 1)
    lab.cluster.remove_node(lab.nodes["C"])  # host C is unplugged from the network
    seen = set(_records_of(out, "fake:c1"))
    runner.join(timeout=120)
    outcome = result["outcome"]

    assert outcome.exit_code == 4 and set(outcome.lost) == {"fake:c1"}
    assert "lost" in outcome.lost["fake:c1"]
    on_disk = _by_device(store.load_records(out))
    assert len(on_disk["fake:a1"]) == N_JOBS  # the other host finished
    done_c1 = len(on_disk["fake:c1"])
    assert seen <= set(_records_of(out, "fake:c1")) and 1 <= done_c1 < N_JOBS  # nothing written was lost
    assert outcome.not_attempted == N_JOBS - done_c1  # jobs never attempted have no row
    assert all(r.status == "ok" for r in store.load_records(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "device lost" and manifest["counts"]["not_attempted"] == N_JOBS - done_c1

    from harness.measure.lab.cluster import cluster_status

    state = cluster_status(lab.address)
    assert {d.device_id for d in state.lost} == {"fake:c1", lab.phone.serial}  # node C carried both

    lab.add("C")  # the host is back and joins again
    before = {p.name: p.read_text() for p in (out / "records").glob("*.json")}
    again = _run(lab, spec, out, resume=True)
    assert again.exit_code == 0 and again.measured == N_JOBS - done_c1
    after = {p.name: p.read_text() for p in (out / "records").glob("*.json")}
    assert len(after) == 2 * N_JOBS and all(after[k] == v for k, v in before.items())
    assert {r.device_id for r in store.load_records(out)} == {"fake:a1", "fake:c1"}  # never moved


@pytest.mark.slow
def test_a_device_lost_on_its_host_stops_only_its_jobs(lab, fakes, tmp_path):
    out = tmp_path / "out"
    outcome = _run(lab, _spec(["fake:a1", "fake:v1"]), out)
    assert outcome.exit_code == 4 and outcome.lost == {"fake:v1": "unplugged (scripted)"}
    on_disk = _by_device(store.load_records(out))
    assert len(on_disk["fake:a1"]) == N_JOBS and len(on_disk["fake:v1"]) == 1
    assert outcome.not_attempted == N_JOBS - 1


@pytest.mark.slow
def test_two_runs_at_once_never_share_a_device(lab, fakes, tmp_path, capfd):
    specs = {"one": _spec(["fake:a1", "fake:b1"]), "two": _spec(["fake:b1", "fake:c1"])}
    outcomes = {}
    threads = [threading.Thread(target=lambda n=n: outcomes.update({n: _run(lab, specs[n], tmp_path / n)}))
               for n in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert {n: o.exit_code for n, o in outcomes.items()} == {"one": 0, "two": 0}

    def spans(name):
        from datetime import datetime

        return [(datetime.fromisoformat(r.started_at).timestamp(),
                 datetime.fromisoformat(r.started_at).timestamp() + r.duration_s)
                for r in outcomes[name].records if r.device_id == "fake:b1"]

    one, two = spans("one"), spans("two")
    assert len(one) == len(two) == N_JOBS
    # every job of one run on fake:b1 ended before any of the other's started (or the other way round)
    assert max(e for _, e in one) <= min(s for s, _ in two) or max(e for _, e in two) <= min(s for s, _ in one)


@pytest.mark.slow
def test_driver_interrupted_stops_the_hosts_and_writes_nothing_half(lab, fakes, tmp_path, ctrl_c_raises):
    from harness.cli import main

    out = tmp_path / "out"
    spec = _spec(["fake:a1", "fake:b1"])

    def interrupt():
        _wait_for(lambda: len(_records_of(out, "fake:a1")) >= 2)
        _thread.interrupt_main()  # Ctrl-C in the driver

    threading.Thread(target=interrupt, daemon=True).start()
    outcome = _run(lab, spec, out)
    assert outcome.exit_code == 130 and outcome.interrupted
    kept = store.load_records(out)  # every file on disk is a whole record
    assert 2 <= len(kept) < 2 * N_JOBS
    assert not [p for p in (out / "records").iterdir() if p.name.startswith(".")]
    from harness.measure.lab.cluster import cluster_status

    state = cluster_status(lab.address)  # the devices were released
    states = {d.device_id: d.state for h in state.hosts for d in h.devices}
    assert states["fake:a1"] == states["fake:b1"] == "free"
    assert main(["cluster", "status", "--address", lab.address]) == 0

    again = _run(lab, spec, out, resume=True)
    assert again.exit_code == 0 and len(again.records) == 2 * N_JOBS
    assert again.measured == 2 * N_JOBS - len(kept)
