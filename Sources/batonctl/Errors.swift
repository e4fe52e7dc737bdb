import BatonAPI
import BatonBPF
import BatonCLI
import BatonDataPlane
import BatonModel
import Foundation

/// What batonctl makes of the errors below it.
extension CLIError {
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
        case let e as ModelError:
            return .usage(e.description)
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
        case .conflict, .failed, .rateLimited, ._internal: .failure
        }
    }

    static func describe(_ e: DecodingError) -> String { e.summary }
}

func strerrorText(_ code: Int32) -> String { String(cString: strerror(code)) }
