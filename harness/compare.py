"""`splitbench compare BASE NEW`: did the phone part get slower or bigger between two results directories?

Rows are paired by (model, cut, embedding, backend, target); the device id, artifact key and model
definition may differ (CI hosts change; the model is what changed). A pair is *not comparable* when
the device's fingerprint essentials, the backend's runtime version, threads or compute units, or the
job protocol (runs, warm-ups, warm loads, seed, input shape) differ: the comparison says what
differs, and ``allow_device_change`` compares it anyway and marks it. Rows found on one side only are
listed, never dropped.

Each compared pair gives seven metrics, each with BASE, NEW, the ratio NEW / BASE and a verdict:

- inference median and p90, from the raw timed runs: the median by a Mann-Whitney U rank test, the
  p90 by a quantile test (how many of each side's runs lie above the pooled 90th percentile,
  Fisher's exact test), so a slower tail is tested as a tail. A phone tool that reports only an
  aggregate (count, mean, std) gets Welch's t computed from those three figures and the ratio of
  the means, and says so; its p90, when it printed one, gets the threshold alone;
- warm load (the median of the warm loads, each in a fresh process): Mann-Whitney U on the loads;
- cold load and model memory (one reading per run): the threshold alone, and the row says so;
- artifact size and upload bytes (exact, no noise): the threshold alone.

A regression needs both *significance* and a *practical size*: its p-value, adjusted over every test
of the whole comparison by Benjamini-Hochberg, below ``alpha`` (tests with none: threshold alone),
and the ratio beyond the metric's threshold (NEW > BASE x (1 + t); an improvement is below
BASE / (1 + t)). Why Benjamini-Hochberg: when nothing changed (the case that makes a CI job fail
for nothing) it bounds the probability of *any* false alarm in the comparison by ``alpha``, as a
family-wise correction would, while keeping the power to see several real changes at once that
Holm would lose over dozens of tests; the tests of one configuration are positively dependent
(PRDS), which BH allows. The threshold is what the significance cannot give: on a shared machine,
two runs of the same code differ by more than the spread within one run, so a significant 3% is
noise, not a regression (see DEFAULT_THRESHOLDS for where the defaults come from).

Times measured while the pinned core was shared (the ``core_shared`` stability warning: the worker got
under 90% of its timed runs' wall time) time another program as well: that job's inference and load
verdicts are "not comparable", with the share, instead of a guess (its memory and sizes are judged).

The interval beside each ratio is a 95% percentile bootstrap of the very ratio printed (NEW median /
BASE median, or the p90s), each side resampled on its own, 2000 resamples, seeded from the row's
name so every run prints the same interval. A bootstrap rather than Hodges-Lehmann on log times:
Hodges-Lehmann estimates a shift of the whole distribution, a different number from the ratio of
the two medians shown beside it, and has no counterpart for the p90. Aggregates get a delta-method
interval on the log ratio of means with Welch's degrees of freedom. Intervals are per row, not
adjusted for the number of rows; the verdict uses the adjusted p-value.

Exit codes (harness.exitcodes): 0 no regression; 7 a regression (a metric slower or bigger, or a
configuration measured in BASE that failed in NEW, as asv's ``!``); 8 nothing comparable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from harness import exitcodes
from harness.errors import UserError
from harness.records import SKIPPED, ResultRecord
from harness.stats import NS_PER_MS, compute_stats
from harness.store import MANIFEST_JSON, RECORDS_DIR, load_records, model_order
from harness.units import fmt_bytes, fmt_mb, fmt_ms, sig

JSON_SCHEMA_VERSION = 1  # of `compare --format json`; bump when a key changes meaning

PAIR_KEY = ("model", "cut", "embedding", "backend", "target")
PROTOCOL_KEYS = ("runs", "warmup", "warm_loads", "seed", "input_shape")  # MeasureJob.protocol()
DISTURBED = "core_shared"  # the stability warning that makes a row's timings time another program too
ALPHA = 0.01  # false-alarm rate of the whole comparison (Benjamini-Hochberg)
CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_MIN_N = 10  # fewer samples on a side (5 warm loads): no interval, resampling 5 values says little
P90 = 90


@dataclass(frozen=True)
class Metric:
    name: str  # key in --threshold and the JSON
    label: str
    unit: str  # "ms", "MB" or "B"
    worse: str
    better: str


METRICS = (
    Metric("infer_median", "inference median", "ms", "slower", "faster"),
    Metric("infer_p90", "inference p90", "ms", "slower", "faster"),
    Metric("load_warm", "warm load", "ms", "slower", "faster"),
    Metric("load_cold", "cold load", "ms", "slower", "faster"),
    Metric("mem_model", "model memory", "MB", "bigger", "smaller"),
    Metric("artifact_bytes", "artifact size", "B", "bigger", "smaller"),
    Metric("upload_bytes", "upload", "B", "bigger", "smaller"),
)
METRIC = {m.name: m for m in METRICS}

# Practical size per metric: NEW beyond BASE x (1 + t) is a change (when also significant). Chosen from
# the noise of same-code runs of examples/ci_smoke.toml on one shared 2-core host, compared pairwise
# (benchmarks/bench_compare.py; figures in results/benchmarks/compare.json and the README's "In CI"):
# the smallest step of THRESHOLD_LADDER above the largest ratio any same-code pair showed among the jobs
# compare judges (the worker had its core), never below asv's 10% for times. Over 10 runs (71 judged row
# pairs) the inference median moved up to 12%, the p90 37%, the warm load 76%, the cold load 3.7x, the
# model memory 2.6%; an earlier 5-run calibration saw memory move 5.4% and the warm load 2.1x, hence 10%
# and +150% for those. Loads are single processes timed once or five times: only a gross load regression
# can be told from noise on such a host; quieter hosts should lower these (--threshold, or recalibrate
# with `make bench`). Artifact size and upload are exact: 1% lets a converter's metadata move without
# hiding a layer's weights; any growth of the uploaded feature is real.
DEFAULT_THRESHOLDS = {
    "infer_median": 0.15,
    "infer_p90": 0.40,
    "load_warm": 1.5,
    "load_cold": 3.0,
    "mem_model": 0.10,
    "artifact_bytes": 0.01,
    "upload_bytes": 0.0,
}
THRESHOLD_LADDER = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 10.0)

# Verdicts
NOT_COMPARABLE = "not comparable"
NO_CHANGE = "no change"

# Tests, as the table and the JSON name them
TEST_RANK = "Mann-Whitney U"
TEST_QUANTILE = "quantile test (Fisher, pooled p90)"
TEST_WELCH = "Welch's t from aggregates"
TEST_ONE = "threshold alone (one sample)"
TEST_EXACT = "threshold alone (exact)"
TEST_TOOL = "threshold alone (the tool's figure)"
TEST_NONE = "none"
_SHORT_TEST = {TEST_RANK: "rank", TEST_QUANTILE: "quantile", TEST_WELCH: "Welch agg.", TEST_ONE: "1 sample",
               TEST_EXACT: "exact", TEST_TOOL: "tool figure", TEST_NONE: "—"}

# Pair statuses
COMPARED = "compared"
ONLY_BASE = "only in BASE"
ONLY_NEW = "only in NEW"
FAILED_NEW = "failed in NEW"


@dataclass(frozen=True)
class Options:
    """How to judge: thresholds per metric, the false-alarm rate of the whole comparison, whether to compare
    across a device, runtime, threads or protocol change, and how many bootstrap resamples (0: no intervals,
    for the calibration, whose verdicts do not use them)."""

    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    alpha: float = ALPHA
    allow_device_change: bool = False
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one pair. Times in ms, memory in MB, sizes in bytes (``unit``)."""

    metric: str
    unit: str
    base: float | None
    new: float | None
    ratio: float | None  # new / base
    ci_low: float | None
    ci_high: float | None
    test: str
    n_base: int | None  # None: a tool's aggregate that does not say how many runs it holds
    n_new: int | None
    p_value: float | None  # None: no test (threshold alone, or not comparable)
    p_adjusted: float | None
    threshold: float
    verdict: str
    note: str = ""
    disturbed: bool = False  # a side's core was shared during its timed runs: times not comparable

    @property
    def regression(self) -> bool:
        return self.verdict == METRIC[self.metric].worse

    @property
    def improvement(self) -> bool:
        return self.verdict == METRIC[self.metric].better

    @property
    def compared(self) -> bool:
        return self.verdict != NOT_COMPARABLE


