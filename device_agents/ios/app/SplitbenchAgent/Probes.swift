import Darwin
import Foundation
import os

/// The one clock every time is read from: CLOCK_UPTIME_RAW is mach_absolute_time in nanoseconds
/// (monotonic, not advanced while the phone sleeps), the clock Apple's coremltools ModelRunner uses.
enum Clock {
    static let name = "CLOCK_UPTIME_RAW (mach_absolute_time in ns)"

    @inline(__always) static func now() -> UInt64 {
        clock_gettime_nsec_np(CLOCK_UPTIME_RAW)
    }
}

/// This task's port, for task_info. In C `mach_task_self()` is a macro (mach/mach_init.h) that Swift does
/// not import; the global it reads, `mach_task_self_`, is shared mutable state to Swift 6's concurrency
/// checking in SDKs before iOS 18.4. So the trap behind that global is asked once, here (a Sendable let).
private let taskSelfPort: mach_port_t = task_self_trap()

func mach_task_self() -> mach_port_t {
    return taskSelfPort
}

/// What the app reads about itself and the phone.
enum Probes {
    struct Footprint {
        let current: UInt64  // phys_footprint: what Xcode and the memory limit (jetsam) count
        let peak: UInt64?  // ledger_phys_footprint_peak: the high-water mark since the process started
    }

    /// task_info(TASK_VM_INFO): phys_footprint and its peak.
    static func footprint() -> Footprint? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self(), task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        guard kr == KERN_SUCCESS else { return nil }
        // An older kernel fills fewer fields (count says how many): the peak may not be among them.
        let peakEnd = (MemoryLayout<task_vm_info_data_t>.offset(of: \.ledger_phys_footprint_peak) ?? Int.max)
            + MemoryLayout<Int64>.size
        let filled = Int(count) * MemoryLayout<integer_t>.size
        let peak: UInt64? = filled >= peakEnd ? UInt64(max(0, info.ledger_phys_footprint_peak)) : nil
        return Footprint(current: info.phys_footprint, peak: peak)
    }

    /// os_proc_available_memory(): bytes left before the system's limit for this app (nil when it says 0).
    static func availableMemory() -> UInt64? {
        let bytes = os_proc_available_memory()
        return bytes > 0 ? UInt64(bytes) : nil
    }

    static func thermalState() -> String? {
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return nil
        }
    }

    /// CPU time of the whole process (user + system, every thread Core ML uses), in ns.
    static func cpuTimeNs() -> UInt64 {
        var usage = rusage()
        getrusage(RUSAGE_SELF, &usage)
        func ns(_ t: timeval) -> UInt64 { UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_usec) * 1_000 }
        return ns(usage.ru_utime) + ns(usage.ru_stime)
    }

    /// The quality of service of the calling thread (it decides which cores the OS prefers).
    static func qosName() -> String {
        let q = qos_class_self()
        if q == QOS_CLASS_USER_INTERACTIVE { return "userInteractive" }
        if q == QOS_CLASS_USER_INITIATED { return "userInitiated" }
        if q == QOS_CLASS_DEFAULT { return "default" }
        if q == QOS_CLASS_UTILITY { return "utility" }
        if q == QOS_CLASS_BACKGROUND { return "background" }
        return "unspecified"
    }

    static func sysctlString(_ name: String) -> String? {
        var size = 0
        guard sysctlbyname(name, nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: size)
        guard sysctlbyname(name, &buffer, &size, nil, 0) == 0 else { return nil }
        return String(cString: buffer)
    }

    static func device() -> DeviceFacts {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        let version = v.patchVersion > 0 ? "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"
                                         : "\(v.majorVersion).\(v.minorVersion)"
        #if targetEnvironment(simulator)
        let model = ProcessInfo.processInfo.environment["SIMULATOR_MODEL_IDENTIFIER"] ?? "simulator"
        let simulator = true
        #else
        let model = sysctlString("hw.machine") ?? "?"  // e.g. iPhone11,2
        let simulator = false
        #endif
        return DeviceFacts(model: model, osName: "iOS", osVersion: version, osBuild: sysctlString("kern.osversion"),
                           simulator: simulator)
    }
}
