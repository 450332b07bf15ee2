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

Execution providers (``-e``, ``-i``): the loopback's ``accelerators_onnxruntime_perf_test`` knob says which
providers this build was made with (default ``cpu`` and ``nnapi``, an Android build with NNAPI) and where each
puts the graph (``all``, ``partial``, ``none``). The stand-in always computes on this host's CPU; what it
prints is what the real tool prints for those flags:

- a provider the build lacks: ``ORT_THROW("<NAME> is not supported in this build\n")`` of
  ``perftest/ort_test_session.cc``, printed by ``main.cc`` as ``std::cerr << ex.what() << std::endl``
  (``<file>:<line> <function> <message>``), exit -1 (255);
- ``-v``: ONNX Runtime's verbose log, which an Android build sends to logcat (``AndroidLogSink``, tag
  ``onnxruntime``, message `` [V:onnxruntime:, <file>:<line> <function>] <text>``), here to the loopback's
  ``logcat/<pid>.log`` in threadtime format: ``Node placements`` and `` All nodes placed on [<EP>]. Number of
  nodes: n`` or, per provider, `` Node(s) placed on [<EP>]. Number of nodes: n`` and one ``  <op> (<name>)``
  line per node (``session_state.cc`` VerifyEachNodeIsAssignedToAnEp); a compiling provider (NNAPI, QNN)
  counts the fused node it made of what it took.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Output, cpp_double, knob, logcat_line, max_rss_kb  # noqa: E402

WITH_VALUE = set("mrtpxycdoueiSTCRfF")
FLAGS = set("IsvPnAMzqDZlgXh")
# -e values of a build of about 1.20 (command_args_parser.cc usage), and what ORT_THROW calls each
PROVIDERS = ("cpu", "cuda", "dnnl", "tensorrt", "openvino", "dml", "acl", "nnapi", "coreml", "qnn", "snpe", "rocm",
             "migraphx", "xnnpack", "vitisai", "webgpu")
THROW_NAME = {"cuda": "CUDA", "dnnl": "DNNL", "tensorrt": "TensorRT", "dml": "DML", "acl": "Acl", "nnapi": "NNAPI",
              "coreml": "CoreML", "qnn": "QNN", "snpe": "SNPE", "rocm": "ROCM", "migraphx": "MIGraphX",
              "xnnpack": "Xnnpack", "vitisai": "VitisAI", "webgpu": "WebGPU"}
EP_TYPE = {"cpu": "CPUExecutionProvider", "nnapi": "NnapiExecutionProvider", "qnn": "QNNExecutionProvider",
           "xnnpack": "XnnpackExecutionProvider", "webgpu": "WebGpuExecutionProvider"}
CONSTRUCTOR = ("onnxruntime::perftest::OnnxRuntimeTestSession::OnnxRuntimeTestSession(Ort::Env&, std::random_device&, "
               "const onnxruntime::perftest::PerformanceTestConfig&, const TestModelInfo&)")


def usage(listed: list[str]) -> str:
    return ("onnxruntime_perf_test [options...] model_path [result_file]\n\nOptions:\n"
            "\t-m [test_mode]: Specifies the test mode. Value could be 'duration' or 'times'.\n"
            "\t-r [repeated_times]: Specifies the repeated times if running in 'times' test mode.\n"
            "\t-x [intra_op_num_threads]: Sets the number of threads used to parallelize the execution within nodes.\n"
            "\t-y [inter_op_num_threads]: Sets the number of threads used to parallelize the execution of the graph.\n"
            f"\t-e [{'|'.join(listed)}]: Specifies the provider "
            + ",".join(f"'{p}'" for p in listed[:-1]) + f" or '{listed[-1]}'. Default:'cpu'.\n"
            "\t-i: Specify EP specific runtime options as key value pairs. Different runtime options available are: \n"
            "\t    [QNN only] [backend_path]: QNN backend path. e.g '/folderpath/libQnnHtp.so', '/winfolderpath/QnnHtp.dll'.\n"
            "\t    [NNAPI only] [NNAPI_FLAG_CPU_DISABLED]: Prevent NNAPI from using CPU devices.\n"
            "\t-I: Generate tensor input binding.\n"
            "\t-s: Show statistics result, like P75, P90. If no result_file provided this defaults to on.\n"
            "\t-v: Show verbose information.\n"
            "\t-n: Exit after session creation.")


def placements(model: str, ep: str, where: str) -> list[str]:
    """What VerifyEachNodeIsAssignedToAnEp logs for this model: a compiling provider makes one node of what it
    takes; the stand-in's provider takes every node (``all``), all but the last (``partial``) or none."""
    import onnx

    nodes = [(n.op_type, n.name or n.op_type) for n in onnx.load(model, load_external_data=False).graph.node]
    head = "[V:onnxruntime:, session_state.cc:{} VerifyEachNodeIsAssignedToAnEp] "
    fused = f"{EP_TYPE[ep]}_{THROW_NAME[ep].capitalize()}_7432019852614437187_0_0"
    if ep == "cpu" or where == "none":
        return [head.format(1598) + "Node placements",
                head.format(1601) + f" All nodes placed on [CPUExecutionProvider]. Number of nodes: {len(nodes)}"]
    if where == "all" or len(nodes) < 2:
        return [head.format(1598) + "Node placements",
                head.format(1601) + f" All nodes placed on [{EP_TYPE[ep]}]. Number of nodes: 1"]
    last = nodes[-1]
    return [head.format(1598) + "Node placements",
            head.format(1605) + " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1",
            head.format(1607) + f"  {last[0]} ({last[1]})",
            head.format(1605) + f" Node(s) placed on [{EP_TYPE[ep]}]. Number of nodes: 1",
            head.format(1607) + f"  {fused} ({fused})"]


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
    build = knob("onnxruntime_perf_test")
    listed = build.get("listed", list(PROVIDERS))
    if opts.get("h") or opts.get("help") or not positional:
        out.line(usage(listed))
        return 0 if (opts.get("h") or opts.get("help")) else 255
    provider = opts.get("e", "cpu")
    if provider not in listed:
        out.line("See 'onnxruntime_perf_test --help'.", sys.stderr)
        return 255
    model = positional[0]
    result_file = positional[1] if len(positional) > 1 else ""
    import numpy as np
    import onnxruntime as ort  # linked into the real binary: not part of session creation

    if not os.path.exists(model):  # TestModelInfo reads the model before the session (and its EP) is made
        out.line(f"{model}: No such file or directory", sys.stderr)
        return 255
    if provider != "cpu" and provider not in build.get("providers", ["cpu", "nnapi"]):
        out.line(f"/onnxruntime_src/onnxruntime/test/perftest/ort_test_session.cc:347 {CONSTRUCTOR} "
                 f"{THROW_NAME.get(provider, provider)} is not supported in this build\n", sys.stderr)
        return 255
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
    if opts.get("v"):  # an Android build's verbose log goes to logcat
        where = build.get("placement", {}).get(provider, "all")
        for text in placements(model, provider, where):
            logcat_line(out, "V", "onnxruntime", " " + text)
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
