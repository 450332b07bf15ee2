"""The rule: every measured configuration as a :class:`Candidate` with its end-to-end costs and the limits
it breaks, the Pareto frontier, and the most private one that fits (see :mod:`harness.analysis.recommend`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from harness.analysis.recommend.budget import BYTES_PER_KB, Budget
from harness.analysis.table import config_label
from harness.config.network import NetworkProfile, upload_ms
from harness.core import exitcodes
from harness.core.errors import UserError
from harness.core.units import sig

RULE_PRIVACY = ("the most private configuration (log-rank privacy) that fits every limit; ties go to the lower "
                "end-to-end latency")
RULE_COST = ("privacy was not scored: the configuration with the lowest end-to-end latency that fits every "
             "limit (Neurosurgeon's rule); ties go to the lower phone memory")


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
    precision: str = "float32"
    accelerator: str = "cpu"

    @property
    def fits(self) -> bool:
        return not self.breaks

    @property
    def where(self) -> str:
        """backend/target, with the device when two devices share the target, and a mark on aggregates."""
        where = f"{self.backend}/{self.target}"
        if self.accelerator != "cpu":
            where += f" {self.accelerator}"
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


def opt(x: Any) -> float | None:
    """A table cell as a number: None when it is missing (None, NaN) or not a number."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def text(x: Any) -> str:
    """A table cell as text; empty for a missing value (NaN, None), never "nan"."""
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def no_median(row: dict) -> str:
    """Why an aggregate row without a median cannot meet a latency limit."""
    mean = opt(row.get("infer_ms_mean"))
    return ("latency not measured: the phone's tool reported no median"
            + (f" (only its mean, {mean:.3g} ms)" if mean is not None else ""))


def _candidate(row: dict, budget: Budget, net: NetworkProfile, cloud_included: bool, scored: bool = True,
               show_device: bool = False) -> Candidate:
    phone = opt(row.get("infer_ms_median"))
    kind = row.get("timing_kind")
    kind = None if kind is None or (isinstance(kind, float) and math.isnan(kind)) else str(kind)
    nbytes = opt(row.get("upload_bytes"))
    up = upload_ms(nbytes, net) if nbytes is not None else None
    cloud = opt(row.get("cloud_ms")) if cloud_included else None
    latency = None if phone is None or up is None else phone + up + (cloud or 0.0)
    memory = opt(row.get("mem_model_mb"))
    acc = opt(row.get("primary_accuracy"))
    privacy = opt(row.get("log_rank_privacy"))
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
    ratio = opt(row.get("noise_ratio"))
    est = row.get("estimator")
    return Candidate(
        model=str(row["model"]), config=config_label(row), cut=str(row["cut"]), embedding=str(row["embedding"]),
        noise_ratio=ratio, backend=str(row.get("backend", "")), target=str(row.get("target", "")), status=status,
        on_premise=on_premise, privacy=privacy, rank_privacy=opt(row.get("rank_privacy")), accuracy=acc,
        phone_ms=phone, upload_bytes=nbytes, upload_ms=up, cloud_ms=cloud, latency_ms=latency, memory_mb=memory,
        breaks=tuple(breaks), excess=excess, estimator=None if on_premise or pd.isna(est) else str(est),
        device_id=text(row.get("device_id")), timing_kind=kind, show_device=show_device,
        base_config=config_label(row, with_ratio=False), precision=text(row.get("precision")) or "float32",
        accelerator=text(row.get("accelerator")) or "cpu")


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
    :func:`harness.analysis.table.without_privacy`'s: with no privacy score at all, the fastest configuration
    that fits is chosen (Neurosurgeon's question: which cut minimises latency on this phone and network) and
    the result says privacy was not scored. Rows of different devices are different candidates, never merged.
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


class NothingFits(UserError):
    """No configuration fits the budget: not bad input, so an exit code of its own."""

    exit_code = exitcodes.NOTHING_FITS
