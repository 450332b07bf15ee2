import CoreML
import Foundation

/// Runs one launch: reads Documents/splitbench/jobs/<launch id>.json, does its phase, writes the result
/// where the job says (atomically: a temporary file, then a rename), and is done. The host launches the
/// app once per phase, so every load below happens in a fresh process:
///
/// - compile: MLModel.compileModel of the package, timed; the .mlmodelc is moved where the job says;
/// - cold: the first load of that compiled model, then the first prediction (kept apart), the warm-ups
///   and the timed predictions, every sample kept, the clock read around the prediction call only;
/// - warm: one more load.
final class Runner {
    let documents: URL
    private let lock = NSLock()
    private var written = false
    private var skeleton: (job: Job, result: LaunchResult)?  // for an interruption: who we are, nothing measured

    init(documents: URL) {
        self.documents = documents
    }

    /// Runs the launch and writes its result; returns it (nil when even the job file could not be read).
    func run(launchId: String) async -> LaunchResult? {
        let job: Job
        do {
            job = try Job.decode(Data(contentsOf: documents.appendingPathComponent("splitbench/jobs/\(launchId).json")))
        } catch {
            NSLog("splitbench: cannot read the job \(launchId): \(error)")
            return nil
        }
        let device = Probes.device()
        var result = LaunchResult(jobId: job.jobId, launchId: job.launchId, phase: job.phase, index: job.index,
                                  app: AppFacts.current, device: device,
                                  runtime: Runner.runtime(of: device), computeUnits: job.computeUnits,
                                  qos: Probes.qosName(), pid: ProcessInfo.processInfo.processIdentifier)
        if result.device.simulator {
            result.notes.append("measured on the iOS Simulator (the Mac's processor), not on an iPhone")
        }
        locked { skeleton = (job, result) }
        result.thermalBefore = Probes.thermalState()
        result.lowPowerMode = ProcessInfo.processInfo.isLowPowerModeEnabled
        do {
            guard job.schemaVersion == AgentFiles.schemaVersion, job.kind == "job" else {
                throw AgentError.job("schema version \(job.schemaVersion), this app reads \(AgentFiles.schemaVersion)")
            }
            switch job.phase {
            case "hello": break
            case "compile": try await compile(job, &result)
            case "cold": try cold(job, &result)
            case "warm": try warm(job, &result)
            default: throw AgentError.job("unknown phase \(job.phase)")
            }
        } catch {
            result.status = "failed"
            result.reason = Runner.describe(error)
        }
        result.thermalAfter = Probes.thermalState()
        finish(result, job: job)
        return result
    }

