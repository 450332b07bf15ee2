"""The files between the host and the iOS agent app, and how the app's results become a MeasureResult.

The host cannot talk to a running iOS app, so the exchange is by files in the app's container (house
arrest): per launch the host writes a *job* to ``Documents/splitbench/jobs/<launch_id>.json``,
launches the app with ``--splitbench-job <launch_id>``, and reads the *result* the app writes (atomically,
by rename) to ``Documents/splitbench/results/<launch_id>.json``. Both formats are one JSON schema file,
``schema/agent-v1.schema.json``, which the host validates every file against and the app's Codable
types mirror (its unit tests check them against the same file).

A job is measured in several launches, each a fresh process (like the local profile's fresh workers):

- ``compile``: ``MLModel.compileModel`` of the pushed ``.mlpackage``, timed; the ``.mlmodelc`` is kept;
- ``cold``: the first load of that compiled model, then the first prediction (kept apart), the warm-ups
  and the timed predictions, memory and thermal state around them;
- ``warm`` x ``warm_loads``: one load each.

Compiling in a launch of its own keeps its time and its memory out of the cold launch's numbers.

Paths in a job file are percent-encoded (:func:`escape_path`): a package's own name may hold a space or a
``+``, which the schema's path pattern would otherwise have to admit raw.

History of SCHEMA_VERSION (the schema file's version; the app reports its own version beside it):
    1  first version (phases hello, compile, cold, warm; statuses ok, failed, interrupted; paths
       percent-encoded: a path that needs no escaping reads the same either way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from device_agents.base import FAILED, OK, Conditions, Delegation, MeasureJob, MeasureResult, MemoryReading

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / f"agent-v{SCHEMA_VERSION}.schema.json"
# The agent app version this host speaks to (its CFBundleShortVersionString, MARKETING_VERSION in
# app/project.yml). Its major number is the schema version.
AGENT_APP_VERSION = "1.0"
INSTALL_HINT = "pip install 'splitbench[ios]' (in a splitbench checkout: pip install -e '.[ios]')"

# Where things live in the app's container. The host addresses them through house arrest as
# "/Documents/<relpath>"; the job file names them relative to the app's Documents folder.
DOCUMENTS = "/Documents"
ROOT = "splitbench"
MODELS = f"{ROOT}/models"  # <content key>/<name>.mlpackage, pushed once per key, and complete.json
COMPILED = f"{ROOT}/compiled"  # <job_id>.mlmodelc, made by the compile launch, removed after the job
JOBS = f"{ROOT}/jobs"
RESULTS = f"{ROOT}/results"

COMPUTE_UNITS = ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")  # what the app understands (the schema's)
# A job's accelerator ([run].accelerators) as MLModelConfiguration.computeUnits. ("all" has no accelerator: Core
# ML would choose among the three.)
COMPUTE_UNITS_FOR = {"cpu": "cpuOnly", "gpu": "cpuAndGPU", "npu": "cpuAndNeuralEngine"}
NO_PLACEMENT = ("Core ML does not say where each layer ran (MLComputePlan, iOS 17.4+, tells the device each "
                "operation prefers; the agent app does not ask it)")
INTERRUPTED = "interrupted"  # a result status of the app: sent to the background, measurement abandoned

# What every iOS result says about the CPU: no number here is a single core.
PINNING = ("none: iOS has no public thread-affinity API; Core ML's compute units choose the kind of processor, "
           "the OS schedules its threads on any core")
THREADS_NOTE = "OS-scheduled (MLModelConfiguration has no thread count)"
COLD_NOTE = ("cold load: the first load of the model compiled in the launch before, in a fresh process; iOS "
             "cannot drop the page cache, so the compiled files may still be cached")


class SchemaError(Exception):
    """A job or result file that does not follow the schema (the host and the app disagree)."""


def container_path(relpath: str) -> str:
    """The house-arrest path of a file named relative to the app's Documents folder."""
    return f"{DOCUMENTS}/{relpath}"


