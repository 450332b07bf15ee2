"""What can be checked of the agent app (device_agents/ios/app) on a host without a Swift compiler:

- every Swift source parses (tree-sitter-swift; any ERROR or MISSING node fails, with its line);
- the Codable types and the schema (schema/agent-v1.schema.json) agree both ways: each JSON key the Swift
  types code (their CodingKeys, or their property names, snake_cased where the decoder converts) is a
  property of the schema, each schema property is coded by the Swift type, every property is required
  (null, never left out), every stored property is in CodingKeys and ``encode(to:)`` writes every key.
  The keys are read from the Swift syntax tree, not listed here.

Whether the app compiles, links and runs (types, availability, Swift 6 concurrency diagnostics) only a Mac
can say: ``make ios-agent`` and the Simulator tests (SplitbenchAgentTests).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

pytest.importorskip("tree_sitter_swift", reason="tree-sitter-swift is not installed (pip install -e '.[test]')")

from device_agents.ios import protocol  # noqa: E402
from tests import swift_source as sw  # noqa: E402

# The two documents' root types; every key below them is read from the Swift sources.
ROOTS = {"Job": "job", "LaunchResult": "result"}
APP_SOURCES = sorted((sw.APP / "SplitbenchAgent").glob("*.swift"))


def schema() -> dict:
    return json.loads(protocol.SCHEMA_PATH.read_text())


# --------------------------------------------------------------------------------------------------
# Syntax


def test_every_swift_source_of_the_app_parses():
    files = sw.swift_files()
    assert {f.name for f in files} >= {"AgentApp.swift", "Job.swift", "Probes.swift", "Runner.swift",
                                       "RunnerTests.swift"}
    problems = {str(f.relative_to(sw.APP)): sw.syntax_errors(f.read_bytes()) for f in files}
    assert {f: p for f, p in problems.items() if p} == {}


@pytest.mark.parametrize("snippet", [
    "struct A {\n    var x: Int\n",  # the brace never closed
    "func f() {\n    let x = \n}\n",  # a binding without its value
    "final class R: @unchecked Sendable {\n    func run( {\n    }\n}\n",  # a parameter list left open
    "enum E {\n    case a = \n}\n",
])
def test_the_syntax_check_fails_on_broken_swift(snippet):
    assert sw.syntax_errors(snippet.encode()) != []


def test_the_syntax_check_passes_what_the_app_writes():
    ok = (b"final class R: @unchecked Sendable {\n    private let lock = NSLock()\n"
          b"    static func t() throws -> UInt64 {\n        try autoreleasepool { () throws -> UInt64 in 1 }\n    }\n}\n")
    assert sw.syntax_errors(ok) == []


# --------------------------------------------------------------------------------------------------
# Swift types <-> the schema


def _resolve(node: dict, defs: dict) -> dict:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def schema_problems(sources: dict[str, bytes], doc: dict) -> list[str]:
    """Every disagreement between the Swift Codable types in ``sources`` and the schema ``doc``."""
    types: dict[str, sw.SwiftType] = {}
    owner: dict[str, bytes] = {}
    for source in sources.values():
        for name, t in sw.types(source).items():
            if name != "CodingKeys":
                types[name], owner[name] = t, source
    defs, problems = doc["$defs"], []

    def compare(type_name: str, obj: dict, where: str, snake_case: bool) -> None:
        t = types[type_name]
        keys = sw.json_keys(t, snake_case)
        props, required = obj.get("properties", {}), set(obj.get("required", []))
        coded = set(keys.values())
        problems.extend(f"{where}: Swift {type_name} codes {k!r}, the schema has no such property"
                        for k in sorted(coded - set(props)))
        problems.extend(f"{where}: the schema's {k!r} is coded by no property of Swift {type_name}"
                        for k in sorted(set(props) - coded))
        problems.extend(f"{where}: the schema's {k!r} is not required (a key is null when not obtained, "
                        "never left out)" for k in sorted(set(props) - required))
        if t.coding_keys is not None:
            problems.extend(f"{where}: Swift {type_name}.{p} is stored but not in its CodingKeys"
                            for p in sorted(set(t.stored) - set(t.coding_keys)))
            problems.extend(f"{where}: Swift {type_name}.CodingKeys.{p} names no stored property"
                            for p in sorted(set(t.coding_keys) - set(t.stored)))
            if t.encoded is not None:
                problems.extend(f"{where}: Swift {type_name}.encode(to:) leaves out .{p}"
                                for p in sorted(set(t.coding_keys) - t.encoded))
        for prop, key in keys.items():
            sub = t.stored.get(prop)
            if sub in types and types[sub].kind == "struct" and key in props:
                compare(sub, _resolve(props[key], defs), f"{where}/{key}", snake_case)

    for type_name, def_name in ROOTS.items():
        if type_name not in types:
            problems.append(f"no Swift type {type_name} for $defs/{def_name}")
            continue
        compare(type_name, _resolve(defs[def_name], defs), def_name, sw.uses_snake_case(owner[type_name], type_name))
    return problems


def app_sources() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in APP_SOURCES}


def test_the_swift_types_and_the_schema_agree_both_ways():
    sources = app_sources()
    assert schema_problems(sources, schema()) == []
    # and the comparison reached every object of both documents
    types = {}
    for source in sources.values():
        types.update(sw.types(source))
    assert {"Job", "Model", "LaunchResult", "AppFacts", "DeviceFacts", "RuntimeFacts", "MemoryFacts"} <= set(types)
    assert sw.uses_snake_case(sources["Job.swift"], "Job") and not sw.uses_snake_case(sources["Job.swift"],
                                                                                        "LaunchResult")


@pytest.mark.parametrize("old, new, expected", [
    ('case bundleId = "bundle_id"', 'case bundleId = "bundleid"', "result/app: Swift AppFacts codes 'bundleid'"),
    ("        try c.encode(peakB, forKey: .peakB)\n", "", "result/memory: Swift MemoryFacts.encode(to:) leaves out .peakB"),
    ("    let seed: UInt64\n", "    let seeds: UInt64\n", "job: Swift Job codes 'seeds'"),
    ("        let compiled: String", "        let compiledAt: String", "job/model: Swift Model codes 'compiled_at'"),
    ("    var lowPowerMode: Bool?\n", "    var lowPowerMode: Bool?\n    var gpuNs: UInt64?\n",
     "result: Swift LaunchResult.gpuNs is stored but not in its CodingKeys"),
])
def test_the_comparison_fails_when_the_swift_side_drifts(old, new, expected):
    sources = app_sources()
    assert old in sources["Job.swift"].decode()
    sources["Job.swift"] = sources["Job.swift"].decode().replace(old, new, 1).encode()
    problems = schema_problems(sources, schema())
    assert any(p.startswith(expected) for p in problems), problems


def test_the_comparison_fails_when_the_schema_drifts():
    doc = copy.deepcopy(schema())
    doc["$defs"]["result"]["properties"]["gpu_ns"] = {"type": "array"}
    doc["$defs"]["result"]["required"].append("gpu_ns")
    doc["$defs"]["result"]["properties"]["device"]["required"].remove("os_build")
    problems = schema_problems(app_sources(), doc)
    assert "result: the schema's 'gpu_ns' is coded by no property of Swift LaunchResult" in problems
    assert any(p.startswith("result/device: the schema's 'os_build' is not required") for p in problems)


def test_the_app_decodes_the_escaped_paths_the_host_writes():
    """The job's paths are percent-encoded by the host (protocol.escape_path); the app must decode them
    before it opens a file: every file URL it builds from a job path goes through AgentFiles.url, whose
    body calls removingPercentEncoding."""
    runner = (sw.APP / "SplitbenchAgent" / "Runner.swift").read_text()
    job = (sw.APP / "SplitbenchAgent" / "Job.swift").read_text()
    assert "removingPercentEncoding" in job[job.index("static func url("):job.index("struct Job")]
    for field in ("model.package", "model.compiled", "job.resultPath", "requireModel().compiled"):
        assert f"AgentFiles.url({field}" in runner or f"AgentFiles.url(try job.{field}" in runner, field
    assert "appendingPathComponent(model." not in runner and "appendingPathComponent(job.resultPath" not in runner
    assert Path(protocol.__file__).read_text().count("escape_path(") >= 3