@dataclass(frozen=True)
class PairComparison:
    """One row of BASE and its row in NEW (or one of them alone), and what the comparison found."""

    model: str
    cut: str
    embedding: str
    backend: str
    target: str
    config: str
    status: str  # COMPARED, NOT_COMPARABLE, ONLY_BASE, ONLY_NEW, FAILED_NEW
    base_device: str | None = None
    new_device: str | None = None
    base_record: str | None = None
    new_record: str | None = None
    differences: tuple[str, ...] = ()  # what makes the two measurements different kinds of numbers
    marked: bool = False  # compared across those differences (allow_device_change)
    changes: tuple[str, ...] = ()  # what changed in what was measured (model definition, weights, artifact)
    metrics: tuple[MetricComparison, ...] = ()
    notes: tuple[str, ...] = ()
    by_device: bool = False  # one of several devices of this row, paired by device id

    @property
    def key(self) -> tuple[str, ...]:
        return (self.model, self.cut, self.embedding, self.backend, self.target)

    @property
    def name(self) -> str:
        """Stable and unique within a comparison: model/config/backend/target (and the device when the row has
        several)."""
        parts = [self.model, self.config, self.backend, self.target]
        if self.by_device:
            parts.append(self.base_device or self.new_device or "")
        return "/".join(parts)

    @property
    def label(self) -> str:
        return f"{self.config} {self.backend} {self.target}"

    @property
    def regression(self) -> bool:
        return self.status == FAILED_NEW or any(m.regression for m in self.metrics)