def escape_path(relpath: str) -> str:
    """A path as the job file carries it: percent-encoded UTF-8 (RFC 3986), ``/`` kept, so a package named
    ``my model+v2.mlpackage`` travels as ``my%20model%2Bv2.mlpackage``. The app decodes it
    (``String.removingPercentEncoding``); the schema's ``relpath`` pattern accepts only this form."""
    return quote(relpath, safe="/")


def unescape_path(escaped: str) -> str:
    """The path :func:`escape_path` encoded."""
    return unquote(escaped, errors="strict")


@lru_cache(maxsize=None)
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@lru_cache(maxsize=None)
def _validator(kind: str):
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - the ios extra brings it
        raise ImportError(f"jsonschema is not installed: {INSTALL_HINT}") from exc
    schema = _schema()
    sub = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"}
    return jsonschema.Draft202012Validator(sub, format_checker=jsonschema.FormatChecker())


def validate(doc: Any, kind: str) -> dict[str, Any]:
    """``doc`` if it is a valid ``kind`` ("job" or "result") of this schema version, else :class:`SchemaError`."""
    if kind not in ("job", "result"):
        raise ValueError(kind)
    errors = sorted(_validator(kind).iter_errors(doc), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SchemaError(f"{kind} v{SCHEMA_VERSION} at {where}: {e.message[:300]}{more}")
    return doc


def decode_result(data: bytes) -> dict[str, Any]:
    """Parse and validate a result file's bytes."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise SchemaError(f"the result is not JSON: {data[:120]!r}") from exc
    if isinstance(doc, dict) and doc.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(f"the app wrote schema version {doc.get('schema_version')!r}, this host reads "
                          f"{SCHEMA_VERSION}: install the agent app of this splitbench version")
    return validate(doc, "result")


# --------------------------------------------------------------------------------------------------
# Jobs


def launch_plan(job: MeasureJob) -> list[tuple[str, int]]:
    """The launches of one job, in order: compile, cold, then each warm load."""
    return [("compile", 0), ("cold", 0)] + [("warm", i) for i in range(job.warm_loads)]


def launch_id(job_id: str, phase: str, index: int) -> str:
    return f"{job_id}-{phase}{index}"


def job_document(*, job_id: str, phase: str, index: int, job: MeasureJob | None, package: str | None,
                 compute_units: str) -> dict[str, Any]:
    """The job file of one launch (validated before it is written)."""
    lid = launch_id(job_id, phase, index)
    model = None
    if phase != "hello":
        assert job is not None and package is not None
        model = {"package": escape_path(package), "compiled": escape_path(f"{COMPILED}/{job_id}.mlmodelc")}
    doc = {
        "schema_version": SCHEMA_VERSION, "kind": "job", "job_id": job_id, "launch_id": lid, "phase": phase,
        "index": index, "model": model, "input_shape": list(job.input_shape) if job else [],
        "compute_units": compute_units, "runs": job.runs if job and phase == "cold" else 0,
        "warmup": job.warmup if job and phase == "cold" else 0, "seed": job.seed if job else 0,
        "result_path": escape_path(f"{RESULTS}/{lid}.json"), "expected_app_version": AGENT_APP_VERSION,
    }
    return validate(doc, "job")


def encode(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Launch:
    """One launch of the app as the host saw it: what it was asked, its pid, how long it took, its result."""

    phase: str
    index: int
    launch_id: str
    pid: int
    duration_s: float
    result: dict[str, Any]


def _conditions(thermal: str | None, low_power: bool | None) -> Conditions:
    detail = {} if low_power is None else {"low_power_mode": low_power}
    return Conditions(thermal_status=thermal, detail=detail)


def _memory(m: dict[str, Any]) -> MemoryReading:
    detail = {} if m.get("available_after_load_b") is None else {"available_after_load_b": m["available_after_load_b"]}
    return MemoryReading(method=m["method"], before_load_b=m["before_load_b"], after_load_b=m["after_load_b"],
                         peak_b=m["peak_b"], detail=detail)


def delegation_for(job: MeasureJob) -> Delegation:
    """The job's setting: its accelerator as Core ML's compute units. Core ML says nothing about where each layer
    ran, so what applied is ``unknown``, never assumed."""
    return Delegation(job.accelerator, f"computeUnits={COMPUTE_UNITS_FOR[job.accelerator]}", "unknown",
                      words=NO_PLACEMENT)


def runtime_of(result: dict[str, Any]) -> dict[str, str]:
    """What ran the job: Core ML as the OS version it ships with (Core ML has no version of its own), and the app."""
    rt = result["runtime"]
    return {rt["name"]: rt["version"], "splitbench agent app": result["app"]["version"]}


def to_measure_result(job: MeasureJob, launches: list[Launch], *, compute_units: str,
                      host_memory: MemoryReading | None = None, notes: tuple[str, ...] = ()) -> MeasureResult:
    """The MeasureResult of a job whose launches all returned ``ok`` (compile, cold, warm...)."""
    by_phase = {(la.phase, la.index): la for la in launches}
    compile_, cold = by_phase[("compile", 0)].result, by_phase[("cold", 0)].result
    warm = [by_phase[("warm", i)].result for i in range(job.warm_loads)]
    last = launches[-1].result
    memory = [_memory(cold["memory"])]
    if host_memory is not None:
        memory.append(host_memory)
    app_notes: list[str] = []
    for la in launches:
        app_notes += [n for n in la.result["notes"] if n not in app_notes]
    all_notes = [COLD_NOTE, *app_notes, *notes]
    if compute_units != "cpuOnly":
        where = {"cpuAndGPU": "the CPU and the GPU", "cpuAndNeuralEngine": "the CPU and the Neural Engine"}.get(
            compute_units, "the CPU, the GPU and the Neural Engine")
        all_notes.append(f"computeUnits={compute_units}: Core ML chooses per layer between {where} and does not say "
                         "which ran where; not comparable with cpu-1core")
    return MeasureResult(
        status=OK,
        infer_ns=tuple(cold["infer_ns"]), first_infer_ns=cold["first_infer_ns"], warmup_ns=tuple(cold["warmup_ns"]),
        load_cold_ns=cold["load_ns"], cold_method="first_launch",
        load_warm_ns=tuple(w["load_ns"] for w in warm), compile_ns=compile_["compile_ns"],
        memory=tuple(memory), cpu_ns=cold["cpu_runs_ns"], wall_runs_ns=cold["wall_runs_ns"],
        pinning=PINNING, threads={"coreml": THREADS_NOTE, "qos": cold["qos"]}, compute_units=compute_units,
        delegation=delegation_for(job), runtime=runtime_of(cold),
        conditions_before=_conditions(compile_["thermal_before"], compile_["low_power_mode"]),
        conditions_after=_conditions(last["thermal_after"], last["low_power_mode"]),
        notes=tuple(all_notes),
        diagnostics={
            "clock": cold["clock"], "device": cold["device"], "app": cold["app"],
            "launches": [{"launch_id": la.launch_id, "phase": la.phase, "index": la.index, "pid": la.pid,
                          "duration_s": round(la.duration_s, 3), "thermal_before": la.result["thermal_before"],
                          "thermal_after": la.result["thermal_after"]} for la in launches],
            "memory_compile": compile_["memory"], "memory_warm": [w["memory"] for w in warm],
        },
    )


def failed_result(launch: Launch, *, compute_units: str) -> MeasureResult:
    """A job whose app reported ``failed`` in one launch (Core ML could not compile, load or predict)."""
    r = launch.result
    return MeasureResult(status=FAILED, reason=f"{launch.phase} launch: {r['reason']}", compute_units=compute_units,
                         runtime=runtime_of(r), pinning=PINNING, notes=tuple(r["notes"]),
                         diagnostics={"launch_id": launch.launch_id, "pid": launch.pid, "device": r["device"]})
