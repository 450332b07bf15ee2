"""The local single-core CPU profile (``cpu-1core``, ``cpu-1core-512mb``, ...): the host's own CPU
standing in for a phone core.

A session keeps one worker process per backend, pinned to one CPU, that imports its runtime once and
forks a fresh child for every load of every job (see ``worker.py``). This module only speaks the
protocol over a transport and turns what comes back into a :class:`MeasureResult`. A job that times
out or kills its worker costs that worker: the next job of the backend starts a new one.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from device_agents.base import (ACCELERATORS, CRASHED, FAILED, TIMEOUT, AgentError, ArtifactRef, Check, Conditions,
                                ContractError, Delegation, DeviceAgent, DeviceInfo, MeasureJob, MeasureResult)
from device_agents.local import protocol
from device_agents.host import cpu_model, installed_version, read_text
from device_agents.local.transport import LocalProcessTransport, TransportClosed, TransportTimeout, worker_env

TARGET_RE = re.compile(r"^(?P<profile>cpu-1core(?:-(?P<size>\d+)(?P<unit>mb|gb))?)(?::(?P<cpu>\d+))?$")
WORKER_MODULE = "device_agents.local.worker"
# The distribution whose version is "the runtime" of each backend here (the worker reports the
# versions it actually imported with each result).
RUNTIME_DISTRIBUTION = {"onnx": "onnxruntime", "litert": "ai-edge-litert", "executorch": "executorch"}
if sys.platform == "darwin":  # Core ML predicts on macOS: measured through coremltools, compute units cpuOnly
    RUNTIME_DISTRIBUTION["coreml"] = "coremltools"
CAN_PIN = hasattr(os, "sched_setaffinity")
# What else is recorded in the fingerprint (converters, torch, numpy).
VERSIONED_DISTRIBUTIONS = ("onnxruntime", "ai-edge-litert", "executorch", "torch", "numpy", "litert-torch")
WORKER_START_TIMEOUT_S = 120.0  # importing ExecuTorch's runtime pulls in torch: seconds, not minutes
OPTIONS: dict[str, str] = {"cpu": "the CPU to pin to (default: the last CPU this process may use)"}
# The runtime setting each backend's worker uses on the one core (worker.py), recorded as the row's delegation.
CPU_SETTINGS = {
    "onnx": "CPUExecutionProvider, intra_op_num_threads=1, inter_op_num_threads=1",
    "litert": "Interpreter(num_threads=1), no delegate asked for",
    "executorch": "XNNPACK partitioner at export; threadpool of 1",
    "coreml": "computeUnits=cpuOnly (coremltools)",
}


class _Worker:
    """One backend's worker process of a session: started on its first job, reused until it breaks."""

    def __init__(self, backend: str, cpu: int):
        self.backend, self.cpu = backend, cpu
        self.transport = LocalProcessTransport(WORKER_MODULE, ["--cpu", str(cpu), "--backend", backend],
                                               env=worker_env())
        self.hello: dict[str, Any] | None = None

    def start(self, deadline: float, on_message) -> None:
        """Start the process and wait for its hello (the runtime imported); raise _WorkerFailed otherwise."""
        try:
            self.transport.start()
        except OSError as exc:
            raise _WorkerFailed(FAILED, f"cannot start the worker: {exc}") from None
        while self.hello is None:
            msg = self.receive(deadline, "worker start")
            if on_message is not None:
                on_message(msg)
            if msg["type"] == protocol.HELLO:
                self.hello = msg
            elif msg["type"] == protocol.ERROR:
                raise _WorkerFailed(FAILED, msg["reason"])

    def receive(self, deadline: float, reached: str) -> dict[str, Any]:
        try:
            return protocol.decode(self.transport.receive_line(deadline))
        except TransportTimeout:
            raise _WorkerFailed(TIMEOUT, f"no result in time (reached: {reached})") from None
        except TransportClosed:
            self.transport.kill()
            code = self.transport.wait_exit(timeout_s=5)
            how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exited with code {code}")
            raise _WorkerFailed(CRASHED, f"worker {how} without a result (reached: {reached})") from None
        except protocol.ProtocolError as exc:
            raise _WorkerFailed(FAILED, f"protocol error: {exc}") from None

    def close(self) -> None:
        self.transport.finish()
        self.transport.close()


