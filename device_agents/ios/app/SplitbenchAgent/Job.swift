import Foundation

/// The files of device_agents/ios/schema/agent-v1.schema.json: the job the host writes, the result this
/// app writes. The host validates both against that file; the unit tests check these types against it.
enum AgentFiles {
    static let schemaVersion = 1

    /// The file a job names: its paths are relative to Documents and percent-encoded ($defs/relpath), so a
    /// package called "my model+v2.mlpackage" arrives as "my%20model%2Bv2.mlpackage".
    static func url(_ relpath: String, in documents: URL) throws -> URL {
        guard let path = relpath.removingPercentEncoding, !path.isEmpty, !path.hasPrefix("/"),
              !path.split(separator: "/").contains(where: { $0 == ".." }) else {
            throw AgentError.job("the job names a path outside Documents or badly escaped: \(relpath)")
        }
        return documents.appendingPathComponent(path)
    }
}

/// One launch's job ($defs/job). Keys are snake_case in the file.
struct Job: Decodable {
    struct Model: Decodable {
        let package: String  // the .mlpackage the host pushed, relative to Documents
        let compiled: String  // where the compile launch keeps the .mlmodelc
    }

    let schemaVersion: Int
    let kind: String
    let jobId: String
    let launchId: String
    let phase: String  // hello, compile, cold, warm
    let index: Int
    let model: Model?
    let inputShape: [Int]
    let computeUnits: String
    let runs: Int
    let warmup: Int
    let seed: UInt64
    let resultPath: String
    let expectedAppVersion: String

    static func decode(_ data: Data) throws -> Job {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Job.self, from: data)
    }

    func requireModel() throws -> Model {
        guard let model else { throw AgentError.job("the \(phase) job names no model") }
        return model
    }
}

enum AgentError: Error, CustomStringConvertible {
    case job(String)
    case model(String)

    var description: String {
        switch self {
        case .job(let s): return "job: \(s)"
        case .model(let s): return "model: \(s)"
        }
    }
}

/// What the app is ($defs/result/app).
struct AppFacts: Encodable {
    var version: String
    var build: String
    var bundleId: String

    enum CodingKeys: String, CodingKey {
        case version
        case build
        case bundleId = "bundle_id"
    }

    static var current: AppFacts {
        let info = Bundle.main.infoDictionary ?? [:]
        return AppFacts(version: info["CFBundleShortVersionString"] as? String ?? "?",
                        build: info["CFBundleVersion"] as? String ?? "?",
                        bundleId: Bundle.main.bundleIdentifier ?? "?")
    }
}

/// What the phone is ($defs/result/device).
struct DeviceFacts: Encodable {
    var model: String
    var osName: String
    var osVersion: String
    var osBuild: String?
    var simulator: Bool
    var standin = false  // only the host's loopback stand-in says true

    enum CodingKeys: String, CodingKey {
        case model
        case osName = "os_name"
        case osVersion = "os_version"
        case osBuild = "os_build"
        case simulator
        case standin
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(osName, forKey: .osName)
        try c.encode(osVersion, forKey: .osVersion)
        try c.encode(osBuild, forKey: .osBuild)  // null when not obtained, never left out
        try c.encode(simulator, forKey: .simulator)
        try c.encode(standin, forKey: .standin)
    }
}

struct RuntimeFacts: Encodable {
    var name: String
    var version: String
}

/// Memory around the load ($defs/result/memory): task_vm_info.phys_footprint, bytes.
struct MemoryFacts: Encodable {
    var method = "phys_footprint"
    var beforeLoadB: UInt64?
    var afterLoadB: UInt64?
    var peakB: UInt64?
    var availableAfterLoadB: UInt64?

    enum CodingKeys: String, CodingKey {
        case method
        case beforeLoadB = "before_load_b"
        case afterLoadB = "after_load_b"
        case peakB = "peak_b"
        case availableAfterLoadB = "available_after_load_b"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(method, forKey: .method)
        try c.encode(beforeLoadB, forKey: .beforeLoadB)
        try c.encode(afterLoadB, forKey: .afterLoadB)
        try c.encode(peakB, forKey: .peakB)
        try c.encode(availableAfterLoadB, forKey: .availableAfterLoadB)
    }
}

/// One launch's result ($defs/result). Every key is written; what was not obtained is null.
struct LaunchResult: Encodable {
    var schemaVersion = AgentFiles.schemaVersion
    var kind = "result"
    var jobId: String
    var launchId: String
    var phase: String
    var index: Int
    var status = "ok"  // ok, failed, interrupted
    var reason = ""
    var app: AppFacts
    var device: DeviceFacts
    var runtime: RuntimeFacts
    var clock = Clock.name
    var computeUnits: String
    var qos: String
    var pid: Int32
    var compileNs: UInt64?
    var loadNs: UInt64?
    var firstInferNs: UInt64?
    var warmupNs: [UInt64] = []
    var inferNs: [UInt64] = []
    var wallRunsNs: UInt64?
    var cpuRunsNs: UInt64?
    var memory = MemoryFacts()
    var thermalBefore: String?
    var thermalAfter: String?
    var lowPowerMode: Bool?
    var notes: [String] = []

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case kind
        case jobId = "job_id"
        case launchId = "launch_id"
        case phase
        case index
        case status
        case reason
        case app
        case device
        case runtime
        case clock
        case computeUnits = "compute_units"
        case qos
        case pid
        case compileNs = "compile_ns"
        case loadNs = "load_ns"
        case firstInferNs = "first_infer_ns"
        case warmupNs = "warmup_ns"
        case inferNs = "infer_ns"
        case wallRunsNs = "wall_runs_ns"
        case cpuRunsNs = "cpu_runs_ns"
        case memory
        case thermalBefore = "thermal_before"
        case thermalAfter = "thermal_after"
        case lowPowerMode = "low_power_mode"
        case notes
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(schemaVersion, forKey: .schemaVersion)
        try c.encode(kind, forKey: .kind)
        try c.encode(jobId, forKey: .jobId)
        try c.encode(launchId, forKey: .launchId)
        try c.encode(phase, forKey: .phase)
        try c.encode(index, forKey: .index)
        try c.encode(status, forKey: .status)
        try c.encode(reason, forKey: .reason)
        try c.encode(app, forKey: .app)
        try c.encode(device, forKey: .device)
        try c.encode(runtime, forKey: .runtime)
        try c.encode(clock, forKey: .clock)
        try c.encode(computeUnits, forKey: .computeUnits)
        try c.encode(qos, forKey: .qos)
        try c.encode(pid, forKey: .pid)
        try c.encode(compileNs, forKey: .compileNs)
        try c.encode(loadNs, forKey: .loadNs)
        try c.encode(firstInferNs, forKey: .firstInferNs)
        try c.encode(warmupNs, forKey: .warmupNs)
        try c.encode(inferNs, forKey: .inferNs)
        try c.encode(wallRunsNs, forKey: .wallRunsNs)
        try c.encode(cpuRunsNs, forKey: .cpuRunsNs)
        try c.encode(memory, forKey: .memory)
        try c.encode(thermalBefore, forKey: .thermalBefore)
        try c.encode(thermalAfter, forKey: .thermalAfter)
        try c.encode(lowPowerMode, forKey: .lowPowerMode)
        try c.encode(notes, forKey: .notes)
    }
}