@dataclass(frozen=True)
class Comparison:
    base_dir: str
    new_dir: str
    base_commit: str | None
    new_commit: str | None
    options: Options
    pairs: tuple[PairComparison, ...]
    tests: int  # p-values in the Benjamini-Hochberg family

    @property
    def regressions(self) -> list[tuple[PairComparison, MetricComparison | None]]:
        out: list[tuple[PairComparison, MetricComparison | None]] = []
        for p in self.pairs:
            if p.status == FAILED_NEW:
                out.append((p, None))
            out.extend((p, m) for m in p.metrics if m.regression)
        return out

    @property
    def improvements(self) -> list[tuple[PairComparison, MetricComparison]]:
        return [(p, m) for p in self.pairs for m in p.metrics if m.improvement]

    @property
    def compared_metrics(self) -> int:
        return sum(m.compared for p in self.pairs for m in p.metrics) + sum(p.status == FAILED_NEW for p in self.pairs)

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return exitcodes.REGRESSION
        if not self.compared_metrics:
            return exitcodes.NOT_COMPARABLE
        return exitcodes.OK

    @property
    def outcome(self) -> str:
        return {exitcodes.REGRESSION: "regression", exitcodes.NOT_COMPARABLE: "nothing comparable"}.get(
            self.exit_code, "no regression")

    def to_dict(self) -> dict[str, Any]:
        """Every number and verdict (see :func:`to_json`)."""
        return to_json(self)


# --------------------------------------------------------------------------------------------------
# Reading and pairing


def _read_side(path: Path, which: str) -> tuple[list[ResultRecord], dict[str, Any]]:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{which} {path}: no such results directory (give a directory written by `splitbench run`)")
    if not (path / RECORDS_DIR).is_dir():
        raise UserError(f"{which} {path}: not a results directory (no {RECORDS_DIR}/ inside); give the --out "
                        "directory of a `splitbench run`")
    manifest: dict[str, Any] = {}
    if (path / MANIFEST_JSON).is_file():
        try:
            manifest = json.loads((path / MANIFEST_JSON).read_text())
        except (OSError, json.JSONDecodeError):
            manifest = {}
    return load_records(path, latest_only=True), manifest


def _pair_key(r: ResultRecord) -> tuple[str, ...]:
    return tuple(getattr(r, k) for k in PAIR_KEY)


def _by_device(records: Iterable[ResultRecord]) -> dict[tuple, dict[str, tuple[ResultRecord, int]]]:
    """key -> device id -> (the newest record, how many older records of that row and device were set aside).

    One results directory can hold several identities of one row on one device (a run resumed after the
    model changed); the newest is the one a run of that directory stands for."""
    out: dict[tuple, dict[str, list[ResultRecord]]] = {}
    for r in records:
        out.setdefault(_pair_key(r), {}).setdefault(r.device_id, []).append(r)
    return {k: {d: (max(rs, key=lambda r: r.finished_at), len(rs) - 1) for d, rs in devs.items()}
            for k, devs in out.items()}


def _commit(manifest: dict[str, Any]) -> str | None:
    git = manifest.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return None
    return commit[:12] + ("+dirty" if git.get("dirty") else "")


def compare_dirs(base: Path, new: Path, options: Options | None = None) -> Comparison:
    """Compare two results directories (see the module docstring for how each verdict is reached)."""
    base_records, base_manifest = _read_side(base, "BASE")
    new_records, new_manifest = _read_side(new, "NEW")
    return compare_records(base_records, new_records, options, base_dir=str(base), new_dir=str(new),
                           base_commit=_commit(base_manifest), new_commit=_commit(new_manifest))


def compare_records(base: Sequence[ResultRecord], new: Sequence[ResultRecord], options: Options | None = None, *,
                    base_dir: str = "BASE", new_dir: str = "NEW", base_commit: str | None = None,
                    new_commit: str | None = None) -> Comparison:
    """Compare two sets of records (the newest per identity of each results directory)."""
    options = options or Options()
    unknown = sorted(set(options.thresholds) - set(METRIC))
    if unknown:
        raise UserError(f"unknown metric {', '.join(unknown)} in the thresholds; metrics: {', '.join(METRIC)}")
    thresholds = {**DEFAULT_THRESHOLDS, **options.thresholds}
    options = dataclasses.replace(options, thresholds=thresholds)
    b_rows, n_rows = _by_device(base), _by_device(new)
    first: dict[tuple, ResultRecord] = {}
    for rows in (b_rows, n_rows):
        for key, devs in rows.items():
            for rec, _ in devs.values():
                first.setdefault(key, rec)
    pairs: list[PairComparison] = []
    for key in sorted(first, key=lambda k: model_order(first[k])):
        pairs.extend(_pair_row(key, b_rows.get(key, {}), n_rows.get(key, {}), options))
    pairs = _adjust(pairs, options)
    tests = sum(m.p_value is not None for p in pairs for m in p.metrics)
    return Comparison(base_dir=base_dir, new_dir=new_dir, base_commit=base_commit, new_commit=new_commit,
                      options=options, pairs=tuple(pairs), tests=tests)


