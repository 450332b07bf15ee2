"""Statistics of one record, derived from its raw measurements, never stored instead of them.

Timed runs come as raw samples (median, p90, IQR and min computed here) or, from a phone tool that
prints only a summary, as an aggregate: then only what the tool reported is shown (its median when it
printed one, its mean and std, its min) and nothing is computed that would need the samples (an
aggregate without a p90 has no p90). Every figure says which kind it is (``timing_kind``).

Stability checks in pyperf's manner: warnings stored with the fix to try, never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from harness.core.units import b_to_mb, ns_to_ms
from harness.results.records import ResultRecord

# Stability thresholds (pyperf's habits, tuned for one pinned core).
IQR_REL_MAX = 0.10  # IQR / median above this: the timings are noisy
CV_MAX = 0.10  # std / mean above this (aggregates, which have no IQR): the timings are noisy
MIN_GAP_REL_MAX = 0.20  # (median - min) / median above this: some runs were much faster than typical
MIN_RUNS = 20  # fewer timed runs than this: the median and p90 are not trustworthy
CPU_SHARE_MIN = 0.90  # CPU time / wall time of the timed runs below this: the pinned core was shared

SAMPLES = "samples"
AGGREGATE = "aggregate"


@dataclass(frozen=True)
class StabilityWarning:
    """A reason to doubt a measurement, and what to try; data in the tables, never an exception."""

    code: str  # "iqr_high", "cv_high", "min_far", "few_runs", "cold_not_dropped", "core_shared", "host_int8"
    message: str
    fix: str
    value: float | None = None
    threshold: float | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}; try: {self.fix}"


@dataclass(frozen=True)
class Stats:
    """The derived statistics of one record. None where the raw data is missing or the tool did not say."""

    n_runs: int | None  # None: the tool's aggregate does not say how many runs it holds
    timing_kind: str | None  # "samples", "aggregate", or None (nothing timed)
    aggregate_tool: str | None
    infer_ms_median: float | None
    infer_ms_p90: float | None
    infer_ms_iqr: float | None
    infer_ms_min: float | None
    infer_ms_mean: float | None
    infer_ms_std: float | None
    infer_ms_p5: float | None
    infer_ms_p95: float | None
    infer_ms_max: float | None
    first_infer_ms: float | None
    load_ms_cold: float | None
    cold_method: str | None
    load_ms_warm: float | None
    load_warm_n: int
    compile_ms: float | None
    mem_model_mb: float | None
    mem_peak_mb: float | None
    memory_method: str | None
    uss_mb: float | None
    cpu_ms: float | None
    warnings: tuple[StabilityWarning, ...] = ()


def _timing_warnings(n: int | None, median: float | None, iqr: float | None, low: float | None, mean: float | None,
                     std: float | None, pinned: bool = True) -> list[StabilityWarning]:
    out: list[StabilityWarning] = []
    if n is not None and n < MIN_RUNS:
        out.append(StabilityWarning("few_runs", f"only {n} timed runs (fewer than {MIN_RUNS})",
                                    "raise [run].runs (the papers use 60)", float(n), float(MIN_RUNS)))
    if median and iqr is not None:
        iqr_rel = iqr / median
        if iqr_rel > IQR_REL_MAX:
            out.append(StabilityWarning(
                "iqr_high", f"IQR is {iqr_rel:.1%} of the median (above {IQR_REL_MAX:.0%})",
                "close other programs, set the CPU governor to 'performance', raise [run].warmup and [run].runs",
                iqr_rel, IQR_REL_MAX))
    elif iqr is None and mean and std is not None:
        cv = std / mean
        if cv > CV_MAX:
            out.append(StabilityWarning(
                "cv_high", f"the tool's std is {cv:.1%} of its mean (above {CV_MAX:.0%})",
                "let the device cool, close other apps, raise [run].warmup and [run].runs", cv, CV_MAX))
    if median and low is not None:
        gap_rel = (median - low) / median
        if gap_rel > MIN_GAP_REL_MAX:
            out.append(StabilityWarning(
                "min_far", f"the fastest run is {gap_rel:.1%} below the median (above {MIN_GAP_REL_MAX:.0%})",
                "check CPU frequency scaling and turbo, other load on the pinned core; raise [run].warmup" if pinned
                else "let the device cool between jobs, close other apps; raise [run].warmup",
                gap_rel, MIN_GAP_REL_MAX))
    return out


def stability_warnings(infer_ns: Iterable[int], *, cold_method: str | None = None, cpu_ns: int | None = None,
                       wall_runs_ns: int | None = None) -> list[StabilityWarning]:
    """pyperf-style checks on raw timed runs: noise (IQR/median), outlier-fast runs, too few runs, a shared
    core (the worker got less CPU time than the wall time of its runs), a cold load that was not cold."""
    import numpy as np

    samples = np.asarray(list(infer_ns), dtype=np.float64)
    if samples.size == 0:
        return []
    median = float(np.median(samples))
    q75, q25 = np.percentile(samples, [75, 25])
    out = _timing_warnings(int(samples.size), median, float(q75 - q25), float(samples.min()), None, None)
    return out + _other_warnings(cold_method, cpu_ns, wall_runs_ns)


def _other_warnings(cold_method: str | None, cpu_ns: int | None, wall_runs_ns: int | None,
                    pinned: bool = True) -> list[StabilityWarning]:
    out = []
    # Only a run pinned to one core can tell a shared core: unpinned (iOS, Core ML on the GPU) the CPU may
    # idle legitimately while the accelerator works.
    if pinned and cpu_ns and wall_runs_ns:
        share = cpu_ns / wall_runs_ns
        if share < CPU_SHARE_MIN:
            out.append(StabilityWarning(
                "core_shared", f"the worker ran {share:.0%} of the timed runs' wall time (below {CPU_SHARE_MIN:.0%}): "
                "something else ran on its core", "stop other load, or choose an idle core with SPLITBENCH_LOCAL_CPU",
                share, CPU_SHARE_MIN))
    if cold_method == "not_obtained":
        out.append(StabilityWarning(
            "cold_not_dropped", "the load could not be made cold, so the cold load may be warm",
            "locally: a file system that honours posix_fadvise(DONTNEED) (not tmpfs); on Android: a rooted phone"))
    return out


HOST_INT8 = StabilityWarning(
    "host_int8", "LiteRT int8 timed on a host CPU: its XNNPACK uses the host's int8 matrix instructions (AMX-INT8 "
    "on this project's host: int8 ran 10-19x faster than float32 there, ONNX Runtime and ExecuTorch 3-4x), which "
    "no phone has: the speed-up is the host's, not a phone's",
    "quote an int8 speed-up measured on a phone (an android target), and compare int8 across runtimes only there")


def host_int8(precision: str, backend: str, target: str) -> bool:
    """A LiteRT int8 row timed on the host (docs/measuring.md): its speed-up over float32 is no phone's."""
    return precision == "int8" and backend == "litert" and str(target).startswith("cpu-1core")


