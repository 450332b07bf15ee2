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

A test needs runs: a time whose runs are too few for its test to reach ``alpha`` even when the two sides
do not overlap at all (one timed run, 3 warm loads, the p90 of 30 runs; :func:`best_p`) is *not tested*:
its figures and ratio are shown, and it is never a regression by the threshold alone. A tool's figure
without samples is judged by the threshold only when the tool timed as many runs as the rank test needs.

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

Exit codes (harness.core.exitcodes): 0 no regression; 7 a regression (a metric slower or bigger, or a
configuration measured in BASE that failed in NEW, as asv's ``!``); 8 nothing comparable.

The package, by job: :mod:`~harness.analysis.compare.model` (the metrics, thresholds, options and what a
comparison holds), :mod:`~harness.analysis.compare.pairing` (reading the two sides, pairing their rows),
:mod:`~harness.analysis.compare.significance` (the tests, intervals and verdicts),
:mod:`~harness.analysis.compare.render` (table, Markdown, JSON) and :mod:`~harness.analysis.compare.command`
(the command). This module re-exports their public names.
"""

from harness.analysis.compare.command import FORMATS, compare
from harness.analysis.compare.model import (ALPHA, BOOTSTRAP_MIN_N, BOOTSTRAP_RESAMPLES, CI_LEVEL, COMPARED,
                                            DEFAULT_THRESHOLDS, DISTURBED, FAILED_NEW, JSON_SCHEMA_VERSION, METRIC,
                                            METRICS, NO_CHANGE, NOT_COMPARABLE, NOT_TESTED, ONLY_BASE, ONLY_NEW, P90,
                                            PAIR_KEY,
                                            PROTOCOL_KEYS, TEST_EXACT, TEST_NONE, TEST_ONE, TEST_QUANTILE, TEST_RANK,
                                            TEST_TOOL, TEST_WELCH, THRESHOLD_LADDER, Comparison, Metric,
                                            MetricComparison, Options, PairComparison, parse_thresholds)
from harness.analysis.compare.pairing import compare_dirs, compare_records
from harness.analysis.compare.render import render_markdown, render_table, to_json
from harness.analysis.compare.significance import adjust, best_p, compare_metric, decide, runs_needed

__all__ = [
    "ALPHA", "BOOTSTRAP_MIN_N", "BOOTSTRAP_RESAMPLES", "CI_LEVEL", "COMPARED", "DEFAULT_THRESHOLDS", "DISTURBED",
    "FAILED_NEW", "FORMATS", "JSON_SCHEMA_VERSION", "METRIC", "METRICS", "NO_CHANGE", "NOT_COMPARABLE", "NOT_TESTED",
    "ONLY_BASE",
    "ONLY_NEW", "P90", "PAIR_KEY", "PROTOCOL_KEYS", "TEST_EXACT", "TEST_NONE", "TEST_ONE", "TEST_QUANTILE",
    "TEST_RANK", "TEST_TOOL", "TEST_WELCH", "THRESHOLD_LADDER", "Comparison", "Metric", "MetricComparison", "Options",
    "PairComparison", "adjust", "best_p", "compare", "compare_dirs", "compare_metric", "compare_records", "decide",
    "parse_thresholds", "render_markdown", "render_table", "runs_needed", "to_json",
]