def _alone(rec: ResultRecord, status: str, note: str, dropped: int, by_device: bool = False) -> PairComparison:
    notes = [note] if note else []
    if dropped:
        notes.append(f"{dropped} older record(s) of this row on {rec.device_id} set aside (the newest is compared)")
    side = {"base_device": rec.device_id, "base_record": rec.record_key} if status == ONLY_BASE else \
        {"new_device": rec.device_id, "new_record": rec.record_key}
    return PairComparison(*_pair_key(rec), config=rec.config, status=status, notes=tuple(notes), by_device=by_device,
                          **side)


def _pair_row(key: tuple, base: dict[str, tuple[ResultRecord, int]], new: dict[str, tuple[ResultRecord, int]],
              options: Options) -> list[PairComparison]:
    """Pair the records of one row: one device on each side pairs whatever its id (CI hosts change); several
    devices pair by device id, and a device without its counterpart is listed on its side, saying why."""
    if not new:
        return [_alone(r, ONLY_BASE, "", d) for r, d in base.values()]
    if not base:
        return [_alone(r, ONLY_NEW, "", d) for r, d in new.values()]
    if len(base) == 1 and len(new) == 1:
        ((b, bd),), ((n, nd),) = base.values(), new.values()
        return [_compare_pair(b, n, options, bd, nd)]
    out = [dataclasses.replace(_compare_pair(base[d][0], new[d][0], options, base[d][1], new[d][1]), by_device=True)
           for d in base if d in new]
    why = (f"this row was measured on several devices ({len(base)} in BASE, {len(new)} in NEW); devices are paired "
           "by id, and this one has no counterpart")
    out += [_alone(r, ONLY_BASE, why, dd, True) for d, (r, dd) in base.items() if d not in new]
    out += [_alone(r, ONLY_NEW, why, dd, True) for d, (r, dd) in new.items() if d not in base]
    return out


def _differences(b: ResultRecord, n: ResultRecord) -> list[str]:
    """What makes the two records different kinds of numbers: device essentials, runtime, threads, protocol."""
    out = []
    bd = {k: v for k, v in (b.device or {}).items() if k != "runtime_versions"}
    nd = {k: v for k, v in (n.device or {}).items() if k != "runtime_versions"}
    if not bd or not nd:  # a job that never reached a device (its export failed) has no fingerprint
        bd = nd = {}
    # runtime_versions lists every runtime and converter of the host; the row's own runtime is compared
    # below, and a converter upgrade is a change to measure, not a different device.
    for k in sorted(set(bd) | set(nd)):
        if bd.get(k) != nd.get(k):
            out.append(f"device {k}: {bd.get(k)!r} -> {nd.get(k)!r}")
    bi, ni = b.identity, n.identity
    if bi.runtime_version != ni.runtime_version:
        out.append(f"runtime {bi.runtime_version!r} -> {ni.runtime_version!r}")
    if bi.threads != ni.threads:
        out.append(f"threads {bi.threads} -> {ni.threads}")
    if bi.compute_units != ni.compute_units:
        out.append(f"compute units {bi.compute_units} -> {ni.compute_units}")
    bj, nj = b.job or {}, n.job or {}
    if bj and nj:
        for k in PROTOCOL_KEYS:
            if bj.get(k) != nj.get(k):
                out.append(f"protocol {k}: {bj.get(k)} -> {nj.get(k)}")
    return out


def _changes(b: ResultRecord, n: ResultRecord) -> list[str]:
    """What changed in what was measured: the point of the comparison, shown, never a reason to refuse."""
    bi, ni = b.identity, n.identity
    out = []
    for attr, what in (("model_definition", "model definition"), ("weights", "weights"),
                       ("reduced_dim", "reduced dims"), ("artifact_key", "artifact")):
        if getattr(bi, attr) != getattr(ni, attr):
            out.append(what)
    if bi.device_id != ni.device_id:
        out.append(f"device id {bi.device_id} -> {ni.device_id}")
    return out


