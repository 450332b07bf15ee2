"""The loopback iPhone's stand-in for the splitbench agent app (``device_agents/ios/app``).

Started by the loopback's DVT process control as ``python loopback_ios_app.py --container DIR
--splitbench-job LAUNCH_ID``, it follows the app's protocol: read ``Documents/splitbench/jobs/<id>.json``
(its paths percent-encoded), do the phase, write a schema-valid result atomically (a temporary file, then
a rename) beside it, exit.

Its work is real but it is not Core ML, and every result says so (device model ``Loopback1,1``, runtime
"loopback stand-in", ``standin: true``, a note): "compile" copies the package, "load" reads every file of
the compiled copy into memory, a "prediction" is one matrix-vector product of the input with the package's
weight bytes viewed as float32. Times come from ``time.perf_counter_ns`` around those calls only; memory
is VmRSS/VmHWM of this process (method ``vmhwm_in_process``), read by the local profile's worker functions.

Fault switches from the loopback (environment): ``STANDIN_FAULT=hang`` never finishes; ``bad_result``
writes a result with a key the schema does not know (an app of another version); ``hold`` stops once
the model is loaded and waits for the loopback to kill it (jetsam, the watchdog) or to send SIGUSR1 (the
app sent to the background: it writes an ``interrupted`` result, like the app's background handler).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from device_agents.local.worker import proc_status, reset_peak_rss

STANDIN_NOTE = "measured by the loopback stand-in on the test host: not an iPhone, not Core ML"


def base_result(job: dict) -> dict:
    """Every field of a result, not obtained yet (null / empty)."""
    return {
        "schema_version": 1, "kind": "result", "job_id": job["job_id"], "launch_id": job["launch_id"],
        "phase": job["phase"], "index": job["index"], "status": "ok", "reason": "",
        "app": {"version": os.environ.get("STANDIN_APP_VERSION", "?"), "build": os.environ.get("STANDIN_APP_BUILD", "?"),
                "bundle_id": os.environ.get("STANDIN_BUNDLE_ID", "?")},
        "device": {"model": "Loopback1,1", "os_name": "iOS (loopback)", "os_version": os.environ.get("STANDIN_OS_VERSION", "?"),
                   "os_build": "LOOPBACK", "simulator": False, "standin": True},
        "runtime": {"name": "loopback stand-in (not Core ML)", "version": f"numpy {np.__version__}"},
        "clock": "time.perf_counter_ns (the test host)", "compute_units": job["compute_units"], "qos": "host process",
        "pid": os.getpid(), "compile_ns": None, "load_ns": None, "first_infer_ns": None, "warmup_ns": [],
        "infer_ns": [], "wall_runs_ns": None, "cpu_runs_ns": None,
        "memory": {"method": "vmhwm_in_process", "before_load_b": None, "after_load_b": None, "peak_b": None,
                   "available_after_load_b": None},
        "thermal_before": None, "thermal_after": None, "low_power_mode": None, "notes": [STANDIN_NOTE],
    }


def in_documents(docs: Path, escaped: str) -> Path:
    """A job file's path (percent-encoded, like the app decodes it with removingPercentEncoding)."""
    return docs / unquote(escaped, errors="strict")


def write_result(docs: Path, job: dict, result: dict) -> None:
    path = in_documents(docs, job["result_path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def hold_if_asked() -> None:
    if os.environ.get("STANDIN_FAULT") == "hold":
        (Path(os.environ["STANDIN_HELD_DIR"]) / str(os.getpid())).touch()
        while True:
            time.sleep(1)


def load(compiled: Path) -> np.ndarray:
    """Read every file of the compiled model; the largest one's bytes as float32 weights."""
    blobs = {f: f.read_bytes() for f in sorted(compiled.rglob("*")) if f.is_file()}
    if not blobs:
        raise RuntimeError(f"{compiled.name} has no files")
    largest = max(blobs.values(), key=len)
    w = np.frombuffer(largest[: len(largest) // 4 * 4], dtype=np.float32)
    return np.nan_to_num(w.copy(), nan=0.0, posinf=0.0, neginf=0.0)


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    v = x.reshape(-1)
    n = v.size
    if w.size >= n:
        m = min(64, w.size // n)
        return w[: m * n].reshape(m, n) @ v
    return np.resize(w, n) * v


def run(job: dict, docs: Path, result: dict) -> None:
    phase = job["phase"]
    if phase == "hello":
        return
    package = in_documents(docs, job["model"]["package"])
    compiled = in_documents(docs, job["model"]["compiled"])
    if phase == "compile":
        if not (package / "Manifest.json").is_file():
            raise RuntimeError(f"{package.name} is not a Core ML package (no Manifest.json)")
        shutil.rmtree(compiled, ignore_errors=True)
        compiled.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter_ns()
        shutil.copytree(package, compiled)
        result["compile_ns"] = time.perf_counter_ns() - t0
        result["notes"].append("stand-in compile: a copy of the package")
        return
    mem = result["memory"]
    if not reset_peak_rss():
        result["notes"].append("VmHWM could not be reset: the peak includes the stand-in's start")
    mem["before_load_b"] = proc_status()["VmRSS"]
    t0 = time.perf_counter_ns()
    w = load(compiled)
    result["load_ns"] = time.perf_counter_ns() - t0
    mem["after_load_b"] = proc_status()["VmRSS"]
    hold_if_asked()
    if phase == "cold":
        shape = tuple(job["input_shape"])
        if not shape:
            raise RuntimeError("the job has no input shape")
        x = np.random.default_rng(job["seed"]).standard_normal(shape).astype(np.float32)  # prepared beforehand
        t0 = time.perf_counter_ns()
        predict(w, x)
        result["first_infer_ns"] = time.perf_counter_ns() - t0
        for _ in range(job["warmup"]):
            t0 = time.perf_counter_ns()
            predict(w, x)
            result["warmup_ns"].append(time.perf_counter_ns() - t0)
        cpu0, wall0 = time.process_time_ns(), time.perf_counter_ns()
        for _ in range(job["runs"]):
            t0 = time.perf_counter_ns()
            predict(w, x)
            result["infer_ns"].append(time.perf_counter_ns() - t0)
        result["wall_runs_ns"] = time.perf_counter_ns() - wall0
        result["cpu_runs_ns"] = time.process_time_ns() - cpu0
    mem["peak_b"] = proc_status()["VmHWM"]


def main(argv: list[str]) -> int:
    container = Path(argv[argv.index("--container") + 1])
    launch_id = argv[argv.index("--splitbench-job") + 1]
    docs = container / "Documents"
    job = json.loads((docs / "splitbench" / "jobs" / f"{launch_id}.json").read_text())
    result = base_result(job)

    def backgrounded(signum, frame):  # the app's didEnterBackground handler
        result.update(status="interrupted", reason="sent to the background (the phone was locked?)")
        write_result(docs, job, result)
        os._exit(0)

    signal.signal(signal.SIGUSR1, backgrounded)
    if os.environ.get("STANDIN_FAULT") == "hang":
        while True:
            time.sleep(1)
    try:
        run(job, docs, result)
    except Exception as exc:  # noqa: BLE001 - a failed row, like Core ML's errors in the app
        result.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    if os.environ.get("STANDIN_FAULT") == "bad_result":
        result["gpu_ns"] = []
    write_result(docs, job, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
