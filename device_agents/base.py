"""The contract between the orchestrator and a device agent (version 2), and the records that cross it.

An agent is a *session* on one device: opened once (``with open_agent(target) as agent:``), it keeps
what lives across jobs (the local worker with its imported runtime, an adb connection, an installed
iOS app) and is closed at the end. Per job the orchestrator calls :meth:`DeviceAgent.prepare` once per
device and artifact (so a device-side cache can be keyed by content) and :meth:`DeviceAgent.measure`,
which returns one :class:`MeasureResult`. How bytes reach the device (transport) and how messages are
framed (protocol) live below the agent, in each platform's folder; the orchestrator only sees this
module. Nothing here imports ``harness``: the dependency goes one way, harness -> device_agents.

Measurements are typed, and never invented:

- inference timings are either raw samples (``infer_ns``) or, when the device's tool reports only a
  summary (LiteRT's ``benchmark_model``), an :class:`Aggregate` with the tool that reported it. An
  aggregate is never expanded into samples;
- memory readings carry their method (:data:`MEMORY_METHODS`);
- the cold load carries how "cold" was obtained (:data:`COLD_METHODS`), and may carry a compile time;
- conditions before and after (thermal state, battery temperature, core frequency, governor) have
  their own fields.

A device that disappears raises :class:`DeviceUnavailable` from ``prepare`` or ``measure``: that is
not a failure of the job (no row is written for it); the orchestrator stops sending jobs to that
device and ``--resume`` carries on when it is back.

History of CONTRACT_VERSION:
    1  ``fingerprint()``, ``prepare(path)``, ``measure(job)``; flat result with raw samples only.
    2  sessions (context manager), ``describe()`` -> :class:`DeviceInfo` (device_id apart from target,
       backends with versions), ``prepare(ArtifactRef)``, :class:`DeviceUnavailable`, typed timings
       (samples or :class:`Aggregate`), memory with its method, cold-load method and compile time,
       conditions before/after, results checked when made (unknown fields are errors).
    3  accelerators: ``MeasureJob.accelerator`` (cpu, gpu, npu), ``DeviceInfo.accelerators`` (what each backend
       runs on here, and why not), ``MeasureResult.delegation`` (the exact runtime setting and what the tool
       said it delegated); ``DeviceInfo.compute_units`` is gone (Core ML's compute units are the iOS agent's
       setting for an accelerator).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONTRACT_VERSION = 3

# Where a job's graph runs, as a spec names it ([run].accelerators); each agent maps it to its runtime's setting.
ACCELERATORS = ("cpu", "gpu", "npu")

# Status values of a result. Anything but OK is a failed row with a reason.
OK = "ok"
FAILED = "failed"  # the runtime raised (corrupted artifact, unsupported op, ...)
CRASHED = "crashed"  # the worker or tool died (signal, non-zero exit) without a result
TIMEOUT = "timeout"
OOM = "oom"  # the profile's memory cap was exceeded
STATUSES = (OK, FAILED, CRASHED, TIMEOUT, OOM)

# How a memory reading was obtained. The model memory of a result is ``peak_b - before_load_b`` of
# its first (primary) reading; the others are kept beside it.
MEMORY_METHODS = {
    "vmhwm_in_process": "VmHWM of the measuring process (reset before load) minus its VmRSS before load",
    "ru_maxrss_in_process": "getrusage's lifetime peak RSS of the measuring process minus its RSS before load "
                            "(macOS, where the peak cannot be reset)",
    "proc_status_polled": "VmHWM/VmRSS of the tool's process read from /proc/<pid>/status by a second shell",
    "tool_reported": "the benchmark tool's own figure (often a delta from its start, approximate)",
    "phys_footprint": "task_vm_info phys_footprint before load, after load and its peak (iOS)",
    "sysmontap": "physFootprint of the app sampled from the host through DVT sysmontap (iOS)",
}
# How a cold load was made cold.
COLD_METHODS = {
    "fadvise_dontneed": "the artifact's pages dropped with posix_fadvise(DONTNEED) before the load",
    "drop_caches": "the whole page cache dropped (echo 3 > /proc/sys/vm/drop_caches, root) before the load",
    "first_launch": "the first launch after the model arrived on the device (iOS: first load of the compiled model)",
    "not_obtained": "no way to make the load cold here (e.g. an unrooted phone): the 'cold' load may be warm",
}


class DeviceUnavailable(Exception):
    """The device went away (unplugged, adb or the tunnel dropped, its host lost, locked).

    Not a failure of the job: the job was not measured and gets no row. ``device_id`` names the device.
    """

    def __init__(self, device_id: str, reason: str):
        super().__init__(f"{device_id}: {reason}")
        self.device_id, self.reason = device_id, reason


class AgentError(Exception):
    """A problem the user can fix before anything runs: an unknown target, no phone attached, an unmet
    precondition. The message is one line that says what to do (the CLI prints it as such)."""


class ContractError(Exception):
    """An agent returned a result that breaks this contract (a bug in the agent)."""


# --------------------------------------------------------------------------------------------------
# Artifacts


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact: its path relative to the artifact root, its size and sha256."""

    relpath: str
    size_b: int
    sha256: str