def compute_stats(record: ResultRecord) -> Stats:
    """Median, p90, IQR, min (samples) or the tool's figures (aggregate); load, memory; stability warnings."""
    import numpy as np

    r = record.result
    infer = np.asarray(r.get("infer_ns") or (), dtype=np.float64)
    agg: dict[str, Any] | None = r.get("infer_aggregate")
    warm = np.asarray(r.get("load_warm_ns") or (), dtype=np.float64)
    memory = (r.get("memory") or [None])[0]
    median = p90 = iqr = low = mean = std = p5 = p95 = high = None
    kind, tool, n = None, None, 0
    if infer.size:
        kind, n = SAMPLES, int(infer.size)
        q5, q25, q75, q90, q95 = np.percentile(infer, [5, 25, 75, 90, 95])
        median, p90, iqr, low = float(np.median(infer)), float(q90), float(q75 - q25), float(infer.min())
        p5, p95, high = float(q5), float(q95), float(infer.max())
        mean, std = float(infer.mean()), float(infer.std(ddof=1)) if infer.size > 1 else None
    elif agg:
        kind, tool, n = AGGREGATE, agg.get("tool"), None if agg.get("n") is None else int(agg["n"])
        pct = {str(k): v for k, v in (agg.get("percentiles") or {}).items()}
        median, p90, low, high = pct.get("50"), pct.get("90"), agg.get("min_ns"), agg.get("max_ns")
        p5, p95 = pct.get("5"), pct.get("95")
        iqr = pct["75"] - pct["25"] if "75" in pct and "25" in pct else None
        mean, std = agg.get("mean_ns"), agg.get("std_ns")
    warnings: list[StabilityWarning] = []
    if record.ok and kind:
        warnings = _timing_warnings(n, median, iqr, low, mean, std, pinned=bool(r.get("pinned_cpus"))) + \
            _other_warnings(r.get("cold_method"), r.get("cpu_ns"), r.get("wall_runs_ns"), bool(r.get("pinned_cpus")))
        if host_int8(record.precision, record.backend, record.target):
            warnings.append(HOST_INT8)
    before = memory.get("before_load_b") if memory else None
    peak = memory.get("peak_b") if memory else None
    return Stats(
        n_runs=n, timing_kind=kind, aggregate_tool=tool,
        infer_ms_median=ns_to_ms(median), infer_ms_p90=ns_to_ms(p90), infer_ms_iqr=ns_to_ms(iqr), infer_ms_min=ns_to_ms(low),
        infer_ms_mean=ns_to_ms(mean), infer_ms_std=ns_to_ms(std), infer_ms_p5=ns_to_ms(p5), infer_ms_p95=ns_to_ms(p95),
        infer_ms_max=ns_to_ms(high), first_infer_ms=ns_to_ms(r.get("first_infer_ns")),
        load_ms_cold=ns_to_ms(r.get("load_cold_ns")), cold_method=r.get("cold_method"),
        load_ms_warm=ns_to_ms(float(np.median(warm))) if warm.size else None, load_warm_n=int(warm.size),
        compile_ms=ns_to_ms(r.get("compile_ns")),
        mem_model_mb=b_to_mb(peak - before) if peak is not None and before is not None else
        b_to_mb(memory.get("growth_b") if memory else None),
        mem_peak_mb=b_to_mb(peak), memory_method=memory.get("method") if memory else None,
        uss_mb=b_to_mb(r.get("uss_b")), cpu_ms=ns_to_ms(r.get("cpu_ns")), warnings=tuple(warnings),
    )
