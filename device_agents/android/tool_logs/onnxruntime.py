"""ONNX Runtime's ``onnxruntime_perf_test``.

The summary gives an aggregate; its result file (``--result-file``) gives one CSV line per timed run
(``PerformanceResult::DumpToFile``): those are samples. Its one warm-up run is the ``First inference time
cost`` (whole milliseconds).
"""

from __future__ import annotations

import re
from typing import Iterable

from device_agents.android.tool_logs.measurement import (
    ERROR_WORDS, ERRORS, MAX_BYTES, NUM, DelegateReading, Hits, ToolLogError, ToolMeasurement, any_of, checked, close,
    ns, ns_int, number, said, tool_errors,
)
from device_agents.base import Aggregate, MemoryReading

# ONNX Runtime onnxruntime_perf_test
#
# Formats: microsoft/onnxruntime onnxruntime/test/perftest/performance_runner.cc (PerformanceRunner::Run,
# PerformanceResult::DumpToFile). Spacing changed over the years ("cost:1.84149 s" in 2020, "cost: 0.2 s"
# later); recent builds print "Average inference time cost total:" (seen in the 2025-2026 logs; #25895, Aug
# 2025, added submit vs total times, and #26313 made the statistics and the result file use the total).

# Lines only this tool prints (for telling the tools' logs apart).
MARKER = re.compile(r"Session creation time cost|Total inference requests|Average inference time cost"
                    r"|Total iterations:|Peak working set size")

_ORT = {
    "session": re.compile(rf"Session creation time cost:\s*({NUM})\s*s"),
    "first": re.compile(rf"First inference time cost:\s*({NUM})\s*ms"),
    "total": re.compile(rf"Total inference time cost:\s*({NUM})"),
    "requests": re.compile(r"(?:Total inference requests|Total iterations):\s*(\d+)"),
    "avg": re.compile(rf"Average (?:inference )?time cost(?: total)?:\s*({NUM})\s*ms"),
    "run_time": re.compile(rf"Total inference run time:\s*({NUM})\s*s"),
    "per_second": re.compile(rf"Number of inferences per second:\s*({NUM})"),
    "cpu": re.compile(r"(?:Avg|Total) CPU usage:\s*(\d+)\s*%"),
}
_ORT_PEAK = re.compile(r"Peak working set size:\s*(\d+)")
_ORT_RUNS = re.compile(r"^Runs:\s*(\d+)\s*$")
_ORT_LATENCY = re.compile(rf"\b(Min|Max|P50|P90|P95|P99|P999) Latency(?::| is)\s*({NUM})\s*s")
_ORT_PCT = {"P50": "50", "P90": "90", "P95": "95", "P99": "99", "P999": "99.9"}
# model_name,time_cost_s[,time_cost_total_s],peak_workingset_size,average_CPU_usage,run_index
_ORT_CSV = re.compile(rf"^([^,]*),({NUM}),(?:({NUM}),)?(\d+),(-?\d+),(\d+)\s*$")


# Every line a pattern of this reader can match holds one of these words (see litert.KEYWORDS).
KEYWORDS = ("time cost", "Total inference", "Total iterations", "inferences per second", "CPU usage",
            "Peak working set size", "Runs:", "Latency", *ERROR_WORDS)
RELEVANT = any_of(KEYWORDS)
MARKER_WORDS = ("Session creation time cost", "Total inference requests", "Average inference time cost",
                "Total iterations:", "Peak working set size")
PATTERNS = (*_ORT.values(), _ORT_PEAK, _ORT_RUNS, _ORT_LATENCY, ERRORS)


class ResultFileShape:
    """Whether a log, read line by line, is a result file: every line that is not blank is a per-run line
    (or one of the ``-s`` statistics lines it ends with), and there is at least one per-run line."""

    def __init__(self) -> None:
        self.rows, self.other = 0, False

    def feed(self, line: str) -> None:
        if self.other or not line.strip() or _ORT_LATENCY.search(line):
            return
        if _ORT_CSV.match(line):
            self.rows += 1
        else:
            self.other = True

    @property
    def holds(self) -> bool:
        return self.rows > 0 and not self.other


