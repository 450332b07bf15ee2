"""The entry points: which tool printed a log (:func:`detect_tool`), and the reading of one run's log with
that tool's reader (:func:`parse_log` for a log in memory, :func:`read_log` for a file).

A file is never read whole: a concatenated CI log can be hundreds of MB. It is read twice, in pieces of a
few MB that end at a line end: once to tell which tool printed it, once to hand its reader the lines that
hold one of the reader's words (the readers keep counts, first matches and the per-run times, never the
log). A file over :data:`MAX_LOG_BYTES` is refused before it is read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

from device_agents.android.tool_logs import executorch, litert, onnxruntime
from device_agents.android.tool_logs.measurement import TOOLS, ToolLogError, ToolMeasurement, any_of
from device_agents.base import ContractError

MAX_LOG_BYTES = 10**9  # 1 GB: a phone run's log is a few kB, a CI job's whole log a few hundred MB
MAX_LINE_CHARS = 1 << 20  # a longer line is kept to its first 1 Mi characters (no tool line is near that)
PIECE_CHARS = 1 << 22  # what is read at a time (4 Mi characters)

_READERS = {"litert": litert, "onnxruntime": onnxruntime, "executorch": executorch}
_MARKER_WORDS = any_of(tuple(w for reader in _READERS.values() for w in reader.MARKER_WORDS))
_NOT_BLANK = re.compile(r"\S")

Pieces = Callable[[], Iterable[str]]  # the text of a log, again at each call, in pieces that end at line ends


def read_log(path: str | Path, tool: str | None = None, *, result_file: str | Path | None = None
             ) -> ToolMeasurement:
    """Read the log at ``path`` (and an onnxruntime_perf_test result file) into a :class:`ToolMeasurement`,
    a piece at a time; a file over :data:`MAX_LOG_BYTES` is refused."""
    for p, what in ((path, "the log"), (result_file, f"the result file {result_file}")):
        if p is not None:
            size = Path(p).stat().st_size
            if size > MAX_LOG_BYTES:
                raise ToolLogError(f"{what} is {size:,} bytes, over the limit of {MAX_LOG_BYTES:,} bytes "
                                   f"({MAX_LOG_BYTES / 1e9:g} GB): "
                                   "cut out the one run to import (from the tool's command line to its last "
                                   "result line)")
    extra = (lambda: file_pieces(result_file)) if result_file is not None else None
    return _read(lambda: file_pieces(path), tool, extra)


def parse_log(text: str, tool: str | None = None, *, result_file_text: str | None = None) -> ToolMeasurement:
    """Parse one run's log; ``tool`` is one of :data:`TOOLS`, detected from the log when None."""
    extra = (lambda: (result_file_text,)) if result_file_text is not None else None
    return _read(lambda: (text,), tool, extra)


def detect_tool(text: str) -> str:
    """Which tool printed ``text``: the one family whose distinctive lines appear in it."""
    return _Survey((text,)).tool()


def file_pieces(path: str | Path) -> Iterator[str]:
    """The text of a file (undecodable bytes replaced, line ends made ``\\n``), a few MB at a time, each
    piece ending at a line end (the last one may not); a line longer than :data:`MAX_LINE_CHARS` is cut
    there and the rest of it skipped."""
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        carry, skipping = "", False
        while block := f.read(PIECE_CHARS):
            if skipping:  # the rest of an over-long line
                end = block.find("\n")
                if end < 0:
                    continue
                block, skipping = block[end + 1:], False
            text = carry + block
            cut = text.rfind("\n") + 1
            if cut:
                yield text[:cut]
            carry = text[cut:]
            if len(carry) > MAX_LINE_CHARS:
                yield carry[:MAX_LINE_CHARS] + "\n"
                carry, skipping = "", True
        if carry:
            yield carry


def lines_with(pieces: Iterable[str], rx: re.Pattern[str]) -> Iterator[str]:
    """The lines (as ``str.splitlines`` cuts them) of the text that hold a match of ``rx``, found piece by
    piece (a search over a piece, not a loop over its lines: most lines of a long log are skipped unseen)."""
    for piece in pieces:
        pos = 0
        while m := rx.search(piece, pos):
            start = piece.rfind("\n", 0, m.start()) + 1
            end = piece.find("\n", m.end())
            end = len(piece) if end < 0 else end
            yield from piece[start:end].splitlines()
            pos = end + 1


def all_lines(pieces: Iterable[str]) -> Iterator[str]:
    for piece in pieces:
        yield from piece.splitlines()


class _Survey:
    """One pass over a log: whether it holds anything, whether it is an onnxruntime_perf_test result file,
    and which tools' distinctive lines are in it."""

    def __init__(self, pieces: Iterable[str]) -> None:
        self.blank = True
        shape = onnxruntime.ResultFileShape()
        self.found: set[str] = set()
        for piece in pieces:
            if self.blank and _NOT_BLANK.search(piece):
                self.blank = False
            if not shape.other:  # decided at the first line of any other log
                for line in piece.splitlines():
                    shape.feed(line)
                    if shape.other:
                        break
            for line in lines_with((piece,), _MARKER_WORDS):
                self.found.update(name for name, reader in _READERS.items() if reader.MARKER.search(line))
        self.result_file = shape.holds

    def tool(self) -> str:
        if self.result_file:
            return "onnxruntime"
        found = [name for name in _READERS if name in self.found]
        if len(found) == 1:
            return found[0]
        if not found:
            raise ToolLogError("not a log of benchmark_model, onnxruntime_perf_test or executor_runner: none of "
                               "their result lines ('Inference timings in us', 'count=N ...', 'BENCHMARK RESULTS', "
                               "'Average inference time cost', 'Model executed successfully') is in it")
        raise ToolLogError(f"lines of several tools ({', '.join(found)}) are in the log; pass --tool")


def _read(pieces: Pieces, tool: str | None, result_pieces: Pieces | None) -> ToolMeasurement:
    """Survey the log (one pass), then read it with its tool's reader (a second pass)."""
    survey = _Survey(pieces())
    if survey.blank:
        raise ToolLogError("the log is empty")
    if tool is None:
        tool = "onnxruntime" if result_pieces is not None else survey.tool()
    if tool not in TOOLS:
        raise ToolLogError(f"unknown tool {tool!r}; tools: {', '.join(TOOLS)}")
    if result_pieces is not None and tool != "onnxruntime":
        raise ToolLogError("a result file is onnxruntime_perf_test's; this log is read as " + tool)
    reader = _READERS[tool]
    lines = lines_with(pieces(), reader.RELEVANT)
    try:
        if tool == "litert":
            return litert.read_litert(lines)
        if tool == "onnxruntime":
            if result_pieces is None and survey.result_file:  # the result file given as the log
                return onnxruntime.read_onnxruntime(None, all_lines(pieces()))
            return onnxruntime.read_onnxruntime(lines, all_lines(result_pieces()) if result_pieces else None)
        return executorch.read_executorch(lines)
    except ContractError as exc:  # a figure the readers' own checks let through: still the log's fault
        raise ToolLogError(f"the log's figures do not hold together: {exc}") from None
