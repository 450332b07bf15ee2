"""The choice in words and table cells: the latency formula, the frontier's rows, why a configuration was
not chosen, what it costs against on-premise, and each configuration on one line with its noise ratios
(for `recommend`'s tables and the report; see :mod:`harness.analysis.recommend`)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.analysis.recommend.choice import Candidate, Recommendation
from harness.core.units import fmt_bytes, fmt_mb, fmt_ms, sig


def sig_or_dash(x: float | None, fmt: str | None = None) -> str:
    """Three significant digits (see :mod:`harness.core.units`), ``-`` when missing; ``fmt`` forces a format."""
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
    return [c.config, c.where, sig(c.privacy) if c.privacy is not None else "-", sig_or_dash(c.accuracy),
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


def baseline_key(c: Candidate) -> tuple[str, str, str, str, str]:
    """Where and how ``c`` was measured: backend, target, device, precision and accelerator. Its on-premise
    baseline is the one measured the same way (an int8 cut against the int8 whole model, never float32's)."""
    return (c.backend, c.target, c.device_id, c.precision, c.accelerator)


def on_premise_of(rec: Recommendation, c: Candidate) -> Candidate | None:
    """The on-premise row measured where and as ``c`` was (same backend, target, device, precision and
    accelerator): its cost baseline."""
    return next((b for b in rec.on_premise if baseline_key(b) == baseline_key(c)), None)


def versus_on_premise(rec: Recommendation, c: Candidate) -> str:
    """What ``c`` costs against the whole model on the same phone, as the papers give it (DPFE: "+43.96%
    time, +22.10% memory relative to ..."): ratios of the phone inference median, model memory, latency."""
    from harness.core.units import fmt_ratio

    base = on_premise_of(rec, c)
    if base is None or base.status != "ok":
        return "no on-premise measurement on " + c.where + (f" in {c.precision}" if c.precision != "float32" else "")
    return (f"against {base.config} on {base.where}: phone inference {fmt_ratio(c.phone_ms, base.phone_ms)}, "
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
