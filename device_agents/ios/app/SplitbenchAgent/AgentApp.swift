import SwiftUI
import UIKit

/// The splitbench agent app: no UI beyond a status line. Launched by the host (pymobiledevice3, DVT
/// process control) with `--splitbench-job <launch id>`, it runs that one launch off the main thread,
/// writes its result and exits; launched by hand it only says it waits for the host.
@main
struct AgentApp: App {
    @StateObject private var agent = AgentState()

    var body: some Scene {
        WindowGroup {
            Text(agent.status)
                .font(.system(.footnote, design: .monospaced))
                .multilineTextAlignment(.center)
                .padding()
                .onAppear { agent.start() }
        }
    }
}

@MainActor
final class AgentState: ObservableObject {
    @Published var status = "splitbench agent \(AppFacts.current.version) (schema v\(AgentFiles.schemaVersion)): waiting for the host"
    private var started = false

    func start() {
        guard !started else { return }
        started = true
        guard let launchId = AgentState.argument("--splitbench-job") else { return }
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let runner = Runner(documents: documents)
        // Locked, or another app in front: the numbers would not be this app's alone. Say so and stop.
        _ = NotificationCenter.default.addObserver(forName: UIApplication.didEnterBackgroundNotification, object: nil,
                                                   queue: .main) { _ in
            if runner.interrupt("sent to the background (the phone was locked or another app came up)") {
                exit(0)
            }
        }
        status = "splitbench: running \(launchId)"
        // Off the main thread (the watchdog ends apps that block it), at a user-initiated quality of
        // service, which the result records.
        // `runner` is Sendable (its lock guards its state), so both closures may hold it.
        Task.detached(priority: .userInitiated) {
            let result = await runner.run(launchId: launchId)
            Runner.log("splitbench: \(launchId): \(result?.status ?? "no job file") \(result?.reason ?? "")")
            exit(0)
        }
    }

    static func argument(_ name: String) -> String? {
        let arguments = ProcessInfo.processInfo.arguments
        guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
        return arguments[i + 1]
    }
}
