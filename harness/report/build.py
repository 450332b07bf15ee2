"""`splitbench report`: rebuild a results directory's figures and write one self-contained report.html.

The page opens with the answer: the configuration `splitbench recommend` chooses for a budget (the
command line's, else the spec's ``[budget]`` table, else the default budget; one implementation:
:func:`harness.analysis.recommend.resolve_budgets`), what it costs against on-premise, and controls that move the budget with the same rule. It holds everything it shows: figures
as base64 data URIs (SVG when there is one, else PNG), the data as JSON, the style sheet and the script
inline, the reader's system fonts. It opens offline, from an e-mail attachment as well as from the
results directory, and prints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from harness.core.errors import UserError
from harness.analysis.recommend import Budget

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"


def _load_table(d: Path, summary: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The merged table `recommend` reads, and the privacy table merged into it (None: privacy not in it,
    when there is none or it does not match)."""
    from harness.analysis.merge import PRIVACY_FILE, load_privacy
    from harness.analysis.recommend import CLOUD_FILE, attach_cloud, merge_table, without_privacy

    if (d / PRIVACY_FILE).is_file():
        try:
            privacy = load_privacy(d)
            return merge_table(d, summary, privacy), privacy
        except UserError as exc:
            notes.append(f"Privacy scores not shown: {exc}")
            log.warning("report: privacy scores not shown: %s", exc)
    try:
        return attach_cloud(without_privacy(summary), d / CLOUD_FILE), None
    except UserError as exc:
        notes.append(f"Cloud part left out of the latency: {exc}")
        return attach_cloud(without_privacy(summary), d / "no-such-file"), None


def build_report(out_dir: str | Path, *, budget: Budget | None = None) -> list[Path]:
    """Rebuild the figures of DIR (measurement figures, and trade-off figures when DIR/privacy.csv holds
    scores that match) and write DIR/report.html; returns every file written, the report last.

    ``budget``: the budget the page opens with (default: the spec's [budget], else the default budget).
    A privacy table that does not match the measurements does not stop the report: the answer is then
    chosen by cost alone and the mismatch (the one-line message `recommend` gives) is shown at the top.
    """
    from harness import __version__
    from harness.analysis.recommend import SUMMARY_FILE, choose, resolve_budgets
    from harness.report import data as data_mod
    from harness.report import page as P

    d = Path(out_dir)
    if not (d / SUMMARY_FILE).is_file():
        raise UserError(f"{d} holds no {SUMMARY_FILE}: give a results directory written by `splitbench run`")
    summary = pd.read_csv(d / SUMMARY_FILE)
    if summary.empty:
        raise UserError(f"{d / SUMMARY_FILE} has no rows: nothing was measured")
    manifest = None
    if (d / "manifest.json").is_file():
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{d / 'manifest.json'} is not valid JSON ({exc})") from None
    notes: list[str] = []
    written: list[Path] = []
    try:
        from harness.report.figures import make_figures
    except ImportError as exc:
        notes.append(f"Measurement figures not drawn: harness.report.figures is not importable ({exc}).")
    else:
        written += list(make_figures(d))
    table, privacy = _load_table(d, summary, notes)
    scored = privacy is not None
    estimator, others = None, []
    if scored:
        from harness.analysis.merge import estimators_of
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
    html_text = P.page(d, title=f"splitbench report: {d.resolve().name}", version=__version__, manifest=manifest,
                       notes=notes, sections=sections, data_json=data_mod.page_json(models))
    report = d / REPORT_FILE
    tmp = report.with_suffix(".html.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(report)
    return [*written, report]