def is_result_file(text: str) -> bool:
    shape = ResultFileShape()
    for line in text.splitlines():
        shape.feed(line)
    return shape.holds


def parse_onnxruntime(text: str, result_file_text: str | None = None) -> ToolMeasurement:
    """One run of ``onnxruntime_perf_test``: its printed summary, its result file, or both."""
    if result_file_text is None and is_result_file(text):
        return read_onnxruntime(None, text.splitlines())
    return read_onnxruntime(text.splitlines(), result_file_text.splitlines() if result_file_text is not None else None)


def read_onnxruntime(lines: Iterable[str] | None, result_lines: Iterable[str] | None = None) -> ToolMeasurement:
    """One run of ``onnxruntime_perf_test``, read once line by line: its printed summary (``lines``), its
    result file (``result_lines``), or both."""
    got = {k: Hits(rx) for k, rx in _ORT.items()}
    runs_lines, errors = Hits(_ORT_RUNS), Hits(ERRORS)
    peaks: set[int] = set()
    latencies: dict[str, str] = {}
    for line in lines or ():
        if not RELEVANT.search(line):
            continue
        for hits in (*got.values(), runs_lines, errors):
            hits.feed(line)
        peak = _ORT_PEAK.search(line)
        if peak and len(peaks) < 2:
            peaks.add(int(peak.group(1)))
        lat = _ORT_LATENCY.search(line)
        if lat:
            latencies[lat.group(1)] = lat.group(2)
    got = {k: hits.one() for k, hits in got.items()}
    if len(peaks) > 1:
        raise ToolLogError("different 'Peak working set size' lines: several runs in one log")
    units: dict[str, str] = {}
    notes: list[str] = []
    extra: dict[str, float] = {}

    samples: tuple[int, ...] = ()
    csv_peak = None
    if result_lines is not None:
        samples, csv_peak, csv_notes = _ort_result_file(result_lines)
        notes.extend(csv_notes)
        units["timed"] = "s, one result-file line per run (6 significant digits)"

    requests = int(got["requests"].group(1)) if got["requests"] else None
    if requests is None and lines is not None:
        requests = int(runs_lines.first.group(1)) if runs_lines.count == 1 else None

    aggregate = None
    if samples:
        if requests is not None and requests != len(samples):
            raise ToolLogError(f"the result file has {len(samples)} runs, the log {requests}: not the same run")
        if got["total"] and not close(sum(samples), ns(got["total"].group(1), "s", "'Total inference time cost'"),
                                      1e-4):
            raise ToolLogError("the result file's runs do not add up to the log's 'Total inference time cost': "
                               "not the same run")
    elif requests == 0:
        raise ToolLogError("'Total inference requests: 0': no run was timed" + tool_errors(errors))
    elif requests is not None and got["avg"]:
        stat = {k: ns(v, "s", f"'{k} Latency'") for k, v in latencies.items()}
        aggregate = checked(Aggregate(
            n=requests, mean_ns=ns(got["avg"].group(1), "ms", "'Average inference time cost'"),
            tool="onnxruntime_perf_test", min_ns=stat.get("Min"), max_ns=stat.get("Max"),
            percentiles={p: stat[k] for k, p in _ORT_PCT.items() if k in stat}), "the summary")
        units["timed"] = "ms, 'Average inference time cost' (the mean)"
        if latencies:
            units["timed"] += "; s, 'Min/Max/Pxx Latency' (printed with -s, 6 significant digits)"
            notes.append("Pxx latencies are the sorted run at index int(n * p), not interpolated")
        else:
            notes.append("no latency statistics (run without -s): mean only; pass --result-file for the runs")
    else:
        missing = []
        if requests is None:
            missing.append("'Total inference requests'")
        if not got["avg"]:
            missing.append("'Average inference time cost'")
        raise ToolLogError(f"no timed runs: {' and '.join(missing)} missing and no result file" + tool_errors(errors))

    first_infer_ns = None
    if got["first"]:
        first_infer_ns = ns_int(got["first"].group(1), "ms", "'First inference time cost'")
        units["first_infer"] = "whole ms (truncated by the tool), 'First inference time cost'"
        notes.append("the first inference is the tool's one warm-up run, timed to the whole millisecond")
    elif lines is not None:
        notes.append("the tool's one warm-up run is not reported by this build (no 'First inference' line)")
    else:
        notes.append("result file only: no session creation time, first inference or summary")
    init_ns = None
    if got["session"]:
        init_ns = ns_int(got["session"].group(1), "s", "'Session creation time cost'")
        units["init"] = "s, 'Session creation time cost' (model load, graph optimisation, providers)"
    wall = None
    if got["run_time"]:
        wall = ns_int(got["run_time"].group(1), "s", "'Total inference run time'")
        units["wall_runs"] = "s, 'Total inference run time'"
    if got["per_second"]:
        extra["inferences_per_s"] = float(number(got["per_second"].group(1), "'Number of inferences per second'"))
    if got["cpu"]:
        extra["cpu_usage_pct"] = float(got["cpu"].group(1))

    peak = next(iter(peaks)) if peaks else csv_peak
    if peaks and csv_peak is not None and csv_peak != peak:
        raise ToolLogError("the result file's peak working set is not the log's: not the same run")
    memory: tuple[MemoryReading, ...] = ()
    if peak is not None:
        if peak > MAX_BYTES:
            raise ToolLogError(f"'Peak working set size' is {peak} bytes: over {MAX_BYTES / 1e12:g} TB, not a phone "
                               "benchmark's figure")
        memory = (MemoryReading(method="tool_reported", peak_b=peak),)
        units["memory"] = "bytes, 'Peak working set size' (ru_maxrss * 1024 on Linux/Android: the process's peak RSS)"
    n = len(samples) if samples else aggregate.n
    return ToolMeasurement(tool="onnxruntime_perf_test", family="onnxruntime", runs=n, samples_ns=samples,
                           aggregate=aggregate, first_infer_ns=first_infer_ns, init_ns=init_ns, wall_runs_ns=wall,
                           memory=memory, units=units, extra=extra, notes=tuple(notes))


