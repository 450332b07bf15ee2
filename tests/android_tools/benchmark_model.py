"""Stand-in for LiteRT's ``benchmark_model`` (TFLite Interpreter build) on the loopback phone.

It runs the real ``.tflite`` with this host's ``ai_edge_litert`` Interpreter (``num_threads`` from
``--num_threads``) and prints what the real tool prints, in its order and number formatting:

- every line through ``TFLITE_LOG``: ``"INFO: " + msg`` on stdout (ERROR on stderr)
  (google-ai-edge/LiteRT : tflite/tools/logging.h);
- ``STARTING!`` (tflite/tools/benchmark/benchmark_main.cc), the parameters that were set, then
  ``Graph`` and ``Signature to run`` always (``LOG_TOOL_PARAM``: ``description: [value]``, booleans as
  0/1; tflite/tools/tool_params.h, benchmark_model.cc ``LogParams``, benchmark_tflite_model.cc);
- ``Loaded model <path>``, ``The input model file size (MB): <MB>``, ``Initialized session in <ms>ms.``;
- per phase ``Running benchmark for at least N iterations and at least S seconds but terminate if
  exceeding M seconds.`` and the ``StatWithPercentiles`` line followed by an empty line
  (``count=.. first=.. curr=.. min=.. max=.. avg=.. std=.. p5=.. median=.. p95=..``; all-same form
  ``count=N curr=V(all same)``; ``count=0``; std truncated to an integer, percentiles by nth_element at
  ``size*p/100``: tensorflow : third_party/xla/xla/tsl/util/stats_calculator.h);
- ``Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..``,
  the memory note, ``Memory footprint delta from the start of the tool (MB): init=.. overall=..`` and,
  with ``--report_peak_memory_footprint=true``, the periodic-monitoring peak and the end-of-execution
  status block (benchmark_model.cc ``BenchmarkLoggingListener::OnBenchmarkEnd``).
The run loop is ``BenchmarkModel::Run``: ``run < min_num_times || now < min_finish`` and
``now <= max_finish``, each run timed in microseconds around ``Invoke`` only.

Delegates (``--use_gpu``, ``--use_nnapi``): the flags come from the delegate providers linked into the build
(tflite/tools/delegates/*_provider.cc); the loopback's ``accelerators_benchmark_model`` knob says whether this
build has the GPU delegate (``gpu_build``, default true: its ``--help`` then lists ``--gpu_backend`` and the
other GPU flags) and what each delegate does with the graph (``GPU`` / ``NNAPI``: ``completely`` (default),
``partially``, ``not``, ``failed``, ``unsupported``). The stand-in always computes on this host's CPU; it prints
the lines the real tool prints for that outcome, in its order: the provider's ``Created TensorFlow Lite delegate
for GPU.`` / ``GPU delegate created.``, the GPU delegate's unsupported-op list and ``a operations will run on the
GPU, and the remaining b operations will run on the CPU.``, the subgraph's ``Replacing N out of M node(s) with
delegate (<kernel>) node, yielding P partitions for the whole graph.`` (VERBOSE, always logged on Android) and
then ``Explicitly applied <NAME> delegate, and the model graph will be completely|partially executed by the
delegate ...`` / ``Though <NAME> delegate is explicitly applied, the model graph will not be executed by the
delegate.`` / ``Failed to apply <NAME> delegate.`` (benchmark_tflite_model.cc), as in the public logs of
tests/fixtures/tool_logs/delegation.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Output, cpp_double, knob, max_rss_kb  # noqa: E402

# (flag, default, description, type) in LogParams order (benchmark_model.cc, benchmark_tflite_model.cc).
PARAMS = [
    ("num_runs", 50, "Min num runs", int), ("min_secs", 1.0, "Min runs duration (seconds)", float),
    ("max_secs", 150.0, "Max runs duration (seconds)", float), ("run_delay", -1.0, "Inter-run delay (seconds)", float),
    ("run_frequency", -1.0, "Number of prorated runs per second", float), ("num_threads", -1, "Num threads", int),
    ("use_caching", False, "Use caching", bool), ("benchmark_name", "", "Benchmark name", str),
    ("output_prefix", "", "Output prefix", str), ("warmup_runs", 1, "Min warmup runs", int),
    ("warmup_min_secs", 0.5, "Min warmup runs duration (seconds)", float),
    ("dry_run", False, "Run w/o invoking kernels", bool),
    ("report_peak_memory_footprint", False, "Report the peak memory footprint", bool),
    ("memory_footprint_check_interval_ms", 50, "Memory footprint check interval (ms)", int),
]
GRAPH_PARAMS = [("graph", "", "Graph", str), ("signature_to_run_for", "", "Signature to run", str)]
# The delegate providers' flags (gpu/nnapi/xnnpack_delegate_provider.cc) and the one that refuses CPU fallback.
GPU_BUILD_PARAMS = [("gpu_precision_loss_allowed", True, "Allow lower precision in gpu", bool),
                    ("gpu_experimental_enable_quant", True, "Enable running quant models in gpu", bool),
                    ("gpu_inference_for_sustained_speed", False, "Prefer maximizing the throughput in gpu", bool),
                    ("gpu_backend", "", "GPU backend", str)]
DELEGATE_PARAMS = [("use_gpu", False, "Use gpu", bool), ("use_nnapi", False, "Use NNAPI", bool),
                   ("nnapi_accelerator_name", "", "NNAPI accelerator name", str),
                   ("disable_nnapi_cpu", True, "Disable NNAPI cpu", bool),
                   ("use_xnnpack", False, "Use xnnpack", bool),
                   ("require_full_delegation", False, "Require full delegation", bool)]
KERNEL = {"GPU": "TfLiteGpuDelegateV2", "NNAPI": "TfLiteNnapiDelegate"}


def now_us() -> int:
    return time.monotonic_ns() // 1000


def fmt(value, kind) -> str:
    if kind is bool:
        return "1" if value else "0"
    if kind is float:
        return cpp_double(value)
    return str(value)


def all_params(build: dict) -> list:
    return PARAMS + GRAPH_PARAMS + DELEGATE_PARAMS + (GPU_BUILD_PARAMS if build.get("gpu_build", True) else [])


def parse(argv: list[str], params: list) -> tuple[dict, dict, list[str]]:
    kinds = {name: kind for name, _, _, kind in params}
    values = {name: default for name, default, _, _ in params}
    given, unknown = {}, []
    for arg in argv:
        if not arg.startswith("--"):
            unknown.append(arg)
            continue
        name, eq, raw = arg[2:].partition("=")
        if name not in kinds:
            unknown.append(arg)
            continue
        kind = kinds[name]
        if kind is bool:
            value = (raw or "true").lower() in ("true", "1")
        else:
            value = kind(raw)
        values[name] = given[name] = value
    return values, given, unknown


def stat_line(values: list[int]) -> str:
    """StatWithPercentiles<int64_t>::OutputToStream."""
    if not values:
        return "count=0"
    n = len(values)
    lo, hi = min(values), max(values)
    if lo == hi:
        out = f"count={n} curr={values[-1]}" + ("(all same)" if n > 1 else "")
    else:
        avg = sum(values) / n
        var = sum(v * v for v in values) / n - avg * avg
        out = (f"count={n} first={values[0]} curr={values[-1]} min={lo} max={hi} avg={cpp_double(avg)} "
               f"std={int(math.sqrt(max(var, 0.0)))}")
    ordered = sorted(values)
    pct = {p: ordered[n * p // 100] for p in (5, 50, 95)}
    return out + f" p5={pct[5]} median={pct[50]} p95={pct[95]}"


class PeakMonitor(threading.Thread):
    """MemoryUsageMonitor: max of ru_maxrss sampled every interval ms (tflite/profiling/memory_usage_monitor.cc)."""

    def __init__(self, interval_ms: int):
        super().__init__(daemon=True)
        self.interval_s, self.peak_kb, self.stop = interval_ms / 1000, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, max_rss_kb())
            self.stop.wait(self.interval_s)


def apply_delegate(out: Output, name: str, outcome: str, ops: list[str]) -> bool:
    """The lines of ``ApplyDelegates`` for one delegate and what it does with the graph; False when the tool
    stops (the delegate could not be applied)."""
    info = lambda msg: out.line(f"INFO: {msg}")  # noqa: E731
    m = len(ops)
    if outcome == "unsupported":  # the provider made no delegate: nothing is applied, the run goes on on the CPU
        out.line(f"WARN: {name} acceleration is unsupported on this platform.")
        return True
    info(f"Created TensorFlow Lite delegate for {name}.")
    info(f"{name} delegate created.")
    if outcome == "failed":
        out.line(f"ERROR: Failed to apply {name} delegate.", sys.stderr)
        out.line("ERROR: Benchmarking failed.", sys.stderr)
        return False
    if outcome == "not":
        info(f"Though {name} delegate is explicitly applied, the model graph will not be executed by the delegate.")
        return True
    taken = m if outcome == "completely" or m < 2 else m - 1
    if taken < m and name == "GPU":
        out.line("ERROR: Following operations are not supported by GPU delegate:")
        out.line(f"{ops[-1]}: Operation is not supported.")
        out.line(f"{taken} operations will run on the GPU, and the remaining {m - taken} operations will run on the CPU.")
    parts = 1 if taken == m else 2
    out.line(f"VERBOSE: Replacing {taken} out of {m} node(s) with delegate ({KERNEL[name]}) node, yielding {parts} "
             "partitions for the whole graph.")
    if name == "GPU":
        info("Initialized OpenCL-based API.")
        info("Created 1 GPU delegate kernels.")
    if taken == m:
        info(f"Explicitly applied {name} delegate, and the model graph will be completely executed by the delegate.")
    else:
        info(f"Explicitly applied {name} delegate, and the model graph will be partially executed by the delegate "
             "w/ 1 delegate kernels.")
    return True


def main(argv: list[str]) -> int:
    out = Output("benchmark_model", argv)
    say = lambda msg: out.line(f"INFO: {msg}")  # noqa: E731
    say("STARTING!")
    build = knob("benchmark_model")
    params = all_params(build)
    if "--help" in argv:
        usage = "usage: benchmark_model\nFlags:\n" + "".join(
            f"\t--{name}={fmt(default, kind)}\t{kind.__name__}\toptional\t{desc}\n"
            for name, default, desc, kind in params)
        out.line(f"ERROR: {usage}", sys.stderr)
        out.line("ERROR: Benchmarking failed.", sys.stderr)
        return 1
    values, given, unknown = parse(argv, params)
    if unknown:
        say_warn = f"WARN: Unconsumed cmdline flags: {' '.join(unknown)}"
        out.line(say_warn)
    say("Log parameter values verbosely: [0]")
    for name, _, desc, kind in PARAMS:
        if name in given:
            say(f"{desc}: [{fmt(values[name], kind)}]")
    for name, _, desc, kind in GRAPH_PARAMS:
        say(f"{desc}: [{fmt(values[name], kind)}]")
    for name, _, desc, kind in DELEGATE_PARAMS + GPU_BUILD_PARAMS:
        if name in given:
            say(f"{desc}: [{fmt(values[name], kind)}]")
            if name == "use_nnapi" and values[name]:
                say("NNAPI accelerators available: [qti-dsp,qti-gpu,nnapi-reference]")

    monitor = None
    if values["report_peak_memory_footprint"]:
        monitor = PeakMonitor(values["memory_footprint_check_interval_ms"])
        monitor.start()
    graph = values["graph"]
    from ai_edge_litert.interpreter import Interpreter  # linked into the real binary: not part of Init

    start_kb = max_rss_kb()
    t0 = now_us()
    try:
        size_mb = os.path.getsize(graph) / 1e6
        threads = values["num_threads"]
        interpreter = Interpreter(model_path=graph, num_threads=threads if threads > 0 else None)
        say(f"Loaded model {graph}")
        ops = [d["op_name"] for d in interpreter._get_ops_details()]  # the graph's nodes, before any delegate
        interpreter.allocate_tensors()
    except (OSError, ValueError, RuntimeError) as exc:
        out.line(f"ERROR: Failed to load model {graph}", sys.stderr)
        out.line(f"ERROR: {exc}", sys.stderr)
        out.line("ERROR: Benchmarking failed.", sys.stderr)
        return 1
    for flag, name in (("use_gpu", "GPU"), ("use_nnapi", "NNAPI")):  # CreateAllRankedDelegates: in flag order
        # a build without the GPU delegate lists --use_gpu but makes no delegate (gpu_delegate_provider.cc)
        outcome = build.get(name, "completely") if name != "GPU" or build.get("gpu_build", True) else "unsupported"
        if values[flag] and not apply_delegate(out, name, outcome, ops):
            return 1
    init_kb = max_rss_kb()
    init_us = now_us() - t0
    say(f"The input model file size (MB): {cpp_double(size_mb)}")
    say(f"Initialized session in {cpp_double(init_us / 1e3)}ms.")

    import numpy as np

    rng = np.random.default_rng(0)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], rng.random(detail["shape"], dtype=np.float32))
    invoke = interpreter.invoke

    def run(min_num: int, min_secs: float, max_secs: float) -> list[int]:
        say(f"Running benchmark for at least {min_num} iterations and at least {cpp_double(min_secs)} seconds "
            f"but terminate if exceeding {cpp_double(max_secs)} seconds.")
        samples = []
        now = now_us()
        min_finish, max_finish = now + int(min_secs * 1e6), now + int(max_secs * 1e6)
        run_ = 0
        while (run_ < min_num or now < min_finish) and now <= max_finish:
            s = now_us()
            invoke()
            samples.append(now_us() - s)
            now = now_us()
            run_ += 1
        out.line(f"INFO: {stat_line(samples)}")
        out.line("")
        return samples

    warm = run(values["warmup_runs"], values["warmup_min_secs"], values["max_secs"])
    timed = run(values["num_runs"], values["min_secs"], values["max_secs"])
    overall_kb = max_rss_kb()
    avg = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    say(f"Inference timings in us: Init: {init_us}, First inference: {warm[0] if warm else 0}, "
        f"Warmup (avg): {cpp_double(avg(warm))}, Inference (avg): {cpp_double(avg(timed))}")
    say("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the "
        "actual memory footprint of the model at runtime. Take the information at your discretion.")
    say(f"Memory footprint delta from the start of the tool (MB): init={cpp_double((init_kb - start_kb) / 1024.0)} "
        f"overall={cpp_double((overall_kb - start_kb) / 1024.0)}")
    if monitor is not None:
        monitor.stop.set()
        monitor.join()
        peak_mb = monitor.peak_kb / 1024.0
        say(f"Overall peak memory footprint (MB) via periodic monitoring: {cpp_double(peak_mb)}")
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as f:
            _, resident, shared = (int(x) for x in f.read().split()[:3])
        rss, shared_mb = resident * page // (1024 * 1024), shared * page // (1024 * 1024)
        say("Memory status at the end of exeution:")  # sic: the typo is the tool's
        say(f"- VmRSS              : {rss} MB")
        say(f"+ RssAnnon           : {rss - shared_mb} MB")
        say(f"+ RssFile + RssShmem : {shared_mb} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
