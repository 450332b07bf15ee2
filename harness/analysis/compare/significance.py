"""The statistics of a comparison: each metric's figures and test (rank, quantile, Welch's t from aggregates,
or the threshold alone), its bootstrap interval, and the verdicts over the whole comparison
(Benjamini-Hochberg, then significance and practical size; see :mod:`harness.analysis.compare`)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

from harness.analysis.compare.model import (BOOTSTRAP_MIN_N, CI_LEVEL, METRIC, NO_CHANGE, NOT_COMPARABLE, NOT_TESTED,
                                            P90, TEST_EXACT, TEST_NONE, TEST_ONE, TEST_QUANTILE, TEST_RANK, TEST_TOOL,
                                            TEST_WELCH, Metric, MetricComparison, Options, PairComparison)
from harness.core.units import NS_PER_MS, ns_to_ms, sig
from harness.results.records import ResultRecord
from harness.results.stats import compute_stats


# --------------------------------------------------------------------------------------------------
# One metric


def compare_metric(metric: Metric, b: ResultRecord, n: ResultRecord, options: Options, seed: int,
                   disturbed: str) -> MetricComparison:
    """The figures and the test of one metric; the verdict waits for the adjusted p-values (see :func:`adjust`).

    ``disturbed`` says which side's core was shared during its timed runs (empty: neither). Then no time of
    the job is judged: the inference times include another program's, and the loads were timed in the same
    job with no reading of their own (on the shared calibration machine they were far noisier in such jobs;
    see benchmarks/bench_compare.py)."""
    t = options.thresholds[metric.name]
    name = metric.name
    if name in ("infer_median", "infer_p90"):
        return _inference(metric, b, n, t, options, seed, disturbed)
    if name == "load_warm":
        bs, ns = _ms_array(b.result.get("load_warm_ns")), _ms_array(n.result.get("load_warm_ns"))
        if not bs or not ns:
            return _missing(metric, t, "BASE" if not bs else "NEW", "no warm loads")
        if disturbed:
            return _refuse(metric, _median(bs), _median(ns), t, f"{disturbed}: its loads were timed in the same job",
                           True)
        return _samples(metric, bs, ns, t, options, seed, _median, TEST_RANK, "warm loads")
    if name == "load_cold":
        bm, nm = b.result.get("cold_method"), n.result.get("cold_method")
        bv, nv = ns_to_ms(b.result.get("load_cold_ns")), ns_to_ms(n.result.get("load_cold_ns"))
        if bv is None or nv is None:
            return _missing(metric, t, "BASE" if bv is None else "NEW", "no cold load")
        if bm != nm:
            return _refuse(metric, bv, nv, t, f"the cold load was made cold differently: {bm} -> {nm}")
        if disturbed:
            return _refuse(metric, bv, nv, t, f"{disturbed}: its cold load was timed in the same job", True)
        note = "one cold load per run: threshold alone"
        if bm == "not_obtained":
            note += "; neither load could be made cold (the 'cold' loads may be warm)"
        return _single(metric, bv, nv, t, TEST_ONE, 1, 1, note)
    if name == "mem_model":
        bs, ns = compute_stats(b), compute_stats(n)
        if bs.mem_model_mb is None or ns.mem_model_mb is None:
            return _missing(metric, t, "BASE" if bs.mem_model_mb is None else "NEW", "no memory reading")
        if bs.memory_method != ns.memory_method:
            return _refuse(metric, bs.mem_model_mb, ns.mem_model_mb, t,
                           f"memory read differently: {bs.memory_method} -> {ns.memory_method}")
        return _single(metric, bs.mem_model_mb, ns.mem_model_mb, t, TEST_ONE, 1, 1,
                       "one reading per run: threshold alone")
    if name == "artifact_bytes":
        bv, nv = b.artifact_bytes, n.artifact_bytes
    else:
        bv, nv = (b.costs or {}).get("upload_bytes"), (n.costs or {}).get("upload_bytes")
    if bv is None or nv is None:
        return _missing(metric, t, "BASE" if bv is None else "NEW", "not recorded")
    return _single(metric, float(bv), float(nv), t, TEST_EXACT, 1, 1, "")


def _ms_array(values: Sequence[int] | None) -> list[float]:
    return [float(v) / NS_PER_MS for v in values or ()]


def _median(values: Sequence[float]) -> float:
    import numpy as np

    return float(np.median(values))


def _p90(values: Sequence[float]) -> float:
    import numpy as np

    return float(np.percentile(values, P90))  # as harness.results.stats computes the p90 of a record


def _ratio(base: float, new: float) -> float | None:
    if base == new:
        return 1.0
    if base <= 0 or new < 0:
        return None
    return new / base


def _result(metric: Metric, base: float | None, new: float | None, t: float, test: str, n_base: int | None,
            n_new: int | None, p: float | None = None, ci: tuple[float, float] | None = None, note: str = "",
            verdict: str = "") -> MetricComparison:
    ratio = None if base is None or new is None else _ratio(base, new)
    if ratio is None and not verdict:
        verdict, note = NOT_COMPARABLE, (note + "; " if note else "") + "BASE is not positive: no ratio"
    return MetricComparison(metric=metric.name, unit=metric.unit, base=base, new=new, ratio=ratio,
                            ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None, test=test, n_base=n_base,
                            n_new=n_new, p_value=p, p_adjusted=None, threshold=t, verdict=verdict, note=note)


def _single(metric: Metric, base: float, new: float, t: float, test: str, n_base: int | None, n_new: int | None,
            note: str) -> MetricComparison:
    return _result(metric, base, new, t, test, n_base, n_new, note=note)


def _missing(metric: Metric, t: float, side: str, what: str) -> MetricComparison:
    return _result(metric, None, None, t, TEST_NONE, 0, 0, note=f"{what} in {side}", verdict=NOT_COMPARABLE)


def _refuse(metric: Metric, base: float | None, new: float | None, t: float, why: str,
            disturbed: bool = False) -> MetricComparison:
    return dataclasses.replace(_result(metric, base, new, t, TEST_NONE, 0, 0, note=why, verdict=NOT_COMPARABLE),
                               disturbed=disturbed)


def _bootstrap_ci(base: Sequence[float], new: Sequence[float], statistic, resamples: int,
                  seed: int) -> tuple[float, float] | None:
    if resamples <= 0 or min(len(base), len(new)) < BOOTSTRAP_MIN_N:
        return None
    import numpy as np
    from scipy.stats import bootstrap

    def ratio(b, n, axis):
        return statistic(n, axis=axis) / statistic(b, axis=axis)

    res = bootstrap((np.asarray(base), np.asarray(new)), ratio, vectorized=True, paired=False,
                    n_resamples=resamples, confidence_level=CI_LEVEL, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _np_median(x, axis):
    import numpy as np

    return np.median(x, axis=axis)


def _np_p90(x, axis):
    import numpy as np

    return np.percentile(x, P90, axis=axis)


def _p_value(test: str, bs: Sequence[float], ns: Sequence[float]) -> float:
    """The two-sided p-value of ``test`` (rank or quantile) on the two sides' samples."""
    from scipy.stats import fisher_exact, mannwhitneyu

    if test == TEST_RANK:
        p = float(mannwhitneyu(ns, bs, alternative="two-sided").pvalue)
    else:
        # Mood's quantile test at the p90: how many runs of each side lie above the pooled 90th percentile.
        import numpy as np

        cut = float(np.percentile(np.concatenate([bs, ns]), P90))
        b_above, n_above = int(sum(v > cut for v in bs)), int(sum(v > cut for v in ns))
        p = float(fisher_exact([[n_above, len(ns) - n_above], [b_above, len(bs) - b_above]]).pvalue)
    return min(p, 1.0)


