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
from typing import Any, Iterable

from device_agents.android.tool_logs.measurement import (
    ERROR_WORDS, ERRORS, NUM, PRINTED_REL, DelegateReading, Hits, ToolLogError, ToolMeasurement, any_of, checked, close,
    mib_bytes, ns, ns_int, number, said, tool_errors,
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
_KV_RE = re.compile(r"(\w+)=(\S+)")  # every value as printed: checked where it is used, never skipped
_RUNNING_RE = re.compile(r"Running benchmark for (?:at least )?\d+ iterations")
# With no warm-up run (--warmup_runs=0 --warmup_min_secs=0) the tool prints "First inference: 0" and
# "Warmup (avg): nan" (the empty Stat's first() and avg()).
_SUMMARY_RE = re.compile(rf"Inference timings in us:\s*Init:\s*({NUM}),\s*First inference:\s*({NUM}),"
                         rf"\s*Warmup \(avg\):\s*({NUM}),\s*Inference \(avg\):\s*({NUM})")
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
_ALL_SAME_EXCLUDES = {"avg", "min", "max", "first", "std"}
_END_NAMES = {"VmRSS": "end_vmrss_b", "RssAnnon": "end_rss_anon_b", "RssFile + RssShmem": "end_rss_file_shmem_b"}

# Every line a pattern of this reader can match holds one of these words: the reader skips the others
# (most of a long CI log) without running its patterns on them.
KEYWORDS = ("count=", "Running benchmark", "timings in us", "Initialized session", "footprint", "VmRSS", "RssAnnon",
            "RssFile", "BENCHMARK RESULTS", "Model initialization", "Warmup (", "Inference (", "Throughput:",
            "Peak memory:", "Signature name:", "benchmark_litert_model", *ERROR_WORDS)
RELEVANT = any_of(KEYWORDS)
MARKER_WORDS = ("timings in us", "BENCHMARK RESULTS", "Initialized session", "benchmark_litert_model", "count=")
PATTERNS = (_STAT_RE, _RUNNING_RE, _SUMMARY_RE, _OLD_SUMMARY_RE, _SESSION_RE, _DELTA_RE, _PEAK_MONITOR_RE,
            _END_STATUS_RE, _BLOCK_RE, *_B.values(), ERRORS)


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


def _all_same(s: dict[str, Any]) -> bool:
    """The form a Stat prints when every run took the same time: ``count=N curr=V`` (no avg, min, max)."""
    return "curr" in s and not (_ALL_SAME_EXCLUDES & s.keys())


def _printed_key(s: dict[str, Any], key: str) -> str:
    """Where a stat line prints ``key``: in the all-same form (``count=N curr=V``) avg, first, min and max
    are all ``curr=``."""
    return "curr" if key not in s and _all_same(s) and key in ("avg", "first", "min", "max") else key


def _stat_value(s: dict[str, Any], key: str) -> str | None:
    """avg / first / min / max of a stat line as printed (see :func:`_printed_key`); None when absent."""
    return s.get(_printed_key(s, key))


def _stat_aggregate(s: dict[str, Any], tool: str, whose: str) -> Aggregate | None:
    if s["count"] == 0:
        return None
    line = f"the {whose} stat line"
    if not _all_same(s):
        absent = [k for k in ("avg", "min", "max") if k not in s]
        if absent:  # the mean is never taken from curr= (the last run) when the line is not the all-same form
            raise ToolLogError(f"{line} (count={s['count']}) has no {'/'.join(k + '=' for k in absent)}: "
                               "it is cut or not benchmark_model's")

    def us(key: str) -> float:
        return ns(_stat_value(s, key), "us", f"{_printed_key(s, key)}= of {line}")

    mean, lo, hi = us("avg"), us("min"), us("max")
    std = us("std") if "std" in s else (0.0 if _all_same(s) else None)  # all same: every run took the same time
    return checked(Aggregate(n=s["count"], mean_ns=mean, tool=tool, std_ns=std, min_ns=lo, max_ns=hi,
                             percentiles={p: us(k) for k, p in _PERCENTILE_KEYS.items() if k in s}), line)


class _Scan:
    """What one pass over a benchmark_model log keeps: counts and first matches, at most three stat lines."""

    def __init__(self) -> None:
        self.session, self.block, self.running = Hits(_SESSION_RE), Hits(_BLOCK_RE), Hits(_RUNNING_RE)
        self.summary, self.old = Hits(_SUMMARY_RE), Hits(_OLD_SUMMARY_RE)
        self.fields = {k: Hits(rx) for k, rx in _B.items()}
        self.delta, self.monitor, self.errors = Hits(_DELTA_RE), Hits(_PEAK_MONITOR_RE), Hits(ERRORS)
        self.stats: list[dict[str, Any]] = []
        self.n_stats = self.op_profiling = 0
        self.end_status: dict[str, int] = {}
        self.litert_tool = False

    def feed(self, line: str) -> None:
        if not RELEVANT.search(line):
            return
        for hits in (self.session, self.block, self.running, self.summary, self.old, self.delta, self.monitor,
                     self.errors, *self.fields.values()):
            hits.feed(line)
        s = _stat(line) if "count=" in line else None
        if s is not None and s.get("op_profiling"):
            self.op_profiling += 1
        elif s is not None:
            self.n_stats += 1
            if len(self.stats) < 3:
                self.stats.append(s)
        end = _END_STATUS_RE.search(line)
        if end:  # the last of each, as the tool prints it once
            self.end_status[_END_NAMES[end.group(1)]] = int(end.group(2))
        self.litert_tool = self.litert_tool or "benchmark_litert_model" in line


def parse_litert(text: str) -> ToolMeasurement:
    """One run of ``benchmark_model`` (TF 1.x to LiteRT) or ``benchmark_litert_model``."""
    return read_litert(text.splitlines())


def read_litert(lines: Iterable[str]) -> ToolMeasurement:
    """One run of ``benchmark_model`` or ``benchmark_litert_model``, its log read once, line by line."""
    scan = _Scan()
    for line in lines:
        scan.feed(line)
    for hits, what in ((scan.session, "'Initialized session in'"), (scan.block, "'BENCHMARK RESULTS'")):
        if hits.count > 1:
            raise ToolLogError(f"{what} appears more than once: the log holds several runs; "
                               "import one run per file")
    if scan.summary.count + scan.old.count > 1:
        raise ToolLogError("the 'Inference timings in us' summary appears more than once: the log holds "
                           "several runs; import one run per file")
    stats, op_profiling, errors = scan.stats, scan.op_profiling, tool_errors(scan.errors)

    summary = scan.summary.one()
    old = scan.old.one()
    old_fields = dict(_OLD_FIELD_RE.findall(old.group(1))) if old else {}
    session = scan.session.one()
    block = {k: hits.one() for k, hits in scan.fields.items()} if scan.block.count else {}
    tool = "benchmark_litert_model" if block or scan.litert_tool else "benchmark_model"

    # The summary's figures, checked before they are used to tell the stat lines apart. "Warmup (avg): nan"
    # is what the tool prints when no warm-up ran; any other nan, inf or negative figure is refused.
    if summary:
        summary_init, summary_first, summary_warmup, summary_infer = summary.groups()
    else:
        summary_init, summary_first = old_fields.get("Init"), None
        summary_warmup = old_fields.get("Warmup")
        summary_infer = old_fields.get("no stats") or old_fields.get("Inference")
    for value, what in ((summary_init, "Init"), (summary_first, "First inference"), (summary_infer, "Inference (avg)"),
                        (summary_warmup, "Warmup (avg)")):
        if value is not None and not (what == "Warmup (avg)" and value.lstrip("+-").lower() == "nan"):
            number(value, f"'{what}' of the 'Inference timings in us' summary")
    block_runs = int(block["avg"].group(2)) if block.get("avg") else None
    block_warmup_runs = int(block["warmup_avg"].group(2)) if block.get("warmup_avg") else None

    warm_stat = timed_stat = None
    if scan.n_stats > 2:
        raise ToolLogError(f"{scan.n_stats} 'count=' stat lines where one run prints two (warm-up, timed "
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
        aggregate = _stat_aggregate(timed_stat, tool, "timed runs'")
        if aggregate is None:
            raise ToolLogError("the timed runs' stat line says count=0: no run was timed" + errors)
        units["timed"] = "us, stat line 'count=.. avg=.. std=..' of the timed runs"
        notes.append("avg is printed with 6 significant digits and std truncated to whole us by the tool")
        if _all_same(timed_stat):
            notes.append(f"all {aggregate.n} timed runs took the same time (the tool printed only 'curr=')")
        _check_against_summaries(aggregate, summary_infer, block, block_runs)
    elif block.get("avg"):
        def ms(key: str) -> float | None:
            return ns(block[key].group(1), "ms", f"BENCHMARK RESULTS 'Inference ({key})'") if block.get(key) else None

        aggregate = checked(Aggregate(n=int(block["avg"].group(2)), mean_ns=ms("avg"), tool=tool, std_ns=ms("std"),
                                      min_ns=ms("min"), max_ns=ms("max")), "BENCHMARK RESULTS")
        units["timed"] = "ms rounded to 0.01 (std: ms, unit not printed), BENCHMARK RESULTS block"
        notes.append("the timed runs are known only to 0.01 ms (no 'count=' stat line in the log)")
    elif summary_infer is not None:
        # The summary line alone (what some published logs keep): the timed runs' mean, nothing else. How many
        # runs it averages is not printed: unknown, never guessed; no spread, min or max either.
        aggregate = Aggregate(n=None, mean_ns=ns(summary_infer, "us", "'Inference (avg)' of the summary"), tool=tool)
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
        raise ToolLogError(missing + errors)

    if warm_stat is not None and not scan.running.count:
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
        first_infer_ns = ns_int(summary_first, "us", "'First inference' of the summary")
        units["first_infer"] = "us, 'Inference timings in us: First inference'"
    elif warm_stat is not None and _stat_value(warm_stat, "first") is not None:
        first_infer_ns = ns_int(_stat_value(warm_stat, "first"), "us",
                                f"{_printed_key(warm_stat, 'first')}= of the warm-up's stat line")
        units["first_infer"] = "us, 'first=' of the warm-up's stat line"
    elif block.get("warmup_first"):
        first_infer_ns = ns_int(block["warmup_first"].group(1), "ms", "BENCHMARK RESULTS 'Warmup (first)'")
        units["first_infer"] = "ms rounded to 0.01, BENCHMARK RESULTS 'Warmup (first)'"

    warmup = None
    if warm_stat is not None:
        warmup = _stat_aggregate(warm_stat, tool, "warm-up's")
        units["warmup"] = "us, the warm-up's stat line"
    elif block.get("warmup_avg"):
        warmup = Aggregate(n=int(block["warmup_avg"].group(2)), tool=tool,
                           mean_ns=ns(block["warmup_avg"].group(1), "ms", "BENCHMARK RESULTS 'Warmup (avg)'"))
        units["warmup"] = "ms rounded to 0.01, BENCHMARK RESULTS 'Warmup (avg)'"
    elif summary_warmup is not None and "nan" not in summary_warmup.lower():
        warmup = Aggregate(n=None, mean_ns=ns(summary_warmup, "us", "'Warmup (avg)' of the summary"), tool=tool)
        units["warmup"] = "us, the summary's 'Warmup (avg)' (the mean only: the number of warm-up runs is not printed)"

    init_ns = None
    if summary_init is not None:
        init_ns = ns_int(summary_init, "us", "'Init' of the summary")
        units["init"] = f"us, '{'Inference' if summary else 'Average inference'} timings in us: Init'"
    elif session:
        init_ns = ns_int(session.group(1), "ms", "'Initialized session in'")
        units["init"] = "ms, 'Initialized session in'"
    elif block.get("init"):
        init_ns = ns_int(block["init"].group(1), "ms", "BENCHMARK RESULTS 'Model initialization'")
        units["init"] = "ms rounded to 0.01, 'Model initialization'"
    if init_ns is not None:
        units["init"] += " (model load, interpreter or compiled model, delegates, tensor allocation)"

    memory, mem_unit, mem_notes = _litert_memory(scan, block)
    if mem_unit:
        units["memory"] = mem_unit
    notes.extend(mem_notes)

    extra = {}
    if block.get("throughput"):
        extra["throughput_mb_per_s"] = float(number(block["throughput"].group(1), "BENCHMARK RESULTS 'Throughput'"))
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
    try:
        value = float(avg)
    except ValueError:
        return None  # not a number: refused with its name when the line is read
    is_timed = summary_infer is not None and close(value, float(summary_infer), PRINTED_REL)
    is_warm = summary_warmup is not None and close(value, float(summary_warmup), PRINTED_REL)
    if is_timed != is_warm:
        return "timed" if is_timed else "warmup"
    return None


def _check_against_summaries(agg: Aggregate, summary_infer: str | None, block: dict, block_runs: int | None
                             ) -> None:
    """The stat line taken as the timed runs must be the one the summaries describe."""
    if summary_infer is not None and not close(agg.mean_ns, ns(summary_infer, "us", "'Inference (avg)'"), PRINTED_REL):
        raise ToolLogError(f"the timed runs' stat line (avg {agg.mean_ns / 1e3:g} us) is not the summary's "
                           f"'Inference (avg): {summary_infer}': the lines do not belong together")
    if block_runs is not None and block_runs != agg.n:
        raise ToolLogError(f"the timed runs' stat line counts {agg.n} runs, BENCHMARK RESULTS {block_runs}")
    if block.get("avg") and abs(agg.mean_ns - ns(block["avg"].group(1), "ms", "BENCHMARK RESULTS 'Inference (avg)'")
                                ) > 0.0051e6:
        raise ToolLogError("the timed runs' stat line and BENCHMARK RESULTS disagree on the mean")


def _litert_memory(scan: _Scan, block: dict) -> tuple[tuple[MemoryReading, ...], str, list[str]]:
    """The tool's memory figures as one reading: deltas of ru_maxrss from the tool's start (init, overall),
    the peak of periodic monitoring (an absolute ru_maxrss), the RSS split at the end."""
    delta = scan.delta.one()
    monitor = scan.monitor.one()
    detail: dict[str, int] = {}
    notes: list[str] = []
    units = []
    if delta:
        detail["init_delta_b"] = mib_bytes(delta.group(2), f"init= of '{delta.group(1)}'")
        detail["overall_delta_b"] = mib_bytes(delta.group(3), f"overall= of '{delta.group(1)}'")
        units.append(f"MB (2^20 bytes), '{delta.group(1)} (MB)' line, 6 significant digits")
        if delta.group(1) == "Peak memory footprint":
            notes.append("'Peak memory footprint (MB): init= overall=' (TFLite <= 2.4 wording) is, like its "
                         "later name 'Memory footprint delta', the growth of ru_maxrss since the tool started")
    elif block.get("init_fp") or block.get("overall_fp"):
        if block.get("init_fp"):
            detail["init_delta_b"] = mib_bytes(block["init_fp"].group(1), "BENCHMARK RESULTS 'Init footprint'")
        if block.get("overall_fp"):
            detail["overall_delta_b"] = mib_bytes(block["overall_fp"].group(1), "BENCHMARK RESULTS 'Overall footprint'")
        units.append("MB (2^20 bytes) rounded to 0.01, BENCHMARK RESULTS 'Init/Overall footprint'")
    peak_b = None
    if monitor:
        peak_b = mib_bytes(monitor.group(1), "'Overall peak memory footprint'")
        units.append("peak: MB, 'Overall peak memory footprint (MB) via periodic monitoring' (absolute ru_maxrss)")
    elif block.get("peak"):
        peak_b = mib_bytes(block["peak"].group(1), "BENCHMARK RESULTS 'Peak memory'")
        units.append("peak: MB rounded to 0.01, BENCHMARK RESULTS 'Peak memory'")
    for key, mb in scan.end_status.items():
        detail[key] = mb << 20
    if scan.end_status:
        units.append("end_*: whole MB (truncated), 'Memory status at the end of exeution'")
    if not detail and peak_b is None:
        return (), "", ["no memory lines (the tool prints none where its memory reading is unsupported)"]
    if detail.get("overall_delta_b") is not None or detail.get("init_delta_b") is not None:
        notes.append("the tool's memory figures are deltas from its own start (it says: only APPROXIMATE); "
                     "they are in the reading's detail (init_delta_b, overall_delta_b), with no baseline")
    # Without a baseline, the tool's growth since its start is the model memory it reports (named by the method).
    return (MemoryReading(method="tool_reported", peak_b=peak_b, growth_b=detail.get("overall_delta_b"),
                          detail=detail),), "; ".join(units), notes


# --------------------------------------------------------------------------------------------------
# Delegation: what benchmark_model says about the delegate it was asked for
#
# Formats (google-ai-edge/LiteRT @ f674577): benchmark_tflite_model.cc after ModifyGraphWithDelegate
# ("Explicitly applied <NAME> delegate, and the model graph will be completely|partially executed by the
# delegate[ w/ K delegate kernels]." / "Though <NAME> delegate is explicitly applied, the model graph will not
# be executed by the delegate." / "Failed to apply <NAME> delegate."; TF 2.1-2.2 printed "Applied <NAME>
# delegate, and the model graph will be ... executed w/ the delegate."), tflite/core/subgraph.cc ("Replacing
# N out of M node(s) with delegate (<kernel>) node, yielding P partitions ...", always logged on Android),
# the GPU delegate ("a operations will run on the GPU, and the remaining b operations will run on the CPU.";
# older "First a operations will run on the GPU, and the remaining b on the CPU."), the delegate providers
# ("<NAME> acceleration is unsupported on this platform."). Real lines: tests/fixtures/tool_logs/delegation.

_APPLIED = re.compile(r"(?:Explicitly applied|\bApplied) (\w+) delegate(?:, and the model graph will be "
                      r"(completely|partially) executed (?:by|w/) the delegate(?: w/ (\d+) delegate kernels)?)?")
_NOT_APPLIED = re.compile(r"Though (\w+) delegate is explicitly applied, the model graph will not be executed")
_FAILED_APPLY = re.compile(r"Failed to apply (\w+) delegate")
_REPLACING = re.compile(r"Replacing (\d+) (?:out of (\d+) )?node\(s\) with delegate \((\w+)\) node")
_GPU_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+)(?: operations will run)? "
                        r"on the CPU")
