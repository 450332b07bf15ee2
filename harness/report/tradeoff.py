"""The privacy-complexity trade-off figures: privacy against each phone cost, and accuracy against privacy.

Cost figures (one per model and cost: phone inference time, phone model memory, upload size): one point
per measured split configuration and (backend, target), y = log-rank privacy, labelled with the
configuration name; the Pareto frontier (more privacy for less cost) is drawn as a step line. Only the
noise-free rows are plotted there (the lowest noise ratio of the sweep): noise changes privacy, not
phone cost, and its effect is the accuracy-privacy figure. On-premise has no feature to score, so it is
drawn as a vertical dashed line at its cost: the baseline every cut is compared with.

The accuracy-privacy figure is DPFE's Fig. 10: x = log-rank privacy, y = primary accuracy, one curve
per (cut, embedding), one marker per noise ratio (annotated).

Precision: an int8 phone part uploads its own feature, so its privacy and accuracy are its own series,
never joined to float32's by a line. In the cost figures the colour is the (backend, target) and the
marker the precision (circle float32, triangle int8), each Pareto frontier is drawn per precision
(int8 dashed), and each on-premise line names its precision. In the accuracy-privacy figure a
cut-embedding keeps its colour and marker in every precision: float32 solid with filled markers,
int8 dashed with hollow ones. Every series is named in the legend (`` int8`` after its name).

Every privacy axis names the estimator that produced its numbers, and one figure never holds numbers
of two estimators: the cost figures draw the merged table (one estimator, see
:func:`harness.analysis.table.select_estimator`), and the accuracy-privacy figure is drawn once per estimator
of the privacy table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import UserError
from harness.results.layout import FIGURES_DIR

FLOAT32 = "float32"
# Per precision: the marker of the cost figures, and the line style of frontiers and accuracy curves.
MARKERS = {"float32": "o", "int8": "^"}
LINES = {"float32": "-", "int8": "--"}
ON_PREMISE_LINES = {"float32": "--", "int8": ":"}

COSTS = (  # column, axis label, file stem, scale to the axis unit
    ("infer_ms_median", "phone inference time, median (ms)", "privacy_vs_inference", 1.0),
    ("mem_model_mb", "phone model memory (MB)", "privacy_vs_memory", 1.0),
    ("upload_bytes", "uploaded feature (kB)", "privacy_vs_upload", 1e-3),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, stem: str) -> list[Path]:
    from harness.report.figures import write_figure

    return write_figure(fig, out, stem, {"png": {"dpi": 130, "bbox_inches": "tight"},
                                         "svg": {"bbox_inches": "tight", "metadata": {"Date": None}}})


def pareto_points(x: np.ndarray, y: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Indices of the points no other has both lower-or-equal x and higher y, by increasing x: the same
    frontier, with the same tie rule, as `recommend` draws (:func:`harness.analysis.pareto.frontier`)."""
    from harness.analysis.pareto import frontier

    names = names or [""] * len(x)
    keep = frontier(range(len(x)), cost=lambda i: float(x[i]), gain=lambda i: float(y[i]), key=lambda i: names[i])
    return np.array(keep, dtype=int)


# Where a label may go around its point, in points (1/72 in): the eight directions, nearest first, then
# farther rings; a label away from its point gets a thin leader line.
_RINGS = (5, 12, 20, 30, 42, 56, 72)
_DIRECTIONS = ((1, 0), (1, 1), (1, -1), (0, 1), (0, -1), (-1, 1), (-1, -1), (-1, 0))