@functools.lru_cache(maxsize=256)
def best_p(test: str, n_base: int, n_new: int) -> float:
    """The smallest p-value ``test`` can give with these sample sizes: its p on two sides that do not overlap
    at all (every NEW run slower than every BASE run). At or above alpha, the test cannot see any change."""
    if n_base < 1 or n_new < 1:
        return 1.0
    return _p_value(test, [float(i) for i in range(n_base)], [float(n_base + i) for i in range(n_new)])


@functools.lru_cache(maxsize=64)
def runs_needed(test: str, alpha: float) -> int:
    """The fewest runs per side (the same on both) from which ``test`` can reach p < ``alpha``. The quantile
    test's best p does not fall at every step (the count above the p90 moves in whole runs), so the answer is
    where it stays below alpha for the next dozen sizes."""
    n = 1
    while n < 2000 and not all(best_p(test, m, m) < alpha for m in range(n, n + 12)):
        n += 1
    return n


_TEST_NAME = {TEST_RANK: "Mann-Whitney U test", TEST_QUANTILE: "quantile test"}


def _samples(metric: Metric, bs: list[float], ns: list[float], t: float, options: Options, seed: int,
             point, test: str, what: str) -> MetricComparison:
    stat = _np_median if test == TEST_RANK else _np_p90
    ci = _bootstrap_ci(bs, ns, stat, options.bootstrap_resamples, seed)
    note = "" if ci or options.bootstrap_resamples <= 0 else f"fewer than {BOOTSTRAP_MIN_N} samples: no interval"
    if best_p(test, len(bs), len(ns)) >= options.alpha:
        # Not run: even two sides that do not overlap at all would not be significant. The threshold alone
        # would call noise a regression (one timed run moves by far more than a median of 60).
        why = (f"{len(bs)} and {len(ns)} {what}: the {_TEST_NAME[test]} cannot reach p < {options.alpha:g} with so "
               f"few (it needs at least {runs_needed(test, options.alpha)} a side)")
        return _result(metric, point(bs), point(ns), t, test, len(bs), len(ns), ci=ci, note=why, verdict=NOT_TESTED)
    p = _p_value(test, bs, ns)
    return _result(metric, point(bs), point(ns), t, test, len(bs), len(ns), p=p, ci=ci, note=note)


