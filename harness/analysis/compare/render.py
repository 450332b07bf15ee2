"""The comparison for people and programs: a terminal table, GitHub Markdown, and JSON (see
:mod:`harness.analysis.compare`)."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from harness.analysis.compare.model import (CI_LEVEL, COMPARED, FAILED_NEW, JSON_SCHEMA_VERSION, METRIC, NOT_COMPARABLE,
                                            NOT_TESTED, ONLY_BASE, ONLY_NEW, TEST_EXACT, TEST_NONE, TEST_ONE,
                                            TEST_QUANTILE, TEST_RANK, TEST_TOOL, TEST_WELCH, Comparison,
                                            MetricComparison, PairComparison)
from harness.core import exitcodes
from harness.core.text import markup, visible
from harness.core.units import fmt_bytes, fmt_mb, fmt_ms, sig

_SHORT_TEST = {TEST_RANK: "rank", TEST_QUANTILE: "quantile", TEST_WELCH: "Welch agg.", TEST_ONE: "1 sample",
               TEST_EXACT: "exact", TEST_TOOL: "tool figure", TEST_NONE: "—"}


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
            f"beyond its threshold: {th}. A time with too few runs for its test to reach p < {c.options.alpha:g} "
            f"is {NOT_TESTED}: shown, never a regression. Intervals: {CI_LEVEL:.0%} bootstrap of the ratio shown.")


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
    untested = len(c.not_tested)
    tail = f"; {untested} metric{'s' if untested != 1 else ''} {NOT_TESTED} (too few runs for a test)" if untested else ""
    return f"{head} ({'; '.join(parts)}; exit {c.exit_code}){tail}"


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
    """The comparison for a terminal (or a log: in a pipe the table keeps its full width). Names and notes are
    text with controls and bidi overrides made visible, never markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def cells(*texts: str) -> list[Text]:
        return [Text(visible(t)) for t in texts]

    stream = out or sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if tty else 1000, highlight=False, soft_wrap=not tty)
    title = markup(f"BASE {c.base_dir}" + (f" ({c.base_commit})" if c.base_commit else "") +
                   f"  ->  NEW {c.new_dir}" + (f" ({c.new_commit})" if c.new_commit else ""))
    table = Table("configuration", "metric", "BASE", "NEW", "ratio", f"{CI_LEVEL:.0%} CI", "p adj.", "test",
                  "verdict", "note", title=title)
    style = {"slower": "red", "bigger": "red", FAILED_NEW: "red", "faster": "green", "smaller": "green",
             NOT_COMPARABLE: "yellow", NOT_TESTED: "yellow"}
    for p in c.pairs:
        if p.status != COMPARED:
            note = "; ".join(_pair_notes(p))
            table.add_row(*cells(p.label, "", "", "", "", "", "", ""), f"[{style.get(p.status, 'yellow')}]{p.status}[/]",
                          *cells(note))
            continue
        for i, m in enumerate(p.metrics):
            label = p.label + (" (marked)" if p.marked else "") if i == 0 else ""
            verdict = f"[{style[m.verdict]}]{m.verdict}[/]" if m.verdict in style else m.verdict
            table.add_row(*cells(label, METRIC[m.metric].label, _fmt(m.base, m.unit), _fmt(m.new, m.unit),
                                 _fmt_ratio(m), _fmt_ci(m), _fmt_p(m), _SHORT_TEST[m.test]), verdict, *cells(m.note))
        if p.differences or p.notes:
            table.add_row("", "", "", "", "", "", "", "", "", *cells("; ".join(_pair_notes(p))))
        table.add_section()
    console.print(table)
    console.print(_method_line(c))
    for line in _regression_lines(c):
        console.print(f"[red]regression[/]: {markup(line)}")
    console.print(_headline(c))


def _md_escape(text: str) -> str:
    return visible(text.replace("\n", " ")).replace("|", "\\|")


