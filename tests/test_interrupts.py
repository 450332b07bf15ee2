"""SIGTERM and SIGHUP end `splitbench run` as Ctrl-C does (issue 21, defect 12): records kept, the lock released,
one closing line, exit 130, and a directory `--resume` completes. A real `splitbench` process, sent a real signal
while it measures (scripted devices, so the run is slow enough to be caught mid-way)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core import exitcodes
from harness.results import store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# The CLI in a child process, with the orchestrator's test seams set: scripted artifacts and a slow fake agent.
DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from harness import cli, orchestrate
from harness.measure import executors
from harness.split.configurations import configurations
from tests.fakes import FakeAgent, FakeArtifact

art = Path(sys.argv[3])

def export(spec, *, progress):
    return [FakeArtifact(config=c, backend=b, key=f"key-{c.name}-{b}", path=art / f"{c.name}__{b}.bin")
            for c in configurations(spec) for b in spec.export.backends]

orchestrate.export_artifacts = export
orchestrate.POST_RUN = ()
agent = FakeAgent(slow_s=float(sys.argv[4]))
executors.open_agent = lambda target, **options: agent
sys.exit(cli.main(["run", str(Path(sys.argv[1]) / "tests" / "fixtures" / "tiny.toml"), "--out", sys.argv[2],
                   *sys.argv[5:]]))
"""


def _start(out: Path, tmp_path: Path, slow_s: float, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "SPLITBENCH_LEASE_DIR": str(tmp_path / "leases"), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(ROOT), str(out), str(tmp_path / "art"), str(slow_s),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_run_keeps_the_records_and_resume_completes(tmp_path, sig):
    out = tmp_path / "out"
    proc = _start(out, tmp_path, 0.4)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "records").glob("*.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == exitcodes.INTERRUPTED, err
    name = signal.Signals(sig).name
    assert f"interrupted by {name}:" in err and "finish with --resume" in err and "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    kept = {r.record_key: r for r in store.load_records(out)}
    assert 2 <= len(kept) < 6  # tiny.toml plans 3 configurations x 2 backends

    resumed = _start(out, tmp_path, 0.0, "--resume")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == exitcodes.OK, err  # the lock was released: the same directory, at once
    after = {r.record_key: r for r in store.load_records(out)}
    assert len(after) == 6
    assert all(after[k].to_dict() == r.to_dict() for k, r in kept.items() if r.ok)  # nothing measured is lost