def _tool_figure(metric: Metric, base: float | None, new: float | None, t: float, n_base: int | None,
                 n_new: int | None, options: Options, what: str) -> MetricComparison:
    """A phone tool's figure over its own runs, without samples to test: judged by the threshold only when the
    tool timed at least as many runs on each side as the rank test would need, else not tested (also when a tool
    did not say how many runs it timed)."""
    needed = runs_needed(TEST_RANK, options.alpha)
    if n_base is None or n_new is None or min(n_base, n_new) < needed:
        timed = " and ".join("an unknown number of" if n is None else str(n) for n in (n_base, n_new))
        return _result(metric, base, new, t, TEST_TOOL, n_base, n_new, verdict=NOT_TESTED,
                       note=f"{what}; the tool timed {timed} runs, fewer than the {needed} a side a test "
                            f"at p < {options.alpha:g} would need (or not said): not tested")
    return _single(metric, base, new, t, TEST_TOOL, n_base, n_new, f"{what}: threshold alone")


def _inference(metric: Metric, b: ResultRecord, n: ResultRecord, t: float, options: Options,
               seed: int, disturbed: str) -> MetricComparison:
    bs, ns = _ms_array(b.result.get("infer_ns")), _ms_array(n.result.get("infer_ns"))
    b_agg, n_agg = b.result.get("infer_aggregate"), n.result.get("infer_aggregate")
    if not (bs or b_agg) or not (ns or n_agg):
        return _missing(metric, t, "BASE" if not (bs or b_agg) else "NEW", "no timed runs")
    if disturbed:
        disturbed += ": its times include another program's"
    p90 = metric.name == "infer_p90"
    if bs and ns:
        point = _p90 if p90 else _median
        if disturbed:
            return _refuse(metric, point(bs), point(ns), t, disturbed, True)
        return _samples(metric, bs, ns, t, options, seed, point, TEST_QUANTILE if p90 else TEST_RANK, "timed runs")
    # A phone tool's aggregate on one side or both: never expanded into samples.
    kind = "aggregate-only" if b_agg and n_agg else "aggregate on one side, samples on the other"
    if p90:
        bv = ns_to_ms((b_agg or {}).get("percentiles", {}).get("90")) if b_agg else _p90(bs)
        nv = ns_to_ms((n_agg or {}).get("percentiles", {}).get("90")) if n_agg else _p90(ns)
        if bv is None or nv is None:
            return _refuse(metric, bv, nv, t, f"{kind}: the tool printed no p90")
        if disturbed:
            return _refuse(metric, bv, nv, t, disturbed, True)
        return _tool_figure(metric, bv, nv, t, _count(bs, b_agg), _count(ns, n_agg), options,
                            f"{kind}: no samples to test the p90 with")
    (bm, bsd, bn), (nm, nsd, nn) = _mean_std_n(bs, b_agg), _mean_std_n(ns, n_agg)
    if disturbed:
        return _refuse(metric, bm, nm, t, disturbed, True)
    if bsd is None or nsd is None or bn is None or nn is None or bn < 2 or nn < 2:
        return _tool_figure(metric, bm, nm, t, bn, nn, options, f"{kind}: the ratio of means; no std (or one run, "
                            "or no run count) to test with")
    from scipy.stats import t as student_t, ttest_ind_from_stats

    p = float(ttest_ind_from_stats(nm, nsd, nn, bm, bsd, bn, equal_var=False).pvalue)
    ci = None
    if bm > 0 and nm > 0:
        # Delta method on log(mean_new / mean_base); Welch-Satterthwaite degrees of freedom on those terms.
        vb, vn = (bsd / bm) ** 2 / bn, (nsd / nm) ** 2 / nn
        se = math.sqrt(vb + vn)
        df = (vb + vn) ** 2 / (vb ** 2 / (bn - 1) + vn ** 2 / (nn - 1)) if vb + vn > 0 else float("inf")
        q = float(student_t.ppf(0.5 + CI_LEVEL / 2, df)) if math.isfinite(df) else 1.959963984540054
        ci = (nm / bm * math.exp(-q * se), nm / bm * math.exp(q * se))
    return _result(metric, bm, nm, t, TEST_WELCH, bn, nn, p=p, ci=ci,
                   note=f"{kind}: Welch's t from mean, std and n; BASE and NEW are means, the ratio is of means")


