"""The papers' figures, drawn from a results directory alone (``summary.csv`` + ``samples.parquet``).

- ``infer_box``: a box plot of the timed inference runs of every configuration;
- ``load_bars``: load time, cold and warm side by side;
- ``memory_bars``: model memory (peak minus the pre-load baseline), with the peak resident memory as a marker.

One panel per (backend, target, device), configurations in model order with on-premise last: two
phones with the same target are two panels, never one. A configuration exported in several precisions has
one slot per precision, side by side (float32 first, then ``<config> int8``), the int8 boxes and bars drawn
in their own colour and hatch: two series, never one. A LiteRT int8 slot timed on ``cpu-1core`` says that
its speed-up is the host's (AMX-INT8 instructions no phone has; docs/measuring.md). A configuration that
was not measured keeps its slot, labelled with its status, so a gap is never silent. A row whose phone tool reported only an
aggregate (LiteRT's benchmark_model) is drawn from the tool's own figures, hatched and labelled "tool
aggregate": its box spans the tool's p5..p95 and its whiskers min..max, never invented samples. A cold
load that could not be made cold is hatched and labelled. Each figure is written as PNG and SVG under
``DIR/figures``.
"""

from __future__ import annotations

from pathlib import Path

from harness.config.spec import PRECISIONS
from harness.results.layout import FIGURES_DIR
from harness.results.readers import read_samples, read_summary
from harness.results.records import OK, SKIPPED
from harness.results.stats import host_int8
from harness.results.store import atomic_write_bytes
from harness.core.units import fmt_ms

FORMATS = ("png", "svg")
_COLD, _WARM, _MEM, _PEAK = "#4C72B0", "#DD8452", "#55A868", "#C44E52"
# What a figure or report that cannot be written says to do (drawing them never touches a measurement).
WRITE_FIX = ("the records and tables are untouched: make the directory writable (or move what is in the way, or "
             "copy the directory somewhere writable) and run `splitbench report` on it again")


