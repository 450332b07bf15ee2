"""`--executor ray` when the lab's head is lost mid-run (issue 21, defect 15): the run ends as a lost phone's does.

A simulated lab (``ray.cluster_utils.Cluster``: a head without devices, one host with two scripted phones whose
third job hangs, as tests/test_ray_executor.py builds its lab) and a driver run as a user runs it, ``splitbench
run SPEC --executor ray`` in its own process (scripted export, no post-run stages). Once both phones have
written two records, the head's GCS process is killed. Ray keeps the driver's calls to the actors going and
ends the driver's process 60 s later; the driver must notice first (its probe of the head, with the grace
``SPLITBENCH_RAY_HEAD_GRACE_S`` shortened to 2 s here), report both phones lost, write the tables and the
manifest ("device lost") and exit 4 on its own. The records on disk stay byte for byte; after a new head
and the host have joined again, ``--resume`` measures exactly the jobs that were left.

Nothing here depends on timing: the hung jobs keep the run from ending any other way, and every wait is for
a state (records on disk, the process's exit) with a generous timeout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.measure.lab import device_host
from harness.measure.lab.device_host import Registration
from tests.fakes import record_hashes
from tests.ray_fakes import OPENER, lab_env, reload_ray_auth

FIXTURES = Path(__file__).parent / "fixtures"
N_JOBS = 6  # tiny.toml: 3 configurations x 2 backends per phone
PHONES = ("fake:h1", "fake:h2")

# The driver, as `splitbench run` with the export scripted (real files, so they can travel to the host).
DRIVER = r'''
import sys
from pathlib import Path

from device_agents.base import ArtifactRef
from harness import orchestrate
from harness.cli import main
from harness.split.configurations import configurations
from tests.fakes import FakeArtifact


class FileArtifact(FakeArtifact):
    def ref(self):
        return ArtifactRef.from_path(self.path, key=self.key, backend=self.backend)


def export(spec, *, progress):
    out = []
    for c in configurations(spec):
        for b in spec.export.backends:
            path = Path(sys.argv[1]) / f"{c.name}__{b}.bin"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(f"{c.name} {b}".encode() * 50)
            out.append(FileArtifact(config=c, backend=b, key=f"key-{c.name}-{b}", path=path))
    return out


orchestrate.export_artifacts = export
orchestrate.POST_RUN = ()
sys.exit(main(sys.argv[2:]))
'''


class Lab:
    """A head without devices and one host carrying the scripted phones (a new cluster each time it starts)."""

    def __init__(self, tmp: Path):
        self.tmp, self.cluster, self.host = tmp, None, None

    def start(self, **phone_options) -> str:
        from ray.cluster_utils import Cluster

        from harness.measure.lab import driver

        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        regs = [Registration(p, p, "hostH", {"name": f"scripted {p}"}, dict(phone_options), OPENER) for p in PHONES]
        self.host = self.cluster.add_node(num_cpus=0, resources=device_host.node_resources(regs))
        driver.connect(self.cluster.address)
        try:
            device_host.register([Registration(r.device_id, r.target, r.host, r.info, r.options, r.opener,
                                               node_id=self.host.node_id) for r in regs])
        finally:
            driver.disconnect()
        return self.cluster.address

    def kill_gcs(self) -> None:
        """The head is lost: its GCS process dies (as an OOM kill or a crash of the head's Ray would)."""
        from ray._private import ray_constants

        (gcs,) = self.cluster.head_node.all_processes[ray_constants.PROCESS_TYPE_GCS_SERVER]
        gcs.process.kill()
        gcs.process.wait(timeout=30)

    def stop(self) -> None:
        if self.cluster is None:
            return
        for node in [*self.cluster.worker_nodes, self.cluster.head_node]:  # its processes, at once (no GCS to ask)
            if node is not None:
                self.cluster.remove_node(node, allow_graceful=False)
        self.cluster = None


@pytest.fixture
def lab(tmp_path, monkeypatch):
    env = {**lab_env(tmp_path, "rh"), "SPLITBENCH_RAY_HEAD_GRACE_S": "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    pytest.importorskip("ray")
    reload_ray_auth()
    the_lab = Lab(tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.stop()
        monkeypatch.undo()
        reload_ray_auth()
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def _per_phone(out: Path) -> dict[str, int]:
    counts = dict.fromkeys(PHONES, 0)
    for p in (out / "records").glob("*.json") if (out / "records").is_dir() else ():
        try:
            counts[json.loads(p.read_text())["identity"]["device_id"]] += 1
        except (OSError, ValueError, KeyError):
            continue  # being renamed into place
    return counts


def _driver(tmp: Path, address: str, out: Path, *extra: str) -> subprocess.Popen:
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    argv = ["run", str(tmp / "tiny.toml"), "--out", str(out), "--executor", "ray", "--ray-address", address, *extra]
    return subprocess.Popen([sys.executable, str(script), str(tmp / "art"), *argv], cwd=tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_the_head_lost_mid_run_ends_as_a_lost_device_and_resume_completes(lab, tmp_path):
    spec = (FIXTURES / "tiny.toml").read_text().replace('targets = ["cpu-1core"]',
                                                         f'targets = {json.dumps(list(PHONES))}')
    (tmp_path / "tiny.toml").write_text(spec.replace("runs = 5", "runs = 8"))
    shutil.copy(FIXTURES / "tiny_model.py", tmp_path / "tiny_model.py")
    out = tmp_path / "out"

    address = lab.start(block_after=3)  # each phone's third job hangs: the run cannot end by itself
    proc = _driver(tmp_path, address, out)
    deadline = time.monotonic() + 300
    while not all(n >= 2 for n in _per_phone(out).values()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the phones never wrote two records each"
        time.sleep(0.2)
    before = record_hashes(out)
    lab.kill_gcs()
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()

    # exit 4 on its own (Ray would have ended it 60 s after the GCS died, with another code and no closing line)
    assert proc.returncode == 4, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    lines = stderr.splitlines()
    for phone in PHONES:
        assert any(ln.startswith(f"device {phone} is unavailable (the lab's head at ") and "stopped answering" in ln
                   and "remaining job(s) were not measured" in ln for ln in lines), stderr
    assert any(ln.startswith("lost: fake:h1 (the lab's head") for ln in lines), stderr
    assert record_hashes(out) == before and len(before) == 4  # nothing written was changed, nothing half-written
    assert not [p for p in (out / "records").iterdir() if p.name.startswith(".")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "device lost" and set(manifest["lost"]) == set(PHONES)
    assert manifest["counts"]["not_attempted"] == 2 * N_JOBS - 4 and manifest["counts"]["ok"] == 4
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4  # the tables were written from the records

    # The head is back (a new cluster), the host joins again: --resume measures exactly what was left.
    lab.stop()
    address = lab.start()
    proc = _driver(tmp_path, address, out, "--resume")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    after = record_hashes(out)
    assert len(after) == 2 * N_JOBS and all(after[k] == v for k, v in before.items())
    assert _per_phone(out) == dict.fromkeys(PHONES, N_JOBS)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_head_watch_counts_silence_from_the_first_probe_that_fails():
    from harness.measure.lab.driver import HeadWatch

    answers = [True, False, False, True]
    watch = HeadWatch("10.0.0.1:6379", probe_s=0.0, connect=lambda host, port, timeout: answers.pop(0))
    assert (watch.host, watch.port) == ("10.0.0.1", 6379)
    assert watch.silent_for() == 0.0
    first = watch.silent_for()
    assert first == 0.0 and watch.silent_for() >= first  # silent since the first failed probe
    assert watch.silent_for() == 0.0  # it answers again: no loss


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "60", "soon"])
def test_a_head_grace_out_of_range_is_one_line(monkeypatch, raw):
    pytest.importorskip("ray")
    from harness.core.errors import UserError
    from harness.measure.lab.driver import head_grace_s

    monkeypatch.setenv("SPLITBENCH_RAY_HEAD_GRACE_S", raw)
    with pytest.raises(UserError, match=r"SPLITBENCH_RAY_HEAD_GRACE_S=.*in \(0, 45\]"):
        head_grace_s()
    monkeypatch.setenv("SPLITBENCH_RAY_HEAD_GRACE_S", "5")
    assert head_grace_s() == 5.0
