import Foundation
import Glibc

/// One run of a built command-line tool (batonctl, baton-lab) as the tests drive it: exit
/// status, stdout and stderr captured whole.
public struct ToolRun: CustomStringConvertible, Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// It ran past its timeout and was terminated.
    public var timedOut = false

    public var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }

    public func json<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(stdout.utf8))
    }

    /// Runs `executable` with `arguments`, stdin from /dev/null, stdout and stderr into files
    /// (a pipe could fill and block the tool), terminated after `timeout`; `environment` replaces
    /// the inherited one when given.
    public static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 60,
                           environment: [String: String]? = nil) throws -> ToolRun {
        let tmp = FileManager.default.temporaryDirectory
        let name = URL(fileURLWithPath: executable).lastPathComponent
        let out = tmp.appendingPathComponent("\(name)-\(UUID().uuidString).out")
        let err = tmp.appendingPathComponent("\(name)-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let environment { p.environment = environment }
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(5000) }
        let timedOut = p.isRunning
        if timedOut { p.terminate() }
        p.waitUntilExit()
        return ToolRun(status: p.terminationStatus,
                       stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "",
                       timedOut: timedOut)
    }
}