def write_figure(fig, out_dir: Path, stem: str, formats: dict[str, dict]) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.<format>`` for each format (with its ``savefig`` options), each file
    atomically (drawn in memory, then renamed into place), and close it. A directory that cannot be written
    is one ResultsWriteError line (exit 6)."""
    import io

    import matplotlib.pyplot as plt

    paths = []
    try:
        for fmt, options in formats.items():
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, **options)
            path = out_dir / f"{stem}.{fmt}"
            atomic_write_bytes(path, buf.getvalue(), fix=WRITE_FIX)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


_INT8 = "#8172B3"  # int8 boxes; int8 bars keep their colour and are hatched
_INT8_HATCH = ".."
HOST_INT8_LABEL = "int8 here uses the host's AMX/VNNI int8 instructions,\nwhich no phone has: not a phone's speed-up"


def _load(out: Path):
    summary = read_summary(out)
    samples = read_samples(out)
    if "order" not in summary.columns:  # an older or hand-made CSV: keep its row order
        summary["order"] = range(len(summary))
    for col in ("device_id", "timing_kind", "cold_method"):
        if col not in summary.columns:
            summary[col] = "" if col == "device_id" else None
    summary["device_id"] = summary["device_id"].fillna("").astype(str)
    if "device_id" not in samples.columns:
        samples["device_id"] = ""
    summary["reason"] = summary["reason"].fillna("")
    for frame in (summary, samples):  # results written before precisions existed are float32
        frame["precision"] = frame["precision"].fillna("float32").astype(str) if "precision" in frame.columns \
            else "float32"
    return summary, samples[samples["phase"] == "timed"] if "phase" in samples.columns else samples


def _slot_label(slot: tuple[str, str]) -> str:
    """``conv1-simple``, ``conv1-simple int8``."""
    config, precision = slot
    return config if precision == "float32" else f"{config} {precision}"


def _panels(summary):
    """(backend, target, device) triples in backend order, and the configurations (model order) each panel
    shows.

    A triple whose every row was skipped (Core ML on a Linux target) gets no empty panel; the figure
    names it in a note instead (see :func:`_skipped_note`).
    """
    from harness.config.backends import rank

    triples = sorted({(b, t, d) for b, t, d in zip(summary["backend"], summary["target"], summary["device_id"])},
                     key=lambda p: (rank(p[0]), p[0], p[1], p[2]))
    shown = [p for p in triples if not _all_skipped(summary, *p)] or triples
    rank_of = {p: i for i, p in enumerate(PRECISIONS)}
    ordered = summary.assign(_p=summary["precision"].map(lambda p: rank_of.get(p, len(rank_of))))
    ordered = ordered.sort_values(["order", "_p"], kind="stable").drop_duplicates(["config", "precision"])
    return shown, list(zip(ordered["config"], ordered["precision"]))


def _select(frame, backend: str, target: str, device: str):
    return frame[(frame["backend"] == backend) & (frame["target"] == target) & (frame["device_id"] == device)]


def _all_skipped(summary, backend: str, target: str, device: str) -> bool:
    sel = _select(summary, backend, target, device)
    return bool(len(sel)) and bool((sel["status"] == SKIPPED).all())


def _panel_title(summary, backend: str, target: str, device: str) -> str:
    """``backend on target``, with the device when two devices share the target."""
    shared = summary[(summary["target"] == target)]["device_id"].nunique() > 1
    title = f"{backend} on {target}" + (f" ({device})" if shared and device else "")
    sel = _select(summary, backend, target, device)
    if any(host_int8(p, backend, target) for p in sel.loc[sel["status"] == OK, "precision"]):
        title += f"\n{HOST_INT8_LABEL}"  # a LiteRT int8 speed-up timed on the host is not a phone's
    return title


def _skipped_note(fig, summary) -> None:
    """Say which (backend, target) pairs have no panel because nothing of them could run there."""
    from harness.config.backends import rank

    triples = sorted({(b, t, d) for b, t, d in zip(summary["backend"], summary["target"], summary["device_id"])
                      if _all_skipped(summary, b, t, d)}, key=lambda p: (rank(p[0]), p))
    if not triples or len(triples) == len({*zip(summary["backend"], summary["target"], summary["device_id"])}):
        return
    parts = []
    seen = set()
    for b, t, d in triples:
        if (b, t) in seen:
            continue
        seen.add((b, t))
        reason = _select(summary, b, t, d)["reason"].iloc[0]
        parts.append(f"{b} on {t} ({reason.removeprefix('skipped: ')})")
    fig.text(0.01, 0.005, "not measured, skipped: " + "; ".join(parts), fontsize=7, color="#555555",
             ha="left", va="bottom")


def _gap_label(row) -> str:
    if row is None:
        return "not run"
    if row["status"] == SKIPPED:
        return "skipped"
    return str(row["status"])


def _row(summary, slot, backend, target, device):
    sel = _select(summary, backend, target, device)
    sel = sel[(sel["config"] == slot[0]) & (sel["precision"] == slot[1])]
    return None if sel.empty else sel.iloc[0]


def _mark_gap(ax, x: float, label: str) -> None:
    """A labelled empty slot: the configuration exists but has no number (failed, timed out, skipped)."""
    import matplotlib.transforms as mtransforms

    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    ax.axvspan(x - 0.4, x + 0.4, color="#dddddd", alpha=0.6, zorder=0, lw=0)
    ax.text(x, 0.5, label, transform=trans, rotation=90, ha="center", va="center", fontsize=8, color="#7a0000"
            if label not in ("skipped", "not run") else "#555555")


def _figure(n_panels: int, n_configs: int):
    import matplotlib.pyplot as plt

    cols = 1 if n_panels == 1 else 2
    rows = (n_panels + cols - 1) // cols
    width = max(6.0, 0.65 * n_configs + 2.5) * cols
    fig, axes = plt.subplots(rows, cols, figsize=(width, 4.2 * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return write_figure(fig, out_dir, stem, {fmt: {"dpi": 150} for fmt in FORMATS})


def _xaxis(ax, slots: list[tuple[str, str]], title: str) -> None:
    ax.set_xticks(range(len(slots)))
    ax.set_xticklabels([_slot_label(s) for s in slots], rotation=35, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(slots) - 0.4)
    for x in range(1, len(slots)):  # a faint line between configurations when precisions sit side by side
        if slots[x][0] != slots[x - 1][0] and len({p for _, p in slots}) > 1:
            ax.axvline(x - 0.5, color="#bbbbbb", lw=0.6, zorder=0)
    ax.set_xlabel("configuration (model order, on-premise last; precisions side by side)"
                  if len({p for _, p in slots}) > 1 else "configuration (model order, on-premise last)")
    ax.set_title(title, fontsize=10 if "\n" not in title else 8.5)
    ax.grid(axis="y", alpha=0.3)


def _model_name(summary) -> str:
    return ", ".join(dict.fromkeys(summary["model"].astype(str)))


def infer_box(summary, samples, out_dir: Path) -> list[Path]:
    panels, slots = _panels(summary)
    fig, axes = _figure(len(panels), len(slots))
    for ax, (backend, target, device) in zip(axes, panels):
        series: dict[str, tuple[list, list]] = {}  # precision -> (samples, positions): one series each
        aggregates = []
        mine = _select(samples, backend, target, device)
        for x, slot in enumerate(slots):
            row = _row(summary, slot, backend, target, device)
            sel = mine[(mine["config"] == slot[0]) & (mine["precision"] == slot[1])]["infer_ms"]
            if row is not None and row["status"] == OK and len(sel):
                data, positions = series.setdefault(slot[1], ([], []))
                data.append(sel.to_numpy())
                positions.append(x)
            elif row is not None and row["status"] == OK and row.get("timing_kind") == "aggregate":
                aggregates.append((x, row))
            else:
                _mark_gap(ax, x, _gap_label(row))
        for precision, (data, positions) in series.items():
            colour = "white" if precision == "float32" else _INT8
            parts = ax.boxplot(data, positions=positions, widths=0.6, showfliers=True, patch_artist=True,
                               boxprops={"facecolor": colour}, medianprops={"color": "#C44E52"},
                               flierprops={"markersize": 3})
            if len(series) > 1:
                parts["boxes"][0].set_label(precision)
        every = [d for data, _ in series.values() for d in data]
        if every:
            _clip_outliers(ax, every, [p for _, positions in series.values() for p in positions])
        if aggregates:
            _aggregate_boxes(ax, aggregates)
        if not every and not aggregates:
            ax.set_ylim(0, 1)
        if len(series) > 1:
            _dedupe_legend(ax)
        _xaxis(ax, slots, _panel_title(summary, backend, target, device))
        time_axis(ax, "y", "inference time")
    runs = summary.loc[summary["status"] == OK, "n_runs"].dropna()  # a tool's mean alone has no run count
    each = f"; {int(runs.max())} timed runs each" if len(runs) else ""
    fig.suptitle(f"Inference time per configuration ({_model_name(summary)}{each})")
    _skipped_note(fig, summary)
    return _save(fig, out_dir, "infer_box")


def _aggregate_boxes(ax, aggregates) -> None:
    """Rows a tool summarised (no samples): a hatched box from the tool's p5 to p95 (or a bar at its mean
    when it printed no percentiles), whiskers from its min to max, the median line when it printed one."""
    from matplotlib.patches import Rectangle

    from harness.analysis.recommend.choice import opt

    top = ax.get_ylim()[1] if ax.has_data() else 0.0
    for x, row in aggregates:
        med, p5, p95, low, high, mean = (opt(row.get(col)) for col in (
            "infer_ms_median", "infer_ms_p5", "infer_ms_p95", "infer_ms_min", "infer_ms_max", "infer_ms_mean"))
        lo, hi = (p5, p95) if p5 is not None and p95 is not None else (mean, mean)
        if lo is None:
            _mark_gap(ax, x, "no timing")
            continue
        ax.add_patch(Rectangle(
            (x - 0.3, lo), 0.6, max(hi - lo, 1e-12), facecolor="#f2e6c9", edgecolor="#8a6d1f", hatch="//",
            lw=1, zorder=2, label="tool aggregate (box p5..p95, whiskers min..max)"))
        if low is not None and high is not None:
            ax.vlines(x, low, high, color="#8a6d1f", lw=1, zorder=1)
        if med is not None:
            ax.hlines(med, x - 0.3, x + 0.3, color="#C44E52", lw=1.5, zorder=3)
        elif mean is not None:
            ax.plot([x], [mean], marker="x", color="#C44E52", zorder=3, label="tool's mean (no median reported)")
        ax.text(x, hi, "aggregate", ha="center", va="bottom", fontsize=6.5, color="#8a6d1f")
        top = max(top, (high if high is not None else hi) * 1.15)
    ax.set_ylim(0, max(top, ax.get_ylim()[1]))
    _dedupe_legend(ax)


def _clip_outliers(ax, data, positions) -> None:
    """Scale the axis to the boxes and whiskers, not to one stray run (a page fault, a preemption): runs
    above the top are counted and their maximum printed at the top of their column, never hidden."""
    import numpy as np

    tops = []
    for values in data:
        q1, q3 = np.percentile(values, [25, 75])
        tops.append(float(values[values <= q3 + 1.5 * (q3 - q1)].max()))
    top = max(tops) * 1.25 if max(tops) > 0 else 1.0
    ax.set_ylim(0, top)
    for x, values in zip(positions, data):
        above = values[values > top]
        if above.size:
            ax.annotate(f"{above.size} above\n(max {fmt_ms(float(above.max()))})", (x, top), xytext=(0, -3),
                        textcoords="offset points", ha="center", va="top", fontsize=7, color="#7a0000")


def time_axis(ax, which: str, what: str) -> None:
    """Label an axis of milliseconds in the unit its values need: µs when all of it is under 1 ms (a small
    model's 12 µs median must not read 0.01), ms otherwise. Call once the axis limits are final."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis, limits = (ax.yaxis, ax.get_ylim()) if which == "y" else (ax.xaxis, ax.get_xlim())
    unit = "ms"
    if max(abs(limits[0]), abs(limits[1])) < 1:
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v * 1000:g}"))
        axis.set_minor_formatter(NullFormatter())  # a log axis' minor labels would still be in ms
        unit = "µs"
    (ax.set_ylabel if which == "y" else ax.set_xlabel)(f"{what} ({unit})")


