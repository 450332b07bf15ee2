"""`splitbench run SPEC --target android:127.0.0.1:<port>` end to end on the loopback phone, through the
CLI and the real orchestrator: the same records, tables, figures, report and recommendation as
``cpu-1core`` (both targets in one run, on the devices executor), every Android field filled or marked
as not obtained; then the faults through a run: a crashed and a hung tool (rows, the run goes on), the
phone unplugged mid-run and a full phone (that device stops, ``--resume`` completes the run after
reconnecting)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.core import exitcodes
from harness.results import store
from harness.cli import main
from tests.android_fixtures import FAST, _adb_key, alive, needs_adb, needs_userland, phone  # noqa: F401

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), needs_userland]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One export cache for the module: the tiny spec's artifacts are exported once."""
    return tmp_path_factory.mktemp("export_cache")


def write_spec(directory: Path, cache: Path, tools: dict, *, cuts=("conv1", "conv2"), backends=("onnx", "litert"),
               timeout_s: float = 120, privacy: bool = False, via: str | None = None) -> Path:
    (directory / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    text = (FIXTURES / "tiny.toml").read_text()
    text = text.replace('cuts = ["conv1", "conv2"]', f"cuts = {json.dumps(list(cuts))}")
    text = text.replace('backends = ["onnx", "litert"]', f"backends = {json.dumps(list(backends))}")
    text = text.replace("timeout_s = 120", f"timeout_s = {timeout_s:g}")
    text = text.replace("[export]\n", f'[export]\ncache_dir = "{cache}"\n')
    options = "".join(f"{k} = {v}\n" for k, v in FAST.items()) + (f'via = "{via}"\n' if via else "")
    text += f"\n[android]\n{options}\n[android.tools]\n" + "".join(f'{k} = "{v}"\n' for k, v in tools.items())
    if privacy:  # scores for the recommendation (any numbers: what is checked is that both targets get one)
        rows = [("conv1", "simple", 0.8), ("conv2", "simple", 0.6)]
        (directory / "scores.csv").write_text("model,cut,embedding,log_rank_privacy\n" + "".join(
            f"tiny_model:build,{c},{e},{p}\n" for c, e, p in rows))
        text += '\n[privacy]\ncsv = "scores.csv"\n'
    path = directory / "tiny.toml"
    path.write_text(text)
    return path


def summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv")


def test_a_run_on_the_phone_gives_what_cpu_1core_gives(tmp_path, phone, tools, cache_dir, capsys):
    spec = write_spec(tmp_path, cache_dir, tools, privacy=True)
    out = tmp_path / "out"
    target = f"android:{phone.address}"
    code = main(["run", str(spec), "--out", str(out), "--target", "cpu-1core", "--target", target,
                 "--executor", "devices"])
    s = summary(out)
    assert code == exitcodes.OK, s[["config", "backend", "target", "status", "reason"]].to_string()
    assert len(s) == 12 and (s["status"] == "ok").all()
    local, android = s[s["target"] == "cpu-1core"], s[s["target"] == "android"]
    key = ["config", "backend"]
    assert sorted(map(tuple, local[key].values)) == sorted(map(tuple, android[key].values))
    assert (android["device_id"] == phone.serial).all() and (android["threads"] == 1).all()

    # every Android field filled, or marked as not obtained
    for col in ("n_runs", "infer_ms_median", "infer_ms_min", "load_ms_cold", "load_ms_warm", "mem_peak_mb",
                "battery_c_before", "battery_c_after", "cpu_khz_before", "cpu_khz_after"):
        assert android[col].notna().all(), col
    assert (android["n_runs"] == 5).all() and (android["thermal_before"] == "NONE").all()
    assert (android["cold_method"] == "not_obtained").all()  # not rooted: the row says so
    assert android["notes"].str.contains("cold load not obtained").all()
    assert android["runtime_version"].str.contains("sha256:").all()
    lite, ort = android[android["backend"] == "litert"], android[android["backend"] == "onnx"]
    assert (lite["timing_kind"] == "aggregate").all() and (lite["aggregate_tool"] == "benchmark_model").all()
    assert (ort["timing_kind"] == "samples").all()
    assert (lite["memory_method"] == "tool_reported").all() and lite["mem_model_mb"].notna().all()
    assert (ort["memory_method"] == "proc_status_polled").all() and ort["mem_model_mb"].isna().all()
    samples = pd.read_parquet(out / "samples.parquet")
    timed = samples[samples["phase"] == "timed"]
    assert len(timed[timed["target"] == "android"]) == 5 * 3  # onnx samples; LiteRT gave a summary only

    for rec in store.load_records(out):
        r = rec.result
        if rec.identity.target != "android":
            continue
        assert r["pinned_cpus"] == [len(phone.cpu_max_khz) - 1] and "Cpus_allowed_list" in r["pinning"]
        assert r["conditions_before"]["governor"] and r["diagnostics"]["cool_wait_s"] >= 0
        assert [m["method"] for m in r["memory"]] in (["proc_status_polled", "tool_reported"],
                                                      ["tool_reported", "proc_status_polled"])
    manifest = json.loads((out / "manifest.json").read_text())
    device = manifest["devices"][phone.serial]
    assert device["spec_target"] == target and device["platform"] == "android"
    assert device["fingerprint"]["model"] == "Loopback Phone" and set(device["backends"]) >= {"onnx", "litert"}
    for fig in ("infer_box.png", "load_bars.png", "memory_bars.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    assert "android" in (out / "report.html").read_text()

    for t in ("cpu-1core", "android"):  # the recommendation, for each target
        capsys.readouterr()
        assert main(["recommend", str(out), "--target", t, "--max-latency-ms", "1000"]) == exitcodes.OK
        assert "conv" in capsys.readouterr().out
    # a new session on the same phone: --resume finds every record under the same keys
    assert main(["run", str(spec), "--out", str(out), "--target", "cpu-1core", "--target", target, "--resume",
                 "--executor", "devices"]) == exitcodes.OK
    assert len(list((out / "records").glob("*.json"))) == 12


def test_a_crashed_and_a_hung_tool_are_rows_and_the_run_goes_on(tmp_path, phone, tools, cache_dir):
    phone.set_tool_behaviour("benchmark_model", "crash", after_lines=5)
    phone.set_tool_behaviour("onnxruntime_perf_test", "hang", after_lines=1)
    spec = write_spec(tmp_path, cache_dir, tools, cuts=("conv1",), timeout_s=4)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--target", f"android:{phone.address}"]) == exitcodes.CONFIG_FAILED
    for rec in store.load_records(out):
        for call in rec.result["diagnostics"]["calls"]:
            assert not alive(call["pid"])  # the hung tool was killed on the phone
    s = summary(out).set_index(["config", "backend"])
    assert len(s) == 4
    assert (s.xs("litert", level="backend")["status"] == "crashed").all()
    assert s.xs("litert", level="backend")["reason"].str.contains("SIGSEGV").all()
    assert (s.xs("onnx", level="backend")["status"] == "timeout").all()
    assert s.xs("onnx", level="backend")["reason"].str.contains("killed on the phone").all()
    tails = [r.result["stderr_tail"] for r in store.load_records(out)]
    assert all(tails)  # the tail of each tool's output is in its row


def test_unplugged_mid_run_then_resume_completes(tmp_path, phone, tools, cache_dir, capsys):
    spec = write_spec(tmp_path, cache_dir, tools, cuts=("conv1",), backends=("onnx",))
    out = tmp_path / "out"
    target = f"android:{phone.address}"
    phone.unplug_when(r"SBR start", after_s=0.2, nth=3)  # job 1: cold + warm; job 2's cold process: unplugged
    assert main(["run", str(spec), "--out", str(out), "--target", target]) == exitcodes.DEVICE_LOST
    err = capsys.readouterr().err
    assert f"device {phone.serial} is unavailable" in err and "--resume" in err
    records = store.load_records(out)
    assert len(records) == 1 and records[0].ok  # the finished job is kept; the unattempted one has no row
    phone.replug()
    assert main(["run", str(spec), "--out", str(out), "--target", target, "--resume"]) == exitcodes.OK
    s = summary(out)
    assert len(s) == 2 and (s["status"] == "ok").all()
    assert not list(phone.device_path("/data/local/tmp/splitbench/run").iterdir())  # the stale tool was reaped


def test_a_full_phone_stops_with_one_line_and_resume_goes_on(tmp_path, phone, tools, cache_dir, capsys):
    spec = write_spec(tmp_path, cache_dir, tools, cuts=("conv1",), backends=("onnx",))
    out = tmp_path / "out"
    target = f"android:{phone.address}"
    phone.set_full()  # full before the session: the tools themselves cannot be pushed
    assert main(["run", str(spec), "--out", str(out), "--target", target]) == exitcodes.DEVICE_LOST
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "out of storage" in ln]
    assert len(lines) == 1 and f"splitbench clean --device {target}" in lines[0]
    assert not (out / "records").exists() or store.load_records(out) == []
    phone.set_full(False)
    assert main(["run", str(spec), "--out", str(out), "--target", target, "--resume"]) == exitcodes.OK
    assert (summary(out)["status"] == "ok").all()


@needs_adb
def test_a_run_through_googles_adb_server_unplugged_then_resumed(tmp_path, phone, tools, cache_dir, adb_server,
                                                                monkeypatch, capsys):
    """A desk where the adb server runs: the phone `adb connect`ed to it, the run goes through it
    (``via = "server"``); the phone unplugged mid-run stops its jobs, and ``--resume`` completes the run
    once it is back (the server reconnects it)."""
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(adb_server.port))
    assert "connected to" in adb_server.connect(phone.address)
    try:
        spec = write_spec(tmp_path, cache_dir, tools, cuts=("conv1",), backends=("onnx",), via="server")
        out = tmp_path / "out"
        target = f"android:{phone.address}"
        phone.unplug_when(r"SBR start", after_s=0.2, nth=3)  # job 1: cold + warm; job 2's cold process: unplugged
        assert main(["run", str(spec), "--out", str(out), "--target", target]) == exitcodes.DEVICE_LOST
        err = capsys.readouterr().err
        assert f"device {phone.serial} is unavailable" in err and "--resume" in err
        records = store.load_records(out)
        assert len(records) == 1 and records[0].ok
        device = json.loads((out / "manifest.json").read_text())["devices"][phone.serial]
        assert device["fingerprint"]["now"]["via"] == f"adb server 127.0.0.1:{adb_server.port}"
        phone.replug()
        assert main(["run", str(spec), "--out", str(out), "--target", target, "--resume"]) == exitcodes.OK
        s = summary(out)
        assert len(s) == 2 and (s["status"] == "ok").all()
        assert not list(phone.device_path("/data/local/tmp/splitbench/run").iterdir())  # the stale tool reaped
    finally:
        adb_server.adb("disconnect")
