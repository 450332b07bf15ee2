"""The iOS agent's files: the schema, the job and result documents, results -> MeasureResult, reports.

No phone and no loopback here: documents only. The app side of the same schema is checked here from the
Swift syntax tree (tests/test_ios_swift.py) and, on a Mac, by the app's own unit tests
(device_agents/ios/app/SplitbenchAgentTests), which read the same schema and examples.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("jsonschema", reason="the ios extra is not installed (pip install 'splitbench[ios]')")

from device_agents.base import CONTRACT_VERSION, MeasureJob, MeasureResult  # noqa: E402
from device_agents.ios import protocol  # noqa: E402
from device_agents.ios.measure import summarize_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "device_agents" / "ios" / "schema"
APP = REPO / "device_agents" / "ios" / "app"
JOB = MeasureJob(artifact_path="splitbench/models/k/tiny.mlpackage", backend="coreml", input_shape=(1, 3, 4, 4),
                 runs=3, warmup=2, warm_loads=2, timeout_s=60, artifact_key="k")


def example(name: str) -> dict:
    return json.loads((SCHEMA_DIR / "examples" / f"{name}.json").read_text())


def test_the_schema_is_valid_and_its_examples_follow_it():
    import jsonschema

    schema = json.loads(protocol.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert protocol.SCHEMA_PATH.name == f"agent-v{protocol.SCHEMA_VERSION}.schema.json"
    protocol.validate(example("job"), "job")
    protocol.validate(example("result"), "result")
    # the top-level schema accepts either document
    jsonschema.validate(example("job"), schema)
    jsonschema.validate(example("result"), schema)


def test_job_documents_of_every_phase_validate():
    for phase, index in [("hello", 0)] + protocol.launch_plan(JOB):
        doc = protocol.job_document(job_id="abc-1", phase=phase, index=index, job=None if phase == "hello" else JOB,
                                    package=None if phase == "hello" else JOB.artifact_path, compute_units="cpuOnly")
        assert doc["launch_id"] == f"abc-1-{phase}{index}"
        assert (doc["runs"], doc["warmup"]) == ((3, 2) if phase == "cold" else (0, 0))
    assert protocol.launch_plan(JOB) == [("compile", 0), ("cold", 0), ("warm", 0), ("warm", 1)]


@pytest.mark.parametrize("change, where", [
    (lambda d: d.update(extra=1), "(top)"),
    (lambda d: d.update(model=None), "model"),  # a cold launch needs its model
    (lambda d: d["model"].update(package="../../etc/passwd"), "model/package"),
    (lambda d: d.update(compute_units="gpuOnly"), "compute_units"),
])
def test_a_bad_job_is_refused_with_where(change, where):
    doc = example("job")
    change(doc)
    with pytest.raises(protocol.SchemaError, match=re.escape(f"at {where}")):
        protocol.validate(doc, "job")


def test_results_that_break_the_schema_are_refused():
    good = example("result")
    with pytest.raises(protocol.SchemaError, match="schema version 2"):
        protocol.decode_result(json.dumps({**good, "schema_version": 2}).encode())
    with pytest.raises(protocol.SchemaError, match="not JSON"):
        protocol.decode_result(b"{half")
    missing = dict(good)
    del missing["thermal_after"]  # not obtained is null, never left out
    with pytest.raises(protocol.SchemaError, match="thermal_after"):
        protocol.decode_result(json.dumps(missing).encode())
    no_load = {**good, "load_ns": None}  # an ok cold launch has its load time
    with pytest.raises(protocol.SchemaError, match="load_ns"):
        protocol.decode_result(json.dumps(no_load).encode())
    failed = {**good, "status": "failed", "reason": ""}  # a failure says why
    with pytest.raises(protocol.SchemaError, match="reason"):
        protocol.decode_result(json.dumps(failed).encode())


def _launches() -> list[protocol.Launch]:
    """A job's results as the app writes them (the example's numbers: a format example, not a measurement)."""
    cold = example("result")
    out = []
    for phase, index in protocol.launch_plan(JOB):
        r = copy.deepcopy(cold)
        lid = f"{r['job_id']}-{phase}{index}"
        r.update(phase=phase, index=index, launch_id=lid)
        if phase == "compile":
            r.update(compile_ns=120_000_000, load_ns=None, first_infer_ns=None, warmup_ns=[], infer_ns=[],
                     wall_runs_ns=None, cpu_runs_ns=None, thermal_before="fair")
        elif phase == "warm":
            r.update(load_ns=30_000_000 + index, first_infer_ns=None, warmup_ns=[], infer_ns=[], wall_runs_ns=None,
                     cpu_runs_ns=None, thermal_after="serious" if index == 1 else "nominal")
        protocol.validate(r, "result")
        out.append(protocol.Launch(phase, index, lid, 100 + len(out), 1.5, r))
    return out


def test_results_become_a_measure_result_with_every_field_of_the_contract():
    assert CONTRACT_VERSION == 3
    result = protocol.to_measure_result(JOB, _launches(), compute_units="cpuOnly")
    result.check(JOB)
    assert result.ok and result.infer_ns == (910000, 905000, 918000) and result.warmup_ns == (1200000, 950000)
    assert result.first_infer_ns == 4100000 and result.compile_ns == 120_000_000
    assert result.load_cold_ns == 38_000_000 and result.cold_method == "first_launch"
    assert result.load_warm_ns == (30_000_000, 30_000_001)
    mem = result.primary_memory
    assert mem.method == "phys_footprint" and result.model_memory_b == 23_000_000 - 14_000_000
    assert mem.detail == {"available_after_load_b": 2_900_000_000}
    assert result.cpu_ns == 2_900_000 and result.wall_runs_ns == 2_760_000
    assert result.pinned_cpus == () and "cannot" not in result.pinning and result.pinning.startswith("none")
    assert result.threads["qos"] == "userInitiated" and result.compute_units == "cpuOnly"
    assert result.runtime == {"Core ML": "iOS 17.5.1 (21F90)", "splitbench agent app": "1.0"}
    assert result.conditions_before.thermal_status == "fair"  # the compile launch came first
    assert result.conditions_after.thermal_status == "serious"  # the last warm launch
    assert result.conditions_after.detail == {"low_power_mode": False}
    assert protocol.COLD_NOTE in result.notes
    assert [la["phase"] for la in result.diagnostics["launches"]] == ["compile", "cold", "warm", "warm"]
    # the record survives the trip to JSON and back (records are JSON on disk)
    assert MeasureResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_other_compute_units_are_said_not_comparable():
    result = protocol.to_measure_result(JOB, _launches(), compute_units="cpuAndNeuralEngine")
    assert any("the CPU and the Neural Engine" in n and "not comparable with cpu-1core" in n for n in result.notes)


def test_each_accelerator_is_one_of_core_mls_compute_units():
    assert protocol.COMPUTE_UNITS_FOR == {"cpu": "cpuOnly", "gpu": "cpuAndGPU", "npu": "cpuAndNeuralEngine"}
    assert set(protocol.COMPUTE_UNITS_FOR.values()) <= set(protocol.COMPUTE_UNITS)  # the schema's enum
    schema = json.loads(protocol.SCHEMA_PATH.read_text())
    assert set(schema["$defs"]["compute_units"]["enum"]) == set(protocol.COMPUTE_UNITS)
    d = protocol.delegation_for(dataclasses.replace(JOB, accelerator="gpu"))
    assert (d.accelerator, d.setting, d.applied, d.delegated_nodes) == ("gpu", "computeUnits=cpuAndGPU", "unknown", None)


def test_a_failed_launch_is_a_failed_result_naming_the_phase():
    launch = _launches()[0]
    launch.result.update(status="failed", reason="MLModel.compileModel: unsupported op")
    r = protocol.failed_result(launch, compute_units="cpuOnly")
    assert r.status == "failed" and r.reason == "compile launch: MLModel.compileModel: unsupported op"


JETSAM = (json.dumps({"bug_type": "298", "timestamp": "2026-01-02 10:00:00.00 +0000"}) + "\n"
          + json.dumps({"largestProcess": "SplitbenchAgent",
                        "processes": [{"name": "SplitbenchAgent", "pid": 77, "reason": "per-process-limit"}]}))
WATCHDOG = (json.dumps({"bug_type": "309", "name": "SplitbenchAgent"}) + "\n"
            + json.dumps({"exception": {"type": "EXC_CRASH", "signal": "SIGKILL"},
                          "termination": {"namespace": "FRONTBOARD", "code": 0x8BADF00D}}))


def test_system_reports_are_summarised_in_one_line():
    line = summarize_report("/JetsamEvent-2026-01-02-100000.ips", JETSAM, pid=77)
    assert line == ("jetsam (the system freed memory): SplitbenchAgent per-process-limit; largest process "
                    "SplitbenchAgent [JetsamEvent-2026-01-02-100000.ips]")
    line = summarize_report("/SplitbenchAgent-2026.ips", WATCHDOG)
    assert line == ("the watchdog (0x8badf00d: the app took too long); crash EXC_CRASH SIGKILL, termination "
                    "FRONTBOARD 0x8badf00d [SplitbenchAgent-2026.ips]")
    assert summarize_report("/x.ips", "not json at all") == "not json at all [x.ips]"


def test_the_app_speaks_the_host_s_versions():
    """The app's version (project.yml) and the schema version compiled into it match the host's."""
    project = (APP / "project.yml").read_text()
    assert re.search(rf'MARKETING_VERSION: "{re.escape(protocol.AGENT_APP_VERSION)}"', project)
    swift = (APP / "SplitbenchAgent" / "Job.swift").read_text()
    assert re.search(rf"static let schemaVersion = {protocol.SCHEMA_VERSION}\b", swift)
    assert protocol.AGENT_APP_VERSION.split(".")[0] == str(protocol.SCHEMA_VERSION)