def _bar_figure(summary, out_dir: Path, draw, ylabel: str, title: str, stem: str, time: bool = False) -> list[Path]:
    """One panel per (backend, target), configurations in model order; ``draw(ax, x, row)`` draws one
    measured row, and a failed or missing row is a labelled gap."""
    panels, slots = _panels(summary)
    fig, axes = _figure(len(panels), len(slots))
    for ax, (backend, target, device) in zip(axes, panels):
        for x, slot in enumerate(slots):
            row = _row(summary, slot, backend, target, device)
            if row is None or row["status"] != OK:
                _mark_gap(ax, x, _gap_label(row))
                continue
            draw(ax, x, row)
        _xaxis(ax, slots, _panel_title(summary, backend, target, device))
        _headroom(ax)
        if time:
            time_axis(ax, "y", ylabel)
        else:
            ax.set_ylabel(ylabel)
        _dedupe_legend(ax)
    fig.suptitle(f"{title} ({_model_name(summary)})")
    _skipped_note(fig, summary)
    return _save(fig, out_dir, stem)


def load_bars(summary, out_dir: Path) -> list[Path]:
    w = 0.38

    def draw(ax, x, row):
        hatch, tag = _precision_style(row)
        if row.get("cold_method") == "not_obtained":  # the load could not be made cold: it may be warm
            ax.bar(x - w / 2, row["load_ms_cold"], w, color="white", edgecolor=_COLD, hatch="//",
                   label=f"first load, cold NOT obtained (may be warm){tag}")
        else:
            how = {"drop_caches": "page cache dropped", "first_launch": "first launch"}.get(
                row.get("cold_method"), "page cache dropped")
            ax.bar(x - w / 2, row["load_ms_cold"], w, color=_COLD, hatch=hatch, edgecolor="white",
                   label=f"cold ({how}){tag}")
        ax.bar(x + w / 2, row["load_ms_warm"], w, color=_WARM, hatch=hatch, edgecolor="white",
               label=f"warm (median){tag}")

    return _bar_figure(summary, out_dir, draw, "load time", "Model load time, file to ready session",
                       "load_bars", time=True)


