"""The result record: what one measured (configuration, backend, device) is, and what identifies it.

One job is one immutable :class:`ResultRecord`, written the moment it finishes as
``DIR/records/<record_key>.json`` (see :mod:`harness.results.store`). Its :class:`Identity` (model definition
and weights, cut, embedding and its k, backend, artifact key, target, device, runtime version,
threads or compute units) drives every grouping: resume, summary, figures, merge, recommend. Records
that differ in identity are never merged or hidden; what does not change a number (timeout, display
order, cache path) is not identity.

Units: times in the records are integer nanoseconds (an aggregate's may be fractional), memory integer
bytes; the tables add milliseconds (``_ms``) and megabytes (``_mb``, 1 MB = 10**6 bytes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from device_agents.base import OK as _OK
from harness.core.errors import UserError

# The record file format. Bump on any change a reader must know about, and say what changed.
RESULTS_SCHEMA_VERSION = 3
RESULTS_SCHEMA_HISTORY = {
    1: "First format: one JSON record per (configuration, backend, target) under records/, with the "
       "artifact identity and costs, the MeasureJob, the raw MeasureResult (ns, bytes) and the device "
       "fingerprint essentials; summary.csv and samples.parquet derived from them.",
    2: "Agent contract v2: an identity per record (device_id apart from target, runtime version, threads or "
       "compute units, model definition and weights); results typed (samples or a tool's aggregate, memory "
       "readings with their method, cold-load method, compile time, conditions before and after, notes, "
       "diagnostics instead of extra). Version-1 records are read by upgrading them.",
    3: "Precision and accelerator in the identity (float32 or int8; cpu, gpu or npu), replacing compute units "
       "(Core ML's setting for an accelerator, kept in the result with the tool's delegation); the result may say "
       "where the graph ran (delegation). Version-1 and -2 records are read by upgrading them: float32, and the "
       "accelerator their compute units name (cpu when they name none).",
}

# Core ML compute units as version 2 recorded them, and the accelerator each stands for.
_COMPUTE_UNITS = {None: "cpu", "cpuOnly": "cpu", "cpuAndGPU": "gpu", "cpuAndNeuralEngine": "npu", "all": "all"}

SKIPPED = "skipped"  # not measured: the device cannot run the backend (never a failure, never exit 3)
OK = _OK


@dataclass(frozen=True)
class Identity:
    """Everything that makes two numbers the same kind of number. Two records with different identities
    are two rows, always."""

    model: str
    model_definition: str  # hash of the model's definition (zoo entry or source file)
    weights: str  # "seed:N" or the state_dict file's hash
    cut: str
    embedding: str
    reduced_dim: int | None
    backend: str
    artifact_key: str
    target: str  # the profile: cpu-1core, cpu-1core-512mb, android, ios
    device_id: str
    runtime_version: str  # "onnxruntime 1.31.0"; "" when the device cannot run the backend
    threads: int | None
    precision: str = "float32"  # what the phone part computes in: float32 or int8
    accelerator: str = "cpu"  # where the runtime was asked to run it: cpu, gpu or npu

    def key(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


# Fingerprint keys that change between two runs on the same device without changing what it measures.
# Matched against the words of a key ("mem_available_b" -> mem, available, b), so "runtime_versions"
# stays in (its word is "runtime", not "time").
_VOLATILE_WORDS = frozenset({"time", "timestamp", "date", "now", "uptime", "load", "loadavg", "avail",
                             "available", "free", "pid", "hostname", "boot", "temp", "temperature", "battery",
                             "thermal"})


def device_essentials(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The part of a device fingerprint that defines a measurement (CPU, kernel, runtime versions, cap),
    without what drifts between runs (clock, uptime, free memory, load, temperature)."""
    def keep(key: str) -> bool:
        return not (set(key.lower().replace("-", "_").split("_")) & _VOLATILE_WORDS)

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if keep(str(k))}
        return value

    return strip(dict(fingerprint))


