"""The Android agent through the DeviceAgent API, on the loopback phone with the real adb-shell client:
each backend measured by its tool stand-in, the protocol's fields (pin, memory, conditions, cold
method), cooling, and the faults of issue 8: a hung tool, a crashed tool, the phone unplugged mid-run,
a full phone, hostile names, Ctrl-C, two phones at once; then discover, doctor and clean."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from device_agents.android import agent as A
from device_agents.android import protocol as P
from device_agents.android.agent import agent_for
from device_agents.base import FAILED, OK, TIMEOUT, AgentError, DeviceUnavailable, open_agent
from tests.android_fixtures import (FAST, _adb_key, alive, artifact_ref, job, needs_userland,  # noqa: F401
                                    phone, tiny_artifact, via)
from tests.loopback_adb import LoopbackPhone

HOSTILE = "it's \"a\" name with $(touch PWNED); `touch PWNED2` & spaces"
pytestmark = needs_userland


def agent(p: LoopbackPhone, tools: dict, only: tuple[str, ...] | None = None, **options):
    chosen = {k: v for k, v in tools.items() if only is None or k in only}
    return agent_for(f"android:{p.address}", tools=chosen, **{**FAST, **options})


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["executorch"])  # onnx and litert: test_android_run.py, end to end
def test_measures_a_job_with_the_runtime_tool(tmp_path, tools, backend):
    # executor_runner as the Android build makes it: its log goes to logcat only (tag ExecuTorch)
    phone = LoopbackPhone(tmp_path / "device", logcat_pal=backend == "executorch")
    with phone, open_agent(f"android:{phone.address}", tools=tools, **FAST) as a:
        info = a.describe()
        assert info.device_id == phone.serial and info.target == "android" and info.threads == 1
        assert set(info.backends) == {"onnx", "litert", "executorch"}
        assert info.fingerprint["pinned_cpu"] == a.core == len(phone.cpu_max_khz) - 1  # the fastest core
        path = a.prepare(artifact_ref(backend))
        assert path.startswith("/data/local/tmp/splitbench/artifacts/")
        j = job(path, backend)
        r = a.measure(j)
    assert r.status == OK, r.reason + r.stderr_tail
    r.check(j)
    if backend == "litert":  # the tool's summary, never expanded into samples
        assert r.infer_ns == () and r.infer_aggregate.n == j.runs and r.infer_aggregate.tool == "benchmark_model"
        assert set(r.infer_aggregate.percentiles) == {"5", "50", "95"}
        assert any("summary" in n for n in r.notes)
    else:
        assert len(r.infer_ns) == j.runs and len(r.warmup_ns) == j.warmup
    assert r.first_infer_ns is not None or backend == "onnx"  # perf_test says "0 ms" for a tiny model
    assert r.load_cold_ns > 0 and len(r.load_warm_ns) == j.warm_loads
    assert r.cold_method == "not_obtained" and any("cold load not obtained" in n for n in r.notes)
    assert r.pinned_cpus == (len(phone.cpu_max_khz) - 1,)  # read from the tool's real /proc/<pid>/status
    by_method = {m.method: m for m in r.memory}
    polled = by_method["proc_status_polled"]
    assert polled.peak_b > 10e6 and polled.before_load_b is None  # VmHWM of the tool's process, no baseline
    assert {"RssAnon", "RssFile", "VmRSS"} <= set(polled.detail)
    if backend == "litert":  # its own growth since its start is the model memory, in the primary reading
        assert r.memory[0].method == "tool_reported" and r.memory[0].growth_b > 0
        assert r.model_memory_b == r.memory[0].detail["overall_delta_b"]
    else:  # no baseline and no growth: model memory not obtained; the peak of the tool's process comes first
        assert r.memory[0] is polled and r.model_memory_b is None
    if backend == "onnx":
        assert by_method["tool_reported"].peak_b > 0  # perf_test's "Peak working set size"
    assert ("tool_reported" in by_method) == (backend != "executorch")  # executor_runner reports none
    for c in (r.conditions_before, r.conditions_after):
        assert c.thermal_status == "NONE" and c.battery_temp_c == 28.5 and c.cpu_freq_khz and c.governor
    assert r.threads["tool_threads_max"] >= 1 and list(r.runtime) == [P.TOOL_FOR_BACKEND[backend]]
    json.dumps(r.to_dict())  # a record can hold it
    assert not list(phone.device_path("/data/local/tmp/splitbench/jobs").iterdir())  # scratch removed


def test_rooted_phone_drops_the_page_cache_before_the_cold_load(tmp_path, tools):
    with LoopbackPhone(tmp_path / "device", rooted=True) as p, agent(p, tools, ("onnxruntime_perf_test",)) as a:
        assert a.describe().fingerprint["rooted"] is True
        r = a.measure(job(a.prepare(artifact_ref("onnx")), "onnx"))
        assert r.status == OK and r.cold_method == "drop_caches"
        assert not any("cold load" in n for n in r.notes)
        assert p.device_path("/proc/sys/vm/drop_caches").read_text().strip() == "3"


def test_waits_for_the_phone_to_cool_and_records_the_wait(phone, tools):
    phone.set_battery_temps([452, 431, 415, 388])
    with agent(phone, tools, ("onnxruntime_perf_test",), cool_below_c=40.0) as a:
        r = a.measure(job(a.prepare(artifact_ref("onnx")), "onnx"))
        assert r.status == OK and r.conditions_before.battery_temp_c == 38.8
        assert r.diagnostics["cool_wait_s"] > 0 and not any("measured warm" in n for n in r.notes)
        phone.set_thermal_status(3)  # SEVERE, and it stays so
        r = a.measure(job(a.prepare(artifact_ref("onnx")), "onnx"))
        assert r.status == OK and r.conditions_before.thermal_status == "SEVERE"
        assert any("measured warm" in n and "SEVERE" in n for n in r.notes)


def test_a_hung_tool_is_killed_on_the_phone_and_is_a_timeout_row(phone, tools, via):
    phone.set_tool_behaviour("benchmark_model", "hang", after_lines=4)
    with agent(phone, tools, ("benchmark_model",), via=via) as a:
        assert a.describe().fingerprint["now"]["via"].startswith("adb server" if via == "server" else "direct")
        r = a.measure(job(a.prepare(artifact_ref("litert")), "litert", timeout_s=3.0))
        assert r.status == TIMEOUT and "killed on the phone" in r.reason
        assert "STARTING!" in r.stderr_tail  # what it printed before hanging
        pid = r.diagnostics["calls"][0]["pid"]
        assert not alive(pid)
        phone.set_tool_behaviour("benchmark_model", "ok")
        assert a.measure(job(a.prepare(artifact_ref("litert")), "litert")).status == OK  # the session goes on


def test_a_corrupted_artifact_is_a_failed_row(phone, tools, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with agent(phone, tools, ("onnxruntime_perf_test",)) as a:
        r = a.measure(job(a.prepare(artifact_ref("onnx", bad, key="bad")), "onnx"))
        assert r.status == FAILED and "exited with code 255" in r.reason
        r = a.measure(job(a.prepare(artifact_ref("onnx")), "coreml"))
        assert r.status == FAILED and "no Android tool runs coreml" in r.reason


def test_unplugged_mid_run_is_device_unavailable_and_a_new_session_goes_on(phone, tools, via):
    phone.set_tool_behaviour("benchmark_model", "hang", after_lines=2)  # still running when the cable goes
    phone.unplug_when(r"SBR start", after_s=1.0)
    with agent(phone, tools, ("benchmark_model",), via=via) as a:
        path = a.prepare(artifact_ref("litert"))
        with pytest.raises(DeviceUnavailable) as err:
            a.measure(job(path, "litert"))
        assert err.value.device_id == phone.serial
    pid_files = list(phone.device_path("/data/local/tmp/splitbench/run").glob("*.pid"))
    assert len(pid_files) == 1
    stale = int(pid_files[0].read_text())
    assert alive(stale)  # the phone kept running the tool
    phone.set_tool_behaviour("benchmark_model", "ok")
    phone.replug()
    with agent(phone, tools, ("benchmark_model",), via=via) as a:  # --resume: a new session after reconnecting
        assert not alive(stale)  # the stale tool was killed when the session opened
        assert a.measure(job(a.prepare(artifact_ref("litert")), "litert")).status == OK


def test_a_full_phone_is_one_clear_line(phone, tools, via):
    phone.set_full()
    with agent(phone, tools, (), via=via) as a:
        # like a phone that went away: no more jobs for it until space is freed, then --resume
        with pytest.raises(A.PhoneStorageFull) as err:
            a.prepare(artifact_ref("onnx"))
        assert isinstance(err.value, DeviceUnavailable) and err.value.device_id == phone.serial
        msg = err.value.reason
        assert "\n" not in msg and "out of storage" in msg and f"splitbench clean --device android:{phone.address}" in msg
        phone.set_full(df_knows=False)  # df said there was room; the push itself fails
        with pytest.raises(A.PhoneStorageFull, match="out of storage"):
            a.prepare(artifact_ref("onnx"))
        assert not list(phone.device_path("/data/local/tmp/splitbench/artifacts").rglob("*.part"))
        phone.set_full(False)
        assert a.prepare(artifact_ref("onnx")).endswith("tiny.onnx")


def test_hostile_names_reach_the_phone_quoted(phone, tools, tmp_path):
    model = tmp_path / HOSTILE / f"{HOSTILE}.onnx"
    model.parent.mkdir()
    model.write_bytes(tiny_artifact("onnx").read_bytes())
    workdir = f"/data/local/tmp/split bench; $(touch PWNED3) '{HOSTILE}'"
    with agent(phone, tools, ("onnxruntime_perf_test",), workdir=workdir) as a:
        path = a.prepare(artifact_ref("onnx", model, key=f"key {HOSTILE}"))
        assert path.endswith(f"{HOSTILE}.onnx")
        r = a.measure(job(path, "onnx"))
        assert r.status == OK, r.reason + r.stderr_tail
        assert r.pinned_cpus == (a.core,)
    assert phone.device_path(path).is_file()
    assert not list(phone.root.rglob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))
    assert not list(phone.root.parent.rglob("PWNED*"))


def test_ctrl_c_kills_the_tool_removes_scratch_and_restores_performance_mode(phone, tools, via, ctrl_c_raises):
    phone.set_tool_behaviour("benchmark_model", "hang", after_lines=2)
    run_dir = phone.device_path("/data/local/tmp/splitbench/run")
    seen: list[int] = []

    def pids() -> list[int]:
        found = []
        for f in run_dir.glob("*.pid"):
            try:
                text = f.read_text().strip()
            except OSError:
                continue
            if text.isdigit():
                found.append(int(text))
        return found

    def ctrl_c() -> None:  # what the terminal does, once the tool is running on the phone
        deadline = time.monotonic() + 30  # waits for the tool: a fixed 2 s raced its start on a busy machine
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
            seen.extend(pids())
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=ctrl_c)
    a = agent(phone, tools, ("benchmark_model",), performance_mode=True, via=via)
    with pytest.raises(KeyboardInterrupt):
        with a:
            assert phone.read_state("perf_mode") == "true"
            path = a.prepare(artifact_ref("litert"))
            interrupter.start()
            a.measure(job(path, "litert", timeout_s=60))
    interrupter.join()
    assert phone.read_state("perf_mode") == "false"
    assert not phone.device_path("/data/local/tmp/splitbench/run/performance_mode").exists()
    assert len(seen) == 1 and not alive(seen[0])
    assert not list(run_dir.iterdir())
    assert not list(phone.device_path("/data/local/tmp/splitbench/jobs").iterdir())
    # a session that lost the phone with the mode on: the next session turns it off
    phone.write_state("perf_mode", "true")
    (run_dir / "performance_mode").touch()
    with agent(phone, tools, ("benchmark_model",), via=via):
        assert phone.read_state("perf_mode") == "false"


def test_a_tool_built_for_another_abi_is_not_a_backend(phone, tools, tmp_path):
    elf = tmp_path / "executor_runner"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))  # an ELF header this "phone" cannot execute
    elf.chmod(0o755)
    with agent(phone, {"executor_runner": str(elf)}, None) as a:
        assert "executorch" not in a.describe().backends
        why = a.describe().fingerprint["now"]["tools_that_do_not_run"]
        # mksh, the phone's sh, says "not executable: 64-bit ELF file" and exits 1 (dash: 126)
        assert "does not run on the phone" in why and "not executable" in why


def test_a_command_the_phone_lacks_is_named_at_setup(tmp_path, tools, monkeypatch):
    with LoopbackPhone(tmp_path / "device", without=("sha256sum",)) as p:
        a = agent(p, tools, ("onnxruntime_perf_test",))
        with pytest.raises(AgentError) as err:
            a.open()
        a.close()
        msg = str(err.value)
        assert "has no sha256sum" in msg and "check what was pushed" in msg and "\n" not in msg
        monkeypatch.setenv("SPLITBENCH_ANDROID_TCP", p.address)
        (found,) = A.discover(**FAST)  # discovery installs nothing: the phone is listed, with what it lacks
        assert found.fingerprint["now"]["missing_commands"] == "sha256sum"


def test_two_phones_are_measured_at_the_same_time(tmp_path, tools):
    results: dict[str, object] = {}

    def run(p: LoopbackPhone) -> None:
        with agent(p, tools, ("onnxruntime_perf_test",)) as a:
            results[a.device_id] = a.measure(job(a.prepare(artifact_ref("onnx")), "onnx"))

    with LoopbackPhone(tmp_path / "a", serial="PHONE_A") as pa, LoopbackPhone(tmp_path / "b", serial="PHONE_B") as pb:
        threads = [threading.Thread(target=run, args=(p,)) for p in (pa, pb)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert sorted(results) == ["PHONE_A", "PHONE_B"]
    assert all(r.status == OK for r in results.values())


def test_discover_doctor_and_clean(phone, tools, monkeypatch, tmp_path):
    monkeypatch.setenv("SPLITBENCH_ANDROID_TCP", phone.address)
    monkeypatch.setenv("SPLITBENCH_ANDROID_TOOLS", str(os.path.dirname(tools["benchmark_model"])))
    found = A.discover()
    assert [d.device_id for d in found] == [phone.serial]
    fp = found[0].fingerprint
    assert fp["model"] == "Loopback Phone" and fp["android"] == "14" and fp["api_level"] == 34
    assert fp["abi"] == "arm64-v8a" and fp["soc"] == "Loopback LB-2" and fp["rooted"] is False
    assert [c["max_khz"] for c in fp["cores"]] == phone.cpu_max_khz and fp["cores"][0]["governor"] == "schedutil"
    assert fp["now"]["thermal_status"] == "NONE" and fp["now"]["battery_temp_c"] == 28.5
    assert fp["now"]["workdir_free_b"] > 0 and fp["now"]["address"] == phone.address
    assert found[0].backends == {}  # discover installs nothing: no tool is on this phone yet
    with agent_for("android", **FAST) as a:  # the only phone attached
        assert a.device_id == phone.serial

    probes = {"onnx": tiny_artifact("onnx"), "litert": tiny_artifact("litert")}
    checks = {c.name: c for c in A.doctor(f"android:{phone.address}", probe_artifacts=probes, **FAST)}
    assert checks["phone"].ok and checks["taskset pin"].ok and checks["thermal"].ok
    assert checks["root"].ok is None and "not obtained" in checks["root"].detail  # a limitation, not a failure
    assert checks["onnxruntime_perf_test"].ok and "reads the .onnx files" in checks["onnxruntime_perf_test"].detail
    assert checks["benchmark_model"].ok
    assert checks["executor_runner"].ok is None  # no probe given for .pte here
    monkeypatch.delenv("SPLITBENCH_ANDROID_TOOLS")
    missing = {c.name: c for c in A.doctor(f"android:{phone.address}", probe_artifacts={}, **FAST)}
    assert missing["executor_runner"].ok is False and "cmake --preset android-arm64-v8a" in missing["executor_runner"].fix

    removed = A.clean(f"android:{phone.address}", **FAST)
    assert removed and not phone.device_path("/data/local/tmp/splitbench").exists()
    assert A.clean(f"android:{phone.address}", **FAST) == []
    mine = phone.device_path("/data/local/tmp/mine.txt")  # a work directory set to a shared place
    mine.write_text("not splitbench's")
    with agent(phone, tools, ("onnxruntime_perf_test",), workdir="/data/local/tmp") as a:
        a.prepare(artifact_ref("onnx"))
    assert len(A.clean(f"android:{phone.address}", workdir="/data/local/tmp", **FAST)) == 4
    assert mine.read_text() == "not splitbench's"

    monkeypatch.setenv("SPLITBENCH_ANDROID_TCP", f"{phone.address},127.0.0.1:1")
    with pytest.raises(AgentError, match="2 phones attached"):
        agent_for("android", **FAST).open()
    monkeypatch.setenv("SPLITBENCH_ANDROID_TCP", "")
    with pytest.raises(AgentError, match="no Android phone attached"):
        agent_for("android", **FAST).open()