def _compare_pair(b: ResultRecord, n: ResultRecord, options: Options, b_dropped: int = 0,
                  n_dropped: int = 0) -> PairComparison:
    notes = [f"{c} older record(s) of this row on {r.device_id} in {side} set aside (the newest is compared)"
             for c, r, side in ((b_dropped, b, "BASE"), (n_dropped, n, "NEW")) if c]
    common = dict(model=b.model, cut=b.cut, embedding=b.embedding, backend=b.backend, target=b.target,
                  config=b.config, base_device=b.device_id, new_device=n.device_id, base_record=b.record_key,
                  new_record=n.record_key, changes=tuple(_changes(b, n)))
    differences = _differences(b, n)
    if differences and not options.allow_device_change:
        return PairComparison(**common, status=NOT_COMPARABLE, differences=tuple(differences),
                              notes=tuple(notes + ["compare anyway with --allow-device-change"]))
    if b.status == SKIPPED or n.status == SKIPPED:
        side, rec = ("BASE", b) if b.status == SKIPPED else ("NEW", n)
        return PairComparison(**common, status=NOT_COMPARABLE, differences=tuple(differences),
                              marked=bool(differences), notes=(*notes, f"skipped in {side}: {_first(rec.reason)}"))
    if b.ok and not n.ok:
        return PairComparison(**common, status=FAILED_NEW, differences=tuple(differences), marked=bool(differences),
                              notes=tuple(notes + [f"measured in BASE, {n.status} in NEW: {_first(n.reason)}"]))
    if not b.ok:
        what = f"{b.status} in BASE: {_first(b.reason)}" + ("" if n.ok else f"; {n.status} in NEW: {_first(n.reason)}")
        return PairComparison(**common, status=NOT_COMPARABLE, differences=tuple(differences),
                              marked=bool(differences), notes=tuple(notes + [what]))
    seed = int(hashlib.sha256("/".join(_pair_key(b)).encode()).hexdigest()[:8], 16)
    disturbed = "; ".join(f"{side}'s core was shared (the worker got {share:.0%} of its timed runs' wall time)"
                          for side, share in (("BASE", _core_share(b)), ("NEW", _core_share(n))) if share is not None)
    metrics = tuple(_metric(m, b, n, options, seed + i, disturbed) for i, m in enumerate(METRICS))
    return PairComparison(**common, status=COMPARED, differences=tuple(differences), marked=bool(differences),
                          metrics=metrics, notes=tuple(notes))


def _first(reason: str) -> str:
    text = (reason or "").strip()
    return text.splitlines()[0] if text else "no reason given"


# --------------------------------------------------------------------------------------------------
# One metric


