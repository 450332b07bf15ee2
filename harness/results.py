"""Result records and the files of a results directory.

One measured (configuration, backend, target) is one immutable :class:`ResultRecord`, written the
moment it finishes as ``DIR/records/<record_key>.json`` (temp file + ``os.replace``, so an
interrupted run never leaves half a record). ``summary.csv`` and ``samples.parquet`` are rebuilt
from the records alone; every statistic is derived from the raw nanosecond samples, never stored
instead of them, and nothing stored is rounded.

Units: times in the records are integer nanoseconds, memory integer bytes; the tables add
milliseconds (``_ms``) and megabytes (``_mb``, 1 MB = 10**6 bytes, the SI unit, so a byte count
reads off directly).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.errors import UserError

# The record file format. Bump on any change a reader must know about, and say what changed.
RESULTS_SCHEMA_VERSION = 1
RESULTS_SCHEMA_HISTORY = {
    1: "First format: one JSON record per (configuration, backend, target) under records/, with the "
       "artifact identity and costs, the MeasureJob, the raw MeasureResult (ns, bytes) and the device "
       "fingerprint essentials; summary.csv and samples.parquet derived from them.",
}

RECORDS_DIR = "records"
SUMMARY_CSV = "summary.csv"
SAMPLES_PARQUET = "samples.parquet"
MANIFEST_JSON = "manifest.json"

# A row that was not measured because the target cannot run the backend (Core ML off Apple hardware).
# It is neither a measurement nor a failure: it never counts as measured and never sets exit code 2.
SKIPPED = "skipped"
OK = "ok"

# Stability thresholds (pyperf's habits, tuned for one pinned core).
IQR_REL_MAX = 0.10  # IQR / median above this: the timings are noisy
MIN_GAP_REL_MAX = 0.20  # (median - min) / median above this: some runs were much faster than typical
MIN_RUNS = 20  # fewer timed runs than this: the median and p90 are not trustworthy
CPU_SHARE_MIN = 0.90  # CPU time / wall time of the timed runs below this: the pinned core was shared

_NS_PER_MS = 1e6
_B_PER_MB = 1e6
_REASON_CSV_CHARS = 160

SUMMARY_COLUMNS = (
    "model", "cut", "embedding", "config", "backend", "target", "status", "reason", "n_runs",
    "infer_ms_median", "infer_ms_p90", "infer_ms_iqr", "infer_ms_min", "load_ms_cold", "load_ms_warm",
    "mem_model_mb", "mem_peak_mb", "cpu_ms", "params", "macs", "upload_bytes", "artifact_bytes", "artifact",
    "warnings", "verified", "max_rel_err",
    # beyond the list: what the figures and a reader of the CSV need to sort and join
    "order", "reduced_dim", "max_abs_err", "flops", "mac_share", "uss_mb", "load_warm_n",
    "cold_cache_dropped", "artifact_key", "record_key",
)
SAMPLE_IDENTITY = ("model", "cut", "embedding", "config", "order", "backend", "target", "record_key")
PHASES = ("first", "warmup", "timed")  # the first inference after load, warm-up runs, timed runs


# --------------------------------------------------------------------------------------------------
# The record


@dataclass(frozen=True)
class ResultRecord:
    """Everything about one (configuration, backend, target): what ran, how, on what, and the raw result."""

    record_key: str
    model: str
    cut: str
    embedding: str
    config: str  # Configuration.name: "conv5_1-simple", "full"
    order: int  # model order of the configuration (on-premise last)
    backend: str
    target: str
    artifact_key: str  # the export cache key (content of model, cut, embedding, converter versions)
    artifact_path: str | None
    artifact_bytes: int | None
    reduced_dim: int | None = None
    verified: bool | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    costs: dict[str, Any] = field(default_factory=dict)  # params, macs, flops, upload_bytes, ...
    job: dict[str, Any] = field(default_factory=dict)  # MeasureJob.to_dict() (empty if never measured)
    result: dict[str, Any] = field(default_factory=dict)  # MeasureResult.to_dict()
    device: dict[str, Any] = field(default_factory=dict)  # the fingerprint essentials of the target
    spec_hash: str = ""
    started_at: str = ""  # ISO 8601, UTC
    finished_at: str = ""
    duration_s: float | None = None  # wall time of prepare + measure, for the time-left estimate
    splitbench_version: str = ""
    schema_version: int = RESULTS_SCHEMA_VERSION

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
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


# Fingerprint keys that change between two runs on the same device without changing what it measures.
# Matched against the words of a key ("mem_available_b" -> mem, available, b), so "runtime_versions"
# stays in (its word is "runtime", not "time").
_VOLATILE_WORDS = frozenset({"time", "timestamp", "date", "now", "uptime", "load", "loadavg", "avail",
                             "available", "free", "pid", "hostname", "boot", "temp", "temperature", "battery"})


def device_essentials(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The part of a device fingerprint that defines a measurement (CPU, kernel, runtime versions, cap),
    without what drifts between runs (clock, uptime, free memory, load)."""
    def keep(key: str) -> bool:
        return not (set(key.lower().replace("-", "_").split("_")) & _VOLATILE_WORDS)

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if keep(str(k))}
        return value

    return strip(dict(fingerprint))


