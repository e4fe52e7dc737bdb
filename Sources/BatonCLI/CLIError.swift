import ArgumentParser
import Foundation

/// The exit codes of Baton's command-line tools (docs/cli.md lists them).
public enum ExitStatus: Int32, Sendable {
    /// Done.
    case success = 0
    /// A kernel, BPF or netlink call failed, a map is full, or the state
    /// forbids it (already attached); the daemon's conflict, failed,
    /// rate-limited and internal errors.
    case failure = 1
    /// What the command names does not exist: nothing loaded at the root, no
    /// such rule, takeover, interface, network namespace, lab or attachment; the
    /// daemon's not-found (no such transfer, device, policy or target).
    case notFound = 2
    /// Bad command line: unknown flag, malformed or contradictory value
    /// (ArgumentParser's own usage errors use the same code); the daemon's
    /// invalid (it found the request malformed).
    case usage = 64
    /// No daemon answers at --control or --api (batond is not running there),
    /// or it answers unavailable (shutting down): sysexits' EX_UNAVAILABLE.
    case unavailable = 69
    /// Not root; not allowed to open the API socket, or the daemon answers
    /// forbidden (daemon verbs): sysexits' EX_NOPERM.
    case forbidden = 77
}

/// An error a tool reports as one line on stderr, `<tool>: <message>`.
public struct CLIError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var status: ExitStatus
    /// Extra lines printed only with --verbose (libbpf's log, for one).
    public var detail: String = ""

    public init(_ message: String, _ status: ExitStatus = .failure, detail: String = "") {
        self.message = message
        self.status = status
        self.detail = detail
    }

    public var description: String { message }

    public static func usage(_ message: String) -> CLIError { CLIError(message, .usage) }
    public static func notFound(_ message: String) -> CLIError { CLIError(message, .notFound) }

    public static func firstLine(_ text: String) -> String {
        text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? text
    }
}

/// Commands that can say whether --verbose was given (the reporter then prints `detail`).
public protocol VerboseCommand {
    var isVerbose: Bool { get }
}

extension ParsableCommand {
    /// Parses and runs the command line the way every Baton tool does: ArgumentParser reports
    /// usage errors and --help itself; a CLIError is one line `<tool>: message` and its exit
    /// status (with its detail under --verbose); anything else is ArgumentParser's.
    public static func runAsTool() -> Never {
        let command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            var c = command
            try c.run()
            exit()
        } catch let e as CLIError {
            printError("\(toolName): " + e.message)
            if (command as? any VerboseCommand)?.isVerbose == true, !e.detail.isEmpty { printError(e.detail) }
            Foundation.exit(e.status.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}
