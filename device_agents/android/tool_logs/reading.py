"""The entry points: which tool printed a log (:func:`detect_tool`), and the reading of one run's log with
that tool's reader (:func:`parse_log`, :func:`read_log`)."""

from __future__ import annotations

from pathlib import Path

from device_agents.android.tool_logs import executorch, litert, onnxruntime
from device_agents.android.tool_logs.measurement import TOOLS, ToolLogError, ToolMeasurement

_MARKERS = {"litert": litert.MARKER, "onnxruntime": onnxruntime.MARKER, "executorch": executorch.MARKER}


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
        return litert.parse_litert(text)
    if tool == "onnxruntime":
        return onnxruntime.parse_onnxruntime(text, result_file_text)
    return executorch.parse_executorch(text)


def detect_tool(text: str) -> str:
    """Which tool printed ``text``: the one family whose distinctive lines appear in it."""
    if onnxruntime.is_result_file(text):
        return "onnxruntime"
    found = [name for name, rx in _MARKERS.items() if any(rx.search(line) for line in text.splitlines())]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ToolLogError("not a log of benchmark_model, onnxruntime_perf_test or executor_runner: none of "
                           "their result lines ('Inference timings in us', 'count=N ...', 'BENCHMARK RESULTS', "
                           "'Average inference time cost', 'Model executed successfully') is in it")
    raise ToolLogError(f"lines of several tools ({', '.join(found)}) are in the log; pass --tool")
