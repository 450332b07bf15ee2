"""The local cpu-1core agent, with the real runtimes on a tiny model.

Every measuring test starts a real worker and checks what a failed row would need: the status,
the reason and the stderr tail. The pin and the single thread are checked from inside (what the
worker recorded) and from outside (psutil on the measuring child while it runs).
"""

from __future__ import annotations

import os
import platform
import signal
import time

import psutil

import pytest

from device_agents.base import CRASHED, FAILED, OK, OOM, TIMEOUT, AgentError, MeasureJob, open_agent
from device_agents.local import protocol
from device_agents.local.agent import LocalAgent
from tests.agent_fixtures import INPUT_SHAPE, export_all

pytestmark = pytest.mark.slow

# Generous: importing ExecuTorch (torch) takes 3-15 s on this shared 2-core machine.
TIMEOUT_S = 180.0
RUNS, WARMUP, WARM_LOADS = 8, 2, 2


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """The tiny model exported for onnx, litert and executorch (about 40 s, once per session)."""
    return export_all(tmp_path_factory.mktemp("agent_artifacts"))


def job(path, backend="onnx", **kw) -> MeasureJob:
    kw = {"runs": RUNS, "warmup": WARMUP, "warm_loads": WARM_LOADS, "timeout_s": TIMEOUT_S, **kw}
    return MeasureJob(artifact_path=str(path), backend=backend, input_shape=INPUT_SHAPE, **kw)


class Watcher:
    """An ``on_message`` hook: records the messages and inspects the cold child from outside."""

    def __init__(self, on_loaded=None):
        self.messages: list[dict] = []
        self.outside: dict = {}
        self.on_loaded = on_loaded

    def __call__(self, msg: dict) -> None:
        self.messages.append(msg)
        if msg["type"] == protocol.HELLO:
            self.worker_pid = msg["pid"]
        if msg["type"] == protocol.LOADED:
            child = psutil.Process(msg["pid"])
            self.child_pid = msg["pid"]
            self.outside = {"cpu_affinity": child.cpu_affinity(), "num_threads": child.num_threads()}
            if self.on_loaded:
                self.on_loaded(self, msg)

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]


