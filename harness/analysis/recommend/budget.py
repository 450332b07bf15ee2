"""The budget a configuration must fit, and where it comes from: the command line, the run's spec's
``[budget]`` table (from DIR/manifest.json), else the default budget (see :mod:`harness.analysis.recommend`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.table import spec_table
from harness.config.network import NetworkProfile, get_profile

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