def make_record_key(artifact_key: str, target: str, device: dict[str, Any], job_params: dict[str, Any]) -> str:
    """What produced a measurement: the artifact's content key, the target and its essentials, the job.

    The artifact path is left out (the same content may live elsewhere); anything else changing gives a
    new key, so ``--resume`` never mixes old numbers with a changed artifact, device or protocol.
    """
    params = {k: v for k, v in job_params.items() if k != "artifact_path"}
    blob = _canonical({"artifact": artifact_key, "target": target, "device": device, "job": params,
                       "schema": RESULTS_SCHEMA_VERSION})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------------
# Atomic files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` so a reader sees the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def record_path(out: str | Path, record_key: str) -> Path:
    return Path(out) / RECORDS_DIR / f"{record_key}.json"


def write_record(out: str | Path, record: ResultRecord) -> Path:
    """Write one record atomically as ``out/records/<record_key>.json``; returns its path."""
    path = record_path(out, record.record_key)
    atomic_write_json(path, record.to_dict())
    return path


def keep_retried(out: str | Path, record_key: str) -> Path | None:
    """Move an earlier record of the same job (a failure being retried) to ``records/retried/``."""
    old = record_path(out, record_key)
    if not old.is_file():
        return None
    kept = old.parent / "retried" / f"{record_key}-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9}.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    os.replace(old, kept)
    return kept


def read_record(path: Path) -> ResultRecord:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable result record ({exc}); delete it and run with --resume") from None
    return ResultRecord.from_dict(data)


def load_records(out: str | Path, *, latest_only: bool = False) -> list[ResultRecord]:
    """Every record under ``out/records``, in model order (configuration, backend, target).

    With ``latest_only``, one record per (model, configuration, backend, target): the last finished. A
    results directory keeps every record it was given (a resumed run with more runs adds one); the
    tables show the newest, and never average records made by different jobs.
    """
    folder = Path(out) / RECORDS_DIR
    if not folder.is_dir():
        return []
    records = [read_record(p) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]
    if latest_only:
        newest: dict[tuple, ResultRecord] = {}
        for r in sorted(records, key=lambda r: r.finished_at):
            newest[(r.model, r.config, r.backend, r.target)] = r
        records = list(newest.values())
    return sorted(records, key=_model_order)


_BACKEND_ORDER = ("onnx", "litert", "executorch", "coreml")


def _model_order(r: ResultRecord) -> tuple:
    b = _BACKEND_ORDER.index(r.backend) if r.backend in _BACKEND_ORDER else len(_BACKEND_ORDER)
    return (r.model, r.order, b, r.backend, r.target)


# --------------------------------------------------------------------------------------------------
# Statistics, derived from the raw samples


@dataclass(frozen=True)
class StabilityWarning:
    """A reason to doubt a measurement, and what to try; data in the tables, never an exception."""

    code: str  # "iqr_high", "min_far", "few_runs", "cold_not_dropped", "core_shared"
    message: str
    fix: str
    value: float | None = None
    threshold: float | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}; try: {self.fix}"


@dataclass(frozen=True)
class Stats:
    """The derived statistics of one record. None where the raw data is missing (failed rows)."""

    n_runs: int
    infer_ms_median: float | None
    infer_ms_p90: float | None
    infer_ms_iqr: float | None
    infer_ms_min: float | None
    load_ms_cold: float | None
    load_ms_warm: float | None
    load_warm_n: int
    mem_model_mb: float | None
    mem_peak_mb: float | None
    uss_mb: float | None
    cpu_ms: float | None
    warnings: tuple[StabilityWarning, ...] = ()


def _ms(ns: float | int | None) -> float | None:
    return None if ns is None else float(ns) / _NS_PER_MS


