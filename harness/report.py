"""`splitbench report`: rebuild a results directory's figures and write one self-contained report.html.

The page holds everything it shows: figures are embedded as base64 data URIs (SVG when there is one,
else PNG), the style sheet and the one small script are inline, fonts are the reader's system fonts.
It opens offline, from an e-mail attachment as well as from the results directory, and prints.

Sections: the setup (host and device fingerprints, versions, the spec from manifest.json), every
figure, the summary table, failed rows with their reasons, and, when DIR/privacy.csv exists, the merged
privacy table and the recommendation for a default budget (see :func:`default_budgets`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.errors import UserError

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"
ACCURACY_DROP = 0.05  # the default budget's accuracy floor: the noise-free accuracy minus 5 points


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int,)) or (isinstance(x, float) and x.is_integer() and abs(x) >= 1000):
        return f"{int(x):,}"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) < 1e6 else f"{x:.3g}"
    return str(x)


def _table(headers: list[str], rows: Iterable[list[Any]], *, cls: str = "", num_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(f'<td class="{"num" if i >= num_from else ""}">{_e(_fmt(v))}</td>' for i, v in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _kv(d: dict[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) if all(not isinstance(b, (dict, list)) for b in v.values()) \
                else json.dumps(v, default=str)
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        rows.append(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>'


# ------------------------------------------------------------------------------------------- sections


def _setup_section(manifest: dict[str, Any] | None, d: Path) -> str:
    if manifest is None:
        return '<section id="setup"><h2>Setup</h2><p class="warn">No manifest.json in this directory.</p></section>'
    run = {k: manifest.get(k) for k in ("splitbench_version", "git", "spec_hash", "started_at", "ended_at",
                                        "status", "schema_version", "counts") if manifest.get(k) is not None}
    parts = ['<section id="setup"><h2>Setup</h2>', "<h3>Run</h3>", _kv(run)]
    if manifest.get("host"):
        parts += ["<h3>Host</h3>", _kv(manifest["host"])]
    devices = manifest.get("devices") or ({"device": manifest["device"]} if manifest.get("device") else {})
    for target, fp in devices.items():
        parts += [f"<h3>Device: {_e(target)}</h3>", _kv(fp) if isinstance(fp, dict) else f"<p>{_e(fp)}</p>"]
    for key in ("versions", "converters"):
        if manifest.get(key):
            parts += [f"<h3>{key.capitalize()}</h3>", _kv(manifest[key])]
    if manifest.get("spec") is not None:
        parts += ["<h3>Spec</h3>", f"<pre>{_e(json.dumps(manifest['spec'], indent=2, default=str))}</pre>"]
    shown = {"splitbench_version", "git", "spec_hash", "started_at", "ended_at", "status", "schema_version",
             "counts", "host", "devices", "device", "versions", "converters", "spec"}
    rest = {k: v for k, v in manifest.items() if k not in shown}
    if rest:
        parts += ["<details><summary>Other manifest fields</summary>",
                  f"<pre>{_e(json.dumps(rest, indent=2, default=str))}</pre></details>"]
    parts.append("</section>")
    return "".join(parts)


def _figure_html(paths: list[Path]) -> str:
    """One <figure> per stem: the SVG (crisp in print) when there is one, else the PNG, as a data URI."""
    by_stem: dict[str, dict[str, Path]] = {}
    for p in paths:
        if p.suffix.lower() in (".svg", ".png") and p.is_file():
            by_stem.setdefault(p.stem, {})[p.suffix.lower()] = p
    out = []
    for stem, files in by_stem.items():
        p = files.get(".svg") or files[".png"]
        mime = "image/svg+xml" if p.suffix.lower() == ".svg" else "image/png"
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        caption = stem.replace("_", " ")
        out.append(f'<figure><img class="fig" alt="{_e(caption)}" src="data:{mime};base64,{data}">'
                   f"<figcaption>{_e(caption)} <span class=\"muted\">(figures/{_e(p.name)})</span>"
                   f"</figcaption></figure>")
    return "".join(out)


SUMMARY_COLUMNS = [  # header, column, digits
    ("configuration", "config", 0), ("backend", "backend", 0), ("target", "target", 0), ("device", "device_id", 0),
    ("status", "status", 0), ("runs", "n_runs", 0), ("timing", "timing_kind", 0),
    ("infer median ms", "infer_ms_median", 2), ("p90 ms", "infer_ms_p90", 2),
    ("IQR ms", "infer_ms_iqr", 2), ("min ms", "infer_ms_min", 2), ("load cold ms", "load_ms_cold", 1),
    ("load warm ms", "load_ms_warm", 1), ("model MB", "mem_model_mb", 1), ("peak MB", "mem_peak_mb", 1),
    ("CPU ms", "cpu_ms", 0), ("params", "params", 0), ("MACs", "macs", 0), ("upload B", "upload_bytes", 0),
    ("artifact kB", "artifact_kb", 1), ("verified", "verified", 0), ("warnings", "warnings", 0),
]


def _cell(v: Any, digits: int) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and digits == 0 and v.is_integer():
        return int(v)
    if isinstance(v, float):
        return round(v, digits)
    return v


def _summary_section(summary: pd.DataFrame) -> str:
    df = summary.copy()
    if "config" not in df.columns:
        df["config"] = [c if c == "full" else f"{c}-{e}" for c, e in zip(df["cut"], df["embedding"])]
    if "artifact_bytes" in df.columns:
        df["artifact_kb"] = pd.to_numeric(df["artifact_bytes"], errors="coerce") / 1e3
    cols = [(h, c, dg) for h, c, dg in SUMMARY_COLUMNS if c in df.columns]
    parts = ['<section id="summary"><h2>Summary</h2>']
    for model in dict.fromkeys(df["model"].astype(str)):
        m = df[df["model"].astype(str) == model]
        rows = [[_cell(r[c], dg) for _, c, dg in cols] for _, r in m.iterrows()]
        parts += [f"<h3>{_e(model)}</h3>", _table([h for h, _, _ in cols], rows, num_from=5)]
    if "timing_kind" in df.columns and (df["timing_kind"] == "aggregate").any():
        parts.append('<p class="muted">timing "aggregate": the phone\'s tool reported only a summary (count, mean, '
                     "std, percentiles), shown as it reported it; it has no samples, so no IQR or p90 unless the tool "
                     "printed them.</p>")
    parts.append('<p class="muted">Every column, and one row per timed run, are in summary.csv and '
                 "samples.parquet beside this file.</p>")
    failed = df[df["status"].astype(str) != "ok"] if "status" in df.columns else df.iloc[0:0]
    parts.append('<h3 id="failed">Failed configurations</h3>')
    if failed.empty:
        parts.append("<p>None: every configuration was measured.</p>")
    else:
        rows = [[r["model"], r["config"], r.get("backend"), r.get("target"), r["status"],
                 "" if pd.isna(r.get("reason")) else r.get("reason")] for _, r in failed.iterrows()]
        parts.append(_table(["model", "configuration", "backend", "target", "status", "reason"], rows,
                            cls="failed", num_from=99))
    parts.append("</section>")
    return "".join(parts)


PRIVACY_COLUMNS = [("noise r", "noise_ratio", 2), ("log-rank privacy", "log_rank_privacy", 3),
                   ("rank privacy", "rank_privacy", 3), ("Bayes error", "bayes_error", 3),
                   ("1-NN error", "nn1_error", 3), ("attacker acc.", "attacker_accuracy", 3),
                   ("primary acc.", "primary_accuracy", 3), ("infer ms", "infer_ms_median", 2),
                   ("model MB", "mem_model_mb", 1), ("upload B", "upload_bytes", 0)]


def _estimator_of(merged: pd.DataFrame) -> str:
    """The one privacy estimator of a merged table (merge_privacy selects one)."""
    names = sorted(set(merged["estimator"].dropna().astype(str))) if "estimator" in merged.columns else []
    return names[0] if len(names) == 1 else ("none" if not names else " + ".join(names))


def _privacy_section(merged: pd.DataFrame, others: list[str] | None = None) -> str:
    from harness.merge import config_label

    est = _estimator_of(merged)
    parts = ['<section id="privacy"><h2>Privacy beside the measurements</h2>',
             f"<p>Every privacy number in this section and the next was computed by the <b>{_e(est)}</b> "
             "estimator (see the README's Privacy section; numbers of different estimators are not comparable "
             "one to one). "
             "Log-rank privacy (DPFE): 0 when an attacker always ranks the true sensitive class first, "
             "1 when always last. On-premise uploads no feature, so it has no score: it is the cost "
             "baseline. The phone cost of a cut is the same for every noise ratio (the noise is added "
             "after the phone part).</p>"]
    if others:
        parts.append(f"<p>privacy.csv also holds scores of the {_e(', '.join(others))} estimator(s), not shown here: "
                     f"<code>splitbench recommend DIR --estimator {_e(others[0])}</code> ranks by them.</p>")
    ok = merged[merged["status"].astype(str) == "ok"] if "status" in merged.columns else merged
    for model in dict.fromkeys(ok["model"].astype(str)):
        m = ok[ok["model"].astype(str) == model]
        rows = []
        for _, r in m.iterrows():
            cells = [_cell(r.get(c), dg) for _, c, dg in PRIVACY_COLUMNS]
            if r.get("on_premise"):
                cells[1:6] = ["on-device", None, None, None, None]
            rows.append([config_label(r, with_ratio=False), f"{r.get('backend')}/{r.get('target')}", *cells])
        parts += [f"<h3>{_e(model)} (privacy: {_e(est)} estimator)</h3>",
                  _table(["configuration", "backend/target", *[h for h, _, _ in PRIVACY_COLUMNS]], rows, num_from=2)]
    parts.append("</section>")
    return "".join(parts)


def default_budgets(merged: pd.DataFrame) -> dict[str, Any]:
    """The report's budget per model: LTE, no hardware limit, accuracy at most 5 points below noise-free.

    Without an accuracy floor the most private row would be the noisiest, whatever it does to the task;
    the hardware limits are the reader's to set with `splitbench recommend`.
    """
    from harness.recommend import Budget

    budgets = {}
    for model in dict.fromkeys(merged["model"].astype(str)):
        m = merged[(merged["model"].astype(str) == model) & ~merged["on_premise"].astype(bool)]
        clean = m[m["noise_ratio"].isna() | (m["noise_ratio"] == m["noise_ratio"].min())]
        best = pd.to_numeric(clean["primary_accuracy"], errors="coerce").max()
        floor = None if pd.isna(best) else round(max(float(best) - ACCURACY_DROP, 0.0), 4)
        budgets[model] = Budget(network="lte", min_accuracy=floor)
    return budgets


def _recommend_section(merged: pd.DataFrame) -> str:
    from harness.recommend import (CANDIDATE_HEADERS, breaks_text, candidate_row, choose, latency_formula)

    parts = ['<section id="recommendation"><h2>Recommendation for a default budget</h2>']
    for model, budget in default_budgets(merged).items():
        rec = choose(merged[merged["model"].astype(str) == model], budget)
        parts.append(f"<h3>{_e(model)}</h3><p>Budget: {_e(budget.describe())}; network "
                     f"{_e(rec.network.describe())}. {_e(latency_formula(rec))}. Other budgets: "
                     f"<code>splitbench recommend DIR --max-latency-ms … --max-memory-mb … --network …</code></p>")
        c = rec.choice
        if c is None:
            parts.append(f'<p class="warn">{_e(rec.impossible_line())}</p>')
        else:
            parts.append(f'<p class="choice">Most private configuration that fits: <b>{_e(c.config)}</b> on '
                         f"{_e(c.where)}: log-rank privacy {c.privacy:.3f} ({_e(rec.estimator)} estimator), "
                         f"accuracy {_fmt(c.accuracy, 3)}, "
                         f"end-to-end latency {_fmt(c.latency_ms, 1)} ms, model memory {_fmt(c.memory_mb, 1)} MB."
                         "</p>")
        parts += [f"<h4>Pareto frontier (log-rank privacy, {_e(rec.estimator)} estimator, vs end-to-end latency)</h4>",
                  _table([*CANDIDATE_HEADERS, "fits"], [[*candidate_row(f), "chosen" if f is c else
                                                         ("yes" if f.fits else "no")] for f in rec.frontier],
                         num_from=2)]
        rows = [[o.config, o.where, breaks_text(o, c)] for o in rec.others] + \
               [[f"{b.config} (on-premise baseline)", b.where, breaks_text(b, c)] for b in rec.on_premise]
        parts += ["<details><summary>Why every other configuration was not chosen</summary>",
                  _table(["configuration", "backend/target", "reason"], rows, num_from=99), "</details>"]
    parts.append("</section>")
    return "".join(parts)


CSS = """
:root{--fg:#1d232a;--muted:#66707a;--line:#d8dde3;--bg2:#f5f7f9;--accent:#1f5fa8;--bad:#a8321f}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
 max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:36px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:20px 0 6px}h4{font-size:14px;margin:14px 0 6px}