def place_labels(ax, points: list[tuple[float, float]], texts: list[str], *, obstacles=None, fontsize: float = 7.5,
                 marker_pt: float = 4.0, rings: tuple[float, ...] = _RINGS, skip_crowded: bool = False,
                 color=None) -> list:
    """Annotate ``points`` with ``texts`` so that no two labels overlap, no label covers a marker (of
    ``obstacles``, default the points) and every label stays inside the axes: each label takes the first
    free place of ``rings`` x :data:`_DIRECTIONS`, nearest first (a greedy placement, in the order given);
    failing that, the place that overlaps least, or, with ``skip_crowded``, no label at all (None).
    Returns the annotations.

    The axes' limits and scales must be final (the placement is done in display space).
    """
    fig = ax.figure
    fig.canvas.draw()  # final layout: limits, scales, the legend placed
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    box = ax.get_window_extent(renderer)
    px_per_pt = fig.dpi / 72.0
    marks = [to_px((x, y)) for x, y in (obstacles if obstacles is not None else points)]
    r_mark = marker_pt * px_per_pt
    taken = [(mx - r_mark, my - r_mark, mx + r_mark, my + r_mark) for mx, my in marks]

    def overlap(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    out = []
    for (x, y), text in zip(points, texts):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        w, h = ext.width + 2, ext.height + 2
        px, py = to_px((x, y))
        best = None
        for ring in rings:
            for dx, dy in _DIRECTIONS:
                ox, oy = dx * ring * px_per_pt, dy * ring * px_per_pt
                x0 = px + ox if dx > 0 else (px + ox - w if dx < 0 else px - w / 2)
                y0 = py + oy if dy > 0 else (py + oy - h if dy < 0 else py - h / 2)
                cand = (x0, y0, x0 + w, y0 + h)
                outside = (max(0, box.x0 - cand[0]) + max(0, cand[2] - box.x1) + max(0, box.y0 - cand[1])
                           + max(0, cand[3] - box.y1)) * h * 10
                cost = outside + sum(overlap(cand, t) for t in taken)
                if best is None or cost < best[0]:
                    best = (cost, cand, ring, dx, dy)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        if skip_crowded and best[0] > 0:
            out.append(None)
            continue
        _, cand, ring, dx, dy = best
        taken.append(cand)
        ha = "left" if dx > 0 else ("right" if dx < 0 else "center")
        va = "bottom" if dy > 0 else ("top" if dy < 0 else "center")
        ann = ax.annotate(text, (x, y), xytext=(dx * ring, dy * ring), textcoords="offset points", ha=ha, va=va,
                          fontsize=fontsize, zorder=4, color=color,
                          arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.45", "shrinkA": 0, "shrinkB": 3}
                          if ring > _RINGS[1] else None)
        out.append(ann)
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _precisions(table: pd.DataFrame) -> pd.Series:
    """Each row's precision: float32 where the table has no precision column or leaves it empty."""
    if "precision" not in table.columns:
        return pd.Series(FLOAT32, index=table.index, dtype=object)
    return table["precision"].fillna(FLOAT32).astype(str).replace("", FLOAT32)


def _suffix(precision: str) -> str:
    """What a series' name gains for its precision: nothing for float32, `` int8`` for int8."""
    return "" if precision == FLOAT32 else f" {precision}"


def _estimators(table: pd.DataFrame) -> list[str]:
    if "estimator" not in table.columns:
        return ["unspecified"]
    return list(dict.fromkeys(table["estimator"].dropna().astype(str))) or ["unspecified"]


def cost_figures(merged: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Privacy against inference time, memory and upload size, per model (see the module doc)."""
    from harness.analysis.table import config_label

    plt = _pyplot()
    paths: list[Path] = []
    ok = merged[merged["status"].astype(str) == "ok"] if "status" in merged.columns else merged
    estimators = _estimators(ok[~ok["on_premise"].astype(bool)])
    if len(estimators) > 1:
        raise UserError(f"the merged table mixes privacy estimators ({', '.join(estimators)}); merge one")
    est = estimators[0]
    ok = ok.assign(precision=_precisions(ok))
    models = list(dict.fromkeys(ok["model"].astype(str)))
    for model in models:
        rows = ok[ok["model"].astype(str) == model]
        cuts = rows[~rows["on_premise"].astype(bool)]
        if "noise_ratio" in cuts.columns and cuts["noise_ratio"].notna().any():
            cuts = cuts[cuts["noise_ratio"] == cuts["noise_ratio"].min()]
        ratio = cuts["noise_ratio"].min() if "noise_ratio" in cuts.columns else np.nan
        full = rows[rows["on_premise"].astype(bool)]
        if "device_id" not in cuts.columns:
            cuts = cuts.assign(device_id="")
        groups = list(dict.fromkeys(zip(cuts["backend"].astype(str), cuts["target"].astype(str),
                                        cuts["device_id"].astype(str))))
        several = len({(b, t) for b, t, _ in groups}) < len(groups)  # two devices share a target: name them
        precisions = list(dict.fromkeys([*cuts["precision"], *full["precision"]]))
        for col, xlabel, stem, scale in COSTS:
            fig, ax = plt.subplots(figsize=(7.5, 4.8))
            pts = cuts[[col, "log_rank_privacy"]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
            data = cuts[pts]
            x_all = data[col].to_numpy(float) * scale
            y_all = data["log_rank_privacy"].to_numpy(float)
            names = [config_label(r, with_ratio=False) for _, r in data.iterrows()]
            _cost_series(ax, data, col, scale, groups, several, precisions)
            for precision in precisions:  # one frontier per precision: an int8 point never joins a float32 one
                mine = np.flatnonzero(data["precision"].to_numpy() == precision)
                if len(mine):
                    front = mine[pareto_points(x_all[mine], y_all[mine], [names[i] for i in mine])]
                    ax.step(x_all[front], y_all[front], where="post", color="0.25", lw=1.2,
                            ls=LINES.get(precision, "-."), zorder=2, gid=f"frontier {precision}",
                            label="Pareto frontier" + (f", {precision}" if len(precisions) > 1 else "")
                            + " (more privacy, less cost)")
            _on_premise_lines(ax, full, col, scale)
            if len(x_all) and x_all.min() > 0 and x_all.max() / x_all.min() > 100:  # e.g. 8 floats vs a conv map
                ax.set_xscale("log")
                xlabel = xlabel.replace(")", ", log scale)")
            if len(data):
                # One label per configuration, beside its cheapest point: its other points (other backends,
                # targets) have the same privacy, so they lie on the same horizontal line, in the legend's colours.
                first = {}
                for i, name in enumerate(names):
                    if name not in first or x_all[i] < x_all[first[name]]:
                        first[name] = i
                anchors = sorted(first.items(), key=lambda kv: (x_all[kv[1]], y_all[kv[1]]))
                place_labels(ax, [(x_all[i], y_all[i]) for _, i in anchors], [n for n, _ in anchors],
                             obstacles=list(zip(x_all, y_all)))
            suffix = f", noise ratio {ratio:g}" if pd.notna(ratio) else ""
            ax.set_title(f"{model}: privacy vs {xlabel.split(' (')[0]}{suffix}")
            if col == "infer_ms_median":
                from harness.report.figures import time_axis

                time_axis(ax, "x", xlabel.rsplit(" (", 1)[0] + (", log scale" if "log scale" in xlabel else ""))
            else:
                ax.set_xlabel(xlabel)
            ax.set_ylabel(f"log-rank privacy, {est} estimator\n(0 = always identified, 1 = never)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside: never hides a point
            paths += _save(fig, out_dir, f"{stem}_{_safe(model)}" if len(models) > 1 else stem)
    return paths


def _cost_series(ax, data: pd.DataFrame, col: str, scale: float, groups: list[tuple[str, str, str]], several: bool,
                 precisions: list[str]) -> None:
    """One scatter per (backend, target, device) and precision: colour per group, marker per precision."""
    colors = _pyplot().get_cmap("tab10")
    for gi, (backend, target, device) in enumerate(groups):
        for precision in precisions:
            g = data[(data["backend"].astype(str) == backend) & (data["target"].astype(str) == target)
                     & (data["device_id"].astype(str) == device) & (data["precision"] == precision)]
            if g.empty and len(precisions) > 1:  # e.g. no int8 part on this backend: no legend entry
                continue
            label = f"{backend} / {target}" + (f" ({device})" if several else "") + _suffix(precision)
            if "timing_kind" in g.columns and (g["timing_kind"] == "aggregate").any() and col == "infer_ms_median":
                label += " — tool aggregate"
            ax.scatter(g[col].to_numpy(float) * scale, g["log_rank_privacy"].to_numpy(float), color=colors(gi % 10),
                       s=36, zorder=3, marker=MARKERS.get(precision, "s"), label=label,
                       gid=f"series {backend}/{target}/{precision}")


def _on_premise_lines(ax, full: pd.DataFrame, col: str, scale: float) -> None:
    """A vertical line at each on-premise row's cost, its precision in the legend when not float32."""
    from harness.analysis.recommend.choice import opt

    for _, r in full.iterrows():
        xv = opt(r.get(col))
        if xv is not None:
            precision = r["precision"]
            where = f"{r['backend']} / {r['target']}{_suffix(precision)}"
            ax.axvline(xv * scale, color="0.5", ls=ON_PREMISE_LINES.get(precision, "-."), lw=1,
                       label=f"on-premise ({where}), nothing uploaded" if col != "upload_bytes"
                       else f"on-premise output ({r['backend']}{_suffix(precision)})")


def accuracy_privacy_figure(privacy: pd.DataFrame, out_dir: Path) -> list[Path]:
    """DPFE Fig. 10: primary accuracy against log-rank privacy, one curve per cut/embedding and precision, one
    figure per model and estimator (file stems gain ``_<model>`` and ``_<estimator>`` when there are several)."""
    plt = _pyplot()
    priv = privacy[privacy["cut"].astype(str) != "full"]
    priv = priv.assign(precision=_precisions(priv))
    priv = priv[priv[["log_rank_privacy", "primary_accuracy"]].notna().all(axis=1)]
    if priv.empty:
        return []
    if "estimator" not in priv.columns:
        priv = priv.assign(estimator="unspecified")
    models = list(dict.fromkeys(priv["model"].astype(str)))
    estimators = _estimators(priv)
    markers = "osD^v<>phX*"
    paths: list[Path] = []
    for model, est in [(m, e) for m in models for e in estimators]:
        rows = priv[(priv["model"].astype(str) == model) & (priv["estimator"].astype(str) == est)]
        if rows.empty:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        configs = list(dict.fromkeys(zip(rows["cut"].astype(str), rows["embedding"].astype(str))))
        precisions = list(dict.fromkeys(rows["precision"]))
        curves = [(i, cut, emb, prec) for i, (cut, emb) in enumerate(configs) for prec in precisions]
        labels: list[tuple[int, float, float, str]] = []  # (priority, x, y, text)
        marks = []
        for i, cut, emb, precision in curves:
            c = rows[(rows["cut"].astype(str) == cut) & (rows["embedding"].astype(str) == emb)
                     & (rows["precision"] == precision)]
            if c.empty:
                continue
            c = c.sort_values("noise_ratio", na_position="first")
            x, y = c["log_rank_privacy"].to_numpy(float), c["primary_accuracy"].to_numpy(float)
            # a cut-embedding keeps its colour and marker; float32 solid and filled, int8 dashed and hollow
            color = f"C{i % 10}"
            ax.plot(x, y, marker=markers[i % len(markers)], ms=5, lw=1.3, color=color, ls=LINES.get(precision, "-."),
                    mfc=color if precision == FLOAT32 else "none", label=f"{cut}-{emb}{_suffix(precision)}",
                    gid=f"curve {cut}-{emb} {precision}")
            marks += list(zip(x, y))
            ratios = list(c["noise_ratio"])
            for j, (xi, yi, r) in enumerate(zip(x, y, ratios)):
                if pd.notna(r):  # the sweep's ends first, then every other ratio, then the rest
                    labels.append((0 if j in (0, len(ratios) - 1) else 1 + (j % 2), xi, yi, f"{r:g}"))
        ax.set_title(f"{model}: accuracy vs privacy under the noise sweep (labels: noise ratio r)")
        ax.set_xlabel(f"log-rank privacy of the sensitive label, {est} estimator (0..1, higher = more private)")
        ax.set_ylabel("primary-task accuracy (fraction)")
        ax.grid(alpha=0.3)
        title = "cut-embedding" if precisions == [FLOAT32] else "cut-embedding\n(dashed, hollow: int8)"
        ax.legend(fontsize=8, title=title, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0)  # outside: never hides a point or a label
        # Noise-ratio labels where they fit beside their point without covering another label or marker; in
        # a crowded corner some are left out rather than piled up (the curve's order gives them).
        labels.sort(key=lambda t: t[0])
        place_labels(ax, [(x, y) for _, x, y, _ in labels], [t for *_, t in labels], obstacles=marks, fontsize=6.5,
                     marker_pt=3.0, rings=(3, 7), skip_crowded=True, color="0.35")
        stem = "accuracy_privacy" + (f"_{_safe(model)}" if len(models) > 1 else "") + (
            f"_{_safe(est)}" if len(estimators) > 1 else "")
        paths += _save(fig, out_dir, stem)
    return paths


def make_tradeoff_figures(results_dir: str | Path, merged: pd.DataFrame | None = None,
                          privacy: pd.DataFrame | None = None) -> list[Path]:
    """Every trade-off figure of a results directory into DIR/figures (PNG and SVG); returns the paths."""
    from harness.analysis.table import load_privacy, load_table

    d = Path(results_dir)
    if privacy is None:
        privacy = load_privacy(d)
    if merged is None:
        merged = load_table(d)
    out = d / FIGURES_DIR
    return cost_figures(merged, out) + accuracy_privacy_figure(privacy, out)