def _ort_result_file(lines: Iterable[str]) -> tuple[tuple[int, ...], int | None, list[str]]:
    """The per-run lines of a result file (``DumpToFile``): one line per timed run, ``run_index`` from 0;
    newer builds write the submit time and the total time (the run's time), older ones one time."""
    samples: list[int] = []
    notes: list[str] = []
    latencies: dict[str, str] = {}
    shapes: set[bool] = set()  # whether the lines hold two time columns
    peaks: set[int] = set()
    in_order, restarts = True, 0
    for ln in lines:
        if not ln.strip():
            continue
        lat = _ORT_LATENCY.search(ln)
        if lat:
            latencies[lat.group(1)] = lat.group(2)
            continue
        m = _ORT_CSV.match(ln)
        if not m:
            raise ToolLogError(f"a result-file line is not 'model,time_s,peak_bytes,cpu_pct,run_index': {ln[:80]!r}")
        index = int(m.group(6))
        in_order = in_order and index == len(samples)
        restarts += index == 0
        shapes.add(m.group(3) is not None)
        if len(peaks) < 2:
            peaks.add(int(m.group(4)))
        # newer builds: the total time (the run's time) is the second column
        samples.append(ns_int(m.group(3) or m.group(2), "s", f"the result file's time of run {index}"))
    if not samples:
        raise ToolLogError("the result file has no per-run lines")
    if not in_order:
        raise ToolLogError(f"the result file's run_index does not go 0..{len(samples) - 1} in order"
                           + (f" ({restarts} runs appended to one file)" if restarts > 1 else ""))
    if len(shapes) > 1:
        raise ToolLogError("the result file mixes lines with one and two time columns: several builds' runs")
    if shapes.pop():
        notes.append("result file with submit and total time per run: the total time is taken")
    if latencies:  # the same statistics the tool printed (-s), from these very runs
        ordered = sorted(samples)
        n = len(ordered)
        expect = {"Min": ordered[0], "Max": ordered[-1],
                  **{k: ordered[int(n * float(p) / 100)] for k, p in _ORT_PCT.items()}}
        for k, v in latencies.items():
            if not close(ns(v, "s", f"the result file's '{k} Latency'"), expect[k], 1e-5):
                raise ToolLogError(f"the result file's '{k} Latency: {v} s' is not its runs' {k}")
    peak = peaks.pop() if len(peaks) == 1 else None
    if peak is not None and peak > MAX_BYTES:
        raise ToolLogError(f"the result file's peak working set is {peak} bytes: over {MAX_BYTES / 1e12:g} TB")
    return tuple(samples), peak, notes