def _count(samples: list[float], agg: dict | None) -> int | None:
    if samples:
        return len(samples)
    if agg and agg.get("n") is None:
        return None  # the tool printed a mean without its number of runs
    return int((agg or {}).get("n") or 0)


def _mean_std_n(samples: list[float], agg: dict | None) -> tuple[float, float | None, int | None]:
    if samples:
        import numpy as np

        arr = np.asarray(samples)
        return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None, int(arr.size)
    assert agg is not None
    return float(agg["mean_ns"]) / NS_PER_MS, ns_to_ms(agg.get("std_ns")), _count(samples, agg)


# --------------------------------------------------------------------------------------------------
# Verdicts, over the whole comparison


def adjust(pairs: list[PairComparison], options: Options) -> list[PairComparison]:
    """Adjust every p-value of the comparison at once (Benjamini-Hochberg), then give each metric its verdict."""
    from scipy.stats import false_discovery_control

    where = [(i, j) for i, p in enumerate(pairs) for j, m in enumerate(p.metrics) if m.p_value is not None]
    adjusted = [float(x) for x in false_discovery_control([pairs[i].metrics[j].p_value for i, j in where],
                                                          method="bh")] if where else []
    by_pos = dict(zip(where, adjusted))
    out = []
    for i, p in enumerate(pairs):
        metrics = tuple(decide(dataclasses.replace(m, p_adjusted=by_pos.get((i, j))), options.alpha)
                        for j, m in enumerate(p.metrics))
        out.append(dataclasses.replace(p, metrics=metrics))
    return out


def decide(m: MetricComparison, alpha: float) -> MetricComparison:
    """Significance (adjusted p < alpha, or no test for this metric) and a practical size (the threshold)."""
    if m.verdict:
        return m
    metric = METRIC[m.metric]
    assert m.ratio is not None
    significant = m.p_adjusted is None or m.p_adjusted < alpha
    worse = m.ratio > 1 + m.threshold
    better = m.ratio < 1 / (1 + m.threshold)
    note = m.note
    if (worse or better) and not significant:
        verdict = NO_CHANGE
        note = _join(note, f"beyond the threshold but not significant (p adj. {sig(m.p_adjusted, 2)} >= {alpha:g})")
    elif worse:
        verdict = metric.worse
    elif better:
        verdict = metric.better
    else:
        verdict = NO_CHANGE
    return dataclasses.replace(m, verdict=verdict, note=note)


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b