def _mb(b: float | int | None) -> float | None:
    return None if b is None else float(b) / _B_PER_MB


def stability_warnings(infer_ns: Iterable[int], *, cold_cache_dropped: bool | None = None,
                       cpu_ns: int | None = None, wall_runs_ns: int | None = None) -> list[StabilityWarning]:
    """pyperf-style checks on the timed runs: noise (IQR/median), outlier-fast runs, too few runs, and
    a shared core (the worker got less CPU time than the wall time of its runs)."""
    import numpy as np

    samples = np.asarray(list(infer_ns), dtype=np.float64)
    out: list[StabilityWarning] = []
    if samples.size == 0:
        return out
    median = float(np.median(samples))
    if samples.size < MIN_RUNS:
        out.append(StabilityWarning(
            "few_runs", f"only {samples.size} timed runs (fewer than {MIN_RUNS})",
            "raise [run].runs (the papers use 60)", float(samples.size), float(MIN_RUNS)))
    if median > 0:
        q75, q25 = np.percentile(samples, [75, 25])
        iqr_rel = float(q75 - q25) / median
        if iqr_rel > IQR_REL_MAX:
            out.append(StabilityWarning(
                "iqr_high", f"IQR is {iqr_rel:.1%} of the median (above {IQR_REL_MAX:.0%})",
                "close other programs, set the CPU governor to 'performance', raise [run].warmup and [run].runs",
                iqr_rel, IQR_REL_MAX))
        gap_rel = (median - float(samples.min())) / median
        if gap_rel > MIN_GAP_REL_MAX:
            out.append(StabilityWarning(
                "min_far", f"the fastest run is {gap_rel:.1%} below the median (above {MIN_GAP_REL_MAX:.0%})",
                "check CPU frequency scaling and turbo, other load on the pinned core; raise [run].warmup",
                gap_rel, MIN_GAP_REL_MAX))
    if cpu_ns and wall_runs_ns:
        share = cpu_ns / wall_runs_ns
        if share < CPU_SHARE_MIN:
            out.append(StabilityWarning(
                "core_shared", f"the worker ran {share:.0%} of the timed runs' wall time (below {CPU_SHARE_MIN:.0%}): "
                "something else ran on its core", "stop other load, or choose an idle core with SPLITBENCH_LOCAL_CPU",
                share, CPU_SHARE_MIN))
    if cold_cache_dropped is False:
        out.append(StabilityWarning(
            "cold_not_dropped", "the page cache could not be dropped, so the cold load may be warm",
            "run on a file system that honours posix_fadvise(DONTNEED) (not tmpfs)"))
    return out


def compute_stats(record: ResultRecord) -> Stats:
    """Median, p90, IQR and min of the timed runs; load and memory figures; stability warnings."""
    import numpy as np

    r = record.result
    infer = np.asarray(r.get("infer_ns") or (), dtype=np.float64)
    warm = np.asarray(r.get("load_warm_ns") or (), dtype=np.float64)
    before, peak = r.get("rss_before_load_b"), r.get("rss_peak_b")
    if infer.size:
        q25, q75, q90 = np.percentile(infer, [25, 75, 90])
        median, p90, iqr, low = float(np.median(infer)), float(q90), float(q75 - q25), float(infer.min())
    else:
        median = p90 = iqr = low = None
    warnings = stability_warnings(infer, cold_cache_dropped=r.get("cold_cache_dropped"), cpu_ns=r.get("cpu_ns"),
                                  wall_runs_ns=r.get("wall_runs_ns")) if record.ok else []
    return Stats(
        n_runs=int(infer.size),
        infer_ms_median=_ms(median), infer_ms_p90=_ms(p90), infer_ms_iqr=_ms(iqr), infer_ms_min=_ms(low),
        load_ms_cold=_ms(r.get("load_cold_ns")),
        load_ms_warm=_ms(float(np.median(warm))) if warm.size else None,
        load_warm_n=int(warm.size),
        mem_model_mb=_mb(peak - before) if peak is not None and before is not None else None,
        mem_peak_mb=_mb(peak), uss_mb=_mb(r.get("uss_b")), cpu_ms=_ms(r.get("cpu_ns")),
        warnings=tuple(warnings),
    )


def short_reason(reason: str, limit: int = _REASON_CSV_CHARS) -> str:
    """The first line of a reason, cut to ``limit`` characters (the full text stays in the record)."""
    first = (reason or "").strip().splitlines()[0] if (reason or "").strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Tables


