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
///
/// Sendable by its lock: `written` and `skeleton` are read and written only under `lock` (the measuring
/// task and the background notification both reach them); everything else is immutable.
final class Runner: @unchecked Sendable {
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
            Runner.log("splitbench: cannot read the job \(launchId): \(error)")
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
        let first = result
        locked { skeleton = (job, first) }
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
            let url = try AgentFiles.url(job.resultPath, in: documents)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(result).write(to: url, options: .atomic)
        } catch {
            Runner.log("splitbench: cannot write the result of \(job.launchId): \(error)")
        }
        return true
    }

    // MARK: - Phases

    private func compile(_ job: Job, _ r: inout LaunchResult) async throws {
        let model = try job.requireModel()
        let package = try AgentFiles.url(model.package, in: documents)
        let target = try AgentFiles.url(model.compiled, in: documents)
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
        let url = try AgentFiles.url(try job.requireModel().compiled, in: documents)
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
        r.firstInferNs = try Runner.timedPrediction(model, input)
        r.warmupNs.reserveCapacity(job.warmup)
        for _ in 0..<job.warmup {
            r.warmupNs.append(try Runner.timedPrediction(model, input))
        }
        var samples = [UInt64](repeating: 0, count: job.runs)
        let cpu0 = Probes.cpuTimeNs()
        let wall0 = Clock.now()
        for i in 0..<job.runs {
            samples[i] = try Runner.timedPrediction(model, input)
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

    /// One prediction, the clock read around the call alone, in an autorelease pool of its own: its outputs
    /// and whatever Core ML autoreleased are freed before the next prediction instead of piling up until
    /// the phase returns (which would inflate the memory peak the result reports, or end in a jetsam kill
    /// with a large output). The outputs are released after the second clock read, as the pool drains.
    static func timedPrediction(_ model: MLModel, _ input: MLFeatureProvider) throws -> UInt64 {
        return try autoreleasepool { () throws -> UInt64 in
            let t0 = Clock.now()
            let output = try model.prediction(from: input)
            let elapsed = Clock.now() - t0
            withExtendedLifetime(output) {}
            return elapsed
        }
    }

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

    /// NSLog with the text as an argument, never as the format (a "%" in an error message stays a "%").
    static func log(_ text: String) {
        NSLog("%@", text)
    }
}

/// The input tensor, made once before any timed call from the model's own description of its one input:
/// its data type (float32, float16, double or int32) and the shapes it accepts (its default shape, an
/// enumerated set, or a range per dimension), the job's shape checked against them. Values are seeded:
/// uniform in [-1, 1) for floating-point inputs, 0 or 1 for int32 ones (safe as indices).
enum Inputs {
    static func make(for model: MLModel, shape: [Int], seed: UInt64) throws -> MLFeatureProvider {
        let inputs = model.modelDescription.inputDescriptionsByName
        guard inputs.count == 1, let entry = inputs.first else {
            throw AgentError.model("it has \(inputs.count) inputs; splitbench feeds one")
        }
        let name = entry.key
        let description = entry.value
        switch description.type {
        case .multiArray:
            break
        case .image:
            var size = ""
            if let image = description.imageConstraint {
                size = " of \(image.pixelsWide)x\(image.pixelsHigh) pixels"
            }
            throw AgentError.model("input \(name) is an image\(size); splitbench feeds a tensor: convert the "
                                   + "split with a tensor input (coremltools ct.TensorType, not ct.ImageType)")
        default:
            throw AgentError.model("input \(name) is of Core ML feature type \(description.type.rawValue), "
                                   + "not a multi-array; splitbench feeds one tensor")
        }
        guard let constraint = description.multiArrayConstraint else {
            throw AgentError.model("input \(name) describes no multi-array constraint")
        }
        try check(shape, name: name, constraint: constraint)
        let dataType = constraint.dataType
        switch dataType {
        case .float32, .float16, .double, .int32:
            break
        @unknown default:
            throw AgentError.model("input \(name) has Core ML data type \(dataType.rawValue), which splitbench "
                                   + "does not fill (float32, float16, double, int32)")
        }
        let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: dataType)
        fill(array, integers: dataType == .int32, seed: seed)
        return try MLDictionaryFeatureProvider(dictionary: [name: MLFeatureValue(multiArray: array)])
    }

    /// The job's shape must be one the model takes: Core ML would refuse any other at the first prediction.
    static func check(_ shape: [Int], name: String, constraint: MLMultiArrayConstraint) throws {
        let flexible = constraint.shapeConstraint
        switch flexible.type {
        case .enumerated:
            let allowed = flexible.enumeratedShapes.map { dims in dims.map { $0.intValue } }
            guard allowed.contains(shape) else {
                throw AgentError.model("input \(name) takes the shapes \(allowed), the job says \(shape)")
            }
        case .range:
            let ranges = flexible.sizeRangeForDimension.map { $0.rangeValue }
            var fits = ranges.count == shape.count
            if fits {
                for (dim, range) in zip(shape, ranges) {
                    // an unbounded dimension has no length (NSNotFound); the upper end is taken as inclusive
                    let within = dim >= range.location && (range.length == NSNotFound || dim - range.location <= range.length)
                    if !within { fits = false }
                }
            }
            guard fits else {
                let described = ranges.map { Inputs.describe($0) }
                throw AgentError.model("input \(name) takes sizes \(described) per dimension, the job says \(shape)")
            }
        default:  // unspecified: the one shape the model was made with
            let expected = constraint.shape.map { $0.intValue }
            guard expected == shape else {
                throw AgentError.model("input \(name) has shape \(expected), the job says \(shape)")
            }
        }
    }

    static func describe(_ range: NSRange) -> String {
        if range.length == NSNotFound || range.length > Int.max - range.location {
            return "\(range.location)..."
        }
        return "\(range.location)...\(range.location + range.length)"
    }

    /// Seeded values through MLMultiArray's own conversion, whatever its data type (float16 included).
    static func fill(_ array: MLMultiArray, integers: Bool, seed: UInt64) {
        var state = seed
        for i in 0..<array.count {
            let unit = Double(splitmix64(&state) >> 11) / Double(UInt64(1) << 53)  // [0, 1)
            array[i] = integers ? NSNumber(value: Int32(unit * 2)) : NSNumber(value: unit * 2 - 1)
        }
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
