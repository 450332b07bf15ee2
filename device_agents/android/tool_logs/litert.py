"""LiteRT / TFLite ``benchmark_model`` (TF 1.x to LiteRT) and LiteRT's ``benchmark_litert_model``.

The timed runs are the *bare* ``count=N first=.. curr=.. min=.. max=.. avg=.. std=..`` line printed after
the second ``Running benchmark ...`` line (the first is the warm-up's). Op profiling
(``--enable_op_profiling`` / ``--use_profiler``) adds ``Timings (microseconds): count=..`` lines: totals of
the profiled invocations (warm-up and timed together), never the timed runs. ``curr=`` is the *last* run's
time, one number, not a list (``Stat::OutputToStream`` in ``stats_calculator.h``), so the tool gives no
per-run samples: the timed runs are an :class:`Aggregate`.
"""

from __future__ import annotations

import re
from typing import Any

from device_agents.android.tool_logs.measurement import (
    NUM, ToolLogError, ToolMeasurement, close, mib_bytes, ns, ns_int, one, tool_errors,
)
from device_agents.base import Aggregate, MemoryReading

# LiteRT / TFLite benchmark_model
#
# Formats: google-ai-edge/LiteRT tflite/tools/benchmark/benchmark_model.cc (OnBenchmarkEnd, Run; the same
# code as tensorflow/lite/tools/benchmark), litert/tools/benchmark_litert_model.h (BENCHMARK RESULTS),
# tensorflow stats_calculator.h (Stat::OutputToStream, StatWithPercentiles). TFLITE_LOG prefixes "INFO: ",
# LITERT_LOG "INFO: [file:line] ", logcat "... I tflite  : "; TF 1.x printed no prefix.

# Lines only this tool prints (for telling the tools' logs apart).
MARKER = re.compile(r"Inference timings in us|Average inference timings in us|BENCHMARK RESULTS"
                    r"|Initialized session in|benchmark_litert_model|(?:^|[\s:\]])count=\d+ (?:first|curr)=")

_STAT_RE = re.compile(r"(?:^|[\s:\]])count=(\d+)(.*)$")
_KV_RE = re.compile(rf"(\w+)=({NUM})")
_RUNNING_RE = re.compile(r"Running benchmark for (?:at least )?\d+ iterations")
# With no warm-up run (--warmup_runs=0 --warmup_min_secs=0) the tool prints "First inference: 0" and
# "Warmup (avg): nan" (the empty Stat's first() and avg()).
_SUMMARY_RE = re.compile(rf"Inference timings in us:\s*Init:\s*({NUM}),\s*First inference:\s*({NUM}),"
                         rf"\s*Warmup \(avg\):\s*({NUM}|-?nan),\s*Inference \(avg\):\s*({NUM})")
_OLD_SUMMARY_RE = re.compile(r"Average inference timings in us:(.*)$")
_OLD_FIELD_RE = re.compile(rf"(Warmup|Init|no stats|Inference|with stats):\s*({NUM})")
_SESSION_RE = re.compile(rf"Initialized session in\s*({NUM})\s*ms")
_DELTA_RE = re.compile(rf"(Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
                       rf"\s*init=({NUM})\s+overall=({NUM})")
_PEAK_MONITOR_RE = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({NUM})")
_END_STATUS_RE = re.compile(r"[-+] (VmRSS|RssAnnon|RssFile \+ RssShmem)\s*:\s*(\d+) MB")
_BLOCK_RE = re.compile(r"=+ BENCHMARK RESULTS =+")
_B = {
    "init": re.compile(rf"Model initialization:\s*({NUM}) ms"),
    "warmup_first": re.compile(rf"Warmup \(first\):\s*({NUM}) ms"),
    "warmup_avg": re.compile(rf"Warmup \(avg\):\s*({NUM}) ms \((\d+) runs\)"),
    "avg": re.compile(rf"Inference \(avg\):\s*({NUM}) ms \((\d+) runs\)"),
    "min": re.compile(rf"Inference \(min\):\s*({NUM}) ms"),
    "max": re.compile(rf"Inference \(max\):\s*({NUM}) ms"),
    "std": re.compile(rf"Inference \(std\):\s*({NUM})"),
    "throughput": re.compile(rf"Throughput:\s*({NUM}) MB/s"),
    "init_fp": re.compile(rf"Init footprint:\s*({NUM}) MB"),
    "overall_fp": re.compile(rf"Overall footprint:\s*({NUM}) MB"),
    "peak": re.compile(rf"Peak memory:\s*({NUM}) MB"),
    "signature": re.compile(r"Signature name:\s*(\S+)"),
}
_PERCENTILE_KEYS = {"p5": "5", "median": "50", "p95": "95"}