    /// The app was sent to the background (the phone locked, another app came up): the measurement is
    /// abandoned and the host told so. False when there is no job, or its result is already written.
    func interrupt(_ reason: String) -> Bool {
        guard let current = locked({ skeleton }) else { return false }
        var r = current.result
        r.status = "interrupted"
        r.reason = reason
        return finish(r, job: current.job)
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    @discardableResult
    private func finish(_ result: LaunchResult, job: Job) -> Bool {
        let first = locked { () -> Bool in
            defer { written = true }
            return !written
        }
        guard first else { return false }
        do {
            let url = documents.appendingPathComponent(job.resultPath)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(result).write(to: url, options: .atomic)
        } catch {
            NSLog("splitbench: cannot write the result of \(job.launchId): \(error)")
        }
        return true
    }

    // MARK: - Phases

    private func compile(_ job: Job, _ r: inout LaunchResult) async throws {
        let model = try job.requireModel()
        let package = documents.appendingPathComponent(model.package)
        let target = documents.appendingPathComponent(model.compiled)
        let t0 = Clock.now()
        let temporary = try await MLModel.compileModel(at: package)
        r.compileNs = Clock.now() - t0
        let files = FileManager.default
        try? files.removeItem(at: target)
        try files.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try files.moveItem(at: temporary, to: target)  // kept for the cold and warm launches
        r.memory.peakB = Probes.footprint()?.peak  // compiling's own peak (the host keeps it apart)
    }

    private func load(_ job: Job, _ r: inout LaunchResult) throws -> MLModel {
        let url = documents.appendingPathComponent(try job.requireModel().compiled)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = try Runner.computeUnits(job.computeUnits)
        r.memory.beforeLoadB = Probes.footprint()?.current
        let t0 = Clock.now()
        let model = try MLModel(contentsOf: url, configuration: configuration)
        r.loadNs = Clock.now() - t0
        r.memory.afterLoadB = Probes.footprint()?.current
        r.memory.availableAfterLoadB = Probes.availableMemory()
        return model
    }

    private func cold(_ job: Job, _ r: inout LaunchResult) throws {
        let model = try load(job, &r)
        let input = try Inputs.make(for: model, shape: job.inputShape, seed: job.seed)  // prepared beforehand
        r.qos = Probes.qosName()
        var t0 = Clock.now()
        _ = try model.prediction(from: input)
        r.firstInferNs = Clock.now() - t0
        r.warmupNs.reserveCapacity(job.warmup)
        for _ in 0..<job.warmup {
            t0 = Clock.now()
            _ = try model.prediction(from: input)
            r.warmupNs.append(Clock.now() - t0)
        }
        var samples = [UInt64](repeating: 0, count: job.runs)
        let cpu0 = Probes.cpuTimeNs()
        let wall0 = Clock.now()
        for i in 0..<job.runs {
            t0 = Clock.now()
            _ = try model.prediction(from: input)
            samples[i] = Clock.now() - t0
        }
        r.wallRunsNs = Clock.now() - wall0
        r.cpuRunsNs = Probes.cpuTimeNs() - cpu0
        r.inferNs = samples
        r.memory.peakB = Probes.footprint()?.peak
        r.notes.append("iOS cannot pin a thread to a core: Core ML \(job.computeUnits) runs on the cores the OS chooses")
    }

    private func warm(_ job: Job, _ r: inout LaunchResult) throws {
        _ = try load(job, &r)
        r.memory.peakB = Probes.footprint()?.peak
    }

    // MARK: - Helpers

    static func computeUnits(_ name: String) throws -> MLComputeUnits {
        switch name {
        case "cpuOnly": return .cpuOnly
        case "cpuAndGPU": return .cpuAndGPU
        case "cpuAndNeuralEngine": return .cpuAndNeuralEngine
        case "all": return .all
        default: throw AgentError.job("unknown compute units \(name)")
        }
    }

    /// Core ML has no version of its own: it is the one the OS ships.
    static func runtime(of d: DeviceFacts) -> RuntimeFacts {
        return RuntimeFacts(name: "Core ML", version: "\(d.osName) \(d.osVersion) (\(d.osBuild ?? "?"))")
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? AgentError { return e.description }
        let ns = error as NSError
        return "\(ns.domain) \(ns.code): \(ns.localizedDescription)"
    }
}

/// The input tensor, made once before any timed call: seeded uniform values in [-1, 1).
enum Inputs {
    static func make(for model: MLModel, shape: [Int], seed: UInt64) throws -> MLFeatureProvider {
        let inputs = model.modelDescription.inputDescriptionsByName
        guard inputs.count == 1, let entry = inputs.first else {
            throw AgentError.model("it has \(inputs.count) inputs; splitbench feeds one")
        }
        if let constraint = entry.value.multiArrayConstraint {
            let expected = constraint.shape.map { $0.intValue }
            guard expected == shape else {
                throw AgentError.model("input \(entry.key) has shape \(expected), the job says \(shape)")
            }
        }
        let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
        var state = seed
        array.withUnsafeMutableBufferPointer(ofType: Float32.self) { buffer, _ in
            for i in buffer.indices {
                buffer[i] = Float32(Double(splitmix64(&state) >> 11) / Double(1 << 53) * 2 - 1)
            }
        }
        return try MLDictionaryFeatureProvider(dictionary: [entry.key: MLFeatureValue(multiArray: array)])
    }

    /// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator, the same on every device.
    static func splitmix64(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
