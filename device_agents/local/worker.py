"""The device-side worker: pins itself to one CPU, imports one runtime, and measures in children.

Run as ``python -m device_agents.local.worker --channel-fd N --cpu C --backend B``; it pins itself,
imports the runtime, says ``hello``, then reads ``job`` messages on stdin, one per line, until stdin
closes, and writes protocol messages to fd N (see ``protocol.py``). One worker serves every job of
its backend in an agent session: the runtime is imported once per run, not once per job.

Why a fork server: every load must happen in a fresh process (a runtime caches kernels, arenas
and file mappings, so a second load in the same process is not a load a phone app would see),
but importing a runtime costs 0.2 s (ONNX Runtime, LiteRT) to several seconds (ExecuTorch pulls
in torch). So the worker imports the runtime once, never loads a model itself, and forks one
child per load:
    child 1          cold load (artifact files fsync'ed and dropped from the page cache first),
                     the first inference (kept apart), warm-up runs, timed runs, memory;
    children 2..1+W  warm load only (the files are now in the page cache).
Each child reports to the worker over its own pipe; the worker sends one result to the host.
A child killed by a signal makes the job CRASHED; an exception raised by the runtime (for example
a corrupted artifact) makes it FAILED with the runtime's message.

Memory, per child (``/proc/self/status`` is per process): RSS before load (the baseline: Python,
the imported runtime, the prepared input), RSS after load, VmHWM after the runs, USS. On this
kernel (6.18) a forked child does NOT inherit its parent's VmHWM (fork sets the new mm's high
water mark to its current RSS), but the child still resets it by writing "5" to
/proc/self/clear_refs right after reading the baseline, so the peak is that of load + runs on any
kernel. Model memory = VmHWM - baseline.

Memory cap: it applies to model memory (VmHWM - baseline), checked after load and after the
runs. Because VmHWM is a high-water mark, a peak between the checks is still caught; the checks
cost nothing during the timed runs. RLIMIT_AS/RLIMIT_DATA are unusable (runtimes reserve large
virtual ranges they never touch) and a polling thread would perturb the timing. A memory cgroup
would also stop the allocation itself; it works on this machine (cgroup v1, root) but the only
writable memory hierarchy here is the one the sandbox accounts our processes in, so it is not
used: an over-budget model still allocates what it needs once, then is recorded as OOM.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from device_agents.base import CRASHED, FAILED, OK, OOM, MeasureJob, artifact_files
from device_agents.litert_io import describe_input, quantize_input
from device_agents.local import protocol

# One clock for every duration: CLOCK_MONOTONIC in nanoseconds, unaffected by NTP steps.
clock = time.perf_counter_ns
# CPU time of the whole process (user + system, all threads), nanosecond resolution;
# os.times() ticks in 10 ms steps, far too coarse for 60 short runs.
cpu_clock = time.process_time_ns


# -- runtimes --------------------------------------------------------------------------------------
class Backend:
    """How one runtime is imported, loaded, fed and checked. The worker holds one of these."""

    name = ""
    distributions: tuple[str, ...] = ()
    fed: dict[str, Any] | None = None  # how bind() fed the input when it had to convert it (an int8 tensor)

    def import_runtime(self) -> None:
        raise NotImplementedError

    def load(self, path: str) -> Any:
        """From the model file to something ready to run: this is what load time measures."""
        raise NotImplementedError

    def bind(self, session: Any, x) -> Callable[[], Any]:
        """The runtime call to time, with its input already in place."""
        raise NotImplementedError

    def thread_checks(self, session: Any) -> dict[str, Any]:
        """What the runtime says its thread counts are."""
        return {}


class OnnxBackend(Backend):
    name = "onnx"
    distributions = ("onnxruntime",)

    def import_runtime(self) -> None:
        import onnxruntime

        self.ort = onnxruntime
        self.ort.set_default_logger_severity(3)

    def load(self, path: str):
        ort = self.ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def bind(self, session, x):
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs; splitbench feeds exactly one")
        run, feed = session.run, {inputs[0].name: x}
        return lambda: run(None, feed)

    def thread_checks(self, session):
        so = session.get_session_options()
        return {"ort_intra_op_num_threads": so.intra_op_num_threads,
                "ort_inter_op_num_threads": so.inter_op_num_threads,
                "ort_execution_mode": str(so.execution_mode).rsplit(".", 1)[-1],
                "ort_providers": session.get_providers()}


class LiteRTBackend(Backend):
    name = "litert"
    distributions = ("ai-edge-litert",)

    def import_runtime(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.Interpreter = Interpreter

    def load(self, path: str):
        interpreter = self.Interpreter(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
        return interpreter

    def bind(self, session, x):
        # The input is copied into the interpreter once, before the first inference: the timed
        # call is invoke() alone, as in LiteRT's own benchmark tool. A static int8 model takes an
        # int8 tensor: the float input is quantized here, once, with the interpreter's own scale and
        # zero point (benchmark_model fills an int8 input itself), never inside the timed call.
        details = session.get_input_details()
        if len(details) != 1:
            raise ValueError(f"the model has {len(details)} inputs; splitbench feeds exactly one")
        if tuple(details[0]["shape"]) != tuple(x.shape):
            raise ValueError(f"the model's input shape is {tuple(details[0]['shape'])}, "
                             f"the job's is {tuple(x.shape)}")
        session.set_tensor(details[0]["index"], quantize_input(x, details[0]))
        self.fed = describe_input(details[0])
        return session.invoke

    def thread_checks(self, session):
        # The interpreter has no getter for its thread count: record what it was given; the
        # OS thread count of the process is the check.
        return {"litert_num_threads": 1}


class ExecuTorchBackend(Backend):
    name = "executorch"
    distributions = ("executorch", "torch")

    def import_runtime(self) -> None:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        # The runtime is the native extension _C. Its Python wrappers (executorch.runtime,
        # portable_lib) import the whole executorch.exir compiler for one warning class: ~5 s per
        # worker here, for nothing the measurement uses. We make the calls executorch.runtime makes.
        from executorch.extension.pybindings import _C

        # ExecuTorch's XNNPACK thread pool is sized from the CPU count read by cpuinfo, not from
        # the affinity mask: on 2 CPUs it starts a second thread. Reset it to the caller only,
        # here in the worker, before any child is forked.
        _C._unsafe_reset_threadpool(1)
        self.torch, self.C = torch, _C

    def load(self, path: str):
        # As executorch.runtime.Runtime.load_program(path).load_method("forward") does.
        program = self.C._load_program(path, enable_etdump=False, debug_buffer_size=0,
                                       program_verification=self.C.Verification.InternalConsistency,
                                       data_path=None)
        return program.load_method("forward")

    def bind(self, session, x):
        inputs = [self.torch.from_numpy(x)]
        return lambda: session(inputs)  # what executorch.runtime's Method.execute(inputs) calls

    def thread_checks(self, session):
        return {"torch_num_threads": self.torch.get_num_threads(),
                "torch_num_interop_threads": self.torch.get_num_interop_threads(),
                "executorch_threadpool_threads": self.C._threadpool_get_thread_count()}


class CoreMLBackend(Backend):
    """macOS only: Core ML through coremltools, compute units ``cpuOnly`` (macOS offers no core pinning).

    Not run on this project's Linux CI (Core ML predicts only on macOS): written from coremltools' API,
    unverified here. The worker sets OBJC_DISABLE_INITIALIZE_FORK_SAFETY so children may use Core ML.
    """

    name = "coreml"
    distributions = ("coremltools",)

    def import_runtime(self) -> None:
        import coremltools

        self.ct = coremltools

    def load(self, path: str):
        return self.ct.models.MLModel(path, compute_units=self.ct.ComputeUnit.CPU_ONLY)

    def bind(self, session, x):
        name = session.get_spec().description.input[0].name
        feed = {name: x}
        return lambda: session.predict(feed)

    def thread_checks(self, session):
        return {"coreml_compute_units": "cpuOnly"}


BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (OnnxBackend, LiteRTBackend, ExecuTorchBackend)}
if sys.platform == "darwin":
    BACKENDS["coreml"] = CoreMLBackend

# -- process facts ---------------------------------------------------------------------------------
# Linux reads /proc and pins with sched_setaffinity. macOS has neither (and no public thread affinity):
# there the worker runs unpinned and memory comes from getrusage's lifetime peak (it cannot be reset).
CAN_PIN = hasattr(os, "sched_setaffinity")
MEMORY_METHOD = "vmhwm_in_process" if sys.platform.startswith("linux") else "ru_maxrss_in_process"


def pin_to(cpu: int) -> list[int]:
    """Pin this process to ``cpu`` where the OS allows it; return the CPUs it may run on ([] unpinned)."""
    if not CAN_PIN:
        return []
    os.sched_setaffinity(0, {cpu})
    return pinned_now()


def pinned_now() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if CAN_PIN else []


def proc_status() -> dict[str, int]:
    """The memory lines of /proc/self/status, in bytes (macOS: RSS and getrusage's peak under those names)."""
    if not sys.platform.startswith("linux"):
        import resource

        import psutil

        # ru_maxrss is in bytes on macOS; it is the process's lifetime peak.
        return {"VmRSS": psutil.Process().memory_info().rss, "VmHWM": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmSwap"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: "5" > clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def os_threads() -> int:
    if not sys.platform.startswith("linux"):
        import psutil

        return psutil.Process().num_threads()
    return len(os.listdir("/proc/self/task"))


def drop_from_page_cache(files: list[Path]) -> tuple[bool, list[str]]:
    """fsync then posix_fadvise(DONTNEED) each file; True only if every call succeeded.

    DONTNEED only drops clean pages, hence the fsync first. It cannot drop pages another
    process has mapped; a fresh worker has none.
    """
    if not hasattr(os, "posix_fadvise"):
        return False, ["posix_fadvise is not available on this OS: the cold load may be warm"]
    ok, notes = True, []
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except OSError as exc:
            ok = False
            notes.append(f"{f}: {exc}")
    return ok, notes


# -- the measuring children ------------------------------------------------------------------------
def _failure(status: str, exc: BaseException) -> dict[str, Any]:
    reason = f"{type(exc).__name__}: {exc}".strip()
    return {"status": status, "reason": reason[:2000], "traceback": traceback.format_exc()[-4000:]}


def time_calls(call: Callable[[], Any], n: int) -> list[int]:
    """``n`` samples of ``call()``: one clock read before and one after, nothing else inside.

    The list is allocated beforehand so no allocation falls in a sample. benchmarks/bench_measure.py
    times this very function against a bare loop to bound its overhead.
    """
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        call()
        samples[i] = clock() - t0
    return samples


def measure_cold(backend: Backend, job: MeasureJob, x, memory_cap_b: int | None,
                 channel_fd: int) -> dict[str, Any]:
    """Child 1: cold load, first inference, warm-up, timed runs, memory, thread checks."""
    import psutil

    out: dict[str, Any] = {"status": OK, "pid": os.getpid()}
    dropped, out["cold_cache_notes"] = drop_from_page_cache(artifact_files(job.artifact_path))
    out["cold_method"] = "fadvise_dontneed" if dropped else "not_obtained"
    if not dropped:
        out["notes"] = ["cold load not obtained: the artifact could not be dropped from the page cache "
                        "(posix_fadvise(DONTNEED) failed; see diagnostics.cold_cache_notes)"]
    threads_before = os_threads()
    rss_before = proc_status()["VmRSS"]
    out["hwm_reset"] = reset_peak_rss()

    t0 = clock()
    session = backend.load(job.artifact_path)
    out["load_cold_ns"] = clock() - t0

    status = proc_status()
    rss_after_load = status["VmRSS"]
    threads_after_load = os_threads()
    if memory_cap_b is not None and status["VmHWM"] - rss_before > memory_cap_b:
        out.update(status=OOM, memory=[_memory(rss_before, rss_after_load, status)],
                   reason=_oom_reason("load", status["VmHWM"] - rss_before, memory_cap_b))
        return out

    call = backend.bind(session, x)
    if backend.fed is not None:
        out["input_fed"] = backend.fed
    os.write(channel_fd, protocol.encode(protocol.LOADED, phase="cold", pid=os.getpid()))
    # Only the worker may hold the host channel from here on: if the worker dies, the host must
    # see the channel close at once, not when this child finishes its runs.
    os.close(channel_fd)

    t0 = clock()
    call()
    out["first_infer_ns"] = clock() - t0
    warmup = time_calls(call, job.warmup)
    cpu0, wall0 = cpu_clock(), clock()
    samples = time_calls(call, job.runs)
    wall1, cpu1 = clock(), cpu_clock()

    status = proc_status()
    out.update(
        warmup_ns=warmup, infer_ns=samples, cpu_ns=cpu1 - cpu0, wall_runs_ns=wall1 - wall0,
        memory=[_memory(rss_before, rss_after_load, status)], uss_b=psutil.Process().memory_full_info().uss,
        pinned_cpus=pinned_now(),
        threads={**backend.thread_checks(session), "os_threads_before_load": threads_before,
                 "os_threads_after_load": threads_after_load,
                 "os_threads_after_runs": os_threads()},
    )
    if memory_cap_b is not None and status["VmHWM"] - rss_before > memory_cap_b:
        out.update(status=OOM, reason=_oom_reason("the runs", status["VmHWM"] - rss_before, memory_cap_b))
    return out


def _memory(rss_before: int, rss_after_load: int, status: dict[str, int]) -> dict[str, Any]:
    """The child's reading: RSS before and after load, VmHWM (reset before the load) as the peak, and the
    other /proc/self/status lines at the end."""
    detail = {f"{k}_at_end_b": v for k, v in status.items() if k != "VmHWM"}
    return {"method": MEMORY_METHOD, "before_load_b": rss_before, "after_load_b": rss_after_load,
            "peak_b": status["VmHWM"], "detail": detail}


def measure_warm(backend: Backend, job: MeasureJob, channel_fd: int) -> dict[str, Any]:
    """Children 2..: a warm load (the files are in the page cache) in a fresh process."""
    os.close(channel_fd)  # see measure_cold
    t0 = clock()
    backend.load(job.artifact_path)
    return {"status": OK, "load_warm_ns": clock() - t0, "pid": os.getpid()}


def _oom_reason(when: str, model_b: int, cap_b: int) -> str:
    return (f"model memory {model_b / 1e6:.1f} MB after {when} exceeds the profile's cap of "
            f"{cap_b / 1e6:.1f} MB (peak RSS minus the pre-load baseline)")


def run_child(fn: Callable[[], dict[str, Any]], phase: str, index: int, channel_fd: int) -> dict[str, Any]:
    """Fork, run ``fn`` in the child, return its report (or a CRASHED/FAILED report)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into the worker
        code = 0
        try:
            os.close(read_fd)
            gc.disable()  # no collector pauses inside the timed runs; the child is short-lived
            try:
                report = fn()
            except Exception as exc:  # the runtime raised: a failure of the job, not a crash
                report = _failure(FAILED, exc)
            _write(write_fd, json.dumps(report).encode())
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    os.write(channel_fd, protocol.encode(protocol.STARTED, phase=phase, index=index, pid=pid))
    chunks = []
    with os.fdopen(read_fd, "rb") as f:
        while chunk := f.read(1 << 16):
            chunks.append(chunk)
    _, wait_status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wait_status):
        name = signal.Signals(os.WTERMSIG(wait_status)).name
        return {"status": CRASHED, "reason": f"{phase} child (pid {pid}) killed by {name}", "pid": pid}
    if not chunks or os.WEXITSTATUS(wait_status) != 0:
        return {"status": CRASHED, "pid": pid,
                "reason": f"{phase} child (pid {pid}) exited with code {os.WEXITSTATUS(wait_status)} without a report"}
    return json.loads(b"".join(chunks))


# -- the worker ------------------------------------------------------------------------------------
def runtime_versions(backend: Backend) -> dict[str, str]:
    from device_agents.host import installed_version

    return {dist: installed_version(dist) or "unknown" for dist in backend.distributions}


def start(backend_name: str, cpu: int, channel_fd: int) -> Backend:
    """Pin this process to ``cpu``, import the runtime once, say hello; return the backend."""
    # Pin before the runtime is imported, so any pool sized from the affinity mask sees one CPU.
    pinned = pin_to(cpu)
    if backend_name not in BACKENDS:
        raise ValueError(f"unknown backend {backend_name!r}; the local worker runs {sorted(BACKENDS)}")
    backend = BACKENDS[backend_name]()
    print(f"worker {os.getpid()}: pinned to CPU {pinned}, importing {backend.name}", file=sys.stderr)
    t0 = clock()
    backend.import_runtime()
    backend.import_ns = clock() - t0
    backend.versions = runtime_versions(backend)
    os.write(channel_fd, protocol.encode(protocol.HELLO, pid=os.getpid(), pinned_cpus=pinned,
                                         python=sys.version.split()[0], runtime=backend.versions,
                                         import_ns=backend.import_ns))
    return backend


def serve(backend: Backend, job: MeasureJob, memory_cap_b: int | None, channel_fd: int) -> dict[str, Any]:
    """Run one job in fresh children of this worker; return the MeasureResult as a dict (contract v2)."""
    import numpy as np

    if job.backend != backend.name:
        raise ValueError(f"a {job.backend} job sent to the {backend.name} worker")
    pinned = pinned_now()
    # The input is made once, before any child: every child feeds the same bytes.
    x = np.random.default_rng(job.seed).standard_normal(job.input_shape, dtype=np.float32)
    threads_at_fork = os_threads()  # forking a multi-threaded process is unsafe: record it
    pinning = (f"sched_setaffinity to CPU {pinned[0] if len(pinned) == 1 else pinned}, checked with "
               "sched_getaffinity in the measuring child" if pinned else
               "not pinned: this OS offers no thread affinity (macOS); runtimes held to one thread, Core ML to "
               "cpuOnly compute units")
    result: dict[str, Any] = {"runtime": backend.versions, "memory_cap_b": memory_cap_b, "pinned_cpus": pinned,
                              "pinning": pinning}
    if backend.name == "coreml":
        result["compute_units"] = "cpuOnly"
    diag: dict[str, Any] = {"worker_pid": os.getpid(), "runtime_import_ns": backend.import_ns}

    print(f"worker: cold child for {job.artifact_path}", file=sys.stderr)
    t0 = clock()
    cold = run_child(lambda: measure_cold(backend, job, x, memory_cap_b, channel_fd), "cold", 0, channel_fd)
    diag["cold_child_wall_ns"] = clock() - t0
    for key in ("traceback", "cold_cache_notes", "hwm_reset", "pid", "input_fed"):
        if key in cold:
            diag[{"pid": "cold_child_pid"}.get(key, key)] = cold.pop(key)
    threads = cold.pop("threads", {})
    result.update(cold)
    if threads:
        threads["env"] = {k: v for k, v in sorted(os.environ.items()) if k.endswith("_NUM_THREADS")}
        # An idle thread some runtimes start at import (ONNX Runtime does); fork copies only the
        # calling thread, so children start with one thread whatever this number is.
        threads["worker_os_threads_at_fork"] = threads_at_fork
        result["threads"] = threads
    result["pinned_cpus"] = cold.get("pinned_cpus", pinned)
    result["diagnostics"] = diag
    if cold["status"] != OK:
        return result

    warm_ns, warm_child_wall = [], []
    for i in range(job.warm_loads):
        print(f"worker: warm child {i + 1}/{job.warm_loads}", file=sys.stderr)
        t0 = clock()
        warm = run_child(lambda: measure_warm(backend, job, channel_fd), "warm", i + 1, channel_fd)
        warm_child_wall.append(clock() - t0)
        if warm["status"] != OK:
            result.update(status=warm["status"], reason=warm["reason"])
            diag["traceback"] = warm.get("traceback", "")
            break
        warm_ns.append(warm["load_warm_ns"])
    result["load_warm_ns"] = warm_ns
    # Fork + child exit + reap, minus the load itself: the fork server's per-load overhead.
    diag["warm_child_overhead_ns"] = [w - l for w, l in zip(warm_child_wall, warm_ns)]
    return result


def _write(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a pipe may take it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device_agents.local.worker")
    parser.add_argument("--channel-fd", type=int, required=True, help="fd of the pipe to the host")
    parser.add_argument("--cpu", type=int, required=True, help="the CPU to pin to")
    parser.add_argument("--backend", required=True, help="the runtime this worker serves")
    args = parser.parse_args(argv)
    channel_fd = args.channel_fd
    try:
        backend = start(args.backend, args.cpu, channel_fd)
    except Exception as exc:  # the runtime does not import, the CPU is not ours: every job fails alike
        traceback.print_exc()
        _write(channel_fd, protocol.encode(protocol.ERROR, reason=f"{type(exc).__name__}: {exc}", fatal=True))
        return 1
    for line in sys.stdin.buffer:  # one job per line, until the host closes stdin
        if not line.strip():
            continue
        try:
            msg = protocol.decode(line)
            if msg["type"] != protocol.JOB:
                raise protocol.ProtocolError(f"expected a job message, got {msg['type']!r}")
            job = MeasureJob.from_dict(msg["job"])
            result = serve(backend, job, msg.get("memory_cap_b"), channel_fd)
        except Exception as exc:  # a bad job: this job fails, the worker serves the next one
            traceback.print_exc()
            _write(channel_fd, protocol.encode(protocol.ERROR, reason=f"{type(exc).__name__}: {exc}", fatal=False))
            continue
        _write(channel_fd, protocol.encode(protocol.RESULT, result=result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
