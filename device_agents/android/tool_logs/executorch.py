"""ExecuTorch's ``executor_runner`` and the summary of ``devtools/scripts/benchmark_android.sh``.

``Iteration i of N: <ms> ms`` lines (builds since April 2026, #18802) are samples. The tool has no warm-up,
so iteration 1 is the first execution after load: it is kept apart as the first inference and iterations
2..N are the timed runs. Builds from March 2025 (#9342) print only ``Model executed successfully N time(s)
in <ms> ms``: an aggregate of the N executions, first one included (it cannot be separated); earlier ones
print no time at all.
"""

from __future__ import annotations

import re
from typing import Iterable

from device_agents.android.tool_logs.measurement import (
    ERROR_WORDS, ERRORS, NUM, Hits, ToolLogError, ToolMeasurement, any_of, checked, ns, ns_decimal, ns_int,
    tool_errors,
)
from device_agents.base import Aggregate

# ExecuTorch executor_runner
#
# Formats: pytorch/executorch examples/portable/executor_runner/executor_runner.cpp ("Model loaded in %f
# ms.", "Iteration %u of %u: %f ms", "Model executed successfully %u time(s) in %f ms."), the POSIX PAL
# prefix "I 00:00:00.123456 executorch:file.cpp:123] " (runtime/platform/default/posix.cpp), logcat tag
# ExecuTorch on Android (android.cpp); devtools/scripts/benchmark_android.sh prints a summary of its own.

# Lines only this tool prints (for telling the tools' logs apart).
MARKER = re.compile(r"Model executed successfully|executorch:|ExecuTorch|Iteration \d+ of \d+:"
                    r"|ms/iteration")

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


# Every line a pattern of this reader can match holds one of these words (see litert.KEYWORDS).
KEYWORDS = ("Model loaded in", "Iteration", "Model executed successfully", "Benchmark:", "Average:", "Min:", "Max:",
            "Load:", "Warmup:", *ERROR_WORDS)
RELEVANT = any_of(KEYWORDS)
MARKER_WORDS = ("Model executed successfully", "executorch:", "ExecuTorch", "Iteration", "ms/iteration")
PATTERNS = (_ET_LOAD, _ET_ITER, _ET_DONE, _ET_DONE_UNTIMED, *_ETS.values(), ERRORS)


class _Iterations:
    """The ``Iteration i of N: <ms> ms`` lines read so far: their times (checked as read), and whether they
    are 1..N in order with one N."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.totals: set[int] = set()
        self.in_order = True

    def feed(self, m: re.Match[str]) -> None:
        i, n = int(m.group(1)), int(m.group(2))
        self.in_order = self.in_order and i == len(self.times) + 1
        if len(self.totals) < 2:
            self.totals.add(n)
        self.times.append(ns_int(m.group(3), "ms", f"'Iteration {i} of {n}'"))


def parse_executorch(text: str) -> ToolMeasurement:
    """One run of ``executor_runner`` (POSIX or logcat output), or the summary of ``benchmark_android.sh``."""
    return read_executorch(text.splitlines())


def read_executorch(lines: Iterable[str]) -> ToolMeasurement:
    """One run of ``executor_runner`` or the summary of ``benchmark_android.sh``, read once line by line."""
    done_lines, load_lines, untimed, errors = Hits(_ET_DONE), Hits(_ET_LOAD), Hits(_ET_DONE_UNTIMED), Hits(ERRORS)
    script = {k: Hits(rx) for k, rx in _ETS.items()}
    iters = _Iterations()
    for line in lines:
        if not RELEVANT.search(line):
            continue
        for hits in (done_lines, load_lines, untimed, errors, *script.values()):
            hits.feed(line)
        m = _ET_ITER.search(line)
        if m:
            iters.feed(m)
    tool_said = tool_errors(errors)
    done = done_lines.one()
    if done is None and script["bench"].count:
        return _executorch_script_summary({k: hits.one() for k, hits in script.items()})
    load = load_lines.one()
    units: dict[str, str] = {}
    notes: list[str] = []
    if done is None:
        if untimed.count:
            raise ToolLogError("this executor_runner prints 'Model executed successfully.' without a time "
                               "(builds before March 2025, #9342): no timing to read")
        raise ToolLogError("no 'Model executed successfully N time(s) in <ms> ms' line: the run did not finish "
                           "or this is not executor_runner's output" + tool_said)
    n, total = int(done.group(1)), done.group(2)
    total_ns = ns_decimal(total, "ms", "the total of 'Model executed successfully'")
    if n == 0:
        raise ToolLogError("'Model executed successfully 0 time(s)': no execution was timed")
    init_ns = None
    if load:
        init_ns = ns_int(load.group(1), "ms", "'Model loaded in'")
        units["init"] = "ms, 'Model loaded in' (Program::load to load_method, delegate init included)"

    if iters.times:
        times = iters.times
        if iters.totals != {n} or not iters.in_order or len(times) != n:
            raise ToolLogError(f"the 'Iteration i of N' lines are not iterations 1..{n} in order "
                               f"({len(times)} lines): the log is incomplete or mixes runs")
        if abs(sum(times) - total_ns) > n:  # each %f ms is to the ns: at most 1 ns apart per run
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
    aggregate = Aggregate(n=n, mean_ns=float(total_ns / n), tool="executor_runner")
    units["timed"] = "ms, 'Model executed successfully N time(s) in <total> ms' (mean = total / N)"
    notes.append("this build prints no per-iteration times: the mean is total / N and includes the first "
                 "execution after load, which cannot be separated")
    return ToolMeasurement(tool="executor_runner", family="executorch", runs=n, aggregate=aggregate,
                           init_ns=init_ns, units=units, notes=tuple(notes))


def _executorch_script_summary(got: dict[str, re.Match[str] | None]) -> ToolMeasurement:
    n, total = int(got["bench"].group(1)), got["bench"].group(2)
    if n == 0:
        raise ToolLogError("'Benchmark: 0 iteration(s)': no execution was timed")
    tool = "benchmark_android.sh (executor_runner)"
    mean = ns_decimal(total, "ms", "the total of 'Benchmark: N iteration(s) in'") / n
    aggregate = checked(Aggregate(
        n=n, mean_ns=float(mean), tool=tool,
        min_ns=ns(got["min"].group(1), "ms", "'Min'") if got["min"] else None,
        max_ns=ns(got["max"].group(1), "ms", "'Max'") if got["max"] else None), "the script's summary")
    units = {"timed": "ms: mean = total / N from 'Benchmark: N iteration(s) in <total> ms'; Min/Max to 0.001 ms"}
    notes = ["the script's 'Average' is total / N cut to 3 decimals by bc; the mean here is total / N"]
    if got["warmup"]:
        notes.append(f"the script ran {got['warmup'].group(1)} warm-up execution(s) in a separate process; "
                     "the N timed executions include the first one after load in the benchmark process")
    init_ns = None
    if got["load"]:
        init_ns = ns_int(got["load"].group(1), "ms", "'Load'")
        units["init"] = "ms to 0.001, 'Load' (the benchmark process's load, after the warm-up process's)"
    return ToolMeasurement(tool=tool, family="executorch", runs=n, aggregate=aggregate, init_ns=init_ns,
                           units=units, notes=tuple(notes))