@dataclass(frozen=True)
class ArtifactRef:
    """What a device needs to place an artifact: its content key, every file, and where they are on the host.

    ``path`` is the file (or directory: an ``.mlpackage``) a runtime loads; ``files`` lists every file
    a load reads (a directory's contents, an ONNX model and its external data), relative to ``root``.
    ``key`` is the export cache key: two artifacts with the same key have the same bytes.
    """

    key: str
    backend: str
    path: str
    root: str  # the directory ``files`` are relative to
    files: tuple[ArtifactFile, ...]
    sha256: str  # over the sorted (relpath, sha256) pairs: the artifact's content hash

    @property
    def size_b(self) -> int:
        return sum(f.size_b for f in self.files)

    @property
    def relpath(self) -> str:
        """``path`` relative to ``root`` (what to load once the files are placed on a device)."""
        return os.path.relpath(self.path, self.root)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArtifactRef":
        return cls(**{**d, "files": tuple(ArtifactFile(**f) for f in d["files"])})

    @classmethod
    def from_path(cls, path: str | Path, *, key: str, backend: str) -> "ArtifactRef":
        """Hash every file of the artifact at ``path`` (a file, a file with ONNX external data, a directory)."""
        p = Path(path).resolve()
        root = p if p.is_dir() else p.parent
        files = sorted((ArtifactFile(str(f.relative_to(root)), f.stat().st_size, sha256_file(f))
                        for f in artifact_files(p)), key=lambda f: f.relpath)
        return cls(key=key, backend=backend, path=str(p), root=str(root), files=tuple(files),
                   sha256=content_sha256(files))


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(files: tuple[ArtifactFile, ...] | list[ArtifactFile]) -> str:
    """An artifact's content hash: sha256 over its (relpath, sha256) pairs, as listed (sorted by relpath)."""
    return hashlib.sha256("".join(f"{f.relpath}\0{f.sha256}\n" for f in files).encode()).hexdigest()


