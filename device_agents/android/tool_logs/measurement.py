"""What every tool-log reader shares: the reading of one tool run (:class:`ToolMeasurement`), the error a
log that cannot be read raises (:class:`ToolLogError`), the numbers as the tools print them, converted
exactly (decimal) to nanoseconds and bytes and checked (finite, not negative, within what a phone run can
print, a minimum not above its maximum), and :class:`Hits`, what a pattern matched in a log read once,
line by line.

Nothing here knows a tool's format; the readers (``litert``, ``onnxruntime``, ``executorch``) import this
module, never the other way round.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from device_agents.base import Aggregate, MemoryReading

TOOLS = ("litert", "onnxruntime", "executorch")

# A number as these tools print it: C++ ostream default (6 significant digits, so large values come out
# as 2.95034e+06), printf %f / %.2f, or an integer; and what C prints for a value that is not a number
# (nan, -nan, inf), read so that it can be refused by name instead of skipped.
NUM = r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)(?![\w.]))"

NS_PER = {"s": Decimal(10**9), "ms": Decimal(10**6), "us": Decimal(1000), "ns": Decimal(1)}
MIB = Decimal(1 << 20)  # the tools' "MB" is KB / 1024 (LiteRT) or bytes >> 20: a mebibyte

# Above these a figure is not a phone benchmark run's (a corrupt or hand-edited log): refused, never stored.
MAX_SECONDS = 10**6  # any time the tools print (11.6 days; a whole run of thousands of iterations fits)
MAX_BYTES = 10**12  # any memory figure (1 TB)
PRINTED_REL = 1e-5  # two figures of one summary printed with 6 significant digits agree to this (mean vs min)


class ToolLogError(Exception):
    """A log that cannot be read or trusted; the message is one line that names what is missing or wrong."""


@dataclass(frozen=True)
class ToolMeasurement:
    """One run of one benchmark tool, as its log states it. Times in ns, memory in bytes.

    The timed runs are either ``samples_ns`` (the tool printed every run) or ``aggregate`` (it printed a
    summary), never both; ``runs`` is their number, None when the tool printed a mean without it.
    ``first_infer_ns`` is the first inference after the load when the log shows it apart; ``warmup`` the
    tool's summary of its warm-up runs (which include that first inference). ``init_ns`` is the tool's own
    load/initialisation time (what it covers: ``units``). ``units`` names, per figure, the unit and the line
    it was read from; ``extra`` keeps printed figures the measurement record has no place for (throughput,
    CPU usage); ``notes`` what a reader must know.
    """

    tool: str  # "benchmark_model", "benchmark_litert_model", "onnxruntime_perf_test", "executor_runner", ...
    family: str  # one of TOOLS
    runs: int | None
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
            runs = "number of runs not printed" if self.warmup.n is None else f"{self.warmup.n} run(s)"
            notes.append(f"warm-up: {runs}, mean {self.warmup.mean_ns / 1e6:.6g} ms "
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


@dataclass(frozen=True)
class DelegateReading:
    """What one run's output says about the delegate (LiteRT) or execution provider (ONNX Runtime) it was
    asked for: ``applied`` is ``"completely"``, ``"partially"``, ``"not"`` or ``"unknown"`` (the output says
    nothing that tells), the counts are the tool's own (None where it printed none), ``words`` its lines that
    say so, as printed; ``refused`` when the tool refused the delegate (its run failed because of it)."""

    applied: str
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    words: str = ""
    refused: bool = False


def said(lines: list[str], limit: int = 600) -> str:
    """A tool's lines as one string for a record: each stripped, in order, once, `` / `` between them."""
    out = " / ".join(dict.fromkeys(ln.strip() for ln in lines if ln.strip()))
    return out if len(out) <= limit else out[:limit - 3] + "..."


# ------------------------------------------------------------------------------------------------------
# Numbers and units


