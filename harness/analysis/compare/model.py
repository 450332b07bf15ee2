"""The model of a comparison: the metrics, their default thresholds, the options, and what a comparison of
two results directories holds (see :mod:`harness.analysis.compare` for how each verdict is reached)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from harness.core import exitcodes
from harness.core.errors import UserError

# Of `compare --format json`; bump when a key changes meaning.
#   1: pairs, metrics, verdicts.
#   2: the verdict "not tested" (too few runs for the metric's test; never a regression) and "not_tested".
JSON_SCHEMA_VERSION = 2

# An int8 row is never paired with a float32 one, nor a gpu row with a cpu one: different numbers, not a change.
PAIR_KEY = ("model", "cut", "embedding", "precision", "backend", "target", "accelerator")
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
# (benchmarks/bench_compare.py; figures in results/benchmarks/compare.json and docs/ci.md):
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
# Too few runs for the metric's test to reach alpha even if every NEW run were slower than every BASE run
# (one timed run, 3 warm loads, the p90 of 30 runs): the figures and ratio are shown, nothing is judged, and
# the threshold alone never makes it a regression.
NOT_TESTED = "not tested"

# Tests, as the table and the JSON name them
TEST_RANK = "Mann-Whitney U"
TEST_QUANTILE = "quantile test (Fisher, pooled p90)"
TEST_WELCH = "Welch's t from aggregates"
# What each test state means. A test above (rank, quantile, Welch) gives a p-value; with too few runs for it to
# reach alpha it is not run and the verdict is NOT_TESTED. The threshold alone decides only where it was set
# for exactly such a figure: TEST_ONE, the readings a run takes once by design (the cold load, model memory),
# whose default thresholds are the same-code noise of those single readings (docs/ci.md); TEST_EXACT, figures
# without noise (artifact size, upload bytes); TEST_TOOL, a phone tool's figure over its own runs (no
# samples, no std), when the tool timed at least as many runs on each side as the rank test would need.
TEST_ONE = "threshold alone (one sample)"
TEST_EXACT = "threshold alone (exact)"
TEST_TOOL = "threshold alone (the tool's figure)"
TEST_NONE = "none"

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
        """Judged: a verdict of the test or the threshold (not "not comparable", not "not tested")."""
        return self.verdict not in (NOT_COMPARABLE, NOT_TESTED)

    @property
    def tested(self) -> bool:
        return self.verdict != NOT_TESTED


@dataclass(frozen=True)
class PairComparison:
    """One row of BASE and its row in NEW (or one of them alone), and what the comparison found."""

    model: str
    cut: str
    embedding: str
    precision: str
    backend: str
    target: str
    accelerator: str
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
        parts = [self.model, self.config, *self._extra(self.precision, "float32"), self.backend, self.target,
                 *self._extra(self.accelerator, "cpu")]
        if self.by_device:
            parts.append(self.base_device or self.new_device or "")
        return "/".join(parts)

    @property
    def label(self) -> str:
        return " ".join([self.config, *self._extra(self.precision, "float32"), self.backend, self.target,
                         *self._extra(self.accelerator, "cpu")])

    @staticmethod
    def _extra(value: str, default: str) -> list[str]:
        """A precision or accelerator in a name only when it is not the default (float32 rows keep their names)."""
        return [value] if value and value != default else []

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
    def not_tested(self) -> list[tuple[PairComparison, MetricComparison]]:
        """Metrics shown but not judged: too few runs for their test (never a regression)."""
        return [(p, m) for p in self.pairs for m in p.metrics if not m.tested]

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