def gone(pid: int, wait_s: float = 3.0) -> bool:
    """The process has exited (a zombie counts: it runs nothing), waiting briefly for SIGKILL to land."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# -- the three runtimes, measured for real ---------------------------------------------------------
RUNTIME_THREAD_CHECKS = {
    "onnx": {"ort_intra_op_num_threads": 1, "ort_inter_op_num_threads": 1, "ort_execution_mode": "ORT_SEQUENTIAL"},
    "litert": {"litert_num_threads": 1},
    "executorch": {"torch_num_threads": 1, "torch_num_interop_threads": 1, "executorch_threadpool_threads": 1},
}


@pytest.mark.parametrize("backend", ["onnx", "litert", "executorch"])
def test_measures_each_runtime_pinned_and_single_threaded(artifacts, backend):
    watcher = Watcher()
    with LocalAgent.from_target("cpu-1core", on_message=watcher) as agent:
        r = agent.measure(job(artifacts[backend], backend))
        assert not gone(watcher.worker_pid, wait_s=0)  # the session keeps its worker for the next job

    assert r.status == OK, (r.reason, r.stderr_tail)
    r.check(job(artifacts[backend], backend))  # the contract: the runs, warm-ups and warm loads asked for
    assert len(r.infer_ns) == RUNS and all(t > 0 for t in r.infer_ns)
    assert len(r.warmup_ns) == WARMUP and r.first_infer_ns > 0
    assert r.load_cold_ns > 0 and len(r.load_warm_ns) == WARM_LOADS and all(t > 0 for t in r.load_warm_ns)
    assert r.cold_method == "fadvise_dontneed"
    m = r.primary_memory
    assert m.method == "vmhwm_in_process"
    for value in (m.before_load_b, m.after_load_b, m.peak_b, r.uss_b, r.cpu_ns, r.wall_runs_ns):
        assert value is not None and value > 0
    assert m.peak_b >= m.after_load_b >= m.before_load_b
    assert r.model_memory_b >= 0
    assert r.conditions_before is not None and r.conditions_after is not None
    assert "sched_setaffinity" in r.pinning
    assert r.runtime and all(v != "unknown" for v in r.runtime.values())

    # The pin and the single thread, as the child checked them ...
    assert r.pinned_cpus == (agent.cpu,)
    for key, expected in RUNTIME_THREAD_CHECKS[backend].items():
        assert r.threads[key] == expected, key
    assert r.threads["os_threads_before_load"] == 1
    assert r.threads["os_threads_after_load"] == 1
    assert r.threads["os_threads_after_runs"] == 1
    assert r.threads["env"]["OMP_NUM_THREADS"] == "1"
    # ... and as seen from outside, on the cold child while it was loaded and about to run.
    assert watcher.outside == {"cpu_affinity": [agent.cpu], "num_threads": 1}
    # One CPU: the timed runs cannot have used more CPU time than wall time (+ clock granularity).
    assert r.cpu_ns <= r.wall_runs_ns * 1.05 + 1_000_000

    assert watcher.types()[0] == protocol.HELLO and watcher.types()[-1] == protocol.RESULT
    assert watcher.types().count(protocol.STARTED) == 1 + WARM_LOADS
    assert gone(watcher.worker_pid)


# -- failures become statuses ----------------------------------------------------------------------
def test_corrupted_artifact_is_failed_with_the_runtime_reason(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(os.urandom(1 << 16))
    with LocalAgent.from_target("cpu-1core") as agent:
        r = agent.measure(job(bad))
    assert r.status == FAILED
    assert "INVALID_PROTOBUF" in r.reason or "Protobuf" in r.reason, r.reason
    assert r.infer_ns == ()
    assert "traceback" in r.diagnostics and "cold child" in r.stderr_tail


def test_child_killed_mid_run_is_crashed(artifacts):
    # Enough runs (~seconds) that the child is certainly still running when it is killed.
    watcher = Watcher(on_loaded=lambda w, msg: os.kill(msg["pid"], signal.SIGKILL))
    with LocalAgent.from_target("cpu-1core", on_message=watcher) as agent:
        r = agent.measure(job(artifacts["onnx"], runs=200_000))
        assert gone(watcher.child_pid)
        # the worker survived its child: the next job of the session runs in it
        watcher.on_loaded = None
        again = agent.measure(job(artifacts["onnx"]))
        assert again.status == OK and again.diagnostics["worker_pid"] == watcher.worker_pid
    assert r.status == CRASHED
    assert "SIGKILL" in r.reason and "cold child" in r.reason
    assert r.infer_ns == ()
    assert gone(watcher.worker_pid)


def test_worker_killed_mid_run_is_crashed_and_its_children_die_too(artifacts):
    watcher = Watcher(on_loaded=lambda w, msg: os.kill(w.worker_pid, signal.SIGKILL))
    with LocalAgent.from_target("cpu-1core", on_message=watcher) as agent:
        r = agent.measure(job(artifacts["onnx"], runs=200_000))
        killed = watcher.worker_pid
        # The orphaned measuring child was killed with the worker's process group.
        assert gone(watcher.child_pid) and gone(killed)
        watcher.on_loaded = None
        again = agent.measure(job(artifacts["onnx"]))  # a new worker serves the next job
        assert again.status == OK and again.diagnostics["worker_pid"] != killed
    assert r.status == CRASHED
    assert "worker killed by SIGKILL" in r.reason
    assert "cold child" in r.stderr_tail


def test_timeout_is_timeout_with_the_stderr_tail(artifacts):
    watcher = Watcher()
    with LocalAgent.from_target("cpu-1core", on_message=watcher) as agent:
        r = agent.measure(job(artifacts["onnx"], runs=10_000_000, timeout_s=3.0))
    assert r.status == TIMEOUT
    assert "timeout_s=3" in r.reason and "loaded cold" in r.reason
    assert "cold child" in r.stderr_tail  # the worker's output during this job
    assert gone(watcher.child_pid) and gone(watcher.worker_pid)


def test_memory_cap_exceeded_is_oom_with_the_numbers(artifacts):
    # The tiny model has ~4 MB of float32 weights: a 1 MB cap on model memory cannot hold it.
    with LocalAgent.from_target("cpu-1core-1mb") as agent:
        r = agent.measure(job(artifacts["onnx"]))
    assert r.status == OOM, (r.reason, r.stderr_tail)
    assert r.memory_cap_b == 10**6
    assert r.model_memory_b > r.memory_cap_b
    assert r.primary_memory.before_load_b and r.primary_memory.after_load_b and r.load_cold_ns
    assert "exceeds the profile's cap of 1.0 MB" in r.reason
    assert r.load_warm_ns == ()  # a configuration that does not fit is not loaded again


def test_a_cap_that_fits_is_ok(artifacts):
    with LocalAgent.from_target("cpu-1core-512mb") as agent:
        r = agent.measure(job(artifacts["litert"], "litert", warm_loads=0))
    assert r.status == OK, r.reason
    assert r.memory_cap_b == 512 * 10**6 and r.model_memory_b < r.memory_cap_b


# -- the agent's surface, no worker ----------------------------------------------------------------
def test_session_imports_each_runtime_once(artifacts):
    """One worker per backend serves every job of the session: the runtime is imported once per run."""
    hellos = []
    with LocalAgent.from_target("cpu-1core", on_message=lambda m: hellos.append(m) if m["type"] == "hello"
                                else None) as agent:
        results = [agent.measure(job(artifacts[b], b, warm_loads=1)) for b in ("onnx", "litert", "onnx", "litert")]
    assert [r.status for r in results] == [OK] * 4
    assert len(hellos) == 2  # two backends, two imports, four jobs
    assert results[0].diagnostics["worker_pid"] == results[2].diagnostics["worker_pid"]
    assert results[0].diagnostics["cold_child_pid"] != results[2].diagnostics["cold_child_pid"]  # fresh children


def test_targets_parse_and_open_agent_finds_the_local_agent():
    assert LocalAgent.from_target("cpu-1core").memory_cap_b is None
    assert LocalAgent.from_target("cpu-1core-512mb").memory_cap_b == 512 * 10**6
    assert LocalAgent.from_target("cpu-1core-2gb").memory_cap_b == 2 * 10**9
    assert isinstance(open_agent("cpu-1core-512mb"), LocalAgent)
    cpu0 = open_agent("cpu-1core:0")
    assert cpu0.cpu == 0 and cpu0.target == "cpu-1core" and cpu0.describe().device_id.endswith(":cpu0")
    for bad in ("cpu-1core-512", "cpu-1core-0mb", "cpu-2core", "pixel"):
        with pytest.raises(AgentError):
            open_agent(bad)
    with pytest.raises(AgentError):
        LocalAgent(cpu=10_000)
    assert LocalAgent().cpu == max(os.sched_getaffinity(0))


def test_describe_names_device_cpu_kernel_and_runtimes():
    info = LocalAgent.from_target("cpu-1core").describe()
    fp = info.fingerprint
    for key in ("cpu_model", "kernel", "cpu_count", "pinned_cpu", "cpu_governor", "python", "runtime_versions"):
        assert key in fp
    assert fp["pinned_cpu"] in os.sched_getaffinity(0)
    assert "onnxruntime" in fp["runtime_versions"]
    assert info.device_id == f"local:{platform.node()}:cpu{fp['pinned_cpu']}" and info.target == "cpu-1core"
    assert set(info.backends) == {"onnx", "litert", "executorch"}
    assert info.backends["onnx"].startswith("onnxruntime ")


def test_protocol_round_trip_and_version_check():
    line = protocol.encode(protocol.STARTED, phase="cold", index=0, pid=1)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line)["phase"] == "cold"
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(line.replace(b'"v":2', b'"v":99'))
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    with pytest.raises(protocol.ProtocolError):
        protocol.encode("bogus")