def _md_rows(rows: list[tuple[PairComparison, MetricComparison]]) -> list[str]:
    lines = ["| configuration | metric | BASE | NEW | ratio | 95% CI | p adj. | test | verdict | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p, m in rows:
        verdict = f"**{m.verdict}**" if m.regression else m.verdict
        lines.append("| " + " | ".join(_md_escape(x) for x in (
            p.label, METRIC[m.metric].label, _fmt(m.base, m.unit), _fmt(m.new, m.unit),
            _fmt_ratio(m), _fmt_ci(m), _fmt_p(m), _SHORT_TEST[m.test], verdict, m.note)) + " |")
    return lines


def render_markdown(c: Comparison) -> str:
    """GitHub-flavoured Markdown for a PR comment or a job summary: the verdict, what changed, then every
    row in a collapsed table."""
    base = f"`{visible(c.base_dir)}`" + (f" ({c.base_commit})" if c.base_commit else "")
    new = f"`{visible(c.new_dir)}`" + (f" ({c.new_commit})" if c.new_commit else "")
    icon = {exitcodes.REGRESSION: ":x:", exitcodes.NOT_COMPARABLE: ":warning:"}.get(c.exit_code, ":white_check_mark:")
    lines = [f"### {icon} splitbench compare: {_headline(c)}", "", f"BASE {base} -> NEW {new}", ""]
    failed = [p for p in c.pairs if p.status == FAILED_NEW]
    if failed:
        lines += ["**Failed in NEW** (measured in BASE):", ""]
        lines += [f"- `{_md_escape(p.name)}`: {_md_escape(p.notes[-1] if p.notes else '')}" for p in failed] + [""]
    changed = [(p, m) for p in c.pairs for m in p.metrics if m.regression or m.improvement]
    if changed:
        lines += ["**Changes** (significant and beyond the threshold):", ""] + _md_rows(changed) + [""]
    if c.not_tested:
        n = len(c.not_tested)
        lines += [f"<details><summary><b>{n} metric{'s' if n != 1 else ''} {NOT_TESTED}</b>: too few runs for the "
                  "metric's test (shown, never a regression; measure more runs)</summary>", ""]
        lines += [f"- `{_md_escape(p.name)}` {METRIC[m.metric].label}: {_fmt_ratio(m)} — {_md_escape(m.note)}"
                  for p, m in c.not_tested] + ["", "</details>", ""]
    other = [p for p in c.pairs if p.status not in (COMPARED, FAILED_NEW) or p.differences]
    if other:
        lines += ["**Not compared, one side only, or compared across a change:**", ""]
        for p in other:
            why = "; ".join(_pair_notes(p))
            lines.append(f"- `{_md_escape(p.name)}`: {p.status}" + (f" — {_md_escape(why)}" if why else ""))
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
    Bencher's or github-action-benchmark's format is one mapping away (see docs/ci.md)."""
    pairs = []
    for p in c.pairs:
        d = {k: getattr(p, k) for k in ("model", "cut", "embedding", "precision", "backend", "target", "accelerator",
                                         "config", "status", "base_device", "new_device", "base_record",
                                         "new_record")}
        d.update(name=p.name, regression=p.regression, differences=list(p.differences),
                 compared_across_change=p.marked, changes=list(p.changes), notes=list(p.notes), metrics=[
                     {"name": f"{p.name}/{m.metric}", "metric": m.metric, "label": METRIC[m.metric].label,
                      "unit": m.unit, "base": _num(m.base), "new": _num(m.new), "ratio": _num(m.ratio),
                      "ci_low": m.ci_low, "ci_high": m.ci_high, "ci_level": CI_LEVEL if m.ci_low is not None else None,
                      "test": m.test, "n_base": m.n_base, "n_new": m.n_new, "p_value": m.p_value,
                      "p_adjusted": m.p_adjusted, "threshold": m.threshold, "verdict": m.verdict,
                      "tested": m.tested, "regression": m.regression, "improvement": m.improvement,
                      "disturbed": m.disturbed, "note": m.note}
                     for m in p.metrics])
        pairs.append(d)
    return {
        "schema_version": JSON_SCHEMA_VERSION, "outcome": c.outcome, "exit_code": c.exit_code,
        "base": {"dir": c.base_dir, "commit": c.base_commit}, "new": {"dir": c.new_dir, "commit": c.new_commit},
        "alpha": c.options.alpha, "correction": "benjamini-hochberg", "tests": c.tests,
        "thresholds": dict(c.options.thresholds), "allow_device_change": c.options.allow_device_change,
        "regressions": _regression_lines(c), "not_tested": [f"{p.name}/{m.metric}" for p, m in c.not_tested],
        "pairs": pairs,
    }
