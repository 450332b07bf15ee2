import CoreML
import XCTest
@testable import SplitbenchAgent

/// The app's protocol on the Simulator with a real package (Fixtures/tiny.mlpackage, built by
/// tests/fixtures/ios_tiny_mlpackage.py): jobs as the host writes them, results checked against the
/// schema file the host validates with (../schema, copied into this bundle).
final class RunnerTests: XCTestCase {
    private var documents: URL!
    private let bundle = Bundle(for: RunnerTests.self)

    override func setUpWithError() throws {
        let files = FileManager.default
        documents = files.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try files.createDirectory(at: documents.appendingPathComponent("splitbench/jobs"), withIntermediateDirectories: true)
        try files.createDirectory(at: documents.appendingPathComponent("splitbench/models/k"), withIntermediateDirectories: true)
        let fixture = try XCTUnwrap(bundle.url(forResource: "Fixtures", withExtension: nil))
        try files.copyItem(at: fixture.appendingPathComponent("tiny.mlpackage"),
                           to: documents.appendingPathComponent("splitbench/models/k/tiny.mlpackage"))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: documents)
    }

    private func schema() throws -> [String: Any] {
        let url = try XCTUnwrap(bundle.url(forResource: "schema", withExtension: nil))
        let data = try Data(contentsOf: url.appendingPathComponent("agent-v\(AgentFiles.schemaVersion).schema.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func required(_ path: [String]) throws -> Set<String> {
        var node: Any = try schema()["$defs"] as Any
        for key in path { node = try XCTUnwrap((node as? [String: Any])?[key]) }
        return Set(try XCTUnwrap((node as? [String: Any])?["required"] as? [String]))
    }

    /// A job file as device_agents/ios/protocol.py job_document() writes it.
    private func writeJob(_ phase: String, index: Int = 0, runs: Int = 0, warmup: Int = 0,
                          package: String = "splitbench/models/k/tiny.mlpackage") throws -> String {
        let launchId = "job1-\(phase)\(index)"
        let job: [String: Any] = [
            "schema_version": AgentFiles.schemaVersion, "kind": "job", "job_id": "job1", "launch_id": launchId,
            "phase": phase, "index": index,
            "model": phase == "hello" ? NSNull() as Any
                                      : ["package": package, "compiled": "splitbench/compiled/job1.mlmodelc"] as Any,
            "input_shape": [1, 3, 4, 4], "compute_units": "cpuOnly", "runs": runs, "warmup": warmup, "seed": 0,
            "result_path": "splitbench/results/\(launchId).json", "expected_app_version": "1.0",
        ]
        let data = try JSONSerialization.data(withJSONObject: job)
        try data.write(to: documents.appendingPathComponent("splitbench/jobs/\(launchId).json"))
        return launchId
    }

    private func readResult(_ launchId: String) throws -> [String: Any] {
        let data = try Data(contentsOf: documents.appendingPathComponent("splitbench/results/\(launchId).json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Every key the schema requires is written (null when not obtained), and nothing else.
    private func assertFollowsSchema(_ result: [String: Any]) throws {
        XCTAssertEqual(Set(result.keys), try required(["result"]))
        let memory = try XCTUnwrap(result["memory"] as? [String: Any])
        XCTAssertEqual(Set(memory.keys), try required(["result", "properties", "memory"]))
        let device = try XCTUnwrap(result["device"] as? [String: Any])
        XCTAssertEqual(Set(device.keys), try required(["result", "properties", "device"]))
    }

    func testTheSchemaExampleJobDecodes() throws {
        let url = try XCTUnwrap(bundle.url(forResource: "schema", withExtension: nil))
        let job = try Job.decode(Data(contentsOf: url.appendingPathComponent("examples/job.json")))
        XCTAssertEqual(job.schemaVersion, AgentFiles.schemaVersion)
        XCTAssertEqual(job.phase, "cold")
        XCTAssertEqual(job.inputShape, [1, 3, 4, 4])
        XCTAssertEqual(job.model?.compiled, "splitbench/compiled/0a1b2c3d4e5f-1234abcd.mlmodelc")
    }

    func testHelloCompileColdWarmEachInAFreshRunner() async throws {
        for (phase, runs, warmup) in [("hello", 0, 0), ("compile", 0, 0), ("cold", 7, 2), ("warm", 0, 0)] {
            let launchId = try writeJob(phase, runs: runs, warmup: warmup)
            let result = await Runner(documents: documents).run(launchId: launchId)
            XCTAssertEqual(result?.status, "ok", result?.reason ?? "no result")
            let written = try readResult(launchId)
            try assertFollowsSchema(written)
            XCTAssertEqual(written["launch_id"] as? String, launchId)
            XCTAssertEqual(written["clock"] as? String, Clock.name)
            switch phase {
            case "compile":
                XCTAssertNotNil(written["compile_ns"] as? Int)
                XCTAssertTrue(FileManager.default.fileExists(
                    atPath: documents.appendingPathComponent("splitbench/compiled/job1.mlmodelc").path))
            case "cold":
                XCTAssertEqual((written["infer_ns"] as? [Int])?.count, 7)
                XCTAssertEqual((written["warmup_ns"] as? [Int])?.count, 2)
                XCTAssertNotNil(written["first_infer_ns"] as? Int)
                XCTAssertNotNil(written["load_ns"] as? Int)
                let memory = try XCTUnwrap(written["memory"] as? [String: Any])
                XCTAssertEqual(memory["method"] as? String, "phys_footprint")
                XCTAssertNotNil(memory["before_load_b"] as? Int)
                XCTAssertNotNil(memory["after_load_b"] as? Int)
            case "warm":
                XCTAssertNotNil(written["load_ns"] as? Int)
                XCTAssertEqual((written["infer_ns"] as? [Int])?.count, 0)
            default:
                XCTAssertTrue(written["load_ns"] is NSNull)
            }
        }
    }

    func testAPackageCoreMLCannotCompileIsAFailedResult() async throws {
        let launchId = try writeJob("compile", package: "splitbench/models/k/missing.mlpackage")
        let result = await Runner(documents: documents).run(launchId: launchId)
        XCTAssertEqual(result?.status, "failed")
        let written = try readResult(launchId)
        try assertFollowsSchema(written)
        XCTAssertFalse((written["reason"] as? String ?? "").isEmpty)
    }

    func testAnInterruptionIsWrittenOnceAndOnlyForAJob() async throws {
        let runner = Runner(documents: documents)
        XCTAssertFalse(runner.interrupt("locked"))  // no job yet: nothing to say
        let launchId = try writeJob("hello")
        _ = await runner.run(launchId: launchId)
        XCTAssertFalse(runner.interrupt("locked"))  // the result is already written
        XCTAssertEqual(try readResult(launchId)["status"] as? String, "ok")
    }

    func testAPackageNamedWithASpaceAndAPlusIsFoundFromItsEscapedPath() async throws {
        try FileManager.default.copyItem(at: documents.appendingPathComponent("splitbench/models/k/tiny.mlpackage"),
                                         to: documents.appendingPathComponent("splitbench/models/k/tiny model+v2.mlpackage"))
        let launchId = try writeJob("compile", package: "splitbench/models/k/tiny%20model%2Bv2.mlpackage")
        let result = await Runner(documents: documents).run(launchId: launchId)
        XCTAssertEqual(result?.status, "ok", result?.reason ?? "no result")
        XCTAssertThrowsError(try AgentFiles.url("splitbench/%2E%2E/x", in: documents))  // ".." behind an escape
    }

    func testTheInputFollowsTheModelsOwnDescription() async throws {
        let package = documents.appendingPathComponent("splitbench/models/k/tiny.mlpackage")
        let compiled = try await MLModel.compileModel(at: package)
        let model = try MLModel(contentsOf: compiled)
        let entry = try XCTUnwrap(model.modelDescription.inputDescriptionsByName.first)
        let constraint = try XCTUnwrap(entry.value.multiArrayConstraint)
        let input = try Inputs.make(for: model, shape: [1, 3, 4, 4], seed: 0)
        XCTAssertEqual(input.featureValue(for: entry.key)?.multiArrayValue?.dataType, constraint.dataType)
        XCTAssertThrowsError(try Inputs.make(for: model, shape: [1, 3, 5, 5], seed: 0))
        XCTAssertEqual(Inputs.describe(NSRange(location: 1, length: 3)), "1...4")
    }

    func testInputsAreSeededAndShaped() throws {
        var a: UInt64 = 0
        var b: UInt64 = 0
        XCTAssertEqual(Inputs.splitmix64(&a), Inputs.splitmix64(&b))
        XCTAssertEqual(try Runner.computeUnits("cpuOnly"), .cpuOnly)
        XCTAssertThrowsError(try Runner.computeUnits("gpuOnly"))
    }
}