def memory_bars(summary, out_dir: Path) -> list[Path]:
    def draw(ax, x, row):
        hatch, tag = _precision_style(row)
        ax.bar(x, row["mem_model_mb"], 0.6, color=_MEM, hatch=hatch, edgecolor="white",
               label=f"model memory (peak - pre-load){tag}")
        ax.plot([x], [row["mem_peak_mb"]], marker="_", markersize=18, mew=2.5, color=_PEAK, ls="none",
                label="peak resident memory")

    return _bar_figure(summary, out_dir, draw, "memory (MB, 10^6 bytes)", "Memory per configuration",
                       "memory_bars")


def _precision_style(row) -> tuple[str | None, str]:
    """The hatch and legend suffix of a bar: int8 (any precision but float32) is hatched and named."""
    precision = str(row.get("precision") or "float32")
    return (None, "") if precision == "float32" else (_INT8_HATCH, f", {precision}")


def _headroom(ax) -> None:
    """Bars start at zero and leave the top quarter free for the legend."""
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.3 if top > 0 else 1)


def _dedupe_legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", ncols=2)


def make_figures(out_dir: str | Path) -> list[Path]:
    """Draw every figure of a results directory into ``out_dir/figures``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and the same bytes whatever the machine

    out = Path(out_dir)
    summary, samples = _load(out)
    fig_dir = out / FIGURES_DIR
    return [*infer_box(summary, samples, fig_dir), *load_bars(summary, fig_dir), *memory_bars(summary, fig_dir)]