class _WorkerFailed(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class LocalAgent(DeviceAgent):
    """Measures on this host, one CPU, one thread per runtime, optional cap on model memory."""

    platform = "local"

    def __init__(self, target: str = "cpu-1core", cpu: int | None = None, memory_cap_b: int | None = None,
                 on_message: Callable[[dict[str, Any]], None] | None = None):
        """``cpu``: the CPU to pin the workers to (default the last CPU this process may use).
        ``on_message``: called with every protocol message as it arrives (progress, tests)."""
        allowed = sorted(os.sched_getaffinity(0)) if CAN_PIN else list(range(os.cpu_count() or 1))
        self.cpu = allowed[-1] if cpu is None else int(cpu)
        if self.cpu not in allowed:
            raise AgentError(f"CPU {self.cpu} is not available to splitbench (allowed: {allowed}); "
                             "set SPLITBENCH_LOCAL_CPU to one of them")
        self.target, self.memory_cap_b, self.on_message = target, memory_cap_b, on_message
        self._workers: dict[str, _Worker] = {}

    @classmethod
    def from_target(cls, target: str, **kwargs) -> "LocalAgent":
        """``cpu-1core``, or with a cap on model memory: ``cpu-1core-512mb``, ``cpu-1core-2gb``; a CPU may be
        named after a colon (``cpu-1core:0``), which makes each CPU of the host a device of its own.

        Otherwise the CPU comes from ``SPLITBENCH_LOCAL_CPU`` when set (default: the last allowed CPU).
        The target recorded is the profile (``cpu-1core``); the CPU is in the device id.
        """
        m = TARGET_RE.match(target)
        if not m:
            raise AgentError(f"unknown local target {target!r}; use cpu-1core, cpu-1core-<N>mb or cpu-1core-<N>gb, "
                             "optionally with :<cpu>")
        if m["cpu"] is not None:
            kwargs["cpu"] = int(m["cpu"])
        cap = None
        if m["size"]:
            cap = int(m["size"]) * (10**6 if m["unit"] == "mb" else 10**9)  # SI, like every MB splitbench reports
            if cap <= 0:
                raise AgentError(f"{target!r}: the memory cap must be positive")
        if "cpu" not in kwargs and os.environ.get("SPLITBENCH_LOCAL_CPU"):
            try:
                kwargs["cpu"] = int(os.environ["SPLITBENCH_LOCAL_CPU"])
            except ValueError:
                raise AgentError(f"SPLITBENCH_LOCAL_CPU={os.environ['SPLITBENCH_LOCAL_CPU']!r} is not a CPU "
                                 "number") from None
        return cls(target=m["profile"], memory_cap_b=cap, **kwargs)

    # -- the session ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every worker of the session (each finishes nothing: jobs are synchronous)."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()

    def backends(self) -> dict[str, str]:
        """The backends this host runs, with the version of each runtime, read without importing it."""
        out = {}
        for backend, dist in RUNTIME_DISTRIBUTION.items():
            version = installed_version(dist)
            if version is not None:
                out[backend] = f"{dist} {version}"
        return out

    def describe(self) -> DeviceInfo:
        cpufreq = f"/sys/devices/system/cpu/cpu{self.cpu}/cpufreq"
        versions = {d: v for d in VERSIONED_DISTRIBUTIONS if (v := installed_version(d)) is not None}
        host, model, backends = platform.node(), cpu_model(), self.backends()
        return DeviceInfo(
            device_id=f"local:{host}:cpu{self.cpu}", target=self.target, platform="local",
            name=f"CPU {self.cpu} of {host} ({model})", backends=backends,
            fingerprint={
                "cpu_model": model, "machine": platform.machine(), "os": platform.system(),
                "kernel": platform.release(), "cpu_count": os.cpu_count(), "pinned_cpu": self.cpu,
                "cpu_governor": read_text(f"{cpufreq}/scaling_governor"),  # None when not exposed (VMs)
                "cpu_max_freq_khz": read_text(f"{cpufreq}/cpuinfo_max_freq"),
                "memory_cap_b": self.memory_cap_b, "python": platform.python_version(),
                "runtime_versions": versions, "protocol_version": protocol.PROTOCOL_VERSION,
            },
            threads=1,
            # one CPU core of this host: the graph runs on that core, never on an accelerator
            accelerator_notes={f"{b}/{a}": f"{self.target} is one CPU core of this host: {a} runs only on a phone "
                               "(an android or ios target)" for b in backends for a in ACCELERATORS if a != "cpu"},
        )

    def prepare(self, artifact: ArtifactRef) -> str:
        """Locally the worker reads the host's file itself."""
        return str(Path(artifact.path).resolve())

    def conditions(self) -> Conditions:
        """The pinned core's frequency and governor, and the hottest thermal zone (None where not exposed)."""
        cpufreq = f"/sys/devices/system/cpu/cpu{self.cpu}/cpufreq"
        freq = read_text(f"{cpufreq}/scaling_cur_freq")
        temps = []
        for zone in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
            t = read_text(zone)
            if t and t.lstrip("-").isdigit():
                temps.append(int(t) / 1000)
        return Conditions(cpu_freq_khz=int(freq) if freq and freq.isdigit() else None,
                          governor=read_text(f"{cpufreq}/scaling_governor"),
                          detail={"max_thermal_zone_c": max(temps)} if temps else {})

    def _worker(self, backend: str, deadline: float) -> _Worker:
        worker = self._workers.get(backend)
        if worker is not None and worker.transport.alive:
            return worker
        if worker is not None:
            worker.close()
        worker = _Worker(backend, self.cpu)
        self._workers[backend] = worker
        worker.start(min(deadline, time.monotonic() + WORKER_START_TIMEOUT_S), self.on_message)
        return worker

    def measure(self, job: MeasureJob) -> MeasureResult:
        """Run ``job`` in fresh children of the backend's pinned worker; every failure of the job is the status.
        The result's delegation records the runtime's CPU setting (and, for ONNX Runtime, the providers its session
        reported)."""
        if job.accelerator != "cpu":
            return MeasureResult(status=FAILED, reason=f"{self.target} is one CPU core of this host: {job.accelerator} "
                                                       "runs only on a phone (an android or ios target)")
        result = self._measure(job)
        providers = (result.threads or {}).get("ort_providers")
        words = f"session.get_providers(): {providers}" if providers else "no delegate asked for"
        return dataclasses.replace(result, delegation=Delegation("cpu", CPU_SETTINGS.get(job.backend, "the CPU"),
                                                                 "unknown", words=words))

    def _measure(self, job: MeasureJob) -> MeasureResult:
        deadline = time.monotonic() + job.timeout_s
        before = self.conditions()
        seen: list[str] = []  # the phases reached, for the reason of a timeout or crash
        worker = None
        since = 0
        try:
            worker = self._worker(job.backend, deadline)
            since = worker.transport.log_offset()
            worker.transport.send(protocol.encode(protocol.JOB, job=job.to_dict(), memory_cap_b=self.memory_cap_b))
            while True:
                msg = worker.receive(deadline, ", ".join(seen) or "job sent")
                if self.on_message is not None:
                    self.on_message(msg)
                kind = msg["type"]
                if kind in (protocol.STARTED, protocol.LOADED):
                    seen.append(f"{kind} {msg['phase']}")
                elif kind == protocol.ERROR:
                    return MeasureResult(status=FAILED, reason=msg["reason"], memory_cap_b=self.memory_cap_b,
                                         stderr_tail=worker.transport.stderr_tail(since=since))
                elif kind == protocol.RESULT:
                    return self._result(msg["result"], worker, since, before)
        except _WorkerFailed as exc:
            tail = ""
            if worker is not None:
                worker.transport.kill()  # a timed-out or broken worker is not reused
                tail = worker.transport.stderr_tail(since=since)
            reason = exc.reason
            if exc.status == TIMEOUT:
                reason = f"no result within timeout_s={job.timeout_s:g} ({exc.reason.split('(', 1)[-1]}"
            return MeasureResult(status=exc.status, reason=reason, memory_cap_b=self.memory_cap_b, stderr_tail=tail)

    def _result(self, d: dict[str, Any], worker: _Worker, since: int, before: Conditions) -> MeasureResult:
        d = dict(d)
        if d.get("status") != "ok":
            d["stderr_tail"] = worker.transport.stderr_tail(since=since)
        try:
            result = MeasureResult.from_dict(d)
        except (ContractError, TypeError) as exc:
            return MeasureResult(status=FAILED, reason=f"the worker broke the result contract: {exc}",
                                 memory_cap_b=self.memory_cap_b)
        return dataclasses.replace(result, conditions_before=before, conditions_after=self.conditions())


# --------------------------------------------------------------------------------------------------
# The platform module's functions (see device_agents.base.discover_devices)


def agent_for(target: str, **options: Any) -> LocalAgent:
    unknown = sorted(set(options) - set(OPTIONS) - {"on_message"})
    if unknown:
        raise AgentError(f"unknown option{'s' if len(unknown) > 1 else ''} for {target}: {', '.join(unknown)}; "
                         f"known: {', '.join(OPTIONS)}")
    return LocalAgent.from_target(target, **options)


def discover() -> list[DeviceInfo]:
    """The local profile on the CPU it would pin to."""
    return [LocalAgent.from_target("cpu-1core").describe()]


def doctor(target: str = "cpu-1core", **options: Any) -> list[Check]:
    """Can this host measure: the CPU to pin to, each runtime importable, the page cache droppable."""
    agent = agent_for(target, **options)
    checks = [Check("pinned CPU", True, f"CPU {agent.cpu} of {sorted(os.sched_getaffinity(0))}") if CAN_PIN else
              Check("pinned CPU", None, "this OS offers no thread affinity: runs are not pinned",
                    "measure on Linux for one-core numbers")]
    for backend, dist in RUNTIME_DISTRIBUTION.items():
        version = installed_version(dist)
        checks.append(Check(f"{backend} runtime", version is not None, f"{dist} {version}" if version else "missing",
                            "" if version else f"pip install 'splitbench[{backend}]'"))
    checks.append(Check("accelerators", True, f"cpu only: {agent.target} is one CPU core of this host (gpu and npu "
                                              "run only on a phone, an android or ios target)"))
    governor = agent.conditions().governor
    checks.append(Check("CPU governor", None if governor is None else governor == "performance",
                        governor or "not exposed (VM or container)",
                        "" if governor in (None, "performance") else
                        f"echo performance > /sys/devices/system/cpu/cpu{agent.cpu}/cpufreq/scaling_governor"))
    return checks


def clean(target: str = "cpu-1core", **options: Any) -> list[str]:
    """Nothing is left on this host by a local session."""
    return []