def _stat(line: str) -> dict[str, Any] | None:
    """A ``count=..`` stat line's fields (values as printed), ``{"op_profiling": True}`` for the op
    profiler's ``Timings (microseconds)`` / ``Memory (bytes)`` lines, None for any other line."""
    m = _STAT_RE.search(line)
    if not m:
        return None
    head = line[:m.start(1)]
    if "Timings (microseconds)" in head or "Memory (bytes)" in head:
        return {"op_profiling": True}
    fields: dict[str, Any] = {"count": int(m.group(1)), "all_same": "(all same)" in m.group(2)}
    fields.update(_KV_RE.findall(m.group(2)))
    return fields


def _stat_value(s: dict[str, Any], key: str) -> str | None:
    """avg / first / min / max of a stat line; in the all-same form (``count=N curr=V``) they are all V."""
    if key in s:
        return s[key]
    if "avg" not in s and "curr" in s and key in ("avg", "first", "min", "max"):
        return s["curr"]
    return None


def _stat_aggregate(s: dict[str, Any], tool: str) -> Aggregate | None:
    if s["count"] == 0:
        return None
    mean, lo, hi = (_stat_value(s, k) for k in ("avg", "min", "max"))
    std = s.get("std", "0" if "avg" not in s else None)  # all same: every run took the same time
    return Aggregate(n=s["count"], mean_ns=ns(mean, "us"), tool=tool,
                     std_ns=ns(std, "us") if std is not None else None,
                     min_ns=ns(lo, "us"), max_ns=ns(hi, "us"),
                     percentiles={p: ns(s[k], "us") for k, p in _PERCENTILE_KEYS.items() if k in s})


