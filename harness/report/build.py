"""`splitbench report`: rebuild a results directory's figures and write one self-contained report.html.

The page opens with the answer: the configuration `splitbench recommend` chooses for a budget (the
command line's, else the spec's ``[budget]`` table, else the default budget; one implementation:
:func:`harness.analysis.recommend.budget.resolve_budgets`), what it costs against on-premise, and controls that move the budget with the same rule. It holds everything it shows: figures
as base64 data URIs (SVG when there is one, else PNG), the data as JSON, the style sheet and the script
inline, the reader's system fonts. It opens offline, from an e-mail attachment as well as from the
results directory, and prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pandas as pd

from harness.core.errors import UserError
from harness.core.text import visible
from harness.results.store import ResultsWriteError, atomic_write_bytes
from harness.analysis.recommend.budget import Budget
from harness.results.layout import CLOUD_CSV, PRIVACY_CSV, REPORT_HTML
from harness.results.readers import read_manifest, read_summary
from harness.report.figures import WRITE_FIX

log = logging.getLogger(__name__)


def _load_table(d: Path, summary: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The merged table `recommend` reads, and the privacy table merged into it (None: privacy not in it,
    when there is none, it is not valid, or it does not match: then ``notes`` says why, as `recommend` does)."""
    from harness.analysis.table import attach_cloud, load_privacy, merge_privacy, spec_estimator, without_privacy

    privacy = None
    if (d / PRIVACY_CSV).is_file():
        try:
            privacy = load_privacy(d)
            merged = merge_privacy(summary, privacy, preferred=spec_estimator(d))
        except UserError as exc:
            privacy = None
            notes.append(f"Privacy scores not shown: {exc}")
    if privacy is None:
        merged = without_privacy(summary)
    try:
        return attach_cloud(merged, d / CLOUD_CSV), privacy
    except UserError as exc:
        notes.append(f"Cloud part left out of the latency: {exc}")
        return attach_cloud(merged, None), privacy


def build_report(out_dir: str | Path, *, budget: Budget | None = None,
                 say: Callable[[str], None] | None = None) -> list[Path]:
    """Rebuild the figures of DIR (measurement figures, and trade-off figures when DIR/privacy.csv holds
    scores that match) and write DIR/report.html; returns every file written, the report last.

    ``budget``: the budget the page opens with (default: the spec's [budget], else the default budget).
    A privacy table that is not valid or does not match the measurements does not stop the report: the
    answer is then chosen by cost alone, and the one-line message `recommend` gives is shown at the top and
    passed to ``say`` (default: this module's log) as a warning.
    """
    from harness import __version__
    from harness.analysis.recommend.budget import resolve_budgets
    from harness.analysis.recommend.choice import choose
    from harness.report import data as data_mod
    from harness.report import page as P

    d = Path(out_dir)
    summary = read_summary(d)
    manifest = read_manifest(d)
    notes: list[str] = []
    written: list[Path] = []
    try:
        from harness.report.figures import make_figures
    except ImportError as exc:
        notes.append(f"Measurement figures not drawn: harness.report.figures is not importable ({exc}).")
    else:
        written += list(make_figures(d))
    table, privacy = _load_table(d, summary, notes)
    for note in notes:  # what the page says at the top, said where the command was run too
        (say or log.warning)(f"warning: {note}")
    scored = privacy is not None
    estimator, others = None, []
    if scored:
        from harness.analysis.table import estimators_of
        from harness.report.tradeoff import make_tradeoff_figures

        estimator = next(iter(sorted(set(table["estimator"].dropna().astype(str)))), None)
        others = [e for e in estimators_of(privacy) if e != estimator]
        written += make_tradeoff_figures(d, merged=table, privacy=privacy)

    budgets, source = resolve_budgets(table, d, budget)
    recs, models, rows_refs, used = [], [], [], []
    for model, b in budgets.items():
        t = table[table["model"].astype(str) == model]
        rec = choose(t, b)
        m = data_mod.model_data(t, b, results_dir=str(d.resolve()), budget_source=source)
        recs.append(rec)
        models.append(m)
        rows, refs = data_mod.config_rows(t, m, summary[summary["model"].astype(str) == model])
        m["refs"] = refs
        rows_refs.append((rows, refs))
        used.append(b)
    figs = P.figures_by_stem(written)
    failed = int((summary["status"].astype(str) != "ok").sum()) if "status" in summary.columns else 0
    sections = [P.answer_section(recs, models, used, failed), P.configurations_section(recs, models, rows_refs),
                P.tradeoff_section(models, figs), P.figures_section(figs)]
    if scored:
        sections.append(P.privacy_section(table, estimator or "unspecified", others))
    sections += [P.measured_section(summary), P.setup_section(manifest)]
    html_text = P.page(d, title=f"splitbench report: {visible(d.resolve().name)}", version=__version__,
                       manifest=manifest, notes=notes, sections=sections, data_json=data_mod.page_json(models))
    report = d / REPORT_HTML
    atomic_write_bytes(report, html_text.encode("utf-8", errors="backslashreplace"), fix=WRITE_FIX)
    return [*written, report]


def refresh(out_dir: str | Path) -> list[Path]:
    """A run's report stage: :func:`build_report` with the budget of the spec. When the report cannot be
    built, the measurement figures are still drawn, and the report's error is raised for the run's warning."""
    try:
        return build_report(out_dir)
    except ResultsWriteError:
        raise
    except Exception as report_error:
        from harness.report.figures import make_figures

        try:
            make_figures(Path(out_dir))
        except ResultsWriteError:
            raise
        except Exception as figures_error:  # noqa: BLE001 - both said in the one warning line
            raise RuntimeError(f"{type(report_error).__name__}: {report_error}; the figures failed too "
                               f"({type(figures_error).__name__}: {figures_error})") from report_error
        raise