def number(text: str, what: str) -> Decimal:
    """A figure of the log as printed, exactly; refused (one line naming ``what``) unless it is a finite,
    non-negative number: no time, count or memory figure of these tools can be nan, infinite or negative."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ToolLogError(f"{what} is {text!r}: not a number") from None
    if not value.is_finite():
        raise ToolLogError(f"{what} is {text}: not a finite number, so the log cannot be trusted (nothing is "
                           "imported from it)")
    if value < 0:
        raise ToolLogError(f"{what} is {text}: negative, which no time or memory figure can be (the log is "
                           "corrupt or edited)")
    return value


def ns_decimal(text: str, unit: str, what: str) -> Decimal:
    """A time in ``unit`` as exact decimal nanoseconds, checked (finite, not negative, at most MAX_SECONDS)."""
    value = number(text, what) * NS_PER[unit]
    if value > MAX_SECONDS * NS_PER["s"]:
        raise ToolLogError(f"{what} is {text} {unit}: over {MAX_SECONDS:,} s, not a phone benchmark's figure")
    return value


def ns(text: str, unit: str, what: str) -> float:
    """A time in ``unit`` as float nanoseconds, converted exactly (decimal), never rounded further."""
    return float(ns_decimal(text, unit, what))


def ns_int(text: str, unit: str, what: str) -> int:
    """A time in ``unit`` as integer nanoseconds (to the nearest ns: every format here is coarser)."""
    return int(ns_decimal(text, unit, what).to_integral_value())


def mib_bytes(text: str, what: str) -> int:
    """A size the tool prints in its "MB" (2^20 bytes) as bytes."""
    value = number(text, what) * MIB
    if value > MAX_BYTES:
        raise ToolLogError(f"{what} is {text} MB: over {MAX_BYTES / 1e12:g} TB, not a phone benchmark's figure")
    return int(value.to_integral_value())


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def checked(agg: Aggregate, what: str) -> Aggregate:
    """``agg`` when its figures hold together: the minimum not above the maximum, the mean and the
    percentiles between them (to the tools' printed precision), percentiles in order; else refused."""
    lo, hi = agg.min_ns, agg.max_ns
    if lo is not None and hi is not None and lo > hi:
        raise ToolLogError(f"{what}: min {lo / 1e3:.10g} us is above max {hi / 1e3:.10g} us, which no set of runs "
                           "can print (the log is corrupt or edited)")

    def inside(value: float) -> bool:
        return ((lo is None or value >= lo or close(value, lo, PRINTED_REL))
                and (hi is None or value <= hi or close(value, hi, PRINTED_REL)))

    if not inside(agg.mean_ns):
        raise ToolLogError(f"{what}: the mean {agg.mean_ns / 1e3:.10g} us is outside min..max, which no set of runs "
                           "can print (the log is corrupt or edited)")
    ordered = sorted(agg.percentiles.items(), key=lambda kv: float(kv[0]))
    for (p, v), (q, w) in zip(ordered, ordered[1:]):
        if v > w and not close(v, w, PRINTED_REL):
            raise ToolLogError(f"{what}: the p{p} ({v / 1e3:.10g} us) is above the p{q} ({w / 1e3:.10g} us)")
    for p, v in ordered:
        if not inside(v):
            raise ToolLogError(f"{what}: the p{p} ({v / 1e3:.10g} us) is outside min..max")
    return agg


# ------------------------------------------------------------------------------------------------------
# Reading a log once, line by line


class Hits:
    """The lines one pattern matched in a log read line by line: how many, and the first match (nothing
    more, however long the log: the readers keep what they use, not the log)."""

    __slots__ = ("rx", "count", "first")

    def __init__(self, rx: re.Pattern[str]) -> None:
        self.rx, self.count = rx, 0
        self.first: re.Match[str] | None = None

    def feed(self, line: str) -> re.Match[str] | None:
        m = self.rx.search(line)
        if m:
            self.count += 1
            self.first = self.first or m
        return m

    def one(self) -> re.Match[str] | None:
        """The only line matching (None when none; several are several runs in one log)."""
        if self.count > 1:
            what = re.split(r"[\\(\[]", self.rx.pattern.lstrip("^"))[0].strip() or self.rx.pattern[:40]
            raise ToolLogError(f"{self.count} '{what}' lines: the log holds several runs; import one run per file")
        return self.first


def any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern that finds any of ``words`` (literally): how a reader tells the lines it reads from the rest
    of a long log without running its own patterns on every line."""
    return re.compile("|".join(map(re.escape, words)))


# A line where the tool reports a failure, and words one of them always holds (for the readers' filters).
ERRORS = re.compile(r"\bERROR\b|^E \d\d:|\bFailed\b|\bfailed\b")
ERROR_WORDS = ("ERROR", "ailed", "E ")


def tool_errors(errors: Hits) -> str:
    """What to add to a refusal when the tool reported a failure: its first error line."""
    return f"; the tool reported: {errors.first.string.strip()[:160]}" if errors.first else ""
