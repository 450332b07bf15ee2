"""The tables of a results directory, rebuilt from its records alone: ``summary.csv`` and ``samples.parquet``.

``summary.csv`` has one row per identity (configuration, backend, target, device, runtime version, ...):
two phones with the same target are two rows. Nothing stored is rounded (pandas writes floats with
repr). ``samples.parquet`` has one row per inference of records that have samples; aggregate-only rows
have none there (their ``timing_kind`` is ``aggregate`` in the summary), because an aggregate is never
expanded into samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from harness.results.records import ResultRecord
from harness.core.units import NS_PER_MS
from harness.results.stats import compute_stats
from harness.results.layout import SAMPLES_PARQUET, SUMMARY_CSV
from harness.results.store import atomic_write_bytes, load_records, model_order

_REASON_CSV_CHARS = 160

SUMMARY_COLUMNS = (
    "model", "cut", "embedding", "config", "backend", "target", "status", "reason", "n_runs",
    "infer_ms_median", "infer_ms_p90", "infer_ms_iqr", "infer_ms_min", "load_ms_cold", "load_ms_warm",
    "mem_model_mb", "mem_peak_mb", "cpu_ms", "params", "macs", "upload_bytes", "artifact_bytes", "artifact",
    "warnings", "verified", "max_rel_err",
    # what the phone part computes in (float32, int8) and where the runtime ran it (cpu, gpu, npu)
    "precision", "accelerator",
    # int8: where its calibration inputs came from, and its top-1 agreement with float32 (classifiers)
    "calibration", "top1_agreement_calibration", "top1_agreement_held_out",
    # the rest of the identity: two devices with the same target are two rows
    "device_id", "runtime_version", "threads",
    # where the graph ran, as the runtime was told and as its tool said (contract v3)
    "accelerator_setting", "delegated", "delegated_nodes", "total_nodes",
    # how each number was obtained (contract v2): samples or a tool's aggregate, cold method, memory method
    "timing_kind", "aggregate_tool", "infer_ms_mean", "infer_ms_std", "infer_ms_p5", "infer_ms_p95",
    "infer_ms_max", "first_infer_ms", "cold_method",
    "compile_ms", "memory_method", "notes", "device_name",
    "thermal_before", "thermal_after", "battery_c_before", "battery_c_after", "cpu_khz_before", "cpu_khz_after",
    # what the figures and a reader of the CSV need to sort and join
    "order", "reduced_dim", "max_abs_err", "flops", "mac_share", "uss_mb", "load_warm_n",
    "artifact_key", "record_key",
)
SAMPLE_IDENTITY = ("model", "cut", "embedding", "config", "precision", "order", "backend", "target", "accelerator",
                   "device_id", "record_key")
PHASES = ("first", "warmup", "timed")  # the first inference after load, warm-up runs, timed runs
_INT_COLUMNS = ("n_runs", "params", "macs", "flops", "upload_bytes", "artifact_bytes", "order", "reduced_dim",
                "load_warm_n", "threads", "cpu_khz_before", "cpu_khz_after", "delegated_nodes", "total_nodes")


def short_reason(reason: str, limit: int = _REASON_CSV_CHARS) -> str:
    """The first line of a reason, cut to ``limit`` characters (the full text stays in the record)."""
    first = (reason or "").strip().splitlines()[0] if (reason or "").strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _cond(record: ResultRecord, when: str, key: str) -> Any:
    c = record.result.get(f"conditions_{when}") or {}
    return c.get(key)


def summary_row(record: ResultRecord) -> dict[str, Any]:
    s = compute_stats(record)
    c = record.costs or {}
    ident = record.identity
    d = record.result.get("delegation") or {}
    return {
        "model": ident.model, "cut": ident.cut, "embedding": ident.embedding, "config": record.config,
        "precision": ident.precision, "backend": ident.backend, "target": ident.target,
        "accelerator": ident.accelerator, "device_id": ident.device_id, "status": record.status,
        "reason": short_reason(record.reason), "n_runs": s.n_runs, "timing_kind": s.timing_kind,
        "infer_ms_median": s.infer_ms_median, "infer_ms_p90": s.infer_ms_p90, "infer_ms_iqr": s.infer_ms_iqr,
        "infer_ms_min": s.infer_ms_min, "infer_ms_mean": s.infer_ms_mean, "infer_ms_std": s.infer_ms_std,
        "infer_ms_p5": s.infer_ms_p5, "infer_ms_p95": s.infer_ms_p95, "infer_ms_max": s.infer_ms_max,
        "first_infer_ms": s.first_infer_ms, "load_ms_cold": s.load_ms_cold, "cold_method": s.cold_method,
        "load_ms_warm": s.load_ms_warm, "compile_ms": s.compile_ms,
        "mem_model_mb": s.mem_model_mb, "mem_peak_mb": s.mem_peak_mb, "memory_method": s.memory_method,
        "cpu_ms": s.cpu_ms, "params": c.get("params"), "macs": c.get("macs"), "upload_bytes": c.get("upload_bytes"),
        "artifact_bytes": record.artifact_bytes, "artifact": record.artifact_path,
        "warnings": " | ".join(str(w) for w in s.warnings), "notes": " | ".join(record.result.get("notes") or ()),
        "verified": record.verified, "max_rel_err": record.max_rel_err,
        **_quantization_columns(record.quantization),
        "runtime_version": ident.runtime_version, "threads": ident.threads,
        "accelerator_setting": d.get("setting"), "delegated": d.get("applied"),
        "delegated_nodes": d.get("delegated_nodes"), "total_nodes": d.get("total_nodes"),
        "aggregate_tool": s.aggregate_tool, "device_name": record.device_name,
        "thermal_before": _cond(record, "before", "thermal_status"),
        "thermal_after": _cond(record, "after", "thermal_status"),
        "battery_c_before": _cond(record, "before", "battery_temp_c"),
        "battery_c_after": _cond(record, "after", "battery_temp_c"),
        "cpu_khz_before": _cond(record, "before", "cpu_freq_khz"),
        "cpu_khz_after": _cond(record, "after", "cpu_freq_khz"),
        "order": record.order, "reduced_dim": ident.reduced_dim, "max_abs_err": record.max_abs_err,
        "flops": c.get("flops"), "mac_share": c.get("mac_share"), "uss_mb": s.uss_mb,
        "load_warm_n": s.load_warm_n, "artifact_key": ident.artifact_key, "record_key": record.record_key,
    }


def _quantization_columns(q: dict[str, Any]) -> dict[str, Any]:
    """The calibration's source ("model data", "seeded random") and the top-1 agreements of an int8 record."""
    top1 = q.get("top1_agreement") or {}
    return {"calibration": (q.get("calibration") or {}).get("source"),
            "top1_agreement_calibration": (top1.get("calibration") or {}).get("agreement"),
            "top1_agreement_held_out": (top1.get("held_out") or {}).get("agreement")}


