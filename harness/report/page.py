"""The HTML of report.html: the answer first, then what it rests on, the setup last and folded.

Order (the way Xcode's performance report and Qualcomm AI Hub's profile pages put headline numbers first):
the recommended configuration for the budget and what it costs against on-premise, with the controls
that move the budget; a compact table of every configuration with ratios against a reference the reader
picks (DPFE's "+43.96% time relative to conv4_2"); the trade-off plots; the per-metric figures; the
per-noise-ratio privacy table, every measured column, failures; the setup. Everything is rendered here
for the budget the report was built with, so the page reads the same with scripts off and when printed;
``report.js`` re-renders the answer, highlights and plot when the reader moves the budget.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.analysis.recommend.budget import Budget
from harness.analysis.recommend.choice import Recommendation, best
from harness.analysis.recommend.explain import config_lines, on_premise_of
from harness.analysis.table import config_label
from harness.config.spec import FULL
from harness.core.text import visible
from harness.core.units import fmt_bytes, fmt_count, fmt_mb, fmt_ms, sig


def _e(x: Any) -> str:
    """Text for the page: control and bidi formatting characters made visible (``\\u202e``: a name holding a
    right-to-left override is shown as it is, never obeyed), then HTML-escaped."""
    return html.escape(visible(x, keep="\n\t"), quote=True)


def _a(value: Any) -> str:
    """A data value in an attribute (``data-backend``, an option's ``value``): HTML-escaped only, so the script
    matches it to the page's JSON as it is."""
    return html.escape(str(value), quote=True)


def _n(name: Any) -> str:
    """A name (configuration, model, backend/target, device) inside a sentence: isolated (``<bdi>``), so a
    right-to-left name never reorders the words around it."""
    return f"<bdi>{_e(name)}</bdi>"


def asset(name: str) -> str:
    """A file shipped beside this module (the page's script and style sheet)."""
    return resources.files("harness.report").joinpath(name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------- answer


def _metric(label: str, value: str, note: str = "", key: str = "") -> str:
    return (f'<div class="metric" data-metric="{_e(key)}"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(value)}</div><div class="note">{_e(note)}</div></div>')


def answer_card(rec: Recommendation, m: dict[str, Any]) -> str:
    """The recommendation for the report's budget (``report.js`` redraws it when the budget moves)."""
    c = rec.choice
    net = m["network"]
    if c is None:
        return (f'<div class="card nothing" data-choice="" data-model="{_a(rec.model)}">'
                f'<div class="headline">Nothing fits this budget</div><p class="why">{_e(rec.impossible_line())}</p>'
                "</div>")
    i = _index(m, c)
    d = m["candidates"][i]
    vs = d["vs"] or {}
    metrics = []
    if rec.privacy_scored:
        metrics.append(_metric(f"log-rank privacy ({rec.estimator})", d["t"]["privacy"],
                               "0 = always identified, 1 = never", "privacy"))
        metrics.append(_metric("primary accuracy", d["t"]["accuracy"], "", "accuracy"))
    metrics += [
        _metric("end-to-end latency", d["t"]["lat"][net], _vs(vs.get("lat", {}).get(net)), "latency"),
        _metric("phone inference", d["t"]["phone"], _vs(vs.get("phone")), "phone"),
        _metric("phone model memory", d["t"]["memory"], _vs(vs.get("memory")), "memory"),
        _metric("load (cold)", d["t"]["load"], _vs(vs.get("load")), "load"),
        _metric("upload", d["t"]["upload"], f"{d['t']['up_ms'][net]} on {net}", "upload"),
    ]
    n_fit = sum(1 for x in rec.candidates if x.fits)
    runner = _runner_up(rec)
    why = (f"{_n(rec.model)}: {'the most private' if rec.privacy_scored else 'the fastest'} of {n_fit} configuration"
           f"{'s' if n_fit != 1 else ''} (of {len(rec.candidates)}) that fit"
           + (f"; next: {_n(runner.config)} on {_n(runner.where)}" if runner else "") + ".")
    base = on_premise_of(rec, c)
    tags = "".join(_tag(t, title) for t, title in _candidate_tags(d))
    if not rec.privacy_scored:
        tags += _tag("privacy not scored", "no privacy.csv: chosen by end-to-end latency alone", "noprivacy")
    return (f'<div class="card" data-choice="{i}" data-model="{_a(rec.model)}">'
            f'<div class="headline"><span class="kicker">Recommended</span> <b class="config">{_e(c.config)}</b> '
            f'<span class="where">on {_e(c.where)}</span>{tags}</div>'
            f'<div class="metrics">{"".join(metrics)}</div>'
            f'<p class="why">{why} Rule: {_e(m["rule"])}.'
            + (f" Ratios are against on-premise (the whole model on the phone: {_n(base.config)}) on "
               f"{_n(base.where)}." if base else "")
            + "</p></div>")


def _vs(text: str | None) -> str:
    return "" if not text or text == "—" else f"{text} vs on-premise"


def _runner_up(rec: Recommendation):
    """The rule's choice (recommend.best) among the other configurations that fit."""
    return best([x for x in rec.candidates if x.fits and x is not rec.choice], rec.privacy_scored)


def _index(m: dict[str, Any], c) -> int:
    for d in m["candidates"]:
        if (d["config"], d["backend"], d["target"], d["device"]) == (c.config, c.backend, c.target, c.device_id):
            return d["i"]
    raise KeyError(c.config)


def _tag(text: str, title: str = "", cls: str = "") -> str:
    return f' <span class="tag {cls}" title="{_e(title)}">{_e(text)}</span>'


def _candidate_tags(d: dict[str, Any]) -> list[tuple[str, str]]:
    tags = []
    if d.get("agg"):
        tags.append(("tool aggregate", "the phone's tool reported only a summary (median, mean, percentiles); "
                                       "no samples"))
    if d.get("host_int8"):
        tags.append(("host int8", d["host_int8"]))
    return tags


def controls(m: dict[str, Any], mi: int, budget: Budget, *, multi_device: bool) -> str:
    """The budget the reader moves: a slider and a number per limit, the network, backends and targets."""
    b = m["budget"]
    parts = []
    for key, label, unit in (("max_latency_ms", "max end-to-end latency", "ms"),
                             ("max_memory_mb", "max phone model memory", "MB"),
                             ("max_upload_kb", "max upload", "kB"),
                             ("min_accuracy", "min primary accuracy", "")):
        if key == "min_accuracy" and not m["scored"] and all(c["accuracy"] is None for c in m["candidates"]):
            continue
        value = "" if b[key] is None else f"{b[key]:g}"
        parts.append(
            f'<div class="limit"><label for="in-{mi}-{key}">{_e(label)}</label>'
            f'<div class="row"><input type="number" id="in-{mi}-{key}" data-limit="{key}" step="any" min="0" '
            f'value="{value}" placeholder="no limit"><span class="unit">{_e(unit)}</span></div>'
            f'<input type="range" min="0" max="1000" step="1" data-slider="{key}" aria-label="{_e(label)}"></div>')
    options = "".join(f'<option value="{_a(n["key"])}" title="{_e(n["title"])}"'
                      f'{" selected" if n["key"] == m["network"] else ""}>{_e(n["label"])}</option>'
                      for n in m["networks"])
    parts.append(f'<div class="limit network"><label for="net-{mi}">network (upload = delay + bytes / uplink)'
                 f'</label><select id="net-{mi}" data-limit="network">{options}</select></div>')
    boxes = "".join(f'<label class="toggle"><input type="checkbox" data-backend="{_a(x)}" checked> {_e(x)}</label>'
                    for x in m["backends"])
    boxes_t = "".join(f'<label class="toggle"><input type="checkbox" data-target="{_a(x)}" checked> {_e(x)}</label>'
                      for x in m["targets"])
    legend = "".join(f'<span class="swatch" style="--c:{_color(g)}"></span>{_n(_group_label(grp, multi_device))} '
                     for g, grp in enumerate(m["groups"]))
    return (f'<div class="controls" data-model="{mi}">{"".join(parts)}</div>'
            f'<div class="toggles"><span class="muted">backends</span> {boxes} <span class="muted">targets</span> '
            f'{boxes_t} <span class="legend">{legend}</span></div>'
            f'<p class="cli muted">Budget from {_e(m["budget_source"])}. The same answer in a terminal: '
            f'<code class="cmd">{_e(budget.command_line(m["dir"]))}</code></p>')


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")  # matplotlib's tab10, the static figures' colours


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _group_label(g: dict[str, str], multi_device: bool) -> str:
    return f"{g['backend']} / {g['target']}" + (f" [{g['device']}]" if multi_device and g["device"] else "")


def answer_section(recs: list[Recommendation], models: list[dict[str, Any]], budgets: list[Budget],
                   failed: int) -> str:
    parts = ['<section id="answer">']
    for mi, (rec, m, budget) in enumerate(zip(recs, models, budgets)):
        multi = len({g["device"] for g in m["groups"]}) > 1
        parts.append(f'<div class="model-answer" data-model="{mi}">')
        if len(recs) > 1:
            parts.append(f"<h2>{_n(rec.model)}</h2>")
        parts.append(f'<div class="answer">{answer_card(rec, m)}</div>')
        parts.append(controls(m, mi, budget, multi_device=multi))
        parts.append("</div>")
    if failed:
        parts.append(f'<p class="warn">{failed} measurement{"s" if failed > 1 else ""} failed: see '
                     '<a href="#failed">Failed configurations</a>.</p>')
    parts.append("</section>")
    return "".join(parts)


# ----------------------------------------------------------------------------------- configurations


def configurations_section(recs: list[Recommendation], models: list[dict[str, Any]],
                           rows_refs: list[tuple[list[dict[str, Any]], dict[str, list[list[str]]]]]) -> str:
    parts = ['<section id="configurations"><h2>Every configuration</h2>']
    for mi, (rec, m, (rows, refs)) in enumerate(zip(recs, models, rows_refs)):
        title = f"<h3>{_n(rec.model)}</h3>" if len(recs) > 1 else ""
        ref_opts = "".join(f'<option value="{_a(r)}"{" selected" if r == _default_ref(refs) else ""}>'
                           f'{"on-premise (full)" if r == FULL else _e(r)}</option>' for r in refs)
        lines = {(ln.base_config, ln.members[0].backend, ln.members[0].target, ln.members[0].device_id): ln
                 for ln in config_lines(rec)}
        multi = len({g["device"] for g in m["groups"]}) > 1
        head = ["configuration"]
        if multi:
            head.append("device")
        head += ["inference", "vs ref", "load (cold)", "vs ref", "memory", "vs ref", "upload"]
        if rec.privacy_scored:
            head += ["privacy (r = 0)", "accuracy (r = 0)", "fits at r"]
        else:
            head += ["fits"]
        default = _default_ref(refs)
        body = []
        group = None
        for j, x in enumerate(rows):
            if x["group"] != group:
                group = x["group"]
                g = m["groups"][group] if group < len(m["groups"]) else {"backend": x["backend"],
                                                                         "target": x["target"], "device": x["device"]}
                body.append(f'<tr class="group" data-group="{group}"><th colspan="{len(head)}">'
                            f'<span class="swatch" style="--c:{_color(group)}"></span>'
                            f'{_n(_group_label(g, multi))}</th></tr>')
            body.append(_config_row(x, j, refs.get(default, []), lines, rec, multi, len(head)))
        parts.append(
            f'{title}<div class="tablebar"><label>Ratios against <select class="ref" data-model="{mi}">'
            f'{ref_opts}</select></label> <span class="muted">measured in the same place (backend, target and '
            "device), as DPFE and Osia et al. report them. Inference: median; memory: phone model memory; "
            + (f"privacy: log-rank, {_e(m['estimator'])} estimator; " if rec.privacy_scored else "")
            + "fits: for the budget above; ★ the recommendation.</span></div>"
            f'<div class="scroll"><table class="configs" data-model="{mi}"><thead><tr>'
            + "".join(f"<th>{_e(h)}</th>" for h in head) + f'</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    parts.append('<p class="muted">Times: three significant digits, µs under a millisecond; MB are 10^6 bytes. '
                 '"tool aggregate": the phone\'s tool reported only a summary (median, mean, percentiles), no samples. '
                 "Every column is in summary.csv, one row per timed run in samples.parquet.</p></section>")
    return "".join(parts)


def _default_ref(refs: dict[str, Any]) -> str:
    return FULL if FULL in refs else next(iter(refs), "")


def _config_row(x: dict[str, Any], j: int, ratios: list[list[str]], lines: dict, rec: Recommendation,
                multi: bool, width: int) -> str:
    tags = ""
    if x["agg"]:
        tags += _tag("tool aggregate", f"timing reported by {x['tool'] or 'the phone tool'} as a summary; no samples",
                     "agg")
    if x["warnings"]:
        tags += _tag("⚠ " + ", ".join(x["warnings"]), x["warnings_text"], "warnings")
    name = "on-premise (full)" if x["onprem"] else x["base"]
    cells = [f'<td class="name">{_e(name)}{tags}</td>']
    if multi:
        cells.append(f'<td class="device">{_e(x["device"])}</td>')
    attrs = (f'data-row="{j}" data-group="{x["group"]}" data-backend="{_a(x["backend"])}" '
             f'data-target="{_a(x["target"])}" data-cands="{",".join(map(str, x["cands"]))}"')
    if x["status"] != "ok":
        cells.append(f'<td class="bad" colspan="{width - len(cells)}">{_e(x["status"])}: '
                     f'<span class="reason" title="{_e(x["reason"])}">{_e(x["reason"])}</span></td>')
        return f'<tr class="failed" {attrs}>{"".join(cells)}</tr>'
    r = ratios[j] if j < len(ratios) else ["—"] * 3
    cells += [f'<td class="num">{_e(x["infer"])}</td>', f'<td class="num ratio" data-k="0">{_e(r[0])}</td>',
              f'<td class="num">{_e(x["load"])}</td>', f'<td class="num ratio" data-k="1">{_e(r[1])}</td>',
              f'<td class="num">{_e(x["memory"])}</td>', f'<td class="num ratio" data-k="2">{_e(r[2])}</td>',
              f'<td class="num">{_e(x["upload"])}</td>']
    line = lines.get((x["base"], x["backend"], x["target"], x["device"]))
    chosen = line is not None and rec.choice is not None and any(mm is rec.choice for mm in line.members)
    if x["onprem"]:
        b = next((b for b in rec.on_premise if (b.backend, b.target, b.device_id) ==
                  (x["backend"], x["target"], x["device"])), None)
        fit_text = "—" if b is None else ("fits (baseline)" if b.fits else "no (baseline)")
        fits = b is not None and b.fits
    elif line is None:
        fit_text, fits = "—", False
    else:
        fit_text = line.fits_text() if rec.privacy_scored else ("yes" if line.fitting else "no")
        fits = bool(line.fitting)
    if chosen:
        fit_text = "★ " + fit_text
    if rec.privacy_scored:
        cells += [f'<td class="num">{_e(x["privacy"])}</td>', f'<td class="num">{_e(x["accuracy"])}</td>']
    cells.append(f'<td class="fit">{_e(fit_text)}</td>')
    cls = " ".join(c for c in ("fits" if fits else "nofit", "chosen" if chosen else "",
                               "onprem" if x["onprem"] else "") if c)
    return f'<tr class="{cls}" {attrs}>{"".join(cells)}</tr>'


# ------------------------------------------------------------------------------------------- figures


CAPTIONS = {
    "privacy_vs_inference": "Privacy against phone inference time (noise-free rows; the step line is the Pareto "
                            "frontier, on-premise dashed)",
    "privacy_vs_memory": "Privacy against phone model memory (the step line is the Pareto frontier)",
    "privacy_vs_upload": "Privacy against the uploaded feature's size (the step line is the Pareto frontier)",
    "accuracy_privacy": "Primary accuracy against privacy under the noise sweep (DPFE Fig. 10)",
    "infer_box": "Inference time of every timed run (box plots)",
    "load_bars": "Model load time, cold and warm",
    "memory_bars": "Phone memory per configuration",
}


def _caption(stem: str) -> str:
    for prefix, text in CAPTIONS.items():
        if stem.startswith(prefix):
            extra = stem[len(prefix):].strip("_").replace("_", " ")
            return text + (f" ({extra})" if extra else "")
    return stem.replace("_", " ")


def figures_by_stem(paths: Iterable[Path]) -> dict[str, Path]:
    """One file per figure: the SVG (crisp in print) when there is one, else the PNG."""
    by_stem: dict[str, dict[str, Path]] = {}
    for p in paths:
        if p.suffix.lower() in (".svg", ".png") and p.is_file():
            by_stem.setdefault(p.stem, {})[p.suffix.lower()] = p
    return {stem: files.get(".svg") or files[".png"] for stem, files in by_stem.items()}


def figure_html(stem: str, p: Path) -> str:
    mime = "image/svg+xml" if p.suffix.lower() == ".svg" else "image/png"
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    caption = _caption(stem)
    return (f'<figure><img class="fig" alt="{_e(caption)}" src="data:{mime};base64,{data}">'
            f'<figcaption>{_e(caption)} <span class="muted">(figures/{_e(p.stem)}.png and .svg)</span>'
            "</figcaption></figure>")


def tradeoff_section(models: list[dict[str, Any]], figs: dict[str, Path]) -> str:
    parts = ['<section id="tradeoffs"><h2>Trade-offs</h2>']
    for mi, m in enumerate(models):
        scored = m["scored"]
        axes = [("latency", "end-to-end latency"), ("phone", "phone inference"), ("memory", "phone model memory"),
                ("upload", "upload size")]
        yaxes = ([("privacy", f"log-rank privacy ({m['estimator']})"), ("accuracy", "primary accuracy")]
                 if scored else []) + [("memory", "phone model memory"), ("latency", "end-to-end latency")]
        xo = "".join(f'<option value="{k}">{_e(v)}</option>' for k, v in axes)
        yo = "".join(f'<option value="{k}">{_e(v)}</option>' for k, v in yaxes)
        parts.append(
            f'<div class="plotbox" data-model="{mi}">'
            + (f"<h3>{_n(m['model'])}</h3>" if len(models) > 1 else "")
            + f'<div class="tablebar"><label>x <select class="xaxis">{xo}</select></label> '
            f'<label>y <select class="yaxis">{yo}</select></label> <span class="muted">one point per configuration, '
            "noise ratio and place of measurement; filled: fits the budget; ring: the recommendation; hover a point "
            "for its numbers. On-premise: squares, or a dashed line where it has no privacy.</span></div>"
            '<div class="plot" role="img" aria-label="trade-off plot"><noscript>The interactive plot needs '
            "JavaScript; the static figures below show the same.</noscript></div></div>")
    first = [s for s in figs if s.startswith("accuracy_privacy")]
    cost = [s for s in figs if s.startswith("privacy_vs_")]
    parts += [figure_html(s, figs[s]) for s in first]
    if cost:
        parts.append('<details class="static"><summary>The same trade-offs as static figures (PNG and SVG in '
                     "figures/, for papers)</summary>" + "".join(figure_html(s, figs[s]) for s in cost) + "</details>")
    parts.append("</section>")
    return "".join(parts)


def figures_section(figs: dict[str, Path]) -> str:
    stems = [s for s in figs if not s.startswith(("accuracy_privacy", "privacy_vs_"))]
    body = "".join(figure_html(s, figs[s]) for s in stems) or "<p>No figures.</p>"
    return f'<section id="figures"><h2>Measurements</h2>{body}</section>'


# ------------------------------------------------------------------------------------------- details


def _table(headers: list[str], rows: Iterable[list[Any]], *, cls: str = "", num_from: int = 1) -> str:
    """A plain table; a cell is a value or (value, tooltip). Long text stays on one line (clipped, whole in
    its tooltip), so no row grows taller than one line."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            v, title = v if isinstance(v, tuple) else (v, None)
            text = "" if v is None else str(v)
            klass = "num" if i >= num_from else ""
            if title is None and len(text) > 60:
                title = text
            if title:
                cells.append(f'<td class="{klass} long" title="{_e(title)}">{_e(text)}</td>')
            else:
                cells.append(f'<td class="{klass}">{_e(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _v(x: Any) -> Any:
    if x is None or (isinstance(x, float) and x != x):
        return None
    try:
        if pd.isna(x):
            return None
    except (TypeError, ValueError):
        pass
    return x


# header, column, formatter
MEASURED_COLUMNS = [
    ("configuration", "config", str), ("backend", "backend", str), ("target", "target", str),
    ("device", "device_id", str), ("status", "status", str), ("runs", "n_runs", lambda v: f"{int(v)}"),
    ("timing", "timing_kind", str), ("inference median", "infer_ms_median", fmt_ms),
    ("p90", "infer_ms_p90", fmt_ms), ("IQR", "infer_ms_iqr", fmt_ms), ("min", "infer_ms_min", fmt_ms),
    ("first inference", "first_infer_ms", fmt_ms), ("load cold", "load_ms_cold", fmt_ms),
    ("load warm", "load_ms_warm", fmt_ms), ("model memory", "mem_model_mb", fmt_mb),
    ("peak memory", "mem_peak_mb", fmt_mb), ("CPU time", "cpu_ms", fmt_ms), ("params", "params", fmt_count),
    ("MACs", "macs", fmt_count), ("upload", "upload_bytes", fmt_bytes), ("artifact", "artifact_bytes", fmt_bytes),
    ("verified", "verified", lambda v: "yes" if v in (True, "True", "true", 1) else "no"),
    ("warnings", "warnings", lambda v: ", ".join(w.split(":", 1)[0].strip() for w in str(v).split(" | ") if w)),
]


def measured_section(summary: pd.DataFrame) -> str:
    """Every measured column (folded) and the failed configurations (open)."""
    df = summary.copy()
    if "config" not in df.columns:
        df["config"] = [config_label({"cut": c, "embedding": e}, with_ratio=False)
                        for c, e in zip(df["cut"], df["embedding"])]
    cols = [(h, c, f) for h, c, f in MEASURED_COLUMNS if c in df.columns]
    parts = ['<section id="measured"><h2>Every measured number</h2>']
    for model in dict.fromkeys(df["model"].astype(str)):
        m = df[df["model"].astype(str) == model]
        rows = []
        for _, r in m.iterrows():
            cells: list[Any] = []
            for _, c, f in cols:
                v = _v(r[c])
                text = None if v is None or v == "" else f(v)
                cells.append((text, str(v)) if c == "warnings" and text else text)
            rows.append(cells)
        table = _table([h for h, _, _ in cols], rows, num_from=7, cls="measured")
        parts.append(f"<details><summary>{_n(model)}: every column of summary.csv, formatted (warnings: hover "
                     f"for the full text)</summary>{table}</details>")
    failed = df[df["status"].astype(str) != "ok"] if "status" in df.columns else df.iloc[0:0]
    parts.append('<h3 id="failed">Failed configurations</h3>')
    if failed.empty:
        parts.append("<p>None: every configuration was measured.</p>")
    else:
        rows = [[r["model"], r["config"], r.get("backend"), r.get("target"), r["status"],
                 "" if pd.isna(r.get("reason")) else str(r.get("reason"))] for _, r in failed.iterrows()]
        parts.append(_table(["model", "configuration", "backend", "target", "status", "reason"], rows,
                            cls="failed", num_from=99))
    parts.append("</section>")
    return "".join(parts)


PRIVACY_COLUMNS = [("noise r", "noise_ratio", lambda v: f"{v:g}"), ("log-rank privacy", "log_rank_privacy", sig),
                   ("rank privacy", "rank_privacy", sig), ("Bayes error", "bayes_error", sig),
                   ("1-NN error", "nn1_error", sig), ("attacker acc.", "attacker_accuracy", sig),
                   ("primary acc.", "primary_accuracy", sig), ("inference", "infer_ms_median", fmt_ms),
                   ("model memory", "mem_model_mb", fmt_mb), ("upload", "upload_bytes", fmt_bytes)]


def privacy_section(merged: pd.DataFrame, estimator: str, others: list[str] | None) -> str:
    parts = ['<section id="privacy"><h2>Privacy beside the measurements</h2>',
             f"<p>Every privacy number in this report was computed by the <b>{_e(estimator)}</b> estimator (see "
             "splitbench's docs/privacy.md; numbers of different estimators are not comparable one to one). "
             "Log-rank privacy (DPFE): 0 when an attacker always ranks the true sensitive class first, 1 when "
             "always last. On-premise uploads no feature, so it has no score: it is the cost baseline. The phone "
             "cost of a cut is the same for every noise ratio (the noise is added after the phone part).</p>"]
    if others:
        parts.append(f"<p>privacy.csv also holds scores of the {_e(', '.join(others))} estimator(s), not shown here: "
                     f"<code>splitbench recommend DIR --estimator {_e(others[0])}</code> ranks by them.</p>")
    ok = merged[merged["status"].astype(str) == "ok"] if "status" in merged.columns else merged
    for model in dict.fromkeys(ok["model"].astype(str)):
        m = ok[(ok["model"].astype(str) == model) & ~ok["on_premise"].astype(bool)]
        rows = []
        for _, r in m.iterrows():
            cells = [None if _v(r.get(c)) is None else f(r.get(c)) for _, c, f in PRIVACY_COLUMNS]
            rows.append([config_label(r, with_ratio=False), f"{r.get('backend')}/{r.get('target')}", *cells])
        parts.append(f"<details><summary>{_n(model)}: every configuration and noise ratio ({len(rows)} rows, "
                     f"privacy: {_e(estimator)} estimator)</summary>"
                     + _table(["configuration", "backend/target", *[h for h, _, _ in PRIVACY_COLUMNS]], rows,
                              num_from=2) + "</details>")
    parts.append("</section>")
    return "".join(parts)


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


def setup_section(manifest: dict[str, Any] | None) -> str:
    if manifest is None:
        return '<section id="setup"><h2>Setup</h2><p class="warn">No manifest.json in this directory.</p></section>'
    run = {k: manifest.get(k) for k in ("splitbench_version", "git", "spec_hash", "started_at", "ended_at",
                                        "status", "schema_version", "counts") if manifest.get(k) is not None}
    parts = ['<section id="setup"><h2>Setup</h2>', "<details><summary>Run, host, devices, versions and the spec"
             "</summary>", "<h3>Run</h3>", _kv(run)]
    if manifest.get("host"):
        parts += ["<h3>Host</h3>", _kv(manifest["host"])]
    devices = manifest.get("devices") or ({"device": manifest["device"]} if manifest.get("device") else {})
    for target, fp in devices.items():
        parts += [f"<h3>Device: {_n(target)}</h3>", _kv(fp) if isinstance(fp, dict) else f"<p>{_e(fp)}</p>"]
    for key in ("versions", "converters"):
        if manifest.get(key):
            parts += [f"<h3>{key.capitalize()}</h3>", _kv(manifest[key])]
    if manifest.get("spec") is not None:
        parts += ["<h3>Spec</h3>", f"<pre>{_e(json.dumps(manifest['spec'], indent=2, default=str))}</pre>"]
    shown = {"splitbench_version", "git", "spec_hash", "started_at", "ended_at", "status", "schema_version",
             "counts", "host", "devices", "device", "versions", "converters", "spec"}
    rest = {k: v for k, v in manifest.items() if k not in shown}
    if rest:
        parts += ["<h3>Other manifest fields</h3>", f"<pre>{_e(json.dumps(rest, indent=2, default=str))}</pre>"]
    parts.append("</details></section>")
    return "".join(parts)


def setup_line(manifest: dict[str, Any] | None) -> str:
    """One line under the title: where it was measured, with what."""
    if not manifest:
        return ""
    host = manifest.get("host") or {}
    devices = manifest.get("devices") or {}
    bits = []
    if devices:
        bits.append("devices: " + ", ".join(map(str, devices)))
    if host.get("cpu_model"):
        bits.append(f"host {host['cpu_model']}")
    if manifest.get("started_at"):
        bits.append(f"measured {str(manifest['started_at'])[:16].replace('T', ' ')}")
    if manifest.get("status"):
        bits.append(f"run {manifest['status']}")
    return " · ".join(bits)


# ---------------------------------------------------------------------------------------------- page


def page(d: Path, *, title: str, version: str, manifest: dict[str, Any] | None, notes: list[str],
         sections: list[str], data_json: str) -> str:
    present = "".join(sections)
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in (
        ("answer", "Answer"), ("configurations", "Configurations"), ("tradeoffs", "Trade-offs"),
        ("figures", "Measurements"), ("privacy", "Privacy"), ("measured", "Every number"), ("setup", "Setup"))
        if f'<section id="{k}"' in present)
    head = (f"<header><h1>{_e(title)}</h1>"
            f'<p class="muted">{_e(setup_line(manifest))} · report written {_dt.datetime.now():%Y-%m-%d %H:%M} by '
            f'splitbench {_e(version)} · <span id="img-status">figures not checked (scripts off)</span></p>'
            f"<nav>{nav}</nav></header>")
    warn = "".join(f'<p class="warn">{_e(n)}</p>' for n in notes)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{asset('report.css')}</style></head><body>"
            + head + warn + "\n".join(sections)
            + f'<script type="application/json" id="splitbench-data">{data_json}</script>'
            + f"<script>{asset('report.js')}</script></body></html>\n")