nav{margin:12px 0 8px;font-size:13px}nav a{margin-right:14px;color:var(--accent);text-decoration:none}
.muted{color:var(--muted);font-size:12px}.warn{color:var(--bad);font-weight:600}
.choice{background:#eef5ec;border-left:4px solid #3f8f3a;padding:8px 12px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:4px 0 10px}
th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:var(--bg2);position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:220px;font-weight:600;background:none;color:var(--muted)}
table.failed td{color:var(--bad)}
pre{background:var(--bg2);padding:10px;font-size:12px;overflow-x:auto;max-height:420px}
figure{margin:18px 0;page-break-inside:avoid;break-inside:avoid}
img.fig{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{font-size:12px;color:var(--muted)}
@media print{body{max-width:none;padding:0;font-size:11px}nav{display:none}.scroll{overflow:visible}
 pre{max-height:none}table{font-size:9px}details{display:block}h2{page-break-after:avoid}
 section{page-break-before:auto}}
"""

# Records in the DOM whether each figure decoded (the browser test reads it with --dump-dom).
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), ok = 0;
  imgs.forEach(function (im) {
    var loaded = im.complete && im.naturalWidth > 0;
    im.setAttribute('data-loaded', loaded ? 'yes' : 'no');
    if (loaded) { ok += 1; }
  });
  var s = document.getElementById('img-status');
  s.setAttribute('data-total', imgs.length); s.setAttribute('data-loaded', ok);
  s.textContent = ok + ' of ' + imgs.length + ' figures loaded';
});
"""


def render_html(d: Path, *, manifest: dict[str, Any] | None, summary: pd.DataFrame, figures: list[Path],
                merged: pd.DataFrame | None, notes: list[str], other_estimators: list[str] | None = None) -> str:
    """The report page as one string (everything inline)."""
    title = f"splitbench report: {d.resolve().name}"
    nav = ['<a href="#setup">Setup</a>', '<a href="#figures">Figures</a>', '<a href="#summary">Summary</a>',
           '<a href="#failed">Failed</a>']
    if merged is not None:
        nav += ['<a href="#privacy">Privacy</a>', '<a href="#recommendation">Recommendation</a>']
    from harness import __version__

    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="muted">{_e(d.resolve())} · written {_dt.datetime.now().strftime("%Y-%m-%d %H:%M")} by '
            f'splitbench {_e(__version__)} · <span id="img-status">figures not checked (scripts off)</span></p>',
            f"<nav>{''.join(nav)}</nav>"]
    body += [f'<p class="warn">{_e(n)}</p>' for n in notes]
    body.append(_setup_section(manifest, d))
    figs = _figure_html(figures)
    body.append(f'<section id="figures"><h2>Figures</h2>{figs or "<p>No figures.</p>"}</section>')
    body.append(_summary_section(summary))
    if merged is not None:
        body.append(_privacy_section(merged, other_estimators))
        body.append(_recommend_section(merged))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + f"<script>{SCRIPT}</script></body></html>\n")