def parse_litert(text: str) -> ToolMeasurement:
    """One run of ``benchmark_model`` (TF 1.x to LiteRT) or ``benchmark_litert_model``."""
    lines = text.splitlines()
    for rx, what in ((_SESSION_RE, "'Initialized session in'"), (_BLOCK_RE, "'BENCHMARK RESULTS'")):
        if sum(1 for ln in lines if rx.search(ln)) > 1:
            raise ToolLogError(f"{what} appears more than once: the log holds several runs; "
                               "import one run per file")
    if sum(1 for ln in lines if _SUMMARY_RE.search(ln) or _OLD_SUMMARY_RE.search(ln)) > 1:
        raise ToolLogError("the 'Inference timings in us' summary appears more than once: the log holds "
                           "several runs; import one run per file")

    stats, op_profiling = [], 0
    for ln in lines:
        s = _stat(ln)
        if s is None:
            continue
        if s.get("op_profiling"):
            op_profiling += 1
        else:
            stats.append(s)

    summary = one(_SUMMARY_RE, lines)
    old = one(_OLD_SUMMARY_RE, lines)
    old_fields = dict(_OLD_FIELD_RE.findall(old.group(1))) if old else {}
    session = one(_SESSION_RE, lines)
    block = {k: one(rx, lines) for k, rx in _B.items()} if any(_BLOCK_RE.search(ln) for ln in lines) else {}
    is_litert_tool = bool(block) or any("benchmark_litert_model" in ln for ln in lines)
    tool = "benchmark_litert_model" if is_litert_tool else "benchmark_model"

    # The timed runs' mean as the summary states it, to tell which stat line is which.
    if summary:
        summary_infer = summary.group(4)
    else:
        summary_infer = old_fields.get("no stats") or old_fields.get("Inference")
    summary_warmup = summary.group(3) if summary else old_fields.get("Warmup")
    block_runs = int(block["avg"].group(2)) if block.get("avg") else None
    block_warmup_runs = int(block["warmup_avg"].group(2)) if block.get("warmup_avg") else None

    warm_stat = timed_stat = None
    if len(stats) > 2:
        raise ToolLogError(f"{len(stats)} 'count=' stat lines where one run prints two (warm-up, timed "
                           "runs): the log holds several runs; import one run per file")
    if len(stats) == 2:
        warm_stat, timed_stat = stats
    elif len(stats) == 1:
        only = stats[0]
        role = _role_of_only_stat(only, summary_infer, summary_warmup, block_runs, block_warmup_runs)
        if role == "timed":
            timed_stat = only
        elif role == "warmup":  # the timed runs' figures are then the summary's (printed after them)
            warm_stat = only
        else:
            raise ToolLogError(f"one 'count={only['count']} ...' stat line and no summary line to tell whether "
                               "it is the warm-up or the timed runs")

    units: dict[str, str] = {}
    notes: list[str] = []
    aggregate: Aggregate | None = None
    if timed_stat is not None:
        aggregate = _stat_aggregate(timed_stat, tool)
        if aggregate is None:
            raise ToolLogError("the timed runs' stat line says count=0: no run was timed" + tool_errors(lines))
        units["timed"] = "us, stat line 'count=.. avg=.. std=..' of the timed runs"
        notes.append("avg is printed with 6 significant digits and std truncated to whole us by the tool")
        if "avg" not in timed_stat:
            notes.append(f"all {aggregate.n} timed runs took the same time (the tool printed only 'curr=')")
        _check_against_summaries(aggregate, summary_infer, block, block_runs)
    elif block.get("avg"):
        b = block
        aggregate = Aggregate(n=int(b["avg"].group(2)), mean_ns=ns(b["avg"].group(1), "ms"), tool=tool,
                              std_ns=ns(b["std"].group(1), "ms") if b.get("std") else None,
                              min_ns=ns(b["min"].group(1), "ms") if b.get("min") else None,
                              max_ns=ns(b["max"].group(1), "ms") if b.get("max") else None)
        units["timed"] = "ms rounded to 0.01 (std: ms, unit not printed), BENCHMARK RESULTS block"
        notes.append("the timed runs are known only to 0.01 ms (no 'count=' stat line in the log)")
    elif summary_infer is not None:
        # The summary line alone (what some published logs keep): the timed runs' mean, nothing else. How many
        # runs it averages is not printed: unknown, never guessed; no spread, min or max either.
        aggregate = Aggregate(n=None, mean_ns=ns(summary_infer, "us"), tool=tool)
        units["timed"] = ("us, the summary's '" + ("Inference (avg)" if summary else "Average inference timings")
                          + "' (the mean only)")
        notes.append("summary only: the timed runs' mean, without their number (unknown, not guessed), spread, "
                     "min or max (no 'count=' stat line in the log)")
    else:
        missing = ("no statistics of the timed runs: neither a 'count=N ... avg=..' stat line after the "
                   "second 'Running benchmark', nor a BENCHMARK RESULTS block, nor the 'Inference timings in us' "
                   "summary")
        if op_profiling:
            missing += ("; the 'Timings (microseconds): count=..' lines are op-profiling totals, "
                        "not the timed runs")
        raise ToolLogError(missing + tool_errors(lines))

    if warm_stat is not None and not any(_RUNNING_RE.search(ln) for ln in lines):
        notes.append("no 'Running benchmark' lines: the first stat line is taken as the warm-up's by its order")
    if op_profiling:
        notes.append("op profiling was on (it adds overhead to every timed run); its 'Timings (microseconds)' "
                     "lines were not read as the timed runs")

    # First inference: the first warm-up run (none when the warm-up ran no run).
    first_infer_ns = None
    if warm_stat is not None and warm_stat["count"] == 0:
        notes.append("no warm-up run (count=0): the first inference is the first timed run, not kept apart")
    elif warm_stat is None and summary_warmup is not None and "nan" in summary_warmup.lower():
        notes.append("no warm-up run ('Warmup (avg): nan'): the first inference is the first timed run, "
                     "not kept apart")
    elif summary:
        first_infer_ns = ns_int(summary.group(2), "us")
        units["first_infer"] = "us, 'Inference timings in us: First inference'"
    elif warm_stat is not None and _stat_value(warm_stat, "first") is not None:
        first_infer_ns = ns_int(_stat_value(warm_stat, "first"), "us")
        units["first_infer"] = "us, 'first=' of the warm-up's stat line"
    elif block.get("warmup_first"):
        first_infer_ns = ns_int(block["warmup_first"].group(1), "ms")
        units["first_infer"] = "ms rounded to 0.01, BENCHMARK RESULTS 'Warmup (first)'"

    warmup = None
    if warm_stat is not None:
        warmup = _stat_aggregate(warm_stat, tool)
        units["warmup"] = "us, the warm-up's stat line"
    elif block.get("warmup_avg"):
        warmup = Aggregate(n=int(block["warmup_avg"].group(2)), mean_ns=ns(block["warmup_avg"].group(1), "ms"),
                           tool=tool)
        units["warmup"] = "ms rounded to 0.01, BENCHMARK RESULTS 'Warmup (avg)'"
    elif summary_warmup is not None and "nan" not in summary_warmup.lower():
        warmup = Aggregate(n=None, mean_ns=ns(summary_warmup, "us"), tool=tool)
        units["warmup"] = "us, the summary's 'Warmup (avg)' (the mean only: the number of warm-up runs is not printed)"

    init_ns = None
    if summary:
        init_ns, units["init"] = ns_int(summary.group(1), "us"), "us, 'Inference timings in us: Init'"
    elif "Init" in old_fields:
        init_ns, units["init"] = ns_int(old_fields["Init"], "us"), "us, 'Average inference timings in us: Init'"
    elif session:
        init_ns, units["init"] = ns_int(session.group(1), "ms"), "ms, 'Initialized session in'"
    elif block.get("init"):
        init_ns, units["init"] = ns_int(block["init"].group(1), "ms"), "ms rounded to 0.01, 'Model initialization'"
    if init_ns is not None:
        units["init"] += " (model load, interpreter or compiled model, delegates, tensor allocation)"

    memory, mem_unit, mem_notes = _litert_memory(lines, block)
    if mem_unit:
        units["memory"] = mem_unit
    notes.extend(mem_notes)

    extra = {}
    if block.get("throughput"):
        extra["throughput_mb_per_s"] = float(block["throughput"].group(1))
    if block.get("signature"):
        notes.append(f"signature run: {block['signature'].group(1)}")
    return ToolMeasurement(tool=tool, family="litert", runs=aggregate.n, aggregate=aggregate,
                           first_infer_ns=first_infer_ns, warmup=warmup, init_ns=init_ns, memory=memory,
                           units=units, extra=extra, notes=tuple(notes))