def summary_frame(records: Iterable[ResultRecord]):
    """One row per identity, in model order, with the columns of ``summary.csv``."""
    import pandas as pd

    rows = [summary_row(r) for r in records]
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    # Integer columns stay integers with gaps (pandas' nullable Int64), so no count prints as 1.2e+07.
    for col in _INT_COLUMNS:
        frame[col] = pd.array(frame[col].tolist(), dtype="Int64")
    frame["verified"] = pd.array(frame["verified"].tolist(), dtype="boolean")
    return frame


def _samples_schema():
    import pyarrow as pa

    return pa.schema([
        ("model", pa.string()), ("cut", pa.string()), ("embedding", pa.string()), ("config", pa.string()),
        ("precision", pa.string()), ("order", pa.int32()), ("backend", pa.string()), ("target", pa.string()),
        ("accelerator", pa.string()), ("device_id", pa.string()),
        ("record_key", pa.string()), ("phase", pa.string()), ("run", pa.int32()), ("infer_ns", pa.int64()),
        ("infer_ms", pa.float64()),
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
                cols["infer_ms"].append(int(ns) / NS_PER_MS)
    return pa.Table.from_pydict(cols, schema=_samples_schema())


def write_tables(out: str | Path, records: list[ResultRecord] | None = None) -> tuple[Path, Path]:
    """Rebuild ``summary.csv`` and ``samples.parquet`` (atomically, rows in model order) from ``records``, or
    from the records in ``out`` (the newest per identity) when None."""
    import io

    import pyarrow.parquet as pq

    out = Path(out)
    # model order whoever wrote them last: a run's records arrive in the order the devices finish
    records = load_records(out, latest_only=True) if records is None else sorted(records, key=model_order)
    summary = summary_frame(records)
    csv_path, parquet_path = out / SUMMARY_CSV, out / SAMPLES_PARQUET
    # pandas writes floats with repr (shortest round-trip): nothing stored is rounded.
    atomic_write_bytes(csv_path, summary.to_csv(index=False).encode())
    buf = io.BytesIO()
    pq.write_table(samples_table(records), buf)
    atomic_write_bytes(parquet_path, buf.getvalue())
    return csv_path, parquet_path
