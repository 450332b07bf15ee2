"""Readers of the logs of the on-device benchmark tools: LiteRT/TFLite ``benchmark_model`` (and LiteRT's
``benchmark_litert_model``), ONNX Runtime's ``onnxruntime_perf_test`` and ExecuTorch's ``executor_runner``.

Each reader turns one run of one tool into a :class:`ToolMeasurement`: what the log says and nothing more,
times in nanoseconds and memory in bytes, with the unit each figure had in the log named in ``units``.
``splitbench import-log`` uses it for old measurements; the Android agent uses it on the tools' output.

What is never done here: a figure the log does not print is not computed from others (a missing run count
stays missing, so a summary without one is refused), a tool's aggregate is never expanded into samples, and
a log whose lines do not agree with each other (two runs, a stat line that is not the summary's) is
refused. A log that cannot be read raises :class:`ToolLogError`, one line naming what is missing.

Where each reading comes from (the formats are in ``shared/research/android.md`` sections 1-3, the sources
cited per reader below):

- LiteRT/TFLite: the timed runs are the *bare* ``count=N first=.. curr=.. min=.. max=.. avg=.. std=..``
  line printed after the second ``Running benchmark ...`` line (the first is the warm-up's). Op profiling
  (``--enable_op_profiling`` / ``--use_profiler``) adds ``Timings (microseconds): count=..`` lines: totals
  of the profiled invocations (warm-up and timed together), never the timed runs. ``curr=`` is the *last*
  run's time, one number, not a list (``Stat::OutputToStream`` in ``stats_calculator.h``), so the tool
  gives no per-run samples: the timed runs are an :class:`Aggregate`.
- onnxruntime_perf_test: the summary gives an aggregate; its result file (``--result-file``) gives one CSV
  line per timed run (``PerformanceResult::DumpToFile``): those are samples. Its one warm-up run is the
  ``First inference time cost`` (whole milliseconds).
- executor_runner: ``Iteration i of N: <ms> ms`` lines (builds since April 2026, #18802) are samples. The tool has
  no warm-up, so iteration 1 is the first execution after load: it is kept apart as the first inference
  and iterations 2..N are the timed runs. Builds from March 2025 (#9342) print only ``Model executed
  successfully N time(s) in <ms> ms``: an aggregate of the N executions, first one included (it cannot
  be separated); earlier ones print no time at all.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from device_agents.base import Aggregate, MemoryReading

TOOLS = ("litert", "onnxruntime", "executorch")

# A number as these tools print it: C++ ostream default (6 significant digits, so large values come out
# as 2.95034e+06), printf %f / %.2f, or an integer.
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_NS_PER = {"s": Decimal(10**9), "ms": Decimal(10**6), "us": Decimal(1000), "ns": Decimal(1)}
_MIB = Decimal(1 << 20)  # the tools' "MB" is KB / 1024 (LiteRT) or bytes >> 20: a mebibyte


class ToolLogError(Exception):
    """A log that cannot be read; the message is one line that names what is missing."""


@dataclass(frozen=True)
class ToolMeasurement:
    """One run of one benchmark tool, as its log states it. Times in ns, memory in bytes.

    The timed runs are either ``samples_ns`` (the tool printed every run) or ``aggregate`` (it printed a
    summary), never both; ``runs`` is their number. ``first_infer_ns`` is the first inference after the
    load when the log shows it apart; ``warmup`` the tool's summary of its warm-up runs (which include that
    first inference). ``init_ns`` is the tool's own load/initialisation time (what it covers: ``units``).
    ``units`` names, per figure, the unit and the line it was read from; ``extra`` keeps printed figures
    the measurement record has no place for (throughput, CPU usage); ``notes`` what a reader must know.
    """

    tool: str  # "benchmark_model", "benchmark_litert_model", "onnxruntime_perf_test", "executor_runner", ...
    family: str  # one of TOOLS
    runs: int
    samples_ns: tuple[int, ...] = ()
    aggregate: Aggregate | None = None
    first_infer_ns: int | None = None
    warmup: Aggregate | None = None
    init_ns: int | None = None
    wall_runs_ns: int | None = None
    memory: tuple[MemoryReading, ...] = ()
    version: str | None = None  # none of the three tools prints its version in these logs
    units: dict[str, str] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.samples_ns) == (self.aggregate is not None):
            raise ValueError("a tool measurement has either per-run samples or an aggregate")
        n = len(self.samples_ns) if self.samples_ns else self.aggregate.n
        if n != self.runs:
            raise ValueError(f"runs={self.runs} but the timed runs hold {n}")

    def result_fields(self) -> dict[str, Any]:
        """The pieces of a :class:`~device_agents.base.MeasureResult` this log gives, as keyword arguments
        (``MeasureResult(status=OK, **m.result_fields(), ...)``). No tool prints warm-up runs one by one, so
        ``warmup_ns`` is empty; their summary goes into the notes. The tool's load was not made cold."""
        notes = list(self.notes)
        if self.warmup is not None:
            notes.append(f"warm-up: {self.warmup.n} run(s), mean {self.warmup.mean_ns / 1e6:.6g} ms "
                         f"({self.tool}'s summary; it includes the first inference)")
        if self.init_ns is not None:
            notes.append(f"load_cold_ns is {self.tool}'s own load time ({self.units.get('init', '')}); "
                         "the model file may have been in the page cache")
        return {
            "infer_ns": self.samples_ns,
            "infer_aggregate": self.aggregate,
            "first_infer_ns": self.first_infer_ns,
            "warmup_ns": (),
            "load_cold_ns": self.init_ns,
            "cold_method": "not_obtained" if self.init_ns is not None else None,
            "wall_runs_ns": self.wall_runs_ns,
            "memory": self.memory,
            "notes": tuple(notes),
            "diagnostics": {"tool_log": {"tool": self.tool, "units": dict(self.units), "extra": dict(self.extra)}},
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------------
# Entry points


def read_log(path: str | Path, tool: str | None = None, *, result_file: str | Path | None = None
             ) -> ToolMeasurement:
    """Read the log at ``path`` (and an onnxruntime_perf_test result file) into a :class:`ToolMeasurement`."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    extra = Path(result_file).read_text(encoding="utf-8", errors="replace") if result_file is not None else None
    return parse_log(text, tool, result_file_text=extra)


def parse_log(text: str, tool: str | None = None, *, result_file_text: str | None = None) -> ToolMeasurement:
    """Parse one run's log; ``tool`` is one of :data:`TOOLS`, detected from the log when None."""
    if not text.strip():
        raise ToolLogError("the log is empty")
    if tool is None:
        tool = "onnxruntime" if result_file_text is not None else detect_tool(text)
    if tool not in TOOLS:
        raise ToolLogError(f"unknown tool {tool!r}; tools: {', '.join(TOOLS)}")
    if result_file_text is not None and tool != "onnxruntime":
        raise ToolLogError("a result file is onnxruntime_perf_test's; this log is read as " + tool)
    if tool == "litert":
        return parse_litert(text)
    if tool == "onnxruntime":
        return parse_onnxruntime(text, result_file_text)
    return parse_executorch(text)


_MARKERS = {
    "litert": re.compile(r"Inference timings in us|Average inference timings in us|BENCHMARK RESULTS"
                         r"|Initialized session in|benchmark_litert_model|(?:^|[\s:\]])count=\d+ (?:first|curr)="),
    "onnxruntime": re.compile(r"Session creation time cost|Total inference requests|Average inference time cost"
                              r"|Total iterations:|Peak working set size"),
    "executorch": re.compile(r"Model executed successfully|executorch:|ExecuTorch|Iteration \d+ of \d+:"
                             r"|ms/iteration"),
}


def detect_tool(text: str) -> str:
    """Which tool printed ``text``: the one family whose distinctive lines appear in it."""
    if _is_ort_result_file(text):
        return "onnxruntime"
    found = [name for name, rx in _MARKERS.items() if any(rx.search(line) for line in text.splitlines())]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ToolLogError("not a log of benchmark_model, onnxruntime_perf_test or executor_runner: none of "
                           "their result lines ('Inference timings in us', 'count=N ...', 'BENCHMARK RESULTS', "
                           "'Average inference time cost', 'Model executed successfully') is in it")
    raise ToolLogError(f"lines of several tools ({', '.join(found)}) are in the log; pass --tool")


# ------------------------------------------------------------------------------------------------------
# Numbers and units


def _dec(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # the regexes only hand over numbers; this guards a misuse
        raise ToolLogError(f"{text!r} is not a number") from None


def _ns(text: str, unit: str) -> float:
    """A time in ``unit`` as float nanoseconds, converted exactly (decimal), never rounded further."""
    return float(_dec(text) * _NS_PER[unit])


def _ns_int(text: str, unit: str) -> int:
    """A time in ``unit`` as integer nanoseconds (to the nearest ns: every format here is coarser)."""
    return int((_dec(text) * _NS_PER[unit]).to_integral_value())


def _mib_bytes(text: str) -> int:
    return int((_dec(text) * _MIB).to_integral_value())


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def _one(rx: re.Pattern[str], lines: list[str]) -> re.Match[str] | None:
    """The only line matching ``rx`` (None when none; several are several runs in one log)."""
    hits = [m for m in map(rx.search, lines) if m]
    if len(hits) > 1:
        what = re.split(r"[\\(\[]", rx.pattern.lstrip("^"))[0].strip() or rx.pattern[:40]
        raise ToolLogError(f"{len(hits)} '{what}' lines: the log holds several runs; import one run per file")
    return hits[0] if hits else None


def _tool_errors(lines: list[str]) -> str:
    errs = [ln.strip() for ln in lines if re.search(r"\bERROR\b|^E \d\d:|\bFailed\b|\bfailed\b", ln)]
    return f"; the tool reported: {errs[0][:160]}" if errs else ""


# ------------------------------------------------------------------------------------------------------
# LiteRT / TFLite benchmark_model
#
# Formats: google-ai-edge/LiteRT tflite/tools/benchmark/benchmark_model.cc (OnBenchmarkEnd, Run; the same
# code as tensorflow/lite/tools/benchmark), litert/tools/benchmark_litert_model.h (BENCHMARK RESULTS),
# tensorflow stats_calculator.h (Stat::OutputToStream, StatWithPercentiles). TFLITE_LOG prefixes "INFO: ",
# LITERT_LOG "INFO: [file:line] ", logcat "... I tflite  : "; TF 1.x printed no prefix.

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
    return Aggregate(n=s["count"], mean_ns=_ns(mean, "us"), tool=tool,
                     std_ns=_ns(std, "us") if std is not None else None,
                     min_ns=_ns(lo, "us"), max_ns=_ns(hi, "us"),
                     percentiles={p: _ns(s[k], "us") for k, p in _PERCENTILE_KEYS.items() if k in s})


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

    summary = _one(_SUMMARY_RE, lines)
    old = _one(_OLD_SUMMARY_RE, lines)
    old_fields = dict(_OLD_FIELD_RE.findall(old.group(1))) if old else {}
    session = _one(_SESSION_RE, lines)
    block = {k: _one(rx, lines) for k, rx in _B.items()} if any(_BLOCK_RE.search(ln) for ln in lines) else {}
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
        elif role == "warmup":
            raise ToolLogError(f"the timed runs' stat line is missing: the only 'count={only['count']} ...' "
                               "line is the warm-up's (the run may have been cut short)" + _tool_errors(lines))
        else:
            raise ToolLogError(f"one 'count={only['count']} ...' stat line and no summary line to tell whether "
                               "it is the warm-up or the timed runs")

    units: dict[str, str] = {}
    notes: list[str] = []
    aggregate: Aggregate | None = None
    if timed_stat is not None:
        aggregate = _stat_aggregate(timed_stat, tool)
        if aggregate is None:
            raise ToolLogError("the timed runs' stat line says count=0: no run was timed" + _tool_errors(lines))
        units["timed"] = "us, stat line 'count=.. avg=.. std=..' of the timed runs"
        notes.append("avg is printed with 6 significant digits and std truncated to whole us by the tool")
        if "avg" not in timed_stat:
            notes.append(f"all {aggregate.n} timed runs took the same time (the tool printed only 'curr=')")
        _check_against_summaries(aggregate, summary_infer, block, block_runs)
    elif block.get("avg"):
        b = block
        aggregate = Aggregate(n=int(b["avg"].group(2)), mean_ns=_ns(b["avg"].group(1), "ms"), tool=tool,
                              std_ns=_ns(b["std"].group(1), "ms") if b.get("std") else None,
                              min_ns=_ns(b["min"].group(1), "ms") if b.get("min") else None,
                              max_ns=_ns(b["max"].group(1), "ms") if b.get("max") else None)
        units["timed"] = "ms rounded to 0.01 (std: ms, unit not printed), BENCHMARK RESULTS block"
        notes.append("the timed runs are known only to 0.01 ms (no 'count=' stat line in the log)")
    else:
        missing = ("no statistics of the timed runs: neither a 'count=N ... avg=..' stat line after the "
                   "second 'Running benchmark' nor a BENCHMARK RESULTS block")
        if op_profiling:
            missing += ("; the 'Timings (microseconds): count=..' lines are op-profiling totals, "
                        "not the timed runs")
        if summary_infer is not None:
            missing += f"; the summary gives the mean ({summary_infer} us) but not the number of runs"
        raise ToolLogError(missing + _tool_errors(lines))

    if warm_stat is not None and not any(_RUNNING_RE.search(ln) for ln in lines):
        notes.append("no 'Running benchmark' lines: the first stat line is taken as the warm-up's by its order")
    if op_profiling:
        notes.append("op profiling was on (it adds overhead to every timed run); its 'Timings (microseconds)' "
                     "lines were not read as the timed runs")

    # First inference: the first warm-up run (none when the warm-up ran no run).
    first_infer_ns = None
    if warm_stat is not None and warm_stat["count"] == 0:
        notes.append("no warm-up run (count=0): the first inference is the first timed run, not kept apart")
    elif summary:
        first_infer_ns = _ns_int(summary.group(2), "us")
        units["first_infer"] = "us, 'Inference timings in us: First inference'"
    elif warm_stat is not None and _stat_value(warm_stat, "first") is not None:
        first_infer_ns = _ns_int(_stat_value(warm_stat, "first"), "us")
        units["first_infer"] = "us, 'first=' of the warm-up's stat line"
    elif block.get("warmup_first"):
        first_infer_ns = _ns_int(block["warmup_first"].group(1), "ms")
        units["first_infer"] = "ms rounded to 0.01, BENCHMARK RESULTS 'Warmup (first)'"

    warmup = None
    if warm_stat is not None:
        warmup = _stat_aggregate(warm_stat, tool)
        units["warmup"] = "us, the warm-up's stat line"
    elif block.get("warmup_avg"):
        warmup = Aggregate(n=int(block["warmup_avg"].group(2)), mean_ns=_ns(block["warmup_avg"].group(1), "ms"),
                           tool=tool)
        units["warmup"] = "ms rounded to 0.01, BENCHMARK RESULTS 'Warmup (avg)'"
    elif summary_warmup is not None and "nan" not in summary_warmup:
        notes.append(f"warm-up mean {summary_warmup} us printed without its number of runs: not kept")

    init_ns = None
    if summary:
        init_ns, units["init"] = _ns_int(summary.group(1), "us"), "us, 'Inference timings in us: Init'"
    elif "Init" in old_fields:
        init_ns, units["init"] = _ns_int(old_fields["Init"], "us"), "us, 'Average inference timings in us: Init'"
    elif session:
        init_ns, units["init"] = _ns_int(session.group(1), "ms"), "ms, 'Initialized session in'"
    elif block.get("init"):
        init_ns, units["init"] = _ns_int(block["init"].group(1), "ms"), "ms rounded to 0.01, 'Model initialization'"
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
    is_timed = summary_infer is not None and _close(float(avg), float(summary_infer), 1e-5)
    is_warm = summary_warmup is not None and _close(float(avg), float(summary_warmup), 1e-5)
    if is_timed != is_warm:
        return "timed" if is_timed else "warmup"
    return None


def _check_against_summaries(agg: Aggregate, summary_infer: str | None, block: dict, block_runs: int | None
                             ) -> None:
    """The stat line taken as the timed runs must be the one the summaries describe."""
    if summary_infer is not None and not _close(agg.mean_ns, _ns(summary_infer, "us"), 1e-5):
        raise ToolLogError(f"the timed runs' stat line (avg {agg.mean_ns / 1e3:g} us) is not the summary's "
                           f"'Inference (avg): {summary_infer}': the lines do not belong together")
    if block_runs is not None and block_runs != agg.n:
        raise ToolLogError(f"the timed runs' stat line counts {agg.n} runs, BENCHMARK RESULTS {block_runs}")
    if block.get("avg") and abs(agg.mean_ns - _ns(block["avg"].group(1), "ms")) > 0.0051e6:
        raise ToolLogError("the timed runs' stat line and BENCHMARK RESULTS disagree on the mean")


def _litert_memory(lines: list[str], block: dict) -> tuple[tuple[MemoryReading, ...], str, list[str]]:
    """The tool's memory figures as one reading: deltas of ru_maxrss from the tool's start (init, overall),
    the peak of periodic monitoring (an absolute ru_maxrss), the RSS split at the end."""
    delta = _one(_DELTA_RE, lines)
    monitor = _one(_PEAK_MONITOR_RE, lines)
    detail: dict[str, int] = {}
    notes: list[str] = []
    units = []
    if delta:
        detail["init_delta_b"] = _mib_bytes(delta.group(2))
        detail["overall_delta_b"] = _mib_bytes(delta.group(3))
        units.append(f"MB (2^20 bytes), '{delta.group(1)} (MB)' line, 6 significant digits")
        if delta.group(1) == "Peak memory footprint":
            notes.append("'Peak memory footprint (MB): init= overall=' (TFLite <= 2.4 wording) is, like its "
                         "later name 'Memory footprint delta', the growth of ru_maxrss since the tool started")
    elif block.get("init_fp") or block.get("overall_fp"):
        if block.get("init_fp"):
            detail["init_delta_b"] = _mib_bytes(block["init_fp"].group(1))
        if block.get("overall_fp"):
            detail["overall_delta_b"] = _mib_bytes(block["overall_fp"].group(1))
        units.append("MB (2^20 bytes) rounded to 0.01, BENCHMARK RESULTS 'Init/Overall footprint'")
    peak_b = None
    if monitor:
        peak_b = _mib_bytes(monitor.group(1))
        units.append("peak: MB, 'Overall peak memory footprint (MB) via periodic monitoring' (absolute ru_maxrss)")
    elif block.get("peak"):
        peak_b = _mib_bytes(block["peak"].group(1))
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


# ------------------------------------------------------------------------------------------------------
# ONNX Runtime onnxruntime_perf_test
#
# Formats: microsoft/onnxruntime onnxruntime/test/perftest/performance_runner.cc (PerformanceRunner::Run,
# PerformanceResult::DumpToFile). Spacing changed over the years ("cost:1.84149 s" in 2020, "cost: 0.2 s"
# later); recent builds print "Average inference time cost total:" (seen in the 2025-2026 logs; #25895, Aug
# 2025, added submit vs total times, and #26313 made the statistics and the result file use the total).

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


def _is_ort_result_file(text: str) -> bool:
    rows = [ln for ln in text.splitlines() if ln.strip() and not _ORT_LATENCY.search(ln)]
    return bool(rows) and all(_ORT_CSV.match(ln) for ln in rows)


def parse_onnxruntime(text: str, result_file_text: str | None = None) -> ToolMeasurement:
    """One run of ``onnxruntime_perf_test``: its printed summary, its result file, or both."""
    if _is_ort_result_file(text) and result_file_text is None:
        text, result_file_text = "", text
    lines = text.splitlines()
    got = {k: _one(rx, lines) for k, rx in _ORT.items()}
    peaks = {int(m.group(1)) for m in map(_ORT_PEAK.search, lines) if m}
    if len(peaks) > 1:
        raise ToolLogError(f"{len(peaks)} different 'Peak working set size' lines: several runs in one log")
    units: dict[str, str] = {}
    notes: list[str] = []
    extra: dict[str, float] = {}

    samples: tuple[int, ...] = ()
    csv_peak = None
    if result_file_text is not None:
        samples, csv_peak, csv_notes = _ort_result_file(result_file_text)
        notes.extend(csv_notes)
        units["timed"] = "s, one result-file line per run (6 significant digits)"

    requests = int(got["requests"].group(1)) if got["requests"] else None
    if requests is None and lines:
        runs_line = [int(m.group(1)) for m in map(_ORT_RUNS.match, lines) if m]
        requests = runs_line[0] if len(runs_line) == 1 else None
    latencies = {name: val for name, val in (m.groups() for m in map(_ORT_LATENCY.search, lines) if m)}

    aggregate = None
    if samples:
        if requests is not None and requests != len(samples):
            raise ToolLogError(f"the result file has {len(samples)} runs, the log {requests}: not the same run")
        if got["total"] and not _close(sum(samples), _ns(got["total"].group(1), "s"), 1e-4):
            raise ToolLogError("the result file's runs do not add up to the log's 'Total inference time cost': "
                               "not the same run")
    elif requests is not None and got["avg"]:
        aggregate = Aggregate(
            n=requests, mean_ns=_ns(got["avg"].group(1), "ms"), tool="onnxruntime_perf_test",
            min_ns=_ns(latencies["Min"], "s") if "Min" in latencies else None,
            max_ns=_ns(latencies["Max"], "s") if "Max" in latencies else None,
            percentiles={p: _ns(latencies[k], "s") for k, p in _ORT_PCT.items() if k in latencies})
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
        raise ToolLogError(f"no timed runs: {' and '.join(missing)} missing and no result file"
                           + _tool_errors(lines))

    first_infer_ns = None
    if got["first"]:
        first_infer_ns = _ns_int(got["first"].group(1), "ms")
        units["first_infer"] = "whole ms (truncated by the tool), 'First inference time cost'"
        notes.append("the first inference is the tool's one warm-up run, timed to the whole millisecond")
    elif text:
        notes.append("the tool's one warm-up run is not reported by this build (no 'First inference' line)")
    else:
        notes.append("result file only: no session creation time, first inference or summary")
    init_ns = None
    if got["session"]:
        init_ns = _ns_int(got["session"].group(1), "s")
        units["init"] = "s, 'Session creation time cost' (model load, graph optimisation, providers)"
    wall = None
    if got["run_time"]:
        wall = _ns_int(got["run_time"].group(1), "s")
        units["wall_runs"] = "s, 'Total inference run time'"
    if got["per_second"]:
        extra["inferences_per_s"] = float(got["per_second"].group(1))
    if got["cpu"]:
        extra["cpu_usage_pct"] = float(got["cpu"].group(1))

    peak = next(iter(peaks)) if peaks else csv_peak
    if peaks and csv_peak is not None and csv_peak != peak:
        raise ToolLogError("the result file's peak working set is not the log's: not the same run")
    memory: tuple[MemoryReading, ...] = ()
    if peak is not None:
        memory = (MemoryReading(method="tool_reported", peak_b=peak),)
        units["memory"] = "bytes, 'Peak working set size' (ru_maxrss * 1024 on Linux/Android: the process's peak RSS)"
    n = len(samples) if samples else aggregate.n
    return ToolMeasurement(tool="onnxruntime_perf_test", family="onnxruntime", runs=n, samples_ns=samples,
                           aggregate=aggregate, first_infer_ns=first_infer_ns, init_ns=init_ns, wall_runs_ns=wall,
                           memory=memory, units=units, extra=extra, notes=tuple(notes))


def _ort_result_file(text: str) -> tuple[tuple[int, ...], int | None, list[str]]:
    """The per-run lines of a result file (``DumpToFile``): one line per timed run, ``run_index`` from 0;
    newer builds write the submit time and the total time (the run's time), older ones one time."""
    rows, notes = [], []
    latencies: dict[str, str] = {}
    for ln in text.splitlines():
        if not ln.strip():
            continue
        lat = _ORT_LATENCY.search(ln)
        if lat:
            latencies[lat.group(1)] = lat.group(2)
            continue
        m = _ORT_CSV.match(ln)
        if not m:
            raise ToolLogError(f"a result-file line is not 'model,time_s,peak_bytes,cpu_pct,run_index': {ln[:80]!r}")
        rows.append(m)
    if not rows:
        raise ToolLogError("the result file has no per-run lines")
    indices = [int(m.group(6)) for m in rows]
    if indices != list(range(len(rows))):
        restarts = sum(1 for i in indices if i == 0)
        raise ToolLogError(f"the result file's run_index does not go 0..{len(rows) - 1} in order"
                           + (f" ({restarts} runs appended to one file)" if restarts > 1 else ""))
    two_times = {m.group(3) is not None for m in rows}
    if len(two_times) > 1:
        raise ToolLogError("the result file mixes lines with one and two time columns: several builds' runs")
    if two_times.pop():
        notes.append("result file with submit and total time per run: the total time is taken")
        samples = tuple(_ns_int(m.group(3), "s") for m in rows)
    else:
        samples = tuple(_ns_int(m.group(2), "s") for m in rows)
    peaks = {int(m.group(4)) for m in rows}
    if latencies:  # the same statistics the tool printed (-s), from these very runs
        ordered = sorted(samples)
        n = len(ordered)
        expect = {"Min": ordered[0], "Max": ordered[-1],
                  **{k: ordered[int(n * float(p) / 100)] for k, p in _ORT_PCT.items()}}
        for k, v in latencies.items():
            if not _close(_ns(v, "s"), expect[k], 1e-5):
                raise ToolLogError(f"the result file's '{k} Latency: {v} s' is not its runs' {k}")
    return samples, (peaks.pop() if len(peaks) == 1 else None), notes


# ------------------------------------------------------------------------------------------------------
# ExecuTorch executor_runner
#
# Formats: pytorch/executorch examples/portable/executor_runner/executor_runner.cpp ("Model loaded in %f
# ms.", "Iteration %u of %u: %f ms", "Model executed successfully %u time(s) in %f ms."), the POSIX PAL
# prefix "I 00:00:00.123456 executorch:file.cpp:123] " (runtime/platform/default/posix.cpp), logcat tag
# ExecuTorch on Android (android.cpp); devtools/scripts/benchmark_android.sh prints a summary of its own.

_ET_LOAD = re.compile(rf"Model loaded in\s+({NUM})\s*ms")
_ET_ITER = re.compile(rf"Iteration\s+(\d+)\s+of\s+(\d+):\s+({NUM})\s*ms")
_ET_DONE = re.compile(rf"Model executed successfully\s+(\d+)\s+time\(s\)\s+in\s+({NUM})\s*ms")
_ET_DONE_UNTIMED = re.compile(r"Model executed successfully\.\s*$")
_ETS = {  # benchmark_android.sh's "Benchmark Results" summary
    "bench": re.compile(rf"^Benchmark:\s+(\d+) iteration\(s\) in ({NUM}) ms"),
    "avg": re.compile(rf"^Average:\s+({NUM}) ms/iteration"),
    "min": re.compile(rf"^Min:\s+({NUM}) ms"),
    "max": re.compile(rf"^Max:\s+({NUM}) ms"),
    "load": re.compile(rf"^Load:\s+({NUM}) ms"),
    "warmup": re.compile(r"^Warmup:\s+(\d+) iteration\(s\)"),
}


def parse_executorch(text: str) -> ToolMeasurement:
    """One run of ``executor_runner`` (POSIX or logcat output), or the summary of ``benchmark_android.sh``."""
    lines = text.splitlines()
    done = _one(_ET_DONE, lines)
    if done is None and any(_ETS["bench"].search(ln) for ln in lines):
        return _executorch_script_summary(lines)
    load = _one(_ET_LOAD, lines)
    iters = [m for m in map(_ET_ITER.search, lines) if m]
    units: dict[str, str] = {}
    notes: list[str] = []
    if done is None:
        if any(_ET_DONE_UNTIMED.search(ln) for ln in lines):
            raise ToolLogError("this executor_runner prints 'Model executed successfully.' without a time "
                               "(builds before March 2025, #9342): no timing to read")
        raise ToolLogError("no 'Model executed successfully N time(s) in <ms> ms' line: the run did not finish "
                           "or this is not executor_runner's output" + _tool_errors(lines))
    n, total = int(done.group(1)), done.group(2)
    init_ns = None
    if load:
        init_ns = _ns_int(load.group(1), "ms")
        units["init"] = "ms, 'Model loaded in' (Program::load to load_method, delegate init included)"

    if iters:
        numbers = [int(m.group(1)) for m in iters]
        if {int(m.group(2)) for m in iters} != {n} or numbers != list(range(1, n + 1)):
            raise ToolLogError(f"the 'Iteration i of N' lines are not iterations 1..{n} in order "
                               f"({len(iters)} lines): the log is incomplete or mixes runs")
        times = [_ns_int(m.group(3), "ms") for m in iters]
        if abs(sum(times) - _ns(total, "ms")) > n:  # each %f ms is to the ns: at most 1 ns apart per run
            raise ToolLogError(f"the iterations add up to {sum(times) / 1e6:.6f} ms, not the "
                               f"{total} ms of 'Model executed successfully': not the same run")
        if n == 1:
            raise ToolLogError("one execution only: it is the first inference after load, and no timed run "
                               "follows it (run with --num_executions > 1)")
        units["timed"] = "ms (printf %f), 'Iteration i of N' lines 2..N"
        units["first_infer"] = "ms, 'Iteration 1 of N'"
        notes.append("executor_runner has no warm-up: iteration 1, the first execution after load, is kept "
                     f"apart as the first inference; the timed runs are iterations 2..{n}")
        return ToolMeasurement(tool="executor_runner", family="executorch", runs=n - 1, samples_ns=tuple(times[1:]),
                               first_infer_ns=times[0], init_ns=init_ns, units=units, notes=tuple(notes))
    if n == 1:
        raise ToolLogError("one execution only ('1 time(s)'): it is the first inference after load, and no "
                           "timed run follows it (run with --num_executions > 1)")
    aggregate = Aggregate(n=n, mean_ns=float(_dec(total) * _NS_PER["ms"] / n), tool="executor_runner")
    units["timed"] = "ms, 'Model executed successfully N time(s) in <total> ms' (mean = total / N)"
    notes.append("this build prints no per-iteration times: the mean is total / N and includes the first "
                 "execution after load, which cannot be separated")
    return ToolMeasurement(tool="executor_runner", family="executorch", runs=n, aggregate=aggregate,
                           init_ns=init_ns, units=units, notes=tuple(notes))


def _executorch_script_summary(lines: list[str]) -> ToolMeasurement:
    got = {k: _one(rx, lines) for k, rx in _ETS.items()}
    n, total = int(got["bench"].group(1)), got["bench"].group(2)
    tool = "benchmark_android.sh (executor_runner)"
    aggregate = Aggregate(n=n, mean_ns=float(_dec(total) * _NS_PER["ms"] / n), tool=tool,
                          min_ns=_ns(got["min"].group(1), "ms") if got["min"] else None,
                          max_ns=_ns(got["max"].group(1), "ms") if got["max"] else None)
    units = {"timed": "ms: mean = total / N from 'Benchmark: N iteration(s) in <total> ms'; Min/Max to 0.001 ms"}
    notes = ["the script's 'Average' is total / N cut to 3 decimals by bc; the mean here is total / N"]
    if got["warmup"]:
        notes.append(f"the script ran {got['warmup'].group(1)} warm-up execution(s) in a separate process; "
                     "the N timed executions include the first one after load in the benchmark process")
    init_ns = None
    if got["load"]:
        init_ns = _ns_int(got["load"].group(1), "ms")
        units["init"] = "ms to 0.001, 'Load' (the benchmark process's load, after the warm-up process's)"
    return ToolMeasurement(tool=tool, family="executorch", runs=n, aggregate=aggregate, init_ns=init_ns,
                           units=units, notes=tuple(notes))