def _role_of_only_stat(s: dict[str, Any], summary_infer: str | None, summary_warmup: str | None,
                       block_runs: int | None, block_warmup_runs: int | None) -> str | None:
    """Whether a log's only stat line is the timed runs' or the warm-up's, from what the summaries say."""
    if block_runs is not None and (s["count"] == block_runs) != (s["count"] == block_warmup_runs):
        return "timed" if s["count"] == block_runs else "warmup"
    avg = _stat_value(s, "avg")
    if avg is None:
        return None
    is_timed = summary_infer is not None and close(float(avg), float(summary_infer), 1e-5)
    is_warm = summary_warmup is not None and close(float(avg), float(summary_warmup), 1e-5)
    if is_timed != is_warm:
        return "timed" if is_timed else "warmup"
    return None


def _check_against_summaries(agg: Aggregate, summary_infer: str | None, block: dict, block_runs: int | None
                             ) -> None:
    """The stat line taken as the timed runs must be the one the summaries describe."""
    if summary_infer is not None and not close(agg.mean_ns, ns(summary_infer, "us"), 1e-5):
        raise ToolLogError(f"the timed runs' stat line (avg {agg.mean_ns / 1e3:g} us) is not the summary's "
                           f"'Inference (avg): {summary_infer}': the lines do not belong together")
    if block_runs is not None and block_runs != agg.n:
        raise ToolLogError(f"the timed runs' stat line counts {agg.n} runs, BENCHMARK RESULTS {block_runs}")
    if block.get("avg") and abs(agg.mean_ns - ns(block["avg"].group(1), "ms")) > 0.0051e6:
        raise ToolLogError("the timed runs' stat line and BENCHMARK RESULTS disagree on the mean")


