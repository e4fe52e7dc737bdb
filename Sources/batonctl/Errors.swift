import BatonAPI
import BatonBPF
import BatonDataPlane
import Foundation

/// batonctl's exit codes (docs/cli.md lists them).
enum ExitStatus: Int32 {
    /// Done.
    case success = 0
    /// A kernel, BPF or netlink call failed, a map is full, or the state
    /// forbids it (already attached); the daemon's conflict, failed,
    /// rate-limited and internal errors.
    case failure = 1
    /// What the command names does not exist: nothing loaded at the root, no
    /// such rule, takeover, interface, network namespace or attachment; the
    /// daemon's not-found (no such transfer, device, policy or target).
    case notFound = 2
    /// Bad command line: unknown flag, malformed or contradictory value
    /// (ArgumentParser's own usage errors use the same code); the daemon's
    /// invalid (it found the request malformed).
    case usage = 64
    /// No daemon answers at --control or --api (batond is not running there),
    /// or it answers unavailable (shutting down): sysexits' EX_UNAVAILABLE.
    case unavailable = 69
    /// Not root (map verbs); not allowed to open the API socket, or the daemon
    /// answers forbidden (daemon verbs): sysexits' EX_NOPERM.
    case forbidden = 77
}

/// An error batonctl reports as one line on stderr, `batonctl: <message>`.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var status: ExitStatus
    /// Extra lines printed only with --verbose (libbpf's log, for one).
    var detail: String = ""

    init(_ message: String, _ status: ExitStatus = .failure, detail: String = "") {
        self.message = message
        self.status = status
        self.detail = detail
    }

    var description: String { message }

    static func usage(_ message: String) -> CLIError { CLIError(message, .usage) }
    static func notFound(_ message: String) -> CLIError { CLIError(message, .notFound) }

    static let notRoot = CLIError("must run as root (BPF and XDP need CAP_BPF and CAP_NET_ADMIN)", .forbidden)

    static func notLoaded(_ root: String) -> CLIError {
        .notFound("nothing is loaded at \(root); `batonctl attach IFACE` loads it")
    }

    /// Turns anything thrown below into a CLIError: DataPlane's domain errors
    /// keep their text, kernel errors keep theirs (the verifier log goes to
    /// `detail`), anything else is described as it describes itself.
    static func from(_ error: any Error, root: String) -> CLIError {
        switch error {
        case let e as CLIError:
            return e
        case let e as DataPlaneError:
            switch e {
            case .invalid(let s): return .usage(s)
            case .notFound(let s): return .notFound(s)
            case .full(let s): return CLIError("map full: \(s)", .failure)
            case .notLoaded: return .notLoaded(root)
            }
        case let e as BPFError:
            let line = e.description.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? e.operation
            if e.errno == E2BIG { return CLIError("map full: \(line)", .failure, detail: e.log) }
            if e.errno == EPERM || e.errno == EACCES { return CLIError(line, .forbidden, detail: e.log) }
            var message = line
            if !e.log.isEmpty { message += " (--verbose shows libbpf's log)" }
            return CLIError(message, .failure, detail: e.log)
        case let e as DecodingError:
            return .usage(describe(e))
        default:
            let text = String(describing: error)
            return CLIError(text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? text, .failure,
                            detail: text)
        }
    }

    /// What the daemon verbs report: the daemon's (or the client's) one line, with the exit
    /// status its code calls for (docs/cli.md, "Errors and exit codes").
    static func fromControl(_ error: any Error) -> CLIError {
        switch error {
        case let e as CLIError:
            return e
        case let e as ControlError:
            let text = firstLine(e.description)
            return CLIError(text, status(of: e.code), detail: e.description)
        default:
            let text = String(describing: error)
            return CLIError(firstLine(text), .failure, detail: text)
        }
    }

    /// The exit status of an API error code.
    static func status(of code: ControlError.Code) -> ExitStatus {
        switch code {
        case .invalid: .usage
        case .notFound: .notFound
        case .forbidden: .forbidden
        case .unavailable: .unavailable
        case .conflict, .failed, .rateLimited, .internal: .failure
        }
    }

    static func firstLine(_ text: String) -> String {
        text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? text
    }

    static func describe(_ e: DecodingError) -> String { e.summary }
}

func strerrorText(_ code: Int32) -> String { String(cString: strerror(code)) }

/// stderr, unbuffered.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// A notice for people, on stderr so stdout stays clean for --json.
func note(_ text: String) {
    printError("batonctl: " + text)
}
