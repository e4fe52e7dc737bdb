import BatonBPF
import BatonDaemon
import BatonDataPlane
import Foundation

/// batonctl's exit codes (docs/cli.md lists them).
enum ExitStatus: Int32 {
    /// Done.
    case success = 0
    /// A kernel, BPF or netlink call failed, a map is full, or the state
    /// forbids it (already attached).
    case failure = 1
    /// What the command names does not exist: nothing loaded at the root, no
    /// such rule, takeover, interface, network namespace or attachment.
    case notFound = 2
    /// Bad command line: unknown flag, malformed or contradictory value
    /// (ArgumentParser's own usage errors use the same code).
    case usage = 64
    /// No daemon answers on the control socket (--control): batond is not
    /// running there (sysexits' EX_UNAVAILABLE).
    case unavailable = 69
    /// Not root (or, for the daemon verbs, not allowed to open the control socket).
    case notRoot = 77
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

    static let notRoot = CLIError("must run as root (BPF and XDP need CAP_BPF and CAP_NET_ADMIN)", .notRoot)

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
            if e.errno == EPERM || e.errno == EACCES { return CLIError(line, .notRoot, detail: e.log) }
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

    /// What the daemon verbs report: the control socket's and the daemon's errors keep their
    /// text; the exit status comes from what the text says (ControlError carries only text).
    static func fromControl(_ error: any Error, path: String) -> CLIError {
        switch error {
        case let e as CLIError:
            return e
        case let e as ControlError:
            let text = e.description.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? e.description
            if text.hasPrefix("no daemon at ") { return CLIError(text, .unavailable) }
            if text.hasPrefix("connect to "), text.hasSuffix(strerrorText(EACCES)) {
                return CLIError("\(text): the control socket is root's; run batonctl as root", .notRoot)
            }
            if text.hasPrefix("control socket path ") { return .usage(text + " (--control)") }
            if text.hasPrefix("no transfer ") || text.hasPrefix("unknown target ") { return .notFound(text) }
            if text.hasPrefix("invalid transfer ID ") { return .usage(text) }
            return CLIError(text, .failure)
        default:
            let text = String(describing: error)
            return CLIError(text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? text, .failure,
                            detail: text)
        }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: [any CodingKey]) -> String {
            var out = ""
            for k in c {
                if let i = k.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + k.stringValue }
            }
            return out.isEmpty ? "top level" : out
        }
        switch e {
        case .dataCorrupted(let c):
            // JSONSerialization's own message is in the underlying error.
            if let u = c.underlyingError { return "\(path(c.codingPath)): \(c.debugDescription) (\(u.localizedDescription))" }
            return "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c):
            return "\(path(c.codingPath + [k])): missing"
        case .typeMismatch(let t, let c):
            return "\(path(c.codingPath)): expected \(t)"
        case .valueNotFound(let t, let c):
            return "\(path(c.codingPath)): expected \(t), found null"
        @unknown default:
            return "\(e)"
        }
    }
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
