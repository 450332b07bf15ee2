"""Agent contract v2 end to end, with scripted devices: what phones need from the orchestrator.

- an aggregate-only result (a phone tool's summary) flows through summary, figures, report and recommend,
  marked as such and never expanded into samples;
- a device that vanishes mid-run stops only its own jobs (no row for what it never attempted), the run
  exits DEVICE_LOST, and --resume completes it when it is back;
- two devices with the same target are two rows everywhere;
- one writer per results directory, one run per device, a full disk and a read-only directory are one
  line each and every record already written stays valid; files get the user's umask;
- results are checked when made; usage errors are one line with their own exit code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from device_agents.base import (OK, Aggregate, ContractError, MeasureJob, MeasureResult, MemoryReading)
from harness import orchestrate
from harness.measure import executors
from harness.core import exitcodes
from harness.results import store
from harness.cli import main
from harness.core.errors import UserError
from harness.results.records import ResultRecord, upgrade_v1
from harness.config.spec import load_spec
from tests.fakes import AGGREGATE, FakeAgent, fake_export

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent


def _spec(tmp_path: Path, targets=("cpu-1core",), backends=("onnx", "litert"), runs=8):
    spec = load_spec(FIXTURES / "tiny.toml")
    return dataclasses.replace(
        spec, export=dataclasses.replace(spec.export, backends=tuple(backends), cache_dir=tmp_path / "cache"),
        run=dataclasses.replace(spec.run, runs=runs, warmup=2, warm_loads=3, targets=tuple(targets)))


@pytest.fixture
def lab(monkeypatch, tmp_path):
    """Install scripted devices by spec target; returns a function taking {target: FakeAgent}."""
    monkeypatch.setenv("SPLITBENCH_LEASE_DIR", str(tmp_path / "leases"))

    def setup(agents: dict[str, FakeAgent], *, cloud=False):
        monkeypatch.setattr(orchestrate, "export_artifacts", fake_export(tmp_path / "art"))
        monkeypatch.setattr(executors, "open_agent", lambda target, **options: agents[target])
        if not cloud:
            # cloud and privacy need a real model; the report stays
            monkeypatch.setattr(orchestrate, "POST_RUN", tuple(s for s in orchestrate.POST_RUN if s.name == "report"))
        return agents

    return setup


def _run(spec, out, **kw):
    return orchestrate.run_spec(spec, out, progress=False, **kw)


# --------------------------------------------------------------------------------------------------
# An aggregate-only device


def test_aggregate_only_rows_flow_through_summary_figures_report_and_recommend(lab, tmp_path, capsys):
    phone = FakeAgent(target="android", device_id="PHONE1", script={(c, "litert"): AGGREGATE for c in
                                                                    ("conv1-simple", "conv2-simple", "full")})
    lab({"android:PHONE1": phone})
    out = tmp_path / "out"
    outcome = _run(_spec(tmp_path, targets=("android:PHONE1",)), out)
    assert outcome.exit_code == exitcodes.OK

    summary = pd.read_csv(out / "summary.csv")
    agg = summary[summary["backend"] == "litert"]
    assert (agg["timing_kind"] == "aggregate").all() and (agg["aggregate_tool"] == "benchmark_model (fake)").all()
    assert (agg["n_runs"] == 8).all() and agg["infer_ms_median"].notna().all()
    assert agg["infer_ms_iqr"].isna().all() and agg["infer_ms_p90"].isna().all()  # the tool gave neither
    assert (summary[summary["backend"] == "onnx"]["timing_kind"] == "samples").all()
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples[samples["phase"] == "timed"]["backend"]) == {"onnx"}  # an aggregate has no samples
    record = next(r for r in store.load_records(out) if r.backend == "litert")
    assert record.result["infer_ns"] == [] and record.result["infer_aggregate"]["n"] == 8

    svg = (out / "figures" / "infer_box.svg").read_text()
    assert "aggregate" in svg and "litert on android" in svg
    html = (out / "report.html").read_text()
    assert "aggregate" in html and "PHONE1" in html

    assert main(["recommend", str(out), "--max-latency-ms", "500"]) == exitcodes.OK
    printed = capsys.readouterr().out
    assert "privacy not scored" in printed and "(tool aggregate)" in printed


def test_an_aggregate_is_checked_against_the_job():
    job = MeasureJob(artifact_path="m", backend="litert", input_shape=(1,), runs=60)
    ok = MeasureResult(status=OK, infer_aggregate=Aggregate(n=60, mean_ns=1e6, tool="t"))
    ok.check(job)
    with pytest.raises(ContractError, match="60 timed runs.*59 runs in the aggregate"):
        MeasureResult(status=OK, infer_aggregate=Aggregate(n=59, mean_ns=1e6, tool="t")).check(job)
    with pytest.raises(ContractError, match="samples and an aggregate"):
        MeasureResult(status=OK, infer_ns=(1,), infer_aggregate=Aggregate(n=1, mean_ns=1.0, tool="t"))
    with pytest.raises(ContractError, match="unknown result field"):
        MeasureResult.from_dict({"status": "ok", "extra": {}})
    with pytest.raises(ContractError, match="unknown memory method"):
        MemoryReading("guessed")
    with pytest.raises(ContractError, match="cold load without its cold_method"):
        MeasureResult(status=OK, infer_ns=tuple([1] * 60), load_cold_ns=5).check(job)


def test_a_result_breaking_the_contract_is_a_failed_row(lab, tmp_path):
    class ShortAgent(FakeAgent):
        def measure(self, job):
            return dataclasses.replace(super().measure(job), infer_ns=(1_000_000,) * (job.runs - 1))

    lab({"cpu-1core": ShortAgent()})
    out = tmp_path / "out"
    assert _run(_spec(tmp_path), out).exit_code == exitcodes.CONFIG_FAILED
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["status"] == "failed").all()
    assert summary["reason"].str.contains("broke the contract: the job asked for 8 timed runs").all()


# --------------------------------------------------------------------------------------------------
# A device lost mid-run; two devices with one target


@pytest.mark.parametrize("executor", ["serial", "devices"])
def test_a_lost_device_stops_only_its_jobs_and_resume_completes(lab, tmp_path, executor, capsys):
    a = FakeAgent(target="android", device_id="PHONE_A", vanish_after=3)
    b = FakeAgent(target="android", device_id="PHONE_B")
    lab({"android:PHONE_A": a, "android:PHONE_B": b})
    spec = _spec(tmp_path, targets=("android:PHONE_A", "android:PHONE_B"))
    out = tmp_path / "out"
    outcome = _run(spec, out, executor=executor)
    assert outcome.exit_code == exitcodes.DEVICE_LOST
    assert outcome.lost == {"PHONE_A": "unplugged (scripted)"}
    records = store.load_records(out)
    assert sum(r.device_id == "PHONE_A" for r in records) == 2  # measured before it vanished, kept
    assert sum(r.device_id == "PHONE_B" for r in records) == 6  # the other phone finished everything
    assert outcome.not_attempted == 4 and all(r.ok for r in records)  # no row for what was never tried
    err = capsys.readouterr().err
    assert "PHONE_A is unavailable" in err and "4 remaining" in err and "--resume" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "device lost" and manifest["lost"] == {"PHONE_A": "unplugged (scripted)"}
    assert a.closed == 1 and b.closed == 1  # sessions closed (the agents undo their changes)

    back = FakeAgent(target="android", device_id="PHONE_A")
    again = FakeAgent(target="android", device_id="PHONE_B")
    lab({"android:PHONE_A": back, "android:PHONE_B": again})
    outcome = _run(spec, out, resume=True, executor=executor)
    assert outcome.exit_code == exitcodes.OK and len(back.calls) == 4 and again.calls == []
    assert len(pd.read_csv(out / "summary.csv")) == 12


def test_two_devices_with_one_target_are_two_rows_everywhere(lab, tmp_path, capsys):
    lab({"android:A": FakeAgent(target="android", device_id="SERIAL_A", speed=1.0),
         "android:B": FakeAgent(target="android", device_id="SERIAL_B", speed=2.0)})
    out = tmp_path / "out"
    assert _run(_spec(tmp_path, targets=("android:A", "android:B")), out, executor="devices").exit_code == 0
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 12 and set(summary["target"]) == {"android"}
    assert summary.groupby(["config", "backend"])["device_id"].nunique().eq(2).all()
    assert set(json.loads((out / "manifest.json").read_text())["devices"]) == {"SERIAL_A", "SERIAL_B"}
    svg = (out / "figures" / "infer_box.svg").read_text()
    assert "onnx on android (SERIAL_A)" in svg and "onnx on android (SERIAL_B)" in svg
    assert main(["recommend", str(out), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    rows = obj["fitting_others"] + [obj["choice"]]
    assert {r["device_id"] for r in rows} == {"SERIAL_A", "SERIAL_B"}
    assert obj["choice"]["device_id"] == "SERIAL_A"  # twice as fast: the faster phone's cut is chosen


def test_the_same_device_named_twice_is_refused(lab, tmp_path):
    one = FakeAgent(target="android", device_id="SAME")
    lab({"android": one, "android:SAME": one})
    with pytest.raises(UserError, match="same device"):
        _run(_spec(tmp_path, targets=("android", "android:SAME")), tmp_path / "out")


# --------------------------------------------------------------------------------------------------
# The results store


def test_a_second_run_into_the_same_directory_is_refused_while_the_first_writes(lab, tmp_path):
    lab({"cpu-1core": FakeAgent(slow_s=0.3)})
    out = tmp_path / "out"
    first = threading.Thread(target=_run, args=(_spec(tmp_path), out))
    first.start()
    deadline = time.monotonic() + 20
    while not (out / store.LOCK_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    with pytest.raises(store.ResultsBusy, match="being written by another splitbench run.*pid"):
        _run(_spec(tmp_path), out)
    first.join()
    assert len(store.load_records(out)) == 6  # the first run was not disturbed


def test_concurrent_cli_runs_one_waits_on_nothing_and_exits_busy(tmp_path):
    """Two real processes: the second says so in one line and exits BUSY; the first completes."""
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from harness.results.store import ResultsLock; "
        "from pathlib import Path\nwith ResultsLock(Path(sys.argv[2])):\n print('held', flush=True); time.sleep(30)"),
        str(ROOT), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(FIXTURES / "tiny.toml"), "--out",
                               str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == exitcodes.BUSY
    assert proc.stderr.strip().count("\n") == 0 and "another splitbench run" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_device_lease_makes_a_second_run_wait(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITBENCH_LEASE_DIR", str(tmp_path))
    said = []
    with store.device_lease("phone:1"):
        with pytest.raises(store.ResultsBusy, match="phone:1 is in use"):
            with store.device_lease("phone:1", say=said.append, timeout_s=0.3, poll_s=0.05):
                pass
    assert said and "waiting for device phone:1" in said[0]
    with store.device_lease("phone:1", timeout_s=0.1):
        pass  # released: free again


def test_files_get_the_users_umask(lab, tmp_path):
    lab({"cpu-1core": FakeAgent()})
    out = tmp_path / "out"
    _run(_spec(tmp_path), out)
    mask = os.umask(0)
    os.umask(mask)
    for path in [out / "summary.csv", out / "manifest.json", *(out / "records").glob("*.json")]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs: a results directory on a full disk (needs root to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_every_record_written_stays_valid(lab, tmp_path, tiny_disk, capsys):
    class Bulky(FakeAgent):
        """Each result carries ~200 kB of diagnostics: the 1 MB disk fills after a few records."""

        def measure(self, job):
            return dataclasses.replace(super().measure(job), diagnostics={"blob": "x" * 200_000})

    lab({"cpu-1core": Bulky()})
    out = tiny_disk / "out"
    spec = _spec(tmp_path)
    with pytest.raises(store.ResultsWriteError, match="the disk is full.*intact.*--resume") as err:
        _run(spec, out)
    assert err.value.exit_code == exitcodes.WRITE_FAILED
    written = list((out / "records").glob("*.json"))
    assert written, "some records fit before the disk filled"
    for path in written:
        ResultRecord.from_dict(json.loads(path.read_text()))  # whole, never half-written
    assert not list((out / "records").glob(".*.tmp"))  # no temporary file left behind
    # through the CLI: one line, its exit code, no traceback
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text((FIXTURES / "tiny.toml").read_text().replace("[export]\n", f'[export]\ncache_dir = '
                                                                     f'"{tmp_path / "cache"}"\n'))
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    capsys.readouterr()
    assert main(["run", str(spec_path), "--out", str(tiny_disk / "out2")]) == exitcodes.WRITE_FAILED
    captured = capsys.readouterr().err.strip().splitlines()
    assert captured[-1].startswith("error: cannot write") and "Traceback" not in "\n".join(captured)


def test_a_read_only_results_directory_is_one_line_and_keeps_what_was_written(lab, tmp_path, tiny_disk):
    lab({"cpu-1core": FakeAgent()})
    out = tiny_disk / "out"
    spec = _spec(tmp_path)
    assert _run(spec, out).exit_code == exitcodes.OK
    before = sorted(p.read_bytes() for p in (out / "records").glob("*.json"))
    assert subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], capture_output=True).returncode == 0
    with pytest.raises(store.ResultsWriteError, match="read-only"):
        _run(spec, out, resume=True)
    assert sorted(p.read_bytes() for p in (out / "records").glob("*.json")) == before


# --------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["bogus"], ["recommend"], ["run", "x.toml", "--runs", "many"]])
def test_usage_errors_are_one_line_with_the_usage_exit_code(argv):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == exitcodes.USAGE, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr
    assert "--help" in lines[0]


def test_exit_codes_never_collide_and_are_documented():
    codes = [code for code, _ in exitcodes.TABLE]
    assert len(codes) == len(set(codes))
    readme = (ROOT / "README.md").read_text()
    for code, what in exitcodes.TABLE:
        assert f"| {code} |" in readme, f"README's exit code table lacks {code} ({what})"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert "Exit codes" in proc.stdout and "130" in proc.stdout


def test_a_version_1_record_is_read_by_upgrading_it():
    v1 = {"schema_version": 1, "record_key": "k", "model": "m", "cut": "c", "embedding": "simple", "config": "c-simple",
          "order": 0, "backend": "onnx", "target": "cpu-1core", "artifact_key": "a", "artifact_path": None,
          "artifact_bytes": 10, "result": {"status": "ok", "infer_ns": [1, 2, 3], "rss_before_load_b": 10,
                                            "rss_after_load_b": 20, "rss_peak_b": 25, "cold_cache_dropped": True,
                                            "load_cold_ns": 5, "extra": {"worker_pid": 1}, "runtime": {"onnxruntime": "1.2"}}}
    record = ResultRecord.from_dict(v1)
    assert record.device_id == "v1:cpu-1core" and record.identity.runtime_version == "onnxruntime 1.2"
    assert record.result["memory"][0] == {"method": "vmhwm_in_process", "before_load_b": 10, "after_load_b": 20,
                                          "peak_b": 25, "detail": {}}
    assert record.result["cold_method"] == "fadvise_dontneed" and record.result["diagnostics"] == {"worker_pid": 1}
    MeasureResult.from_dict(upgrade_v1(v1)["result"])  # the upgraded result is a valid contract-v2 result