def summary_row(record: ResultRecord) -> dict[str, Any]:
    s = compute_stats(record)
    c = record.costs or {}
    return {
        "model": record.model, "cut": record.cut, "embedding": record.embedding, "config": record.config,
        "backend": record.backend, "target": record.target, "status": record.status,
        "reason": short_reason(record.reason), "n_runs": s.n_runs,
        "infer_ms_median": s.infer_ms_median, "infer_ms_p90": s.infer_ms_p90, "infer_ms_iqr": s.infer_ms_iqr,
        "infer_ms_min": s.infer_ms_min, "load_ms_cold": s.load_ms_cold, "load_ms_warm": s.load_ms_warm,
        "mem_model_mb": s.mem_model_mb, "mem_peak_mb": s.mem_peak_mb, "cpu_ms": s.cpu_ms,
        "params": c.get("params"), "macs": c.get("macs"), "upload_bytes": c.get("upload_bytes"),
        "artifact_bytes": record.artifact_bytes, "artifact": record.artifact_path,
        "warnings": " | ".join(str(w) for w in s.warnings),
        "verified": record.verified, "max_rel_err": record.max_rel_err,
        "order": record.order, "reduced_dim": record.reduced_dim, "max_abs_err": record.max_abs_err,
        "flops": c.get("flops"), "mac_share": c.get("mac_share"), "uss_mb": s.uss_mb,
        "load_warm_n": s.load_warm_n, "cold_cache_dropped": record.result.get("cold_cache_dropped"),
        "artifact_key": record.artifact_key, "record_key": record.record_key,
    }


def summary_frame(records: Iterable[ResultRecord]):
    """One row per (configuration, backend, target), in model order, with the columns of ``summary.csv``."""
    import pandas as pd

    rows = [summary_row(r) for r in records]
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    # Integer columns stay integers with gaps (pandas' nullable Int64), so no count prints as 1.2e+07.
    for col in ("n_runs", "params", "macs", "flops", "upload_bytes", "artifact_bytes", "order", "reduced_dim",
                "load_warm_n"):
        frame[col] = pd.array(frame[col].tolist(), dtype="Int64")
    for col in ("verified", "cold_cache_dropped"):
        frame[col] = pd.array(frame[col].tolist(), dtype="boolean")
    return frame


def _samples_schema():
    import pyarrow as pa

    return pa.schema([
        ("model", pa.string()), ("cut", pa.string()), ("embedding", pa.string()), ("config", pa.string()),
        ("order", pa.int32()), ("backend", pa.string()), ("target", pa.string()), ("record_key", pa.string()),
        ("phase", pa.string()), ("run", pa.int32()), ("infer_ns", pa.int64()), ("infer_ms", pa.float64()),
    ])


def samples_table(records: Iterable[ResultRecord]):
    """One row per inference: the timed runs (``phase == "timed"``), plus the first inference and the
    warm-up runs kept apart by ``phase``. ``run`` counts from 0 within each phase."""
    import pyarrow as pa

    cols: dict[str, list] = {name: [] for name in _samples_schema().names}
    for r in records:
        res = r.result
        first = res.get("first_infer_ns")
        phases = (("first", [first] if first is not None else []), ("warmup", res.get("warmup_ns") or []),
                  ("timed", res.get("infer_ns") or []))
        for phase, values in phases:
            for i, ns in enumerate(values):
                for key in SAMPLE_IDENTITY:
                    cols[key].append(getattr(r, key))
                cols["phase"].append(phase)
                cols["run"].append(i)
                cols["infer_ns"].append(int(ns))
                cols["infer_ms"].append(int(ns) / _NS_PER_MS)
    return pa.Table.from_pydict(cols, schema=_samples_schema())


def write_tables(out: str | Path) -> tuple[Path, Path]:
    """Rebuild ``summary.csv`` and ``samples.parquet`` from the records in ``out`` (atomically)."""
    import io

    import pyarrow.parquet as pq

    out = Path(out)
    records = load_records(out, latest_only=True)
    summary = summary_frame(records)
    csv_path, parquet_path = out / SUMMARY_CSV, out / SAMPLES_PARQUET
    # pandas writes floats with repr (shortest round-trip): nothing stored is rounded.
    atomic_write_bytes(csv_path, summary.to_csv(index=False).encode())
    buf = io.BytesIO()
    pq.write_table(samples_table(records), buf)
    atomic_write_bytes(parquet_path, buf.getvalue())
    return csv_path, parquet_path
