"""`splitbench recommend DIR`: the command and its printing (see :mod:`harness.analysis.recommend`)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from harness.analysis.recommend.budget import Budget, resolve_budgets
from harness.analysis.recommend.choice import RULE_COST, RULE_PRIVACY, NothingFits, Recommendation, choose
from harness.analysis.recommend.explain import (breaks_text, candidate_row, config_lines, latency_formula,
                                                sig_or_dash, versus_on_premise)
from harness.analysis.table import load_table
from harness.core.text import markup, visible
from harness.core.units import fmt_bytes, fmt_mb, fmt_ms
from harness.results.stats import HOST_INT8, host_int8


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
    """The choice, the frontier and every other configuration. Names (a model's layers, targets, devices, an
    estimator) are printed as text with controls and bidi overrides made visible, never as markup."""
    from rich.text import Text

    c = rec.choice
    narrow = console.width < NARROW

    def shown(x: object) -> Text:
        return Text(visible(x))

    def name(config: str, where: str) -> list[Text]:
        return [Text(f"{visible(config)}\n{visible(where)}")] if narrow else [shown(config), shown(where)]

    def row(table, names: list[Text], *cells: object) -> None:
        table.add_row(*names, *(shown(x) for x in cells))

    place = ["configuration"] if narrow else ["configuration", "backend/target"]
    source = f" ({budget_source})" if budget_source else ""
    console.print(f"[bold]{markup(rec.model)}[/bold]  budget: {markup(rec.budget.describe() + source)}",
                  markup=True)
    console.print(f"network {rec.network.describe()}", markup=False)
    console.print(latency_formula(rec), markup=False)
    console.print(f"rule: {RULE_PRIVACY if rec.privacy_scored else RULE_COST}", markup=False)
    cloud = f" + cloud {fmt_ms(c.cloud_ms)}" if rec.cloud_included else ""
    privacy = (f"log-rank privacy {sig_or_dash(c.privacy)} ({rec.estimator} estimator), "
               if rec.privacy_scored else "privacy not scored, ")
    console.print(Text.assemble(("Recommended:", "bold green"), visible(
        f" {c.config} on {c.where}: {privacy}accuracy {sig_or_dash(c.accuracy)}, latency {fmt_ms(c.latency_ms)} "
        f"(phone {fmt_ms(c.phone_ms)} + upload {fmt_ms(c.upload_ms)}{cloud}), memory {fmt_mb(c.memory_mb)}, "
        f"upload {fmt_bytes(c.upload_bytes)}; {versus_on_premise(rec, c)}")), highlight=False)
    title = (f"Pareto frontier (log-rank privacy, {rec.estimator} estimator, vs end-to-end latency)"
             if rec.privacy_scored else "Pareto frontier (end-to-end latency vs phone memory; privacy not scored)")
    front = _table(*place, "privacy", "accuracy", "latency", "memory", "upload", "fits", title=markup(title))
    for f in rec.frontier:
        cells = candidate_row(f)
        row(front, name(f.config, f.where), *cells[2:5], *cells[7:], "chosen" if f is c else ("yes" if f.fits else "no"))
    console.print(front)
    what = f"log-rank privacy, {rec.estimator} estimator" if rec.privacy_scored else "privacy not scored"
    if show_all:
        others = _table(*place, "privacy", "why not chosen", title=markup(f"Every other configuration ({what})"),
                        wrap=("why not chosen",))
        for o in rec.others:
            row(others, name(o.config, o.where), sig_or_dash(o.privacy), breaks_text(o, c, rec.privacy_scored))
    else:
        others = _table(*place, "privacy", "fits at r", "why not chosen", wrap=("why not chosen",),
                        title=markup(f"Every configuration, its noise ratios r on one line ({what}; --all: one "
                                     "line each)"))
        for line in config_lines(rec):
            row(others, name(line.base_config, line.where), line.privacy_text(), line.fits_text(),
                line.why(c, rec.privacy_scored))
    for b in rec.on_premise:
        row(others, name(f"{b.config} (on-premise)", b.where), "on-device",
            *([] if show_all else ["yes" if b.fits else "no"]), breaks_text(b, c))
    console.print(others)
    if any(host_int8(x.precision, x.backend, x.target) for x in (*rec.candidates, *rec.on_premise)):
        console.print(f"note: {HOST_INT8.message}; {HOST_INT8.fix}", markup=False)


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