def artifact_files(path: str | Path) -> list[Path]:
    """Every file a load reads: the artifact, its ONNX external-data sibling, or a package directory's files."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file())
    files = [p]
    for sibling in (p.with_name(p.name + ".data"), p.with_suffix(".data")):
        if sibling.is_file() and sibling not in files:
            files.append(sibling)
    return files


# --------------------------------------------------------------------------------------------------
# The device


@dataclass(frozen=True)
class DeviceInfo:
    """What identifies a device and what it can run, as its agent discovered it.

    ``device_id`` is stable and unique (a phone's serial or UDID; for the local profile the host and
    the CPU it pins to); ``target`` is the profile a spec names (``cpu-1core``, ``android``, ``ios``).
    ``backends`` maps each backend the device can run to the runtime version that runs it.
    ``fingerprint`` is everything else worth recording (model, OS, kernel, SoC, cores, governors).
    """

    device_id: str
    target: str
    platform: str  # "local" | "android" | "ios"
    name: str  # for people: "Pixel 7 (2A111FDH200xyz)", "cpu 1 of this host"
    backends: dict[str, str]  # backend -> runtime version ("onnxruntime 1.31.0", ...)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    threads: int | None = 1  # threads a runtime is held to (None: the OS decides, e.g. iOS)
    # backend -> the accelerators it runs on here (a backend not named runs on the cpu only), and
    # "backend/accelerator" -> why that pair cannot run here (the skipped row's reason)
    accelerators: dict[str, tuple[str, ...]] = field(default_factory=dict)
    accelerator_notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cannot_run(self, backend: str, accelerator: str) -> str | None:
        """Why ``backend`` cannot run on ``accelerator`` here (None when it can)."""
        if accelerator in self.accelerators.get(backend, ("cpu",)):
            return None
        why = self.accelerator_notes.get(f"{backend}/{accelerator}")
        return why or (f"{self.target} runs {backend} on {', '.join(self.accelerators.get(backend, ('cpu',)))} only, "
                       f"not on the {accelerator}")


@dataclass(frozen=True)
class MeasureJob:
    """One measurement: an artifact, the runtime to load it with, and the protocol to follow."""

    artifact_path: str  # where the device loads it (prepare's answer); the host path before prepare
    backend: str  # "onnx" | "litert" | "executorch" | "coreml"
    input_shape: tuple[int, ...]
    runs: int = 60
    warmup: int = 5
    warm_loads: int = 5
    timeout_s: float = 900.0
    seed: int = 0  # for the random input tensor
    artifact_key: str = ""  # the content key, for device-side caches and logs
    accelerator: str = "cpu"  # one of ACCELERATORS: where the agent asks the runtime to run the graph

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MeasureJob":
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)

    def protocol(self) -> dict[str, Any]:
        """The settings that change what a number means (not where the file is, nor the timeout)."""
        return {"runs": self.runs, "warmup": self.warmup, "warm_loads": self.warm_loads, "seed": self.seed,
                "input_shape": list(self.input_shape)}


# --------------------------------------------------------------------------------------------------
# Typed measurements


@dataclass(frozen=True)
class Aggregate:
    """A tool's summary of timed runs when it does not give the samples (LiteRT's benchmark_model).

    Times in nanoseconds as floats (the tool's microseconds converted, nothing rounded). ``percentiles``
    maps a percentile (``"5"``, ``"50"``, ``"95"``) to its value; only what the tool printed is there.
    ``n`` is None when the tool printed a mean without the number of runs behind it (benchmark_model's
    summary line alone): unknown, never guessed.
    """

    n: int | None
    mean_ns: float
    tool: str  # what reported it, with its version when known: "benchmark_model (TFLite 2.16)"
    std_ns: float | None = None
    min_ns: float | None = None
    max_ns: float | None = None
    percentiles: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 1:
            raise ContractError(f"an aggregate of {self.n} runs")
        for name in ("mean_ns", "std_ns", "min_ns", "max_ns"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or math.isnan(v) or v < 0):
                raise ContractError(f"aggregate {name} = {v!r}")
        for p in self.percentiles:
            if not 0 <= float(p) <= 100:
                raise ContractError(f"aggregate percentile {p!r} outside 0..100")

    @property
    def median_ns(self) -> float | None:
        return self.percentiles.get("50")


@dataclass(frozen=True)
class MemoryReading:
    """One way of reading a process's memory around a load. Bytes; None where not obtained."""

    method: str  # a key of MEMORY_METHODS
    before_load_b: int | None = None
    after_load_b: int | None = None
    peak_b: int | None = None
    growth_b: int | None = None  # what a tool reports as growth since its own start, when it gives no baseline
    detail: dict[str, int] = field(default_factory=dict)  # e.g. RssAnon, RssFile, VmSwap at the peak

    def __post_init__(self) -> None:
        if self.method not in MEMORY_METHODS:
            raise ContractError(f"unknown memory method {self.method!r}; known: {', '.join(MEMORY_METHODS)}")

    @property
    def model_b(self) -> int | None:
        """What the model costs: the peak minus the baseline before the load; without a baseline, the growth
        the tool reported (its own figure, named by the method); else None."""
        if self.peak_b is not None and self.before_load_b is not None:
            return self.peak_b - self.before_load_b
        return self.growth_b


@dataclass(frozen=True)
class Delegation:
    """Where a job's graph ran, as the runtime was told and as its tool said: never assumed.

    ``setting`` is the exact runtime setting the agent used (``--use_gpu=true``, ``-e nnapi``,
    ``computeUnits=cpuAndGPU``, ``XNNPACK partitioner``). ``applied`` is what the tool's own output says:
    ``"completely"``, ``"partially"``, ``"not"`` or ``"unknown"`` (the tool said nothing); the counts are
    the tool's (None where it gave none), and ``words`` its line(s) that say so.
    """

    accelerator: str
    setting: str
    applied: str = "unknown"
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    words: str = ""

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ContractError(f"unknown accelerator {self.accelerator!r}; known: {', '.join(ACCELERATORS)}")
        if self.applied not in ("completely", "partially", "not", "unknown"):
            raise ContractError(f"delegation applied = {self.applied!r}")
        for name in ("delegated_nodes", "total_nodes"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ContractError(f"delegation {name} = {v!r}")


@dataclass(frozen=True)
class Conditions:
    """The device's state at one moment (before or after a job). None where the device does not say."""

    thermal_status: str | None = None  # Android thermal service status / iOS thermalState, as named there
    battery_temp_c: float | None = None
    cpu_freq_khz: int | None = None  # current frequency of the pinned core
    governor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


_SAMPLE_FIELDS = ("infer_ns", "warmup_ns", "load_warm_ns", "pinned_cpus")


@dataclass(frozen=True)
class MeasureResult:
    """The raw measurements of one job. Times in nanoseconds, memory in bytes, every sample kept.

    Derived statistics (median, IQR, ...) are computed from these by ``harness.results.stats``, never stored
    instead of them. ``diagnostics`` holds how the agent worked (pids, import times, the tool's command
    line): facts for debugging, never a measurement.
    """

    status: str
    reason: str = ""
    stderr_tail: str = ""
    # inference: raw samples, or a tool's aggregate (never both)
    infer_ns: tuple[int, ...] = ()  # the timed runs, in order
    infer_aggregate: Aggregate | None = None
    first_infer_ns: int | None = None  # the first inference after load, kept apart
    warmup_ns: tuple[int, ...] = ()
    # load
    load_cold_ns: int | None = None
    cold_method: str | None = None  # a key of COLD_METHODS
    load_warm_ns: tuple[int, ...] = ()  # each in a fresh process
    compile_ns: int | None = None  # a model compiled on the device before its load (Core ML), kept apart
    # memory: the first reading is the primary one (model memory comes from it)
    memory: tuple[MemoryReading, ...] = ()
    uss_b: int | None = None  # unique set size after the runs, when the platform tells
    # CPU
    cpu_ns: int | None = None  # CPU time of the timed runs (user + system)
    wall_runs_ns: int | None = None  # wall time of the timed runs
    pinned_cpus: tuple[int, ...] = ()  # as verified while the runs ran
    pinning: str = ""  # how the pin was made and checked, or why there is none
    threads: dict[str, Any] = field(default_factory=dict)  # what each runtime was held to, as checked
    compute_units: str | None = None
    delegation: Delegation | None = None  # where the graph ran (the job's accelerator), as the tool said
    runtime: dict[str, str] = field(default_factory=dict)  # runtime name -> version that ran the job
    memory_cap_b: int | None = None
    conditions_before: Conditions | None = None
    conditions_after: Conditions | None = None
    notes: tuple[str, ...] = ()  # what a reader must know about these numbers ("cold load not obtained: ...")
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ContractError(f"unknown status {self.status!r}; known: {', '.join(STATUSES)}")
        if self.infer_ns and self.infer_aggregate is not None:
            raise ContractError("a result has raw samples and an aggregate: give one")
        if self.cold_method is not None and self.cold_method not in COLD_METHODS:
            raise ContractError(f"unknown cold method {self.cold_method!r}; known: {', '.join(COLD_METHODS)}")
        for name in ("infer_ns", "warmup_ns", "load_warm_ns"):
            if any((not isinstance(v, int)) or v < 0 for v in getattr(self, name)):
                raise ContractError(f"{name} must hold non-negative integer nanoseconds")

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def n_runs(self) -> int | None:
        """Timed runs behind the result: the samples, or the aggregate's count (None: the tool did not say)."""
        return len(self.infer_ns) if self.infer_ns else (self.infer_aggregate.n if self.infer_aggregate else 0)

    @property
    def primary_memory(self) -> MemoryReading | None:
        return self.memory[0] if self.memory else None

    @property
    def model_memory_b(self) -> int | None:
        """Peak memory minus the pre-load baseline of the primary reading: what the model costs."""
        m = self.primary_memory
        return m.model_b if m else None

    def check(self, job: MeasureJob) -> None:
        """Raise :class:`ContractError` when an ok result does not have what ``job`` asked for."""
        if not self.ok:
            return
        if self.n_runs is None:
            raise ContractError(f"the job asked for {job.runs} timed runs, the tool's aggregate does not say how many "
                                "it holds")
        if self.n_runs != job.runs:
            kind = "samples" if self.infer_ns else "runs in the aggregate"
            raise ContractError(f"the job asked for {job.runs} timed runs, the result has {self.n_runs} {kind}")
        if self.infer_ns and len(self.warmup_ns) not in (0, job.warmup):
            raise ContractError(f"the job asked for {job.warmup} warm-up runs, the result has {len(self.warmup_ns)}")
        if len(self.load_warm_ns) not in (0, job.warm_loads):
            raise ContractError(f"the job asked for {job.warm_loads} warm loads, the result has "
                                f"{len(self.load_warm_ns)}")
        if self.load_cold_ns is not None and self.cold_method is None:
            raise ContractError("a cold load without its cold_method")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MeasureResult":
        """Rebuild a result; a field this contract does not know is an error, not silently kept."""
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ContractError(f"unknown result field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        for key in _SAMPLE_FIELDS:
            d[key] = tuple(d.get(key) or ())
        d["notes"] = tuple(d.get("notes") or ())
        if d.get("infer_aggregate") is not None:
            d["infer_aggregate"] = Aggregate(**d["infer_aggregate"])
        d["memory"] = tuple(MemoryReading(**m) for m in d.get("memory") or ())
        if d.get("delegation") is not None:
            d["delegation"] = Delegation(**d["delegation"])
        for key in ("conditions_before", "conditions_after"):
            if d.get(key) is not None:
                d[key] = Conditions(**d[key])
        return cls(**d)


# --------------------------------------------------------------------------------------------------
# The agent


class DeviceAgent(ABC):
    """A session on one device: the local CPU profile, an Android phone, an iPhone.

    Use it as a context manager: ``open()`` connects (and starts what lives across jobs), ``close()``
    undoes everything the agent changed on the device. ``prepare`` and ``measure`` raise
    :class:`DeviceUnavailable` when the device is gone; every failure of a job is the result's status.
    """

    #: The target name used in specs and result rows, e.g. "cpu-1core", "android", "ios".
    target: str

    def open(self) -> None:
        """Connect to the device and set up what lives across jobs. Default: nothing to do."""

    def close(self) -> None:
        """Release the device and undo what the agent changed on it. Must not raise."""

    def __enter__(self) -> "DeviceAgent":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def describe(self) -> DeviceInfo:
        """The device's identity, the backends it runs with their versions, its fingerprint."""

    @abstractmethod
    def prepare(self, artifact: ArtifactRef) -> str:
        """Make the artifact available on the device (once per device and content key); return the
        path the device loads."""

    @abstractmethod
    def measure(self, job: MeasureJob) -> MeasureResult:
        """Run one job. Never raises for a failure of the job: it becomes the result's status."""


# --------------------------------------------------------------------------------------------------
# Targets -> agents


def target_platform(target: str) -> str:
    """The platform a target string is for: ``local`` for ``cpu-1core...``, else what precedes its first colon.
    Not checked here (:func:`open_agent` refuses an unknown target)."""
    return "local" if target.startswith("cpu-1core") else target.split(":", 1)[0]


def _platform_of(target: str) -> str:
    platform = target_platform(target)
    if platform in ("android", "ios") or target.startswith("cpu-1core"):
        return platform
    raise AgentError(f"unknown target {target!r}; targets: cpu-1core, cpu-1core-<N>mb, android, "
                     "android:<serial>, android:<host>:<port>, ios, ios:<udid>")


_PLATFORM_MODULES = {"local": "device_agents.local.agent", "android": "device_agents.android.agent",
                     "ios": "device_agents.ios.agent"}


def open_agent(target: str, **options: Any) -> DeviceAgent:
    """The agent for a target name (not yet opened: use it in a ``with``). Raises :class:`AgentError`."""
    import importlib

    module = importlib.import_module(_PLATFORM_MODULES[_platform_of(target)])
    return module.agent_for(target, **options)


@dataclass(frozen=True)
class Check:
    """One precondition of a platform, for ``splitbench doctor PLATFORM``: what was checked, whether it
    holds (None: could not be told), what was seen, and one line on how to fix it when it does not."""

    name: str
    ok: bool | None
    detail: str = ""
    fix: str = ""


def discover_devices() -> tuple[list[DeviceInfo], list[str]]:
    """Every device this host can reach (the local profile first), and one note per platform that could
    not be asked (its client library missing, its daemon not running), for ``splitbench devices``.

    Each platform module (``device_agents/<platform>/agent.py``) exposes:

    - ``agent_for(target, **options) -> DeviceAgent`` (options: the spec's ``[android]`` / ``[ios]`` table,
      validated by the agent, an unknown key being an :class:`AgentError`);
    - ``discover() -> list[DeviceInfo]``, raising :class:`AgentError` with one line when the platform
      cannot be asked at all (client library missing, daemon not running);
    - ``doctor(target, **options) -> list[Check]`` for ``splitbench doctor PLATFORM``;
    - ``clean(target, **options) -> list[str]`` for ``splitbench clean --device TARGET`` (what it removed).
    """
    import importlib

    found: list[DeviceInfo] = []
    notes: list[str] = []
    for platform, name in _PLATFORM_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # a platform not built on this host
            notes.append(f"{platform}: not available ({exc})")
            continue
        try:
            found.extend(module.discover())
        except AgentError as exc:
            notes.append(f"{platform}: {exc}")
    return found, notes