def _litert_memory(lines: list[str], block: dict) -> tuple[tuple[MemoryReading, ...], str, list[str]]:
    """The tool's memory figures as one reading: deltas of ru_maxrss from the tool's start (init, overall),
    the peak of periodic monitoring (an absolute ru_maxrss), the RSS split at the end."""
    delta = one(_DELTA_RE, lines)
    monitor = one(_PEAK_MONITOR_RE, lines)
    detail: dict[str, int] = {}
    notes: list[str] = []
    units = []
    if delta:
        detail["init_delta_b"] = mib_bytes(delta.group(2))
        detail["overall_delta_b"] = mib_bytes(delta.group(3))
        units.append(f"MB (2^20 bytes), '{delta.group(1)} (MB)' line, 6 significant digits")
        if delta.group(1) == "Peak memory footprint":
            notes.append("'Peak memory footprint (MB): init= overall=' (TFLite <= 2.4 wording) is, like its "
                         "later name 'Memory footprint delta', the growth of ru_maxrss since the tool started")
    elif block.get("init_fp") or block.get("overall_fp"):
        if block.get("init_fp"):
            detail["init_delta_b"] = mib_bytes(block["init_fp"].group(1))
        if block.get("overall_fp"):
            detail["overall_delta_b"] = mib_bytes(block["overall_fp"].group(1))
        units.append("MB (2^20 bytes) rounded to 0.01, BENCHMARK RESULTS 'Init/Overall footprint'")
    peak_b = None
    if monitor:
        peak_b = mib_bytes(monitor.group(1))
        units.append("peak: MB, 'Overall peak memory footprint (MB) via periodic monitoring' (absolute ru_maxrss)")
    elif block.get("peak"):
        peak_b = mib_bytes(block["peak"].group(1))
        units.append("peak: MB rounded to 0.01, BENCHMARK RESULTS 'Peak memory'")
    names = {"VmRSS": "end_vmrss_b", "RssAnnon": "end_rss_anon_b", "RssFile + RssShmem": "end_rss_file_shmem_b"}
    for name, mb in (m.groups() for m in map(_END_STATUS_RE.search, lines) if m):
        detail[names[name]] = int(mb) << 20
    if any(k.startswith("end_") for k in detail):
        units.append("end_*: whole MB (truncated), 'Memory status at the end of exeution'")
    if not detail and peak_b is None:
        return (), "", ["no memory lines (the tool prints none where its memory reading is unsupported)"]
    if detail.get("overall_delta_b") is not None or detail.get("init_delta_b") is not None:
        notes.append("the tool's memory figures are deltas from its own start (it says: only APPROXIMATE); "
                     "they are in the reading's detail (init_delta_b, overall_delta_b), with no baseline")
    # Without a baseline, the tool's growth since its start is the model memory it reports (named by the method).
    return (MemoryReading(method="tool_reported", peak_b=peak_b, growth_b=detail.get("overall_delta_b"),
                          detail=detail),), "; ".join(units), notes