# --------------------------------------------------------------------------------------------------
# Placement: where ONNX Runtime put the graph's nodes, from its verbose log (-v)
#
# Formats: onnxruntime/core/framework/session_state.cc VerifyEachNodeIsAssignedToAnEp ("Node placements", then
# " All nodes placed on [<EP>]. Number of nodes: n" when one EP has them all, else per EP " Node(s) placed on
# [<EP>]. Number of nodes: n" and one "  <OpType> (<name>)" line per node; before PR #12276 (2022) " All nodes
# have been placed on [<EP>]."), perftest/ort_test_session.cc ("<NAME> is not supported in this build" for an
# execution provider the build was made without). On Android ONNX Runtime logs to logcat (AndroidLogSink,
# tag "onnxruntime"), elsewhere to stderr. A compiling EP (NNAPI, QNN, XNNPACK's fused kernels) is counted in
# the nodes it made: one fused node may hold many ONNX ops. Real lines: tests/fixtures/tool_logs/delegation.

_PLACEMENTS = re.compile(r"\bNode placements\b")
_ALL_PLACED = re.compile(r"All nodes (?:have been )?placed on \[(\w+)\](?:\.\s*Number of nodes: (\d+))?")
_SOME_PLACED = re.compile(r"Node\(s\) placed on \[(\w+)\]\.\s*Number of nodes: (\d+)")
_NOT_IN_BUILD = re.compile(r"(\w+) is not supported (?:in this build|on this platform)")
_NO_CPU_FALLBACK = re.compile(r"fallback to CPU EP has been explicitly disabled")


def not_in_build(text: str) -> str | None:
    """The tool's words saying the execution provider it was asked for is not in this build ("QNN is not supported
    in this build", without the file, line and function ORT_THROW puts before them), or None."""
    m = _NOT_IN_BUILD.search(text)
    return m.group(0) if m else None


def read_placements(text: str, provider: str) -> DelegateReading:
    """Where the nodes went, from one session's verbose log: ``provider`` is the execution provider asked for
    (``NnapiExecutionProvider``, ``QNNExecutionProvider``). Its node count is ``delegated_nodes``, the count
    over every provider ``total_nodes``; no placement lines at all is ``"unknown"`` (the tool was not verbose,
    or its log went elsewhere), never "not"."""
    counts: dict[str, int | None] = {}
    words: list[str] = []
    blocks = 0
    for line in text.splitlines():
        if _PLACEMENTS.search(line):
            blocks += 1
            if blocks > 1:
                break  # one session's placement; a second block is another session's
            words.append(line)
            continue
        for rx in (_ALL_PLACED, _SOME_PLACED):
            m = rx.search(line)
            if m and m.group(1) not in counts:
                counts[m.group(1)] = int(m.group(2)) if m.group(2) else None
                words.append(line)
        if _NO_CPU_FALLBACK.search(line):
            words.append(line)
    if not counts:
        return DelegateReading("unknown", words=said(words) or "no 'Node placements' lines in the tool's verbose log")
    known = [n for n in counts.values() if n is not None]
    total = sum(known) if len(known) == len(counts) else None
    if provider not in counts:
        return DelegateReading("not", 0, total, said(words))
    applied = "completely" if len(counts) == 1 else "partially"
    return DelegateReading(applied, counts[provider], total, said(words))
