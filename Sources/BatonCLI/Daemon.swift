import ArgumentParser
import BatonAPI
import BatonModel
import Foundation

// Talking to batond: which daemon (the local socket or a remote one over mutual TLS), and what
// its errors become on the command line. batonctl's daemon verbs and baton-dp's teardown (which
// asks whether a daemon still answers) share it.

/// The daemon verbs' options: which batond to talk to. The local one over its Unix socket
/// (--control), or a remote one over HTTPS with client certificates (--api and the TLS files).
/// Accepted before or after the verb.
public struct ControlOptions: ParsableArguments {
    public static let defaultPath = DefaultPaths.controlSocket

    public init() {}

    /// The options that take a value, as they may precede the verb (see GlobalOptions.valued).
    public static let valued: Set<String> = ["--control", "--api", "--tls-ca", "--ca", "--tls-cert", "--cert", "--tls-key"]

    @Option(name: .long, help: ArgumentHelp(
        "The local batond's API socket (batond's --control; default \(ControlOptions.defaultPath)).", valueName: "path"))
    public var control: String?

    @Option(name: .long, help: ArgumentHelp(
        "A remote batond's API instead (batond's --listen), over mutual TLS: needs --tls-ca, --tls-cert and --tls-key.",
        valueName: "https://host:port"))
    public var api: String?

    @Option(name: [.customLong("tls-ca"), .customLong("ca")], help: ArgumentHelp(
        "With --api: the CA that signed the daemon's certificate (PEM).", valueName: "file"))
    public var tlsCA: String?

    @Option(name: [.customLong("tls-cert"), .customLong("cert")], help: ArgumentHelp(
        "With --api: this client's certificate (PEM), signed by the daemon's --tls-client-ca.", valueName: "file"))
    public var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp(
        "With --api: this client's private key (PEM).", valueName: "file"))
    public var tlsKey: String?

    /// The local socket's path (--control or the default), when --api is not given.
    public var controlPath: String { control ?? Self.defaultPath }

    /// Where to send requests; every contradiction or malformed value is a usage error.
    public func endpoint() throws -> APIEndpoint {
        guard let api else {
            let given = [("--tls-ca", tlsCA), ("--tls-cert", tlsCert), ("--tls-key", tlsKey)].filter { $0.1 != nil }.map(\.0)
            if !given.isEmpty {
                throw CLIError.usage("\(given.joined(separator: ", ")): --tls-ca, --tls-cert and --tls-key go with --api (a remote daemon); the local socket needs no certificates")
            }
            let path = controlPath
            guard !path.isEmpty else { throw CLIError.usage("invalid --control '': expected the path of batond's API socket") }
            guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
                throw CLIError.usage("invalid --control '\(path)': a socket path is at most \(MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1) bytes")
            }
            return .unix(path: path)
        }
        if control != nil {
            throw CLIError.usage("--control and --api are exclusive: --control is the local daemon's socket, --api a remote daemon's address")
        }
        let base = try Parse.apiBase(api)
        let files = [("--tls-ca", tlsCA), ("--tls-cert", tlsCert), ("--tls-key", tlsKey)]
        let missing = files.filter { $0.1 == nil }.map(\.0)
        guard missing.isEmpty, let ca = tlsCA, let cert = tlsCert, let key = tlsKey else {
            throw CLIError.usage("--api needs \(missing.joined(separator: ", ")): the daemon's API over TCP is mutual TLS (--tls-ca, --tls-cert, --tls-key)")
        }
        for (flag, file) in files {
            guard let file else { continue }
            if access(file, R_OK) != 0 {
                let why = strerrorText(errno)
                throw CLIError.notFound("cannot read \(file): \(why) (\(flag))")
            }
        }
        return .https(base: base, tls: ClientTLS(ca: ca, certificate: cert, key: key))
    }
}

/// Runs a daemon verb's body with a client of the daemon's API; every error below becomes a
/// one-line CLIError whose exit status follows the error's code (docs/cli.md).
public func withDaemon<T>(_ o: ControlOptions, _ body: (Control) throws -> T) throws -> T {
    let endpoint = try o.endpoint()
    if case .unix(let path) = endpoint { try probeSocket(path) }
    do {
        return try body(Control(endpoint: endpoint))
    } catch {
        throw CLIError.fromControl(error)
    }
}

/// Connects once to the local socket, so that "nothing there" and "not yours" get their own
/// one-line messages (exit 69 and 77) before any request is made.
public func probeSocket(_ path: String) throws {
    switch connectUnix(path) {
    case 0:
        return
    case EACCES, EPERM:
        throw CLIError("connect to \(path): \(strerrorText(EACCES)): the API socket is root's; run batonctl as root", .forbidden)
    case let e:
        throw CLIError("no daemon at \(path) (\(strerrorText(e))): is batond running? (--control)", .unavailable)
    }
}

/// connect(2) to a Unix stream socket and close it: 0, or the errno.
public func connectUnix(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return errno }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return ENAMETOOLONG }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let r = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    return r == 0 ? 0 : errno
}

extension CLIError {
    /// What the daemon verbs report: the daemon's (or the client's) one line, with the exit
    /// status its code calls for (docs/cli.md, "Errors and exit codes").
    public static func fromControl(_ error: any Error) -> CLIError {
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
    public static func status(of code: ControlError.Code) -> ExitStatus {
        switch code {
        case .invalid: .usage
        case .notFound: .notFound
        case .forbidden: .forbidden
        case .unavailable: .unavailable
        case .conflict, .failed, .rateLimited, ._internal: .failure
        }
    }
}

/// strerror(3) as a String.
public func strerrorText(_ code: Int32) -> String { String(cString: strerror(code)) }