def make_record_key(identity: Identity, device: dict[str, Any], protocol: dict[str, Any]) -> str:
    """What produced a measurement: its identity, the device's essentials and the job's protocol (runs,
    warm-ups, warm loads, seed, input shape). Anything changing gives a new key, so ``--resume`` never
    mixes old numbers with a changed artifact, device or protocol."""
    blob = _canonical({"identity": identity.to_dict(), "device": device, "protocol": protocol,
                       "schema": RESULTS_SCHEMA_VERSION})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ResultRecord:
    """Everything about one (configuration, backend, device): what ran, how, on what, and the raw result."""

    record_key: str
    identity: Identity
    config: str  # Configuration.name: "conv5_1-simple", "full"
    order: int  # model order of the configuration (on-premise last); display only
    artifact_path: str | None
    artifact_bytes: int | None
    verified: bool | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    costs: dict[str, Any] = field(default_factory=dict)  # params, macs, flops, upload_bytes, ...
    # int8: the artifact's calibration (source, samples, seed, data), the int8 check read from it, the
    # verification input and the top-1 agreement with float32 (harness.export.int8_verify); {} for float32
    quantization: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)  # MeasureJob.to_dict() (empty if never measured)
    result: dict[str, Any] = field(default_factory=dict)  # MeasureResult.to_dict()
    device: dict[str, Any] = field(default_factory=dict)  # the fingerprint essentials of the device
    device_name: str = ""
    spec_hash: str = ""
    started_at: str = ""  # ISO 8601, UTC
    finished_at: str = ""
    duration_s: float | None = None  # wall time of prepare + measure, for the time-left estimate
    splitbench_version: str = ""
    schema_version: int = RESULTS_SCHEMA_VERSION

    # Shortcuts to the identity (what tables and figures group by).
    @property
    def model(self) -> str:
        return self.identity.model

    @property
    def cut(self) -> str:
        return self.identity.cut

    @property
    def embedding(self) -> str:
        return self.identity.embedding

    @property
    def backend(self) -> str:
        return self.identity.backend

    @property
    def target(self) -> str:
        return self.identity.target

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @property
    def precision(self) -> str:
        return self.identity.precision

    @property
    def accelerator(self) -> str:
        return self.identity.accelerator

    @property
    def reduced_dim(self) -> int | None:
        return self.identity.reduced_dim

    @property
    def artifact_key(self) -> str:
        return self.identity.artifact_key

    @property
    def status(self) -> str:
        return self.result.get("status", "failed")

    @property
    def reason(self) -> str:
        return self.result.get("reason", "")

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def failed(self) -> bool:
        """Anything that should have been measured and was not (skipped rows are not failures)."""
        return self.status not in (OK, SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResultRecord":
        version = d.get("schema_version")
        if not isinstance(version, int) or version > RESULTS_SCHEMA_VERSION:
            raise UserError(f"result record {d.get('record_key', '?')} has schema version {version!r}; this "
                            f"splitbench reads up to {RESULTS_SCHEMA_VERSION}: upgrade splitbench")
        if version == 1:
            d = upgrade_v1(d)
        if version in (1, 2):
            d = upgrade_v2(d)
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["identity"] = Identity(**d["identity"])
        return cls(**d)


def upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A version-1 record in version 2's shape: flat memory fields become a ``vmhwm_in_process`` reading,
    ``cold_cache_dropped`` the cold method, ``extra`` the diagnostics; its device id is unknown (``v1:``
    plus its target: version 1 had no device identity)."""
    r = dict(d.get("result") or {})
    extra = dict(r.pop("extra", None) or {})
    memory = []
    if any(r.get(k) is not None for k in ("rss_before_load_b", "rss_after_load_b", "rss_peak_b")):
        detail = {k: extra.pop(k) for k in ("rss_after_runs_b", "rss_file_after_runs_b") if extra.get(k) is not None}
        memory.append({"method": "vmhwm_in_process", "before_load_b": r.get("rss_before_load_b"),
                       "after_load_b": r.get("rss_after_load_b"), "peak_b": r.get("rss_peak_b"), "detail": detail})
    dropped = r.pop("cold_cache_dropped", None)
    for k in ("rss_before_load_b", "rss_after_load_b", "rss_peak_b"):
        r.pop(k, None)
    r.update(memory=memory, diagnostics=extra,
             cold_method=None if r.get("load_cold_ns") is None else ("fadvise_dontneed" if dropped else "not_obtained"))
    runtime = r.get("runtime") or {}
    identity = {
        "model": d["model"], "model_definition": "", "weights": "", "cut": d["cut"], "embedding": d["embedding"],
        "reduced_dim": d.get("reduced_dim"), "backend": d["backend"], "artifact_key": d["artifact_key"],
        "target": d["target"], "device_id": f"v1:{d['target']}",
        "runtime_version": ", ".join(f"{k} {v}" for k, v in sorted(runtime.items())), "threads": 1,
        "compute_units": None,
    }
    return {**d, "identity": identity, "result": r, "schema_version": 2}


def upgrade_v2(d: dict[str, Any]) -> dict[str, Any]:
    """A version-2 record in version 3's shape: float32 (version 2 had no other precision) and the accelerator
    its Core ML compute units stand for (cpu when it had none, as every non-Core ML row). An "all" row (Core ML
    chose among CPU, GPU and Neural Engine) keeps "all": it stands for none of the three alone."""
    identity = dict(d["identity"])
    units = identity.pop("compute_units", None)
    identity.setdefault("precision", "float32")
    identity.setdefault("accelerator", _COMPUTE_UNITS.get(units, "cpu"))
    return {**d, "identity": identity, "schema_version": RESULTS_SCHEMA_VERSION}
