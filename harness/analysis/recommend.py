"""`splitbench recommend`: the most private split that fits a phone, network and accuracy budget.

Privacy is DPFE's log-rank privacy (0: the attacker always ranks the true sensitive class first; 1:
always last); it is the measure the papers plot against accuracy and it is comparable across numbers
of classes. Ties are broken by the lower end-to-end latency. Every privacy number shown names the
estimator that produced it; one estimator is used per call (``--estimator``; default: the privacy
table's only one, else the run's spec's, else ``splitbench``; see :func:`harness.analysis.table.select_estimator`).

End-to-end latency = phone inference median + upload of the feature over the network profile + the
cloud part (from ``DIR/cloud.csv``, columns model, cut, embedding, cloud_ms, when the run has one;
otherwise the cloud part is left out and every table says so).

Candidates are the measured split configurations, one per (cut, embedding, noise ratio, backend,
target, device). On-premise (the whole model on the phone) has no feature to score: it is shown as the
baseline, checked against the same budget, and never ranked against the cuts (see harness.analysis.table). A row
whose phone tool reported only an aggregate is marked "(tool aggregate)" and uses the tool's median.

Without privacy scores (no ``privacy.csv``) the cut is chosen by cost alone: the lowest end-to-end
latency that fits (Neurosurgeon's rule), and every output says privacy was not scored.

Exit codes: 0 when a configuration fits. When none fits, one line names the closest configuration (the
smallest summed relative excess over the broken limits) and what it breaks, raised as
:class:`NothingFits` so the CLI prints it once and exits ``NOTHING_FITS`` (3), never bad input's 1; with
``--json`` the JSON object (choice null) is written to stdout first.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core import exitcodes
from harness.core.errors import UserError
from harness.analysis.table import config_label, load_table, spec_table
from harness.config.network import NetworkProfile, get_profile, upload_ms
from harness.core.units import fmt_bytes, fmt_mb, fmt_ms, sig

RULE_PRIVACY = ("the most private configuration (log-rank privacy) that fits every limit; ties go to the lower "
                "end-to-end latency")
RULE_COST = ("privacy was not scored: the configuration with the lowest end-to-end latency that fits every "
             "limit (Neurosurgeon's rule); ties go to the lower phone memory")
BYTES_PER_KB = 1000  # --max-upload-kb is in SI kilobytes, like the Mbps of the network profiles


@dataclass(frozen=True)
class Budget:
    """The limits a configuration must fit; None means no limit."""

    max_latency_ms: float | None = None
    max_memory_mb: float | None = None  # phone model memory (summary's mem_model_mb)
    max_upload_kb: float | None = None
    network: str = "lte"
    uplink_mbps: float | None = None
    delay_ms: float | None = None
    min_accuracy: float | None = None  # primary-task accuracy, a fraction in [0, 1]
    target: str | tuple[str, ...] | None = None  # only this target's (these targets') measurements
    backends: tuple[str, ...] | None = None  # only these backends' measurements (None: every backend)

    def profile(self) -> NetworkProfile:
        return get_profile(self.network, uplink_mbps=self.uplink_mbps, delay_ms=self.delay_ms)

    @property
    def targets(self) -> tuple[str, ...] | None:
        """``target`` as a tuple (None: every target)."""
        if self.target is None:
            return None
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)

    def describe(self) -> str:
        parts = [f"latency <= {self.max_latency_ms:g} ms" if self.max_latency_ms is not None else None,
                 f"memory <= {self.max_memory_mb:g} MB" if self.max_memory_mb is not None else None,
                 f"upload <= {self.max_upload_kb:g} kB" if self.max_upload_kb is not None else None,
                 f"accuracy >= {self.min_accuracy:g}" if self.min_accuracy is not None else None,
                 f"target {', '.join(self.targets)}" if self.targets else None,
                 f"backend {', '.join(self.backends)}" if self.backends else None]
        return ", ".join(p for p in parts if p) or "no limits"

    def command_line(self, results_dir: str = "DIR") -> str:
        """The `splitbench recommend` call that asks for this budget."""
        args = [f"splitbench recommend {results_dir}"]
        for flag, value in (("--max-latency-ms", self.max_latency_ms), ("--max-memory-mb", self.max_memory_mb),
                            ("--max-upload-kb", self.max_upload_kb), ("--min-accuracy", self.min_accuracy)):
            if value is not None:
                args.append(f"{flag} {value:g}")
        args.append(f"--network {self.network}")
        if self.uplink_mbps is not None:
            args.append(f"--uplink-mbps {self.uplink_mbps:g}")
        if self.delay_ms is not None:
            args.append(f"--delay-ms {self.delay_ms:g}")
        args += [f"--target {t}" for t in self.targets or ()]
        args += [f"--backend {b}" for b in self.backends or ()]
        return " ".join(args)


# The keys of a spec's [budget] table (harness.config.spec validates them), as Budget's fields.
BUDGET_KEYS = ("max_latency_ms", "max_memory_mb", "max_upload_kb", "min_accuracy", "network", "uplink_mbps",
               "delay_ms")


def budget_from_mapping(values: dict[str, Any] | None) -> Budget | None:
    """A :class:`Budget` from a spec's ``[budget]`` table or the command line's budget options (None when
    none is given)."""
    values = {k: v for k, v in (values or {}).items() if k in BUDGET_KEYS and v is not None}
    return Budget(**values) if values else None


@dataclass(frozen=True)
class Candidate:
    """One measured configuration with its end-to-end costs and the limits it breaks."""

    model: str
    config: str  # readable name, with " r=<ratio>" when noisy
    cut: str
    embedding: str
    noise_ratio: float | None
    backend: str
    target: str
    status: str
    on_premise: bool
    privacy: float | None  # log-rank privacy
    rank_privacy: float | None
    accuracy: float | None
    phone_ms: float | None
    upload_bytes: float | None
    upload_ms: float | None
    cloud_ms: float | None  # None: not measured, left out of latency_ms
    latency_ms: float | None
    memory_mb: float | None
    breaks: tuple[str, ...] = ()  # empty: fits the budget
    excess: float = 0.0  # summed relative excess over the broken limits (inf: cannot be judged)
    estimator: str | None = None  # the privacy estimator of ``privacy`` (None on-premise: no score)
    device_id: str = ""
    timing_kind: str | None = None  # "samples", or "aggregate" when the phone's tool reported only a summary
    show_device: bool = False  # two devices share this target in the table: name the device
    base_config: str = ""  # the configuration without its noise ratio (``config`` minus " r=...")

    @property
    def fits(self) -> bool:
        return not self.breaks

    @property
    def where(self) -> str:
        """backend/target, with the device when two devices share the target, and a mark on aggregates."""
        where = f"{self.backend}/{self.target}"
        if self.show_device and self.device_id:
            where += f" [{self.device_id}]"
        if self.timing_kind == "aggregate":
            where += " (tool aggregate)"
        return where

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["breaks"] = list(self.breaks)
        d["fits"] = self.fits
        d["excess"] = None if math.isinf(self.excess) else self.excess
        return d


@dataclass(frozen=True)
class Recommendation:
    """The answer for one model: the choice (or None), the frontier and every candidate."""

    model: str
    budget: Budget
    network: NetworkProfile
    cloud_included: bool
    choice: Candidate | None
    frontier: tuple[Candidate, ...]  # privacy vs latency, among the candidates meeting the accuracy floor
    candidates: tuple[Candidate, ...] = field(repr=False)  # the split configurations, fitting or not
    on_premise: tuple[Candidate, ...] = ()  # the baseline rows
    estimator: str | None = None  # the privacy estimator of every candidate's privacy
    privacy_scored: bool = True  # False: no privacy scores; chosen by end-to-end latency alone (Neurosurgeon)

    @property
    def others(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c is not self.choice)

    @property
    def closest(self) -> Candidate | None:
        """When nothing fits: the candidate breaking the fewest limits by the least (ties: more private)."""
        if not self.candidates:
            return None
        return min(self.candidates, key=lambda c: (c.excess, len(c.breaks), -_num(c.privacy), _num(c.latency_ms),
                                                   c.config))

    def impossible_line(self) -> str:
        c = self.closest
        if c is None:
            return f"{self.model}: no split configuration was measured"
        line = (f"nothing fits the budget for {self.model}: closest is {c.config} on {c.where}, which breaks "
                + "; ".join(c.breaks))
        fits_full = [b for b in self.on_premise if b.fits]
        if fits_full:
            line += f" (the whole model on the phone fits: on-premise on {fits_full[0].where})"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "budget": asdict(self.budget),
            "estimator": self.estimator,
            "privacy_scored": self.privacy_scored,
            "rule": RULE_PRIVACY if self.privacy_scored else RULE_COST,
            "choice": self.choice.to_dict() if self.choice else None,
            "closest": None if self.choice or not self.closest else self.closest.to_dict(),
            "frontier": [c.to_dict() for c in self.frontier],
            "rejections": [{"config": c.config, "backend": c.backend, "target": c.target,
                            "noise_ratio": c.noise_ratio, "breaks": list(c.breaks)}
                           for c in self.others if c.breaks],
            "fitting_others": [c.to_dict() for c in self.others if not c.breaks],
            "on_premise": [c.to_dict() for c in self.on_premise],
        }


def _num(x: Any) -> float:
    return float(x) if x is not None and not pd.isna(x) else float("-inf")


def _opt(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


# ---------------------------------------------------------------------------------------------- table


def spec_budget(results_dir: str | Path) -> Budget | None:
    """The run's spec's ``[budget]`` table from DIR/manifest.json as a :class:`Budget` (None: it has none)."""
    return budget_from_mapping(spec_table(results_dir, "budget"))


ACCURACY_DROP = 0.05  # the default budget's accuracy floor: the noise-free accuracy minus 5 points
DEFAULT_SOURCE = ("the default budget (no [budget] in the spec): LTE, no hardware limit, accuracy at most "
                  f"{ACCURACY_DROP * 100:g} points below the noise-free accuracy")


def default_budgets(merged: pd.DataFrame) -> dict[str, Budget]:
    """The budget per model when none is given: LTE, no hardware limit, accuracy at most 5 points below
    noise-free.

    Without an accuracy floor the most private row would be the noisiest, whatever it does to the task;
    the hardware limits are the reader's to set (the options, the report's controls, [budget]).
    """
    budgets = {}
    for model in dict.fromkeys(merged["model"].astype(str)):
        m = merged[(merged["model"].astype(str) == model) & ~merged["on_premise"].astype(bool)]
        clean = m[m["noise_ratio"].isna() | (m["noise_ratio"] == m["noise_ratio"].min())] \
            if "noise_ratio" in m.columns else m
        best = pd.to_numeric(clean["primary_accuracy"], errors="coerce").max() \
            if "primary_accuracy" in clean.columns else float("nan")
        floor = None if pd.isna(best) else round(max(float(best) - ACCURACY_DROP, 0.0), 4)
        budgets[model] = Budget(network="lte", min_accuracy=floor)
    return budgets


def resolve_budgets(table: pd.DataFrame, results_dir: str | Path, budget: Budget | None
                    ) -> tuple[dict[str, Budget], str]:
    """The budget per model that `recommend` and report.html answer for, and where it comes from: ``budget``
    (the command line's), else the run's spec's [budget] table, else :func:`default_budgets`."""
    models = list(dict.fromkeys(table["model"].astype(str)))
    if budget is not None:
        return {m: budget for m in models}, "the command line"
    from_spec = spec_budget(results_dir)
    if from_spec is not None:
        return {m: from_spec for m in models}, "the spec's [budget] table"
    return default_budgets(table), DEFAULT_SOURCE


# --------------------------------------------------------------------------------------------- choose


def text(x: Any) -> str:
    """A table cell as text; empty for a missing value (NaN, None), never "nan"."""
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def no_median(row: dict) -> str:
    """Why an aggregate row without a median cannot meet a latency limit."""
    mean = _opt(row.get("infer_ms_mean"))
    return ("latency not measured: the phone's tool reported no median"
            + (f" (only its mean, {mean:.3g} ms)" if mean is not None else ""))


def _candidate(row: dict, budget: Budget, net: NetworkProfile, cloud_included: bool, scored: bool = True,
               show_device: bool = False) -> Candidate:
    phone = _opt(row.get("infer_ms_median"))
    kind = row.get("timing_kind")
    kind = None if kind is None or (isinstance(kind, float) and math.isnan(kind)) else str(kind)
    nbytes = _opt(row.get("upload_bytes"))
    up = upload_ms(nbytes, net) if nbytes is not None else None
    cloud = _opt(row.get("cloud_ms")) if cloud_included else None
    latency = None if phone is None or up is None else phone + up + (cloud or 0.0)
    memory = _opt(row.get("mem_model_mb"))
    acc = _opt(row.get("primary_accuracy"))
    privacy = _opt(row.get("log_rank_privacy"))
    on_premise = bool(row.get("on_premise"))
    status = str(row.get("status", "ok"))
    breaks: list[str] = []
    excess = 0.0
    if status != "ok":
        reason = row.get("reason")
        reason = "" if reason is None or pd.isna(reason) else f": {str(reason).splitlines()[0][:120]}"
        breaks.append(f"measurement {status}{reason}")
        excess = math.inf
    else:
        def over(value: float | None, limit: float | None, what: str, unit: str, lower: bool = False):
            nonlocal excess
            if limit is None:
                return
            if value is None:
                breaks.append(f"{what} not measured (needed by the {what} limit)")
                excess = math.inf
            elif (value < limit) if lower else (value > limit):
                sign = "<" if lower else ">"
                breaks.append(f"{what} {sig(value)}{unit} {sign} {limit:g}{unit}")
                excess += abs(value - limit) / abs(limit) if limit else math.inf

        if phone is None and kind == "aggregate" and budget.max_latency_ms is not None:
            breaks.append(no_median(row))
            excess = math.inf
        over(latency, budget.max_latency_ms, "latency", " ms")
        over(memory, budget.max_memory_mb, "memory", " MB")
        over(None if nbytes is None else nbytes / BYTES_PER_KB, budget.max_upload_kb, "upload", " kB")
        over(acc, budget.min_accuracy, "accuracy", "", lower=True)
        if scored and not on_premise and privacy is None:
            breaks.append("privacy not scored")
            excess = math.inf
    ratio = _opt(row.get("noise_ratio"))
    est = row.get("estimator")
    return Candidate(
        model=str(row["model"]), config=config_label(row), cut=str(row["cut"]), embedding=str(row["embedding"]),
        noise_ratio=ratio, backend=str(row.get("backend", "")), target=str(row.get("target", "")), status=status,
        on_premise=on_premise, privacy=privacy, rank_privacy=_opt(row.get("rank_privacy")), accuracy=acc,
        phone_ms=phone, upload_bytes=nbytes, upload_ms=up, cloud_ms=cloud, latency_ms=latency, memory_mb=memory,
        breaks=tuple(breaks), excess=excess, estimator=None if on_premise or pd.isna(est) else str(est),
        device_id=text(row.get("device_id")), timing_kind=kind, show_device=show_device,
        base_config=config_label(row, with_ratio=False))


def pareto_frontier(cands: list[Candidate] | tuple[Candidate, ...], *, by_privacy: bool = True
                    ) -> tuple[Candidate, ...]:
    """Measured candidates no other beats on both privacy (higher) and latency (lower), fastest first.

    Without privacy scores (``by_privacy`` False) the trade-off is latency against phone memory.
    """
    from harness.analysis.pareto import frontier

    ok = [c for c in cands if c.status == "ok"]
    if by_privacy:
        return tuple(frontier(ok, cost=lambda c: c.latency_ms, gain=lambda c: c.privacy, key=_order))
    return tuple(frontier(ok, cost=lambda c: c.latency_ms,
                          gain=lambda c: None if c.memory_mb is None else -c.memory_mb, key=_order))


def _order(c: Candidate) -> tuple:
    return (c.config, c.where)


def _latency(c: Candidate) -> float:
    """End-to-end latency for ranking; unknown (a tool that printed no median, no latency limit) ranks last."""
    return math.inf if c.latency_ms is None else c.latency_ms


def best(fitting: list[Candidate], scored: bool) -> Candidate | None:
    """The rule, among candidates that fit: the most private (ties: lower end-to-end latency), or without
    privacy scores the fastest (ties: lower phone memory). harness/report/report.js applies the same rule
    in the report's budget controls; the browser test (tests/test_report_browser.py) checks the two agree
    on many budgets."""
    if scored:
        return max(fitting, key=lambda c: (c.privacy, -_latency(c), c.config), default=None)
    return min(fitting, key=lambda c: (_latency(c), _num(c.memory_mb), c.config), default=None)


def choose(table: pd.DataFrame, budget: Budget) -> Recommendation:
    """The most private configuration of one model's merged table that fits ``budget`` (pure function).

    ``table`` is :func:`harness.analysis.table.merge_privacy`'s output (optionally with ``cloud_ms``), or
    :func:`harness.analysis.table.without_privacy`'s: with no privacy score at all, the fastest configuration that fits is chosen
    (Neurosurgeon's question: which cut minimises latency on this phone and network) and the result says
    privacy was not scored. Rows of different devices are different candidates, never merged.
    """
    models = sorted(set(table["model"].astype(str)))
    if len(models) != 1:
        raise UserError(f"choose() takes one model's table, got {len(models)}: {', '.join(models)}")
    if budget.min_accuracy is not None and budget.min_accuracy > 1:
        raise UserError(f"--min-accuracy is a fraction in [0, 1] (0.9 for 90%), got {budget.min_accuracy:g}")
    net = budget.profile()
    for column, wanted, what in (("target", budget.targets, "target"), ("backend", budget.backends, "backend")):
        if wanted is None:
            continue
        present = sorted(set(table[column].astype(str)))
        unknown = [w for w in wanted if w not in present]
        if unknown:
            raise UserError(f"no measurements on {what} {unknown[0]!r}; the run has {', '.join(present)}")
        table = table[table[column].astype(str).isin(wanted)]
    cloud_included = "cloud_ms" in table.columns and table["cloud_ms"].notna().all()
    scored = "log_rank_privacy" in table.columns and bool(
        pd.to_numeric(table["log_rank_privacy"], errors="coerce").notna().any())
    shared = set()
    if "device_id" in table.columns:
        per_target = table.groupby(["backend", "target"])["device_id"].nunique()
        shared = {k for k, n in per_target.items() if n > 1}
    rows = table.to_dict("records")
    all_c = [_candidate(r, budget, net, cloud_included, scored, (r.get("backend"), r.get("target")) in shared)
             for r in rows]
    cands = [c for c in all_c if not c.on_premise]
    choice = best([c for c in cands if c.fits], scored)
    # A configuration below the accuracy floor is no trade-off at all: the frontier is drawn among the
    # others (among every candidate when none reaches the floor).
    floor = budget.min_accuracy
    usable = [c for c in cands if floor is None or (c.accuracy is not None and c.accuracy >= floor)] or cands
    estimators = sorted({c.estimator for c in cands if c.estimator is not None})
    if len(estimators) > 1:
        raise UserError(f"{models[0]}: the table mixes privacy estimators ({', '.join(estimators)}), which are never "
                        "compared as one: merge one (harness.analysis.table.select_estimator)")
    return Recommendation(model=models[0], budget=budget, network=net, cloud_included=cloud_included,
                          choice=choice, frontier=pareto_frontier(usable, by_privacy=scored),
                          candidates=tuple(cands), on_premise=tuple(c for c in all_c if c.on_premise),
                          estimator=estimators[0] if estimators else None, privacy_scored=scored)


def choose_all(table: pd.DataFrame, budget: Budget) -> list[Recommendation]:
    """One :class:`Recommendation` per model of the table, in table order."""
    models = list(dict.fromkeys(table["model"].astype(str)))
    return [choose(table[table["model"].astype(str) == m], budget) for m in models]


# -------------------------------------------------------------------------------------------- command


def _f(x: float | None, fmt: str | None = None) -> str:
    """Three significant digits (see :mod:`harness.core.units`); ``fmt`` forces a format."""
    if x is None:
        return "-"
    return f"{x:{fmt}}" if fmt else sig(x)


def latency_formula(rec: Recommendation) -> str:
    if rec.cloud_included:
        return "end-to-end latency = phone inference median + upload + cloud part (cloud.csv)"
    return ("end-to-end latency = phone inference median + upload; the cloud part is NOT included "
            "(no cloud.csv in the results directory)")


def candidate_row(c: Candidate) -> list[str]:
    """The cells of the frontier table (also used by the HTML report), under CANDIDATE_HEADERS: every number
    with its precision and unit (three significant digits, µs under a millisecond)."""
    return [c.config, c.where, sig(c.privacy) if c.privacy is not None else "-", _f(c.accuracy),
            fmt_ms(c.latency_ms), fmt_ms(c.phone_ms), fmt_ms(c.upload_ms), fmt_mb(c.memory_mb),
            fmt_bytes(c.upload_bytes)]


CANDIDATE_HEADERS = ["configuration", "backend/target", "log-rank privacy", "accuracy", "latency",
                     "phone inference", "upload time", "model memory", "upload"]


def breaks_text(c: Candidate, choice: Candidate | None, scored: bool = True) -> str:
    if c.breaks:
        return "; ".join(c.breaks)
    if c.on_premise:
        return "fits: nothing but the output leaves the phone"
    if choice is None:
        return "fits"
    return f"fits, less private than {choice.config}" if scored else f"fits, slower than {choice.config}"


def on_premise_of(rec: Recommendation, c: Candidate) -> Candidate | None:
    """The on-premise row measured where ``c`` was (same backend, target and device): its cost baseline."""
    return next((b for b in rec.on_premise if (b.backend, b.target, b.device_id) == (c.backend, c.target,
                                                                                      c.device_id)), None)


def versus_on_premise(rec: Recommendation, c: Candidate) -> str:
    """What ``c`` costs against the whole model on the same phone, as the papers give it (DPFE: "+43.96%
    time, +22.10% memory relative to ..."): ratios of the phone inference median, model memory, latency."""
    from harness.core.units import fmt_ratio

    base = on_premise_of(rec, c)
    if base is None or base.status != "ok":
        return "no on-premise measurement on " + c.where
    return (f"against on-premise on {base.where}: phone inference {fmt_ratio(c.phone_ms, base.phone_ms)}, "
            f"model memory {fmt_ratio(c.memory_mb, base.memory_mb)}, end-to-end latency "
            f"{fmt_ratio(c.latency_ms, base.latency_ms)} (on-premise: {fmt_ms(base.latency_ms)}, "
            f"{fmt_mb(base.memory_mb)})")


def ratio_ranges(ratios: list[float | None], chosen: list[float | None]) -> str:
    """The noise ratios in ``chosen`` as runs of consecutive ratios of ``ratios``: ``0–0.5, 2``."""
    order = [r for r in ratios if r is not None]
    picked = {r for r in chosen if r is not None}
    runs: list[list[float]] = []
    for i, r in enumerate(order):
        if r not in picked:
            continue
        if runs and order[i - 1] == runs[-1][-1] and i > 0:
            runs[-1].append(r)
        else:
            runs.append([r])
    return ", ".join(f"{run[0]:g}" if len(run) == 1 else f"{run[0]:g}–{run[-1]:g}" for run in runs)


@dataclass(frozen=True)
class ConfigLine:
    """One configuration measured on one backend/target/device, with every noise ratio it was scored at:
    one line of `recommend`'s "every other configuration" table."""

    base_config: str
    where: str
    members: tuple[Candidate, ...]  # in table order (ascending noise ratio)

    @property
    def ratios(self) -> list[float | None]:
        return [m.noise_ratio for m in self.members]

    @property
    def fitting(self) -> tuple[Candidate, ...]:
        return tuple(m for m in self.members if m.fits)

    def fits_text(self) -> str:
        """``r = 0–0.5`` (the ratios that fit), ``yes``/``no`` without a sweep, ``none``."""
        if all(r is None for r in self.ratios):
            return "yes" if self.fitting else "no"
        fit = ratio_ranges(self.ratios, [m.noise_ratio for m in self.fitting])
        return f"r = {fit}" if fit else "none"

    def privacy_text(self) -> str:
        values = [m.privacy for m in self.members if m.privacy is not None]
        if not values:
            return "-"
        lo, hi = min(values), max(values)
        return sig(lo) if lo == hi else f"{sig(lo)}–{sig(hi)}"

    def why(self, choice: Candidate | None, scored: bool) -> str:
        """Chosen, fits (and what the choice beats it on), or the limits it breaks, grouped by limit."""
        if choice is not None and any(m is choice for m in self.members):
            return "chosen" + (f" at r = {choice.noise_ratio:g}" if choice.noise_ratio is not None else "")
        parts = []
        if self.fitting:
            parts.append("fits" if choice is None else
                         f"fits, {'less private' if scored else 'slower'} than {choice.config}")
        broken = [m for m in self.members if not m.fits]
        kinds: dict[str, list[tuple[float | None, str]]] = {}
        for m in broken:
            for b in m.breaks:
                kinds.setdefault(b.split(" ", 1)[0], []).append((m.noise_ratio, b))
        for kind, items in kinds.items():
            texts = list(dict.fromkeys(t for _, t in items))
            everywhere = len(items) == len(self.members)
            rng = ratio_ranges(self.ratios, [r for r, _ in items])
            if len(texts) == 1:
                parts.append(texts[0] if everywhere or not rng else f"{texts[0]} at r = {rng}")
            else:
                r0, t0 = items[0]
                tail = t0.split(" ", 1)[1] if " " in t0 else t0
                parts.append(f"{kind} at r = {rng} (r = {r0:g}: {tail})" if r0 is not None else "; ".join(texts))
        return "; ".join(parts)


def config_lines(rec: Recommendation) -> list[ConfigLine]:
    """The candidates grouped by configuration and where it was measured, in table order."""
    groups: dict[tuple, list[Candidate]] = {}
    for c in rec.candidates:
        groups.setdefault((c.base_config, c.backend, c.target, c.device_id), []).append(c)
    return [ConfigLine(base_config=k[0], where=v[0].where, members=tuple(v)) for k, v in groups.items()]


def _table(*headers: str, title: str, wrap: tuple[str, ...] = ()):
    """A Rich table that never cuts a word: the ``wrap`` columns wrap, the others keep their width, and a
    column too narrow even so folds instead of ending in "…"."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for h in headers:
        table.add_column(h, overflow="fold", no_wrap=h not in wrap)
    return table


NARROW = 120  # below this many columns, each configuration's place goes under its name


def _print(rec: Recommendation, console, *, show_all: bool = False, budget_source: str | None = None) -> None:
    c = rec.choice
    narrow = console.width < NARROW

    def name(config: str, where: str) -> list[str]:
        return [f"{config}\n{where}"] if narrow else [config, where]

    place = ["configuration"] if narrow else ["configuration", "backend/target"]
    from rich.markup import escape

    source = f" ({budget_source})" if budget_source else ""
    console.print(f"[bold]{escape(rec.model)}[/bold]  budget: {escape(rec.budget.describe() + source)}", markup=True)
    console.print(f"network {rec.network.describe()}", markup=False)
    console.print(latency_formula(rec), markup=False)
    console.print(f"rule: {RULE_PRIVACY if rec.privacy_scored else RULE_COST}", markup=False)
    cloud = f" + cloud {fmt_ms(c.cloud_ms)}" if rec.cloud_included else ""
    privacy = (f"log-rank privacy {_f(c.privacy)} ({rec.estimator} estimator), "
               if rec.privacy_scored else "privacy not scored, ")
    console.print(f"[bold green]Recommended:[/bold green] {c.config} on {c.where}: {privacy}"
                  f"accuracy {_f(c.accuracy)}, latency {fmt_ms(c.latency_ms)} "
                  f"(phone {fmt_ms(c.phone_ms)} + upload {fmt_ms(c.upload_ms)}{cloud}), memory {fmt_mb(c.memory_mb)}, "
                  f"upload {fmt_bytes(c.upload_bytes)}; {versus_on_premise(rec, c)}", highlight=False)
    title = (f"Pareto frontier (log-rank privacy, {rec.estimator} estimator, vs end-to-end latency)"
             if rec.privacy_scored else "Pareto frontier (end-to-end latency vs phone memory; privacy not scored)")
    front = _table(*place, "privacy", "accuracy", "latency", "memory", "upload", "fits", title=title)
    for f in rec.frontier:
        cells = candidate_row(f)
        front.add_row(*name(f.config, f.where), *cells[2:5], *cells[7:],
                      "chosen" if f is c else ("yes" if f.fits else "no"))
    console.print(front)
    what = f"log-rank privacy, {rec.estimator} estimator" if rec.privacy_scored else "privacy not scored"
    if show_all:
        others = _table(*place, "privacy", "why not chosen", title=f"Every other configuration ({what})",
                        wrap=("why not chosen",))
        for o in rec.others:
            others.add_row(*name(o.config, o.where), _f(o.privacy), breaks_text(o, c, rec.privacy_scored))
    else:
        others = _table(*place, "privacy", "fits at r", "why not chosen", wrap=("why not chosen",),
                        title=f"Every configuration, its noise ratios r on one line ({what}; --all: one line each)")
        for line in config_lines(rec):
            others.add_row(*name(line.base_config, line.where), line.privacy_text(), line.fits_text(),
                           line.why(c, rec.privacy_scored))
    for b in rec.on_premise:
        others.add_row(*name(f"{b.config} (on-premise)", b.where), "on-device",
                       *([] if show_all else ["yes" if b.fits else "no"]), breaks_text(b, c))
    console.print(others)


def _console():
    """The console `recommend` prints to: the terminal's width on a terminal; in a pipe or a CI log, wide
    enough that no line is cut or wrapped (a table there is read whole, or by grep)."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=4000, soft_wrap=False)
    return console


def recommend(results_dir: str | Path, budget: Budget | None = None, *, json_out: bool = False, console=None,
              estimator: str | None = None, show_all: bool = False,
              target: str | tuple[str, ...] | None = None, backends: tuple[str, ...] | None = None) -> int:
    """Print the recommendation for ``budget`` from a results directory; return the exit code (0).

    ``budget`` None: the run's spec's [budget], else the default budget (:func:`resolve_budgets`, as in
    report.html); ``target``/``backends`` then narrow it. ``estimator``: whose privacy scores to rank by
    (see :func:`load_table`). ``show_all``: one line per candidate (each noise ratio) instead of one per
    configuration. Nothing fitting raises :class:`NothingFits` with one line (exit 3 through the CLI),
    after the JSON.
    """
    table = load_table(results_dir, estimator)
    budgets, source = resolve_budgets(table, results_dir, budget)
    if target is not None or backends is not None:
        budgets = {m: replace(b, target=target if target is not None else b.target,
                              backends=backends if backends is not None else b.backends)
                   for m, b in budgets.items()}
    recs = [choose(table[table["model"].astype(str) == m], b) for m, b in budgets.items()]
    if json_out:
        first = next(iter(budgets.values()), budget or Budget())
        net = recs[0].network if recs else first.profile()
        obj = {"budget": asdict(first), "budget_source": source, "network": asdict(net),
               "latency": latency_formula(recs[0]) if recs else "", "cloud_included": all(r.cloud_included for r in recs)}
        if len(recs) == 1:
            obj.update(recs[0].to_dict())
        else:
            obj["models"] = [r.to_dict() for r in recs]
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    if not json_out:
        console = console or _console()
        for r in recs:
            if r.choice is not None:
                _print(r, console, show_all=show_all, budget_source=source)
    failed = [r for r in recs if r.choice is None]
    if failed:
        raise NothingFits(" | ".join(r.impossible_line() for r in failed))
    return 0


class NothingFits(UserError):
    """No configuration fits the budget: not bad input, so an exit code of its own."""

    exit_code = exitcodes.NOTHING_FITS
