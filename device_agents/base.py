"""The interface every device agent implements, and the records that cross it.

An agent identifies its device, prepares an artifact on it, runs one measurement job and returns one
:class:`MeasureResult`. How bytes reach the device (transport) and how messages are framed (protocol)
live below the agent, in each platform's folder; the orchestrator only sees this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

# Status values of a result. Anything but OK is a failed row with a reason.
OK = "ok"
FAILED = "failed"  # the runtime raised (corrupted artifact, unsupported op, ...)
CRASHED = "crashed"  # the worker died (signal, non-zero exit) without a result
TIMEOUT = "timeout"
OOM = "oom"  # the profile's memory cap was exceeded
STATUSES = (OK, FAILED, CRASHED, TIMEOUT, OOM)


@dataclass(frozen=True)
class MeasureJob:
    """One measurement: an artifact, the runtime to load it with, and the protocol to follow."""

    artifact_path: str  # on the host; the agent maps it to the device
    backend: str  # "onnx" | "litert" | "executorch"
    input_shape: tuple[int, ...]
    runs: int = 60
    warmup: int = 5
    warm_loads: int = 5
    timeout_s: float = 900.0
    seed: int = 0  # for the random input tensor

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MeasureJob":
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)


@dataclass(frozen=True)
class MeasureResult:
    """The raw measurements of one job. Times in nanoseconds, memory in bytes, every sample kept.

    Derived statistics (median, IQR, ...) are computed from these by ``harness.results``, never
    stored instead of them.
    """

    status: str
    reason: str = ""
    stderr_tail: str = ""
    infer_ns: tuple[int, ...] = ()  # the timed runs, in order
    first_infer_ns: int | None = None  # the first inference after load, kept apart
    warmup_ns: tuple[int, ...] = ()
    load_cold_ns: int | None = None  # file dropped from the page cache first
    load_warm_ns: tuple[int, ...] = ()  # each in a fresh process
    cold_cache_dropped: bool | None = None  # whether posix_fadvise(DONTNEED) succeeded
    rss_before_load_b: int | None = None
    rss_after_load_b: int | None = None
    rss_peak_b: int | None = None  # VmHWM after the runs
    uss_b: int | None = None  # unique set size after the runs
    cpu_ns: int | None = None  # CPU time of the timed runs (user + system)
    wall_runs_ns: int | None = None  # wall time of the timed runs
    pinned_cpus: tuple[int, ...] = ()
    threads: dict[str, Any] = field(default_factory=dict)  # what each runtime was held to, as checked
    runtime: dict[str, str] = field(default_factory=dict)  # runtime name -> version
    memory_cap_b: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def model_memory_b(self) -> int | None:
        """Peak resident memory minus the pre-load baseline: what the model costs."""
        if self.rss_peak_b is None or self.rss_before_load_b is None:
            return None
        return self.rss_peak_b - self.rss_before_load_b

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MeasureResult":
        d = dict(d)
        for key in ("infer_ns", "warmup_ns", "load_warm_ns", "pinned_cpus"):
            d[key] = tuple(d.get(key) or ())
        return cls(**d)


class DeviceAgent(ABC):
    """A device that can run artifacts: the local CPU profile, an Android phone, an iPhone."""

    #: The target name used in specs and result rows, e.g. "cpu-1core".
    target: str
    #: The backends this device can run.
    backends: tuple[str, ...]

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What identifies the device: model, OS, kernel, CPU, governor, runtime versions."""

    @abstractmethod
    def prepare(self, artifact_path: str) -> str:
        """Make the artifact available on the device; return the path the device loads."""

    @abstractmethod
    def measure(self, job: MeasureJob) -> MeasureResult:
        """Run one job. Never raises for a failure of the job: it becomes the result's status."""


def get_agent(target: str) -> DeviceAgent:
    """The agent for a target name (``cpu-1core``, ``cpu-1core-512mb``, ...)."""
    from harness.errors import UserError

    if target.startswith("cpu-1core"):
        from device_agents.local.agent import LocalAgent

        return LocalAgent.from_target(target)
    raise UserError(f"unknown target {target!r}; available: cpu-1core, cpu-1core-<N>mb "
                    "(Android and iOS agents are not built yet)")