_NOT_HERE = re.compile(r"(\w+) acceleration is unsupported on this platform")
_GPU_UNSUPPORTED_OPS = re.compile(r"Following operations are not supported by GPU delegate")
_NO_FALLBACK = re.compile(r"Disallowed CPU fallback detected|Some ops are not accelerated")
# The kernel name a delegate's nodes carry in the "Replacing" line (tflite/delegates/*/delegate.cc).
KERNELS = {"GPU": ("TfLiteGpuDelegateV2", "TfLiteGpuDelegate"), "NNAPI": ("TfLiteNnapiDelegate",),
           "XNNPACK": ("TfLiteXNNPackDelegate",)}
DELEGATION_WORDS = ("applied", "Applied", "Failed to apply", "Replacing", "operations will run on the GPU",
                    "acceleration is unsupported", "not supported by GPU delegate", "Disallowed CPU fallback",
                    "Some ops are not accelerated")


def read_delegation(text: str, delegate: str, *, requested: bool = True) -> DelegateReading:
    """What one run's output says about ``delegate`` (the provider's name as the tool prints it: ``GPU``,
    ``NNAPI``, ``XNNPACK``). ``requested``: the run was asked for it, so a run that names no application of it
    applied it ``"not"`` (the tool prints one of its three lines for every delegate it created; a delegate
    it could not create, it skips, saying at most "<NAME> acceleration is unsupported on this platform");
    otherwise (a default delegate read for information) silence is ``"unknown"``."""
    kernels = KERNELS.get(delegate, ())
    tests = {  # what to keep: the first line each says, when it is about this delegate
        "applied": (_APPLIED, lambda m: m.group(1) == delegate),
        "not": (_NOT_APPLIED, lambda m: m.group(1) == delegate),
        "failed": (_FAILED_APPLY, lambda m: m.group(1) == delegate),
        "replacing": (_REPLACING, lambda m: m.group(3) in kernels),  # the first: the whole graph as it took it
        "gpu_split": (_GPU_SPLIT, lambda m: delegate == "GPU"),
        "not_here": (_NOT_HERE, lambda m: m.group(1) == delegate),
        "gpu_ops": (_GPU_UNSUPPORTED_OPS, lambda m: delegate == "GPU"),
        "no_fallback": (_NO_FALLBACK, lambda m: True),
    }
    first: dict[str, re.Match[str]] = {}
    words: list[str] = []
    for line in text.splitlines():
        if not any(w in line for w in DELEGATION_WORDS):
            continue
        for name, (rx, about) in tests.items():
            m = rx.search(line)
            if m and about(m) and name not in first and not (name == "applied" and "Though" in line):
                first[name] = m
                words.append(line)
    applied, not_applied, failed = first.get("applied"), first.get("not"), first.get("failed")
    replacing, gpu_split = first.get("replacing"), first.get("gpu_split")
    done, total = None, None
    if replacing is not None:
        done, total = int(replacing.group(1)), int(replacing.group(2)) if replacing.group(2) else None
    elif gpu_split is not None:
        done = int(gpu_split.group(1))
        total = done + int(gpu_split.group(2))
    by_count = None
    if done is not None and total is not None:
        by_count = "not" if done == 0 else "completely" if done == total else "partially"
    if failed is not None:
        return DelegateReading("not", done, total, said(words), refused=True)
    if not_applied is not None:
        return DelegateReading("not", done, total, said(words))
    if applied is not None:
        return DelegateReading(applied.group(2) or by_count or "unknown", done, total, said(words))
    if by_count is not None:
        return DelegateReading(by_count, done, total, said(words))
    if not requested:
        return DelegateReading("unknown", done, total, said(words))
    why = words or [f"no 'Explicitly applied {delegate} delegate' line: the tool applied no {delegate} delegate"]
    return DelegateReading("not", done, total, said(why))
