"""What every tool-log reader shares: the reading of one tool run (:class:`ToolMeasurement`), the error a
log that cannot be read raises (:class:`ToolLogError`), and the numbers as the tools print them, converted
exactly (decimal) to nanoseconds and bytes.

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
# as 2.95034e+06), printf %f / %.2f, or an integer.
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

NS_PER = {"s": Decimal(10**9), "ms": Decimal(10**6), "us": Decimal(1000), "ns": Decimal(1)}
MIB = Decimal(1 << 20)  # the tools' "MB" is KB / 1024 (LiteRT) or bytes >> 20: a mebibyte


class ToolLogError(Exception):
    """A log that cannot be read; the message is one line that names what is missing."""


@dataclass(frozen=True)
class ToolMeasurement:
    """One run of one benchmark tool, as its log states it. Times in ns, memory in bytes.

    The timed runs are either ``samples_ns`` (the tool printed every run) or ``aggregate`` (it printed a
    summary), never both; ``runs`` is their number, None when the tool printed a mean without it. ``first_infer_ns`` is the first inference after the
    load when the log shows it apart; ``warmup`` the tool's summary of its warm-up runs (which include that
    first inference). ``init_ns`` is the tool's own load/initialisation time (what it covers: ``units``).
    ``units`` names, per figure, the unit and the line it was read from; ``extra`` keeps printed figures
    the measurement record has no place for (throughput, CPU usage); ``notes`` what a reader must know.
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



# ------------------------------------------------------------------------------------------------------
# Numbers and units


def dec(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # the regexes only hand over numbers; this guards a misuse
        raise ToolLogError(f"{text!r} is not a number") from None


def ns(text: str, unit: str) -> float:
    """A time in ``unit`` as float nanoseconds, converted exactly (decimal), never rounded further."""
    return float(dec(text) * NS_PER[unit])


def ns_int(text: str, unit: str) -> int:
    """A time in ``unit`` as integer nanoseconds (to the nearest ns: every format here is coarser)."""
    return int((dec(text) * NS_PER[unit]).to_integral_value())


def mib_bytes(text: str) -> int:
    return int((dec(text) * MIB).to_integral_value())


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def one(rx: re.Pattern[str], lines: list[str]) -> re.Match[str] | None:
    """The only line matching ``rx`` (None when none; several are several runs in one log)."""
    hits = [m for m in map(rx.search, lines) if m]
    if len(hits) > 1:
        what = re.split(r"[\\(\[]", rx.pattern.lstrip("^"))[0].strip() or rx.pattern[:40]
        raise ToolLogError(f"{len(hits)} '{what}' lines: the log holds several runs; import one run per file")
    return hits[0] if hits else None


def tool_errors(lines: list[str]) -> str:
    errs = [ln.strip() for ln in lines if re.search(r"\bERROR\b|^E \d\d:|\bFailed\b|\bfailed\b", ln)]
    return f"; the tool reported: {errs[0][:160]}" if errs else ""

