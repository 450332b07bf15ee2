"""Stand-in for ONNX Runtime's ``onnxruntime_perf_test`` on the loopback phone.

``onnxruntime_perf_test [options...] model_path [result_file]`` (microsoft/onnxruntime :
onnxruntime/test/perftest/command_args_parser.cc): ``-m times|duration``, ``-r`` repeats, ``-t``
seconds, ``-x``/``-y`` intra/inter-op threads, ``-e cpu``, ``-I`` generated inputs, ``-s`` statistics,
``-S`` input seed, ``-n`` exit after session creation. It runs the real ``.onnx`` with this host's
``onnxruntime`` (CPU provider, sequential, the given thread counts) and prints what
``performance_runner.cc`` (@ 77e6dc9a) prints, numbers through a default C++ ostream (``%g``):

- one untimed warm-up (``RunOneIteration<true>``) whose duration is ``First inference time cost``,
  cast to whole milliseconds;
- then ``Session creation time cost: <s> s`` ... ``Peak working set size: <bytes> bytes``
  (``ru_maxrss * 1024``: onnxruntime/test/perftest/posix/utils.cc);
- ``PerformanceResult::DumpToFile`` appends one line per timed run to ``result_file``:
  ``model_name,time_cost_s,peak_workingset_size,average_CPU_usage,run_index`` (model_name: the last
  directory of the model path), and with ``-s`` the ``Min/Max/P50/P90/P95/P99/P999 Latency: <s> s``
  block after an empty line (also on stdout).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Output, cpp_double, max_rss_kb  # noqa: E402

WITH_VALUE = set("mrtpxycdoueiSTCRfF")
FLAGS = set("IsvPnAMzqDZlgXh")


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    opts: dict = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) >= 2 and arg != "-":
            name = arg.lstrip("-")
            name, eq, value = name.partition("=")
            if name in WITH_VALUE:
                if not eq:
                    i += 1
                    value = argv[i]
                opts[name] = value
            elif name in FLAGS or name == "help":
                opts[name] = True
            else:
                raise ValueError(f"unknown option {arg}")
        else:
            positional.append(arg)
        i += 1
    return opts, positional


def main(argv: list[str]) -> int:
    out = Output("onnxruntime_perf_test", argv)
    try:
        opts, positional = parse(argv)
    except (ValueError, IndexError) as exc:
        out.line(f"{exc}", sys.stderr)
        sys.stderr.write("See 'onnxruntime_perf_test --help'.")
        return 255
    if opts.get("h") or opts.get("help") or not positional:
        out.line("onnxruntime_perf_test [options...] model_path [result_file]\n\nOptions:\n"
                 "    -m [test_mode]: Specifies the test mode. Value could be 'duration' or 'times'.\n"
                 "    -r [repeated_times]: Specifies the repeated times if running in 'times' test mode.\n"
                 "    -x [intra_op_num_threads]: Sets the number of threads used to parallelize the execution within nodes.\n"
                 "    -y [inter_op_num_threads]: Sets the number of threads used to parallelize the execution of the graph.\n"
                 "    -e [cpu|cuda|...]: Specifies the provider.\n"
                 "    -I: Generate tensor input binding.\n"
                 "    -s: Show statistics result.\n"
                 "    -n: Exit after session creation.")
        return 0 if (opts.get("h") or opts.get("help")) else 255
    model = positional[0]
    result_file = positional[1] if len(positional) > 1 else ""
    import numpy as np
    import onnxruntime as ort  # linked into the real binary: not part of session creation

    ort.set_default_logger_severity(3)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(opts.get("x", 0))
    so.inter_op_num_threads = int(opts.get("y", 0))
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t0 = time.perf_counter()
    try:
        session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - the tool prints the runtime's message and exits -1
        out.line(f"{exc}", sys.stderr)
        return 255
    created_s = time.perf_counter() - t0
    if opts.get("n"):
        out.line(f"\nSession creation time cost: {cpp_double(created_s)} s")
        return 0
    if not opts.get("I"):
        out.line(f"there is no test data for model {os.path.basename(os.path.dirname(model))}")
        out.line("Run failed:failed to initialize.")
        return 255
    seed = int(opts.get("S", -1))
    rng = np.random.default_rng(seed if seed >= 0 else None)
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    feed = {inp.name: rng.random(shape, dtype=np.float32)}
    run = session.run

    t = time.perf_counter()
    run(None, feed)  # RunOneIteration<true>: the warm-up
    first_ms = int((time.perf_counter() - t) * 1000)
    times_mode = opts.get("m") == "times" or "r" in opts
    repeats = int(opts.get("r", 1000))
    duration = float(opts.get("t", 600))
    time_costs: list[float] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    while (len(time_costs) < repeats) if times_mode else (time.perf_counter() - start < duration):
        s = time.perf_counter()
        run(None, feed)
        time_costs.append(time.perf_counter() - s)
    end = time.perf_counter()
    cpu_pct = int(100 * (time.process_time() - cpu0) / max(end - start, 1e-9))
    peak = max_rss_kb() * 1024
    total = sum(time_costs)
    out.line(f"Session creation time cost: {cpp_double(created_s)} s")
    out.line(f"First inference time cost: {first_ms} ms")
    out.line(f"Total inference time cost: {cpp_double(total)} s")
    out.line(f"Total inference requests: {len(time_costs)}")
    out.line(f"Average inference time cost: {cpp_double(total / len(time_costs) * 1000)} ms")
    out.line(f"Total inference run time: {cpp_double(end - start)} s")
    out.line(f"Number of inferences per second: {cpp_double(len(time_costs) / (end - start))} ")
    out.line(f"Avg CPU usage: {cpu_pct} %")
    out.line(f"Peak working set size: {peak} bytes")

    model_name = os.path.basename(os.path.dirname(model))
    stats = ""
    if time_costs and opts.get("s"):
        ordered = sorted(time_costs)
        n = len(ordered)
        stats = "".join(f"{label} Latency: {cpp_double(v)} s\n" for label, v in (
            ("Min", ordered[0]), ("Max", ordered[-1]), ("P50", ordered[int(n * 0.5)]), ("P90", ordered[int(n * 0.9)]),
            ("P95", ordered[int(n * 0.95)]), ("P99", ordered[int(n * 0.99)]), ("P999", ordered[int(n * 0.999)])))
    if result_file:
        with open(result_file, "a") as f:
            for i, cost in enumerate(time_costs):
                f.write(f"{model_name},{cpp_double(cost)},{peak},{cpu_pct},{i}\n")
            if stats:
                f.write("\n" + stats)
    if stats:
        sys.stdout.write(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
