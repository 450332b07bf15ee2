"""Stand-in for ExecuTorch's ``executor_runner`` on the loopback phone.

Flags (gflags, ``--name=value``; pytorch/executorch : examples/portable/executor_runner/executor_runner.cpp
@ cff6f4dd): ``--model_path``, ``--num_executions`` (default 1), ``--cpu_threads`` (-1: heuristic; the
thread pool is reset to that many threads), ``--print_output none|summary|all``, ``--method_name``.
It runs the real ``.pte`` with this host's ExecuTorch (the native ``_C`` binding, XNNPACK pool reset
to ``--cpu_threads``), inputs of ones as ``prepare_input_tensors`` makes them, and logs what the tool
logs through ``ET_LOG``, in its order:

    Resetting threadpool with num threads = N / Model file <p> is loaded. / Using method forward /
    Setting up CPU planned buffer 0, size N. / Model loaded in %f ms. /
    Iteration %u of %u: %f ms (1-based, execute() only) / Model executed successfully %u time(s) in %f ms. /
    %zu outputs:

Where the log goes depends on the platform abstraction layer it was built with: the POSIX PAL prints
``%c %02u:%02u:%02u.%06lu executorch:%s:%zu] %s`` on stderr (runtime/platform/default/posix.cpp); the
Android PAL (the Android CMake preset) sends the message only to logcat, tag ``ExecuTorch``
(runtime/platform/default/android.cpp). The loopback's ``logcat_pal`` knob picks the Android one: the
lines then go to ``$LOOPBACK_STATE/logcat/<pid>.log`` in logcat's threadtime format, where the
``logcat`` stand-in finds them.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import STATE, Output, single_thread_torch  # noqa: E402

DEFAULTS = {"model_path": "model.pte", "num_executions": "1", "cpu_threads": "-1", "print_output": "summary",
            "method_name": "", "data_path": "", "inputs": "", "output_file": ""}
_T0 = time.monotonic_ns()


class Log:
    def __init__(self, out: Output, android: bool):
        self.out, self.android = out, android
        self.logcat = STATE / "logcat" / f"{os.getpid()}.log"

    def __call__(self, level: str, line: int, msg: str) -> None:
        if self.android:
            stamp = time.strftime("%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
            with open(self.logcat, "a") as f:
                f.write(f"{stamp} {os.getpid():5d} {os.getpid():5d} {level} ExecuTorch: {msg}\n")
            self.out.tick()
            return
        us = (time.monotonic_ns() - _T0) // 1000
        h, rem = divmod(us // 1_000_000, 3600)
        m, s = divmod(rem, 60)
        self.out.line(f"{level} {h:02d}:{m:02d}:{s:02d}.{us % 1_000_000:06d} executorch:executor_runner.cpp:{line}] "
                      f"{msg}", sys.stderr)


def main(argv: list[str]) -> int:
    out = Output("executor_runner", argv)
    try:
        android = (STATE / "logcat_pal").read_text().strip() == "1"
    except OSError:
        android = False
    log = Log(out, android)
    flags = dict(DEFAULTS)
    extra = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--help", "-help"):
            out.line("executor_runner: Usage: executor_runner [flags]\n\n  Flags from executor_runner.cpp:\n" + "".join(
                f'    -{k} type: string default: "{v}"\n' for k, v in DEFAULTS.items()), sys.stderr)
            return 1
        if arg.startswith("--") and arg[2:].split("=", 1)[0] in DEFAULTS:
            name, eq, value = arg[2:].partition("=")
            if not eq:
                i += 1
                value = argv[i]
            flags[name] = value
        elif arg.startswith("-"):
            sys.stderr.write(f"ERROR: unknown command line flag '{arg.lstrip('-').split('=')[0]}'\n")
            return 1
        else:
            extra.append(arg)
        i += 1
    if extra:
        log("E", 312, "Extra commandline args: " + " ".join(extra))
        return 1

    torch = single_thread_torch()
    from executorch.extension.pybindings import _C  # linked into the real binary

    threads = int(flags["cpu_threads"])
    n_threads = threads if threads != -1 else max(1, len(os.sched_getaffinity(0)))
    log("I", 336, f"Resetting threadpool with num threads = {n_threads}")
    _C._unsafe_reset_threadpool(n_threads)
    path = flags["model_path"]
    before = time.perf_counter_ns()
    try:
        program = _C._load_program(path, enable_etdump=False, debug_buffer_size=0,
                                   program_verification=_C.Verification.InternalConsistency, data_path=None)
    except Exception:  # noqa: BLE001 - the tool logs and returns 1
        if not os.path.exists(path):
            log("E", 450, "FileDataLoader::from() failed: 0x22")
            os.abort()  # ET_CHECK_MSG aborts
        log("E", 473, f"Failed to parse model file {path}")
        return 1
    log("I", 476, f"Model file {path} is loaded.")
    log("I", 486, "Using method forward")
    log("I", 560, "Setting up CPU planned buffer 0, size 0.")
    method = program.load_method(flags["method_name"] or "forward")
    after = time.perf_counter_ns()
    log("I", 630, f"Model loaded in {(after - before) / 1e6:f} ms.")
    n = int(flags["num_executions"])
    # prepare_input_tensors: every input of the method's own shape, filled with ones
    sizes = tuple(program.method_meta(flags["method_name"] or "forward").input_tensor_meta(0).sizes())
    x = [torch.ones(sizes, dtype=torch.float32)]
    spent = 0
    outputs = None
    for k in range(n):
        t = time.perf_counter_ns()
        outputs = method(x)
        elapsed = time.perf_counter_ns() - t
        spent += elapsed
        log("I", 779, f"Iteration {k + 1} of {n}: {elapsed / 1e6:f} ms")
    log("I", 789, f"Model executed successfully {n} time(s) in {spent / 1e6:f} ms.")
    log("I", 798, f"{len(outputs or ())} outputs: ")
    if flags["print_output"] != "none":
        for j, o in enumerate(outputs or ()):
            print(f"Output {j}: tensor(sizes={list(o.shape)}, {o.flatten()[:10].tolist()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