def build_report(out_dir: str | Path) -> list[Path]:
    """Rebuild the figures of DIR (measurement figures, and trade-off figures when DIR/privacy.csv exists)
    and write DIR/report.html; returns every file written, the report last.

    A privacy table that does not match the measurements does not stop the report: the measurement part is
    written and the mismatch (the same one-line message `recommend` gives) is shown at the top of the page.
    """
    from harness.recommend import SUMMARY_FILE, load_table

    d = Path(out_dir)
    if not (d / SUMMARY_FILE).is_file():
        raise UserError(f"{d} holds no {SUMMARY_FILE}: give a results directory written by `splitbench run`")
    summary = pd.read_csv(d / SUMMARY_FILE)
    manifest = None
    if (d / "manifest.json").is_file():
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{d / 'manifest.json'} is not valid JSON ({exc})") from None
    notes: list[str] = []
    written: list[Path] = []
    try:
        from harness.figures import make_figures
    except ImportError as exc:
        notes.append(f"Measurement figures not drawn: harness.figures is not importable ({exc}).")
    else:
        written += list(make_figures(d))
    merged = None
    others: list[str] = []
    if (d / "privacy.csv").is_file():
        from harness.merge import estimators_of, load_privacy
        from harness.tradeoff import make_tradeoff_figures

        try:
            privacy = load_privacy(d)
            merged = load_table(d)
        except UserError as exc:
            notes.append(f"Privacy scores not shown: {exc}")
            log.warning("report: privacy scores not shown: %s", exc)
        else:
            shown = _estimator_of(merged)
            others = [e for e in estimators_of(privacy) if e != shown]
            written += make_tradeoff_figures(d, merged=merged, privacy=privacy)
    report = d / REPORT_FILE
    tmp = report.with_suffix(".html.tmp")
    tmp.write_text(render_html(d, manifest=manifest, summary=summary, figures=written, merged=merged,
                               notes=notes, other_estimators=others), encoding="utf-8")
    tmp.replace(report)
    return [*written, report]
