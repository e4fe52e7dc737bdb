import BatonNet
import Foundation

/// A real peer's process (sipp, baresip) run in a lab host's network namespace through
/// nsenter, its stdout and stderr to `output`. Stopping is SIGKILL: sipp waits out its calls
/// on SIGTERM, and a test that stops a peer wants it gone.
final class PeerProcess: @unchecked Sendable {
    private let process: Process

    /// Its standard input when asked for (`input: true`): commands for an interactive peer.
    private let input: Pipe?

    init(host: LabHost, executable: String, arguments: [String], output: String, input: Bool = false) throws {
        guard let netns = host.namespace.name else { throw LabError(description: "host \(host.name) has no named namespace") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        p.arguments = ["--net=\(NetworkNamespace.runDirectory)/\(netns)", executable] + arguments
        FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        p.standardOutput = handle
        p.standardError = handle
        // A peer that quits while we write must not take us down with SIGPIPE.
        if input { signal(SIGPIPE, SIG_IGN) }
        self.input = input ? Pipe() : nil
        p.standardInput = self.input ?? FileHandle.nullDevice
        try p.run()
        process = p
    }

    var isRunning: Bool { process.isRunning }

    /// Writes `line` and a newline to its standard input (with `input: true`).
    func send(_ line: String) {
        guard process.isRunning else { return }
        try? input?.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Waits for it to exit (at most `timeout` seconds, then stops it); its exit status.
    func wait(timeout: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { stop() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
