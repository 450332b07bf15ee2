"""`splitbench import-log`: a log of a phone benchmark tool (LiteRT/TFLite ``benchmark_model``,
``onnxruntime_perf_test``, ExecuTorch ``executor_runner``) turned into splitbench's measurement record.

Researchers bring old measurements this way; the reading itself is ``device_agents.android.tool_logs``,
the parser the Android agent uses on the same tools' output.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from device_agents.android.tool_logs import TOOLS, ToolLogError, read_log
from harness.core.errors import UserError


def import_log(path: str | Path, tool: str | None = None, *, result_file: str | Path | None = None
               ) -> dict[str, Any]:
    """Read one tool run's log (and onnxruntime_perf_test's per-run result file) into a record: times in
    ns, memory in bytes, the unit each figure had in the log, and the notes a reader must know.

    ``tool`` is one of ``litert``, ``onnxruntime``, ``executorch`` (detected when None). Raises
    :class:`UserError` with one line naming what the log lacks (or holds wrong) when it cannot be read or
    trusted; a file over ``MAX_LOG_BYTES`` (1 GB) is refused unread.
    """
    if tool is not None and tool not in TOOLS:
        raise UserError(f"unknown --tool {tool!r}; tools: {', '.join(TOOLS)}")
    for p in (path, result_file):
        if p is not None and not Path(p).is_file():
            raise UserError(f"{p}: no such file")
    try:
        measurement = read_log(path, tool, result_file=result_file)
    except ToolLogError as exc:
        raise UserError(f"{path}: {exc}") from None
    except OSError as exc:  # unreadable (permissions, a device gone): the user's to fix, not a bug
        raise UserError(f"{exc.filename or path}: cannot be read ({exc.strerror or exc})") from None
    record = {"source": str(path), "result_file": str(result_file) if result_file is not None else None}
    record.update(measurement.to_dict())
    # The words of summary.csv's timing_kind: every run printed, or the tool's summary of them.
    record["timing_kind"] = "samples" if measurement.samples_ns else "aggregate"
    record["measure_result"] = _jsonable(measurement.result_fields())
    return record


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    out = {}
    for key, value in fields.items():
        if is_dataclass(value):
            value = asdict(value)
        elif isinstance(value, tuple):
            value = [asdict(v) if is_dataclass(v) else v for v in value]
        out[key] = value
    return out


def print_import_table(record: dict[str, Any]) -> None:
    """The record as a table for people, with where each figure came from: times in ms (µs or s where they
    fit) and sizes in SI MB (10^6 bytes, as everywhere in splitbench; the tools print MiB), with three
    significant digits as every splitbench table (:mod:`harness.core.units`); ``--json`` keeps every figure."""
    from rich.console import Console
    from rich.table import Table

    from harness.core.units import fmt_bytes, fmt_ms, ns_to_ms

    def t(ns: float) -> str:
        return fmt_ms(ns_to_ms(ns))

    units = record["units"]
    table = Table("figure", "value", "from the log", title=f"{record['tool']}: {record['source']}",
                  caption="times in ms (µs, s where they fit), sizes in SI MB (1 MB = 10^6 bytes; the tools' MB "
                          "is 2^20 bytes); --json keeps every figure as read, in ns and bytes")
    agg = record["aggregate"]
    if record["samples_ns"]:
        s = record["samples_ns"]
        table.add_row("timed runs", f"{record['runs']} samples", units.get("timed", ""))
        table.add_row("  median / min / max", f"{t(median(s))} / {t(min(s))} / {t(max(s))}", "")
    else:
        runs = "number not printed" if agg["n"] is None else str(agg["n"])
        table.add_row("timed runs", f"{runs} (the tool's aggregate)", units.get("timed", ""))
        table.add_row("  mean", t(agg["mean_ns"]), "")
        for name in ("std", "min", "max"):
            if agg[f"{name}_ns"] is not None:
                table.add_row(f"  {name}", t(agg[f"{name}_ns"]), "")
        for p, v in agg["percentiles"].items():
            table.add_row(f"  p{p}", t(v), "")
    if record["first_infer_ns"] is not None:
        table.add_row("first inference", t(record["first_infer_ns"]), units.get("first_infer", ""))
    if record["warmup"]:
        n = record["warmup"]["n"]
        table.add_row("warm-up", f"{'number of runs not printed' if n is None else f'{n} runs'}, "
                                 f"mean {t(record['warmup']['mean_ns'])}", units.get("warmup", ""))
    if record["init_ns"] is not None:
        table.add_row("load / init", t(record["init_ns"]), units.get("init", ""))
    if record["wall_runs_ns"] is not None:
        table.add_row("wall time of the runs", t(record["wall_runs_ns"]), units.get("wall_runs", ""))
    for m in record["memory"]:
        if m["peak_b"] is not None:
            table.add_row("peak memory", fmt_bytes(m["peak_b"]), units.get("memory", ""))
        for key, b in m["detail"].items():
            table.add_row(key.removesuffix("_b"), fmt_bytes(b),
                          units.get("memory", "") if m["peak_b"] is None else "")
    for key, v in record["extra"].items():
        table.add_row(key, f"{v:g}", "")
    console = Console()
    console.print(table)
    for note in record["notes"]:
        console.print(f"note: {note}")
