"""Readers of the logs of the on-device benchmark tools: LiteRT/TFLite ``benchmark_model`` (and LiteRT's
``benchmark_litert_model``), ONNX Runtime's ``onnxruntime_perf_test`` and ExecuTorch's ``executor_runner``.

Each reader turns one run of one tool into a :class:`ToolMeasurement`: what the log says and nothing more,
times in nanoseconds and memory in bytes, with the unit each figure had in the log named in ``units``.
``splitbench import-log`` uses it for old measurements; the Android agent uses it on the tools' output.

What is never done here: a figure the log does not print is not computed from others (a missing run count
stays missing: benchmark_model's summary line alone is a mean-only aggregate whose ``n`` is None), a tool's
aggregate is never expanded into samples, and
a log whose lines do not agree with each other (two runs, a stat line that is not the summary's) is
refused. A log that cannot be read raises :class:`ToolLogError`, one line naming what is missing.

Where each reading comes from (the formats are in ``shared/research/android.md`` sections 1-3, the sources
cited in each reader's module):

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

Each tool's reader also reads what the tool says about the delegate or execution provider a run was
asked for (``litert.read_delegation``, ``onnxruntime.read_placements``): a :class:`DelegateReading` with the
tool's own counts and words, never assumed.

This package's modules: ``measurement`` (the reading, the error, the numbers), one reader per tool
(``litert``, ``onnxruntime``, ``executorch``) and ``reading`` (which tool printed a log; the entry points).
This module only re-exports what the others may use.
"""

from device_agents.android.tool_logs.executorch import parse_executorch, read_executorch
from device_agents.android.tool_logs.litert import parse_litert, read_delegation, read_litert
from device_agents.android.tool_logs.measurement import NUM, TOOLS, DelegateReading, ToolLogError, ToolMeasurement
from device_agents.android.tool_logs.onnxruntime import (not_in_build, parse_onnxruntime, read_onnxruntime,
                                                         read_placements)
from device_agents.android.tool_logs.reading import MAX_LOG_BYTES, detect_tool, parse_log, read_log

__all__ = ["MAX_LOG_BYTES", "NUM", "TOOLS", "DelegateReading", "ToolLogError", "ToolMeasurement", "detect_tool",
           "not_in_build", "parse_executorch", "parse_litert", "parse_log", "parse_onnxruntime", "read_delegation",
           "read_executorch", "read_litert", "read_log", "read_onnxruntime", "read_placements"]
