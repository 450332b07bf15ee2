"""The local single-core CPU profile (``cpu-1core``, ``cpu-1core-512mb``, ...): the host's own CPU
standing in for a phone core. Each job runs in a fresh worker process pinned to one CPU; this
module only speaks the protocol over a transport and turns what comes back into a MeasureResult.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable

from device_agents.base import CRASHED, FAILED, TIMEOUT, DeviceAgent, MeasureJob, MeasureResult
from harness.host import cpu_model, read_text
from device_agents.local import protocol
from device_agents.local.transport import LocalProcessTransport, TransportClosed, TransportTimeout, worker_env

TARGET_RE = re.compile(r"^cpu-1core(?:-(?P<size>\d+)(?P<unit>mb|gb))?$")
WORKER_MODULE = "device_agents.local.worker"
# Runtime and converter distributions whose versions identify a measurement.
VERSIONED_DISTRIBUTIONS = ("onnxruntime", "ai-edge-litert", "executorch", "torch", "numpy", "litert-torch")
_RESULT_FIELDS = {f.name for f in dataclasses.fields(MeasureResult)}


class LocalAgent(DeviceAgent):
    """Measures on this host, one CPU, one thread per runtime, optional cap on model memory."""

    backends = ("onnx", "litert", "executorch")

    def __init__(self, target: str = "cpu-1core", cpu: int | None = None, memory_cap_b: int | None = None,
                 on_message: Callable[[dict[str, Any]], None] | None = None):
        """``cpu``: the CPU to pin the worker to (default the last CPU this process may use).
        ``on_message``: called with every protocol message as it arrives (progress, tests)."""
        from harness.errors import UserError

        allowed = sorted(os.sched_getaffinity(0))
        self.cpu = allowed[-1] if cpu is None else int(cpu)
        if self.cpu not in allowed:
            raise UserError(f"CPU {self.cpu} is not available to splitbench (allowed: {allowed}); "
                            "set SPLITBENCH_LOCAL_CPU to one of them")
        self.target, self.memory_cap_b, self.on_message = target, memory_cap_b, on_message

    @classmethod
    def from_target(cls, target: str, **kwargs) -> "LocalAgent":
        """``cpu-1core``, or with a cap on model memory: ``cpu-1core-512mb``, ``cpu-1core-2gb``.

        The CPU comes from ``SPLITBENCH_LOCAL_CPU`` when set (default: the last allowed CPU).
        """
        from harness.errors import UserError

        m = TARGET_RE.match(target)
        if not m:
            raise UserError(f"unknown local target {target!r}; use cpu-1core, cpu-1core-<N>mb or cpu-1core-<N>gb")
        cap = None
        if m["size"]:
            cap = int(m["size"]) * (10**6 if m["unit"] == "mb" else 10**9)  # SI, like every MB splitbench reports
            if cap <= 0:
                raise UserError(f"{target!r}: the memory cap must be positive")
        if "cpu" not in kwargs and os.environ.get("SPLITBENCH_LOCAL_CPU"):
            kwargs["cpu"] = int(os.environ["SPLITBENCH_LOCAL_CPU"])
        return cls(target=target, memory_cap_b=cap, **kwargs)

    # -- DeviceAgent ----------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        from importlib import metadata

        cpufreq = f"/sys/devices/system/cpu/cpu{self.cpu}/cpufreq"
        versions = {}
        for dist in VERSIONED_DISTRIBUTIONS:
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
        return {
            "target": self.target,
            "platform": "local",
            "cpu_model": cpu_model(),
            "machine": platform.machine(),
            "os": platform.system(),
            "kernel": platform.release(),
            "cpu_count": os.cpu_count(),
            "pinned_cpu": self.cpu,
            "cpu_governor": read_text(f"{cpufreq}/scaling_governor"),  # None when not exposed (VMs)
            "cpu_max_freq_khz": read_text(f"{cpufreq}/cpuinfo_max_freq"),
            "memory_cap_b": self.memory_cap_b,
            "python": platform.python_version(),
            "runtime_versions": versions,
            "protocol_version": protocol.PROTOCOL_VERSION,
        }

    def prepare(self, artifact_path: str) -> str:
        """Locally the worker reads the host's file itself."""
        return str(Path(artifact_path).resolve())

    def measure(self, job: MeasureJob) -> MeasureResult:
        """Run ``job`` in a fresh pinned worker; every failure of the job becomes the status."""
        job = dataclasses.replace(job, artifact_path=self.prepare(job.artifact_path))
        deadline = time.monotonic() + job.timeout_s
        transport = LocalProcessTransport(WORKER_MODULE, [], env=worker_env())
        seen: list[str] = []  # the phases reached, for the reason of a timeout or crash
        try:
            transport.start()
            transport.send(protocol.encode(protocol.JOB, job=job.to_dict(), cpu=self.cpu,
                                           memory_cap_b=self.memory_cap_b))
            while True:
                try:
                    msg = protocol.decode(transport.receive_line(deadline))
                except TransportTimeout:
                    transport.kill()
                    return MeasureResult(status=TIMEOUT, memory_cap_b=self.memory_cap_b,
                                         reason=f"no result within timeout_s={job.timeout_s:g} "
                                                f"(reached: {', '.join(seen) or 'worker start'})",
                                         stderr_tail=transport.stderr_tail())
                except TransportClosed:
                    transport.kill()
                    code = transport.wait_exit(timeout_s=5)
                    how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                           else f"exited with code {code}")
                    return MeasureResult(status=CRASHED, memory_cap_b=self.memory_cap_b,
                                         reason=f"worker {how} without a result (reached: {', '.join(seen) or 'start'})",
                                         stderr_tail=transport.stderr_tail())
                except protocol.ProtocolError as exc:
                    return MeasureResult(status=FAILED, reason=f"protocol error: {exc}",
                                         memory_cap_b=self.memory_cap_b, stderr_tail=transport.stderr_tail())
                if self.on_message is not None:
                    self.on_message(msg)
                kind = msg["type"]
                if kind in (protocol.STARTED, protocol.LOADED):
                    seen.append(f"{kind} {msg['phase']}")
                elif kind == protocol.HELLO:
                    seen.append("runtime imported")
                elif kind == protocol.ERROR:
                    return MeasureResult(status=FAILED, reason=msg["reason"], memory_cap_b=self.memory_cap_b,
                                         stderr_tail=transport.stderr_tail())
                elif kind == protocol.RESULT:
                    return self._result(msg["result"], transport)
        except OSError as exc:  # the worker could not be started
            return MeasureResult(status=FAILED, reason=f"cannot start the worker: {exc}",
                                 memory_cap_b=self.memory_cap_b, stderr_tail=transport.stderr_tail())
        finally:
            transport.close()

    def _result(self, d: dict[str, Any], transport: LocalProcessTransport) -> MeasureResult:
        d = dict(d)
        extra = dict(d.pop("extra", {}) or {})
        extra.update({k: d.pop(k) for k in list(d) if k not in _RESULT_FIELDS})
        d["extra"] = extra
        if d.get("status") != "ok":
            d["stderr_tail"] = transport.stderr_tail()
        return MeasureResult.from_dict(d)