def _metric(metric: Metric, b: ResultRecord, n: ResultRecord, options: Options, seed: int,
            disturbed: str) -> MetricComparison:
    """The figures and the test of one metric; the verdict waits for the adjusted p-values (see _adjust).

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
        if len(bs) < 2 or len(ns) < 2:
            return _single(metric, _median(bs), _median(ns), t, TEST_ONE, len(bs), len(ns),
                           "one warm load on a side: threshold alone")
        return _samples(metric, bs, ns, t, options, seed, _median, TEST_RANK)
    if name == "load_cold":
        bm, nm = b.result.get("cold_method"), n.result.get("cold_method")
        bv, nv = _ms(b.result.get("load_cold_ns")), _ms(n.result.get("load_cold_ns"))
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


def _ms(ns: float | int | None) -> float | None:
    return None if ns is None else float(ns) / NS_PER_MS


def _ms_array(values: Sequence[int] | None) -> list[float]:
    return [float(v) / NS_PER_MS for v in values or ()]


def _median(values: Sequence[float]) -> float:
    import numpy as np

    return float(np.median(values))


def _p90(values: Sequence[float]) -> float:
    import numpy as np

    return float(np.percentile(values, P90))  # as harness.stats computes the p90 of a record


def _ratio(base: float, new: float) -> float | None:
    if base == new:
        return 1.0
    if base <= 0 or new < 0:
        return None
    return new / base


def _result(metric: Metric, base: float | None, new: float | None, t: float, test: str, n_base: int, n_new: int,
            p: float | None = None, ci: tuple[float, float] | None = None, note: str = "",
            verdict: str = "") -> MetricComparison:
    ratio = None if base is None or new is None else _ratio(base, new)
    if ratio is None and not verdict:
        verdict, note = NOT_COMPARABLE, (note + "; " if note else "") + "BASE is not positive: no ratio"
    return MetricComparison(metric=metric.name, unit=metric.unit, base=base, new=new, ratio=ratio,
                            ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None, test=test, n_base=n_base,
                            n_new=n_new, p_value=p, p_adjusted=None, threshold=t, verdict=verdict, note=note)


def _single(metric: Metric, base: float, new: float, t: float, test: str, n_base: int, n_new: int,
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


def _samples(metric: Metric, bs: list[float], ns: list[float], t: float, options: Options, seed: int,
             point, test: str) -> MetricComparison:
    from scipy.stats import fisher_exact, mannwhitneyu

    if test == TEST_RANK:
        p = float(mannwhitneyu(ns, bs, alternative="two-sided").pvalue)
        stat = _np_median
    else:
        # Mood's quantile test at the p90: how many runs of each side lie above the pooled 90th percentile.
        import numpy as np

        cut = float(np.percentile(np.concatenate([bs, ns]), P90))
        b_above, n_above = int(sum(v > cut for v in bs)), int(sum(v > cut for v in ns))
        p = float(fisher_exact([[n_above, len(ns) - n_above], [b_above, len(bs) - b_above]]).pvalue)
        stat = _np_p90
    ci = _bootstrap_ci(bs, ns, stat, options.bootstrap_resamples, seed)
    note = "" if ci or options.bootstrap_resamples <= 0 else f"fewer than {BOOTSTRAP_MIN_N} samples: no interval"
    return _result(metric, point(bs), point(ns), t, test, len(bs), len(ns), p=min(p, 1.0), ci=ci, note=note)


def _core_share(r: ResultRecord) -> float | None:
    for w in compute_stats(r).warnings:
        if w.code == DISTURBED:
            return w.value
    return None


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
        if len(bs) < 2 or len(ns) < 2:
            return _single(metric, point(bs), point(ns), t, TEST_ONE, len(bs), len(ns),
                           "one timed run on a side: threshold alone")
        return _samples(metric, bs, ns, t, options, seed, point, TEST_QUANTILE if p90 else TEST_RANK)
    # A phone tool's aggregate on one side or both: never expanded into samples.
    kind = "aggregate-only" if b_agg and n_agg else "aggregate on one side, samples on the other"
    if p90:
        bv = _ms((b_agg or {}).get("percentiles", {}).get("90")) if b_agg else _p90(bs)
        nv = _ms((n_agg or {}).get("percentiles", {}).get("90")) if n_agg else _p90(ns)
        if bv is None or nv is None:
            return _refuse(metric, bv, nv, t, f"{kind}: the tool printed no p90")
        if disturbed:
            return _refuse(metric, bv, nv, t, disturbed, True)
        return _single(metric, bv, nv, t, TEST_TOOL, _count(bs, b_agg), _count(ns, n_agg),
                       f"{kind}: no samples to test the p90 with, threshold alone")
    (bm, bsd, bn), (nm, nsd, nn) = _mean_std_n(bs, b_agg), _mean_std_n(ns, n_agg)
    if disturbed:
        return _refuse(metric, bm, nm, t, disturbed, True)
    if bsd is None or nsd is None or bn is None or nn is None or bn < 2 or nn < 2:
        return _single(metric, bm, nm, t, TEST_TOOL, bn, nn,
                       f"{kind}: the ratio of means; no std (or one run, or no run count) to test with, "
                       "threshold alone")
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
    return float(agg["mean_ns"]) / NS_PER_MS, _ms(agg.get("std_ns")), _count(samples, agg)


# --------------------------------------------------------------------------------------------------
# Verdicts, over the whole comparison


def _adjust(pairs: list[PairComparison], options: Options) -> list[PairComparison]:
    """Adjust every p-value of the comparison at once (Benjamini-Hochberg), then give each metric its verdict."""
    from scipy.stats import false_discovery_control

    where = [(i, j) for i, p in enumerate(pairs) for j, m in enumerate(p.metrics) if m.p_value is not None]
    adjusted = [float(x) for x in false_discovery_control([pairs[i].metrics[j].p_value for i, j in where],
                                                          method="bh")] if where else []
    by_pos = dict(zip(where, adjusted))
    out = []
    for i, p in enumerate(pairs):
        metrics = tuple(_decide(dataclasses.replace(m, p_adjusted=by_pos.get((i, j))), options.alpha)
                        for j, m in enumerate(p.metrics))
        out.append(dataclasses.replace(p, metrics=metrics))
    return out


def _decide(m: MetricComparison, alpha: float) -> MetricComparison:
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


# --------------------------------------------------------------------------------------------------
# Thresholds from the command line


def parse_thresholds(values: Iterable[str]) -> dict[str, float]:
    """``--threshold`` values: ``0.05`` or ``5%`` for every metric, ``infer_median=5%`` for one (repeatable;
    later ones win)."""
    out: dict[str, float] = {}
    for raw in values:
        name, sep, value = raw.partition("=")
        if not sep:
            name, value = "", raw
        name = name.strip()
        if name and name not in METRIC:
            raise UserError(f"--threshold {raw}: unknown metric {name!r}; metrics: {', '.join(METRIC)}")
        text = value.strip()
        try:
            t = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise UserError(f"--threshold {raw}: give a fraction (0.05), a percentage (5%) or metric=value, "
                            f"e.g. infer_median=5%") from None
        if not math.isfinite(t) or t < 0:
            raise UserError(f"--threshold {raw}: a threshold is a growth >= 0 (0.05 = 5%)")
        for m in ([name] if name else list(METRIC)):
            out[m] = t
    return out


# --------------------------------------------------------------------------------------------------
# Output


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return fmt_ms(value)
    if unit == "MB":
        return fmt_mb(value)
    return fmt_bytes(value)


def _fmt_ratio(m: MetricComparison) -> str:
    if m.ratio is None:
        return "—"
    return f"{sig(float(f'{m.ratio:.3g}'))}x"  # rounded first, so 0.9996 reads 1.00x, not 1.000x


def _fmt_ci(m: MetricComparison) -> str:
    return "" if m.ci_low is None else f"{sig(m.ci_low)}–{sig(m.ci_high)}"


def _fmt_p(m: MetricComparison) -> str:
    return "—" if m.p_adjusted is None else sig(m.p_adjusted, 2)


def _fmt_threshold(t: float) -> str:
    return f"+{t * 100:.3g}%"


def _method_line(c: Comparison) -> str:
    th = ", ".join(f"{METRIC[k].label} {_fmt_threshold(v)}" for k, v in c.options.thresholds.items())
    tests = (f"Benjamini-Hochberg over the {c.tests} test{'s' if c.tests != 1 else ''} of this comparison, "
             f"adjusted p < {c.options.alpha:g}" if c.tests else "no test ran in this comparison")
    return (f"A regression is significant ({tests}; one-sample and exact metrics: the threshold alone) and "
            f"beyond its threshold: {th}. Intervals: {CI_LEVEL:.0%} bootstrap of the ratio shown.")


def _headline(c: Comparison) -> str:
    reg, imp = len(c.regressions), len(c.improvements)
    counts: dict[str, int] = {}
    for p in c.pairs:
        counts[p.status] = counts.get(p.status, 0) + 1
    parts = [f"{counts.get(COMPARED, 0) + counts.get(FAILED_NEW, 0)} of {len(c.pairs)} rows compared"]
    disturbed = sum(any(m.disturbed for m in p.metrics) for p in c.pairs)
    if disturbed:
        parts.append(f"times of {disturbed} not judged: a core was shared")
    for status in (NOT_COMPARABLE, ONLY_BASE, ONLY_NEW):
        if counts.get(status):
            parts.append(f"{counts[status]} {status}")
    if c.exit_code == exitcodes.REGRESSION:
        head = f"{reg} regression{'s' if reg != 1 else ''}"
    elif c.exit_code == exitcodes.NOT_COMPARABLE:
        head = "nothing comparable"
    else:
        head = "no regression"
    if imp:
        head += f", {imp} improvement{'s' if imp != 1 else ''}"
    return f"{head} ({'; '.join(parts)}; exit {c.exit_code})"


def _regression_lines(c: Comparison) -> list[str]:
    out = []
    for p, m in c.regressions:
        if m is None:
            out.append(f"{p.name}: {FAILED_NEW} ({p.notes[-1] if p.notes else ''})")
        else:
            out.append(f"{p.name}: {METRIC[m.metric].label} {m.verdict} {_fmt(m.base, m.unit)} -> "
                       f"{_fmt(m.new, m.unit)} ({_fmt_ratio(m)})")
    return out


def _pair_notes(p: PairComparison) -> list[str]:
    out = []
    if p.differences:
        what = "; ".join(p.differences)
        out.append(f"compared across a change ({what})" if p.marked else f"differs: {what}")
    out.extend(p.notes)
    return out


def render_table(c: Comparison, out: TextIO | None = None) -> None:
    """The comparison for a terminal (or a log: in a pipe the table keeps its full width)."""
    from rich.console import Console
    from rich.table import Table

    stream = out or sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if tty else 1000, highlight=False, soft_wrap=not tty)
    title = f"BASE {c.base_dir}" + (f" ({c.base_commit})" if c.base_commit else "") + \
        f"  ->  NEW {c.new_dir}" + (f" ({c.new_commit})" if c.new_commit else "")
    table = Table("configuration", "metric", "BASE", "NEW", "ratio", f"{CI_LEVEL:.0%} CI", "p adj.", "test",
                  "verdict", "note", title=title)
    style = {"slower": "red", "bigger": "red", FAILED_NEW: "red", "faster": "green", "smaller": "green",
             NOT_COMPARABLE: "yellow"}
    for p in c.pairs:
        if p.status != COMPARED:
            note = "; ".join(_pair_notes(p))
            table.add_row(p.label, "", "", "", "", "", "", "", f"[{style.get(p.status, 'yellow')}]{p.status}[/]", note)
            continue
        for i, m in enumerate(p.metrics):
            label = p.label + (" (marked)" if p.marked else "") if i == 0 else ""
            verdict = f"[{style[m.verdict]}]{m.verdict}[/]" if m.verdict in style else m.verdict
            table.add_row(label, METRIC[m.metric].label, _fmt(m.base, m.unit), _fmt(m.new, m.unit), _fmt_ratio(m),
                          _fmt_ci(m), _fmt_p(m), _SHORT_TEST[m.test], verdict, m.note)
        if p.differences or p.notes:
            table.add_row("", "", "", "", "", "", "", "", "", "; ".join(_pair_notes(p)))
        table.add_section()
    console.print(table)
    console.print(_method_line(c))
    for line in _regression_lines(c):
        console.print(f"[red]regression[/]: {line}")
    console.print(_headline(c))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_rows(rows: list[tuple[PairComparison, MetricComparison]]) -> list[str]:
    lines = ["| configuration | metric | BASE | NEW | ratio | 95% CI | p adj. | test | verdict | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p, m in rows:
        verdict = f"**{m.verdict}**" if m.regression else m.verdict
        lines.append("| " + " | ".join(_md_escape(x) for x in (
            f"{p.config} {p.backend} {p.target}", METRIC[m.metric].label, _fmt(m.base, m.unit), _fmt(m.new, m.unit),
            _fmt_ratio(m), _fmt_ci(m), _fmt_p(m), _SHORT_TEST[m.test], verdict, m.note)) + " |")
    return lines


def render_markdown(c: Comparison) -> str:
    """GitHub-flavoured Markdown for a PR comment or a job summary: the verdict, what changed, then every
    row in a collapsed table."""
    base = f"`{c.base_dir}`" + (f" ({c.base_commit})" if c.base_commit else "")
    new = f"`{c.new_dir}`" + (f" ({c.new_commit})" if c.new_commit else "")
    icon = {exitcodes.REGRESSION: ":x:", exitcodes.NOT_COMPARABLE: ":warning:"}.get(c.exit_code, ":white_check_mark:")
    lines = [f"### {icon} splitbench compare: {_headline(c)}", "", f"BASE {base} -> NEW {new}", ""]
    failed = [p for p in c.pairs if p.status == FAILED_NEW]
    if failed:
        lines += ["**Failed in NEW** (measured in BASE):", ""]
        lines += [f"- `{p.name}`: {_md_escape(p.notes[-1] if p.notes else '')}" for p in failed] + [""]
    changed = [(p, m) for p in c.pairs for m in p.metrics if m.regression or m.improvement]
    if changed:
        lines += ["**Changes** (significant and beyond the threshold):", ""] + _md_rows(changed) + [""]
    other = [p for p in c.pairs if p.status not in (COMPARED, FAILED_NEW) or p.differences]
    if other:
        lines += ["**Not compared, one side only, or compared across a change:**", ""]
        for p in other:
            why = "; ".join(_pair_notes(p))
            lines.append(f"- `{p.name}`: {p.status}" + (f" — {_md_escape(why)}" if why else ""))
        lines.append("")
    every = [(p, m) for p in c.pairs for m in p.metrics]
    if every:
        lines += [f"<details><summary>All {len(every)} comparisons</summary>", "", *_md_rows(every), "",
                  "</details>", ""]
    lines += [_md_escape(_method_line(c)), ""]
    return "\n".join(lines)


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def to_json(c: Comparison) -> dict[str, Any]:
    """Every number and verdict. Each metric has a ``name`` (pair name + metric), ``unit`` and ``new`` value, so
    Bencher's or github-action-benchmark's format is one mapping away (see the README's "In CI")."""
    pairs = []
    for p in c.pairs:
        d = {k: getattr(p, k) for k in ("model", "cut", "embedding", "backend", "target", "config", "status",
                                         "base_device", "new_device", "base_record", "new_record")}
        d.update(name=p.name, regression=p.regression, differences=list(p.differences),
                 compared_across_change=p.marked, changes=list(p.changes), notes=list(p.notes), metrics=[
                     {"name": f"{p.name}/{m.metric}", "metric": m.metric, "label": METRIC[m.metric].label,
                      "unit": m.unit, "base": _num(m.base), "new": _num(m.new), "ratio": _num(m.ratio),
                      "ci_low": m.ci_low, "ci_high": m.ci_high, "ci_level": CI_LEVEL if m.ci_low is not None else None,
                      "test": m.test, "n_base": m.n_base, "n_new": m.n_new, "p_value": m.p_value,
                      "p_adjusted": m.p_adjusted, "threshold": m.threshold, "verdict": m.verdict,
                      "regression": m.regression, "improvement": m.improvement, "disturbed": m.disturbed,
                      "note": m.note}
                     for m in p.metrics])
        pairs.append(d)
    return {
        "schema_version": JSON_SCHEMA_VERSION, "outcome": c.outcome, "exit_code": c.exit_code,
        "base": {"dir": c.base_dir, "commit": c.base_commit}, "new": {"dir": c.new_dir, "commit": c.new_commit},
        "alpha": c.options.alpha, "correction": "benjamini-hochberg", "tests": c.tests,
        "thresholds": dict(c.options.thresholds), "allow_device_change": c.options.allow_device_change,
        "regressions": _regression_lines(c), "pairs": pairs,
    }


FORMATS = ("table", "md", "json")


def compare(base: Path, new: Path, *, fmt: str = "table", thresholds: Sequence[str] = (),
            allow_device_change: bool = False, alpha: float = ALPHA, out: TextIO | None = None) -> int:
    """`splitbench compare`: write the comparison of BASE and NEW in ``fmt`` to ``out``; return the exit code."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown format; formats: {', '.join(FORMATS)}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: give a false-alarm rate between 0 and 1, e.g. 0.01")
    options = Options(thresholds=parse_thresholds(thresholds), alpha=alpha, allow_device_change=allow_device_change)
    comparison = compare_dirs(base, new, options)
    stream = out or sys.stdout
    if fmt == "json":
        stream.write(json.dumps(to_json(comparison), indent=2) + "\n")
    elif fmt == "md":
        stream.write(render_markdown(comparison))
    else:
        render_table(comparison, stream)
    return comparison.exit_code
