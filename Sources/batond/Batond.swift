import ArgumentParser
import BatonAPI
import BatonDaemon
import BatonNet
import BatonProtocol
import BatonModel
import Foundation
import Logging

/// batond: Baton's daemon. `agent` on the session agent host, `node` on transferring nodes
/// and targets. See docs/daemon.md and docs/protocol.md.
@main
struct Batond: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batond",
        abstract: "Baton's daemon: the session agent, or a node (TN and target).",
        discussion: """
        Run `batond agent` on the host whose XDP program takes over addresses and steers, and \
        `batond node` on every device that transfers sessions away or receives them. Daemons \
        trust each other by public key: `batond key` creates this host's key and prints the \
        public half to give to its peers; the agent accepts registrations only from enrolled \
        devices (batonctl device add, batonctl policy add). batonctl talks to the local daemon's \
        API on --control; --listen serves the same API over HTTPS with client certificates.
        """,
        subcommands: [AgentCommand.self, NodeCommand.self, KeyCommand.self])
}

/// Options both roles take.
struct DaemonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The interface facing correspondents and nodes.", valueName: "iface"))
    var interface: String = "eth0"

    @Option(name: .long, help: ArgumentHelp(
        "Enter this network namespace (/var/run/netns/<name>) first; only the network namespace, so bpffs stays visible.",
        valueName: "name"))
    var netns: String?

    @Option(name: .long, help: ArgumentHelp(
        "Where this host's key (identity.key) and its store (batond.sqlite: its transfers; on the agent also devices and policies) are kept.", valueName: "dir"))
    var stateDir: String = "/var/lib/baton"

    @Option(name: .long, help: ArgumentHelp("The API's Unix socket (mode 0600), which batonctl uses.", valueName: "path"))
    var control: String = DefaultPaths.controlSocket

    @Option(name: .long, help: ArgumentHelp(
        "Also serve the API over HTTPS on HOST:PORT, to clients with a certificate from --tls-client-ca (off by default).",
        valueName: "host:port"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("This daemon's certificate for --listen (PEM).", valueName: "file"))
    var tlsCert: String?

    @Option(name: .long, help: ArgumentHelp("The key of --tls-cert (PEM).", valueName: "file"))
    var tlsKey: String?

    @Option(name: .long, help: ArgumentHelp(
        "The CA whose client certificates --listen accepts (PEM). A certificate's role is its subject's OU: operator (everything) or registrar (devices: list, show, add).",
        valueName: "file"))
    var tlsClientCA: String?

    @Option(name: .long, help: ArgumentHelp(
        "Client certificates --listen refuses: one hexadecimal serial number a line, # comments (read at start).",
        valueName: "file"))
    var tlsRevoked: String?

    @Option(name: .long, help: ArgumentHelp(
        "Close an API connection idle this long, a TLS handshake included (0.1-3600).", valueName: "seconds"))
    var apiIdleTimeout: Double = 30

    @Option(name: .long, help: ArgumentHelp(
        "Connections each API listener serves at once; more are closed as they come (1-65536).", valueName: "n"))
    var apiMaxConnections: Int = 256

    @Option(name: .long, help: ArgumentHelp("UDP port of the transfer protocol (all daemons use the same).", valueName: "port"))
    var port: Int = Int(TransferProtocol.defaultPort)

    @Option(name: .long, help: ArgumentHelp("XDP attach mode: native or generic.", valueName: "mode"))
    var xdpMode: String = "native"

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "info"

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("invalid port \(port): expected 1-65535 (--port)") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("invalid log level '\(logLevel)': expected trace, debug, info, notice, warning, error or critical")
        }
        guard ["native", "generic"].contains(xdpMode) else { throw ValidationError("invalid XDP mode '\(xdpMode)': expected native or generic") }
        guard !control.isEmpty else { throw ValidationError("--control must name a socket path") }
        do {
            _ = try Limits.check(apiIdleTimeout, Limits.apiIdleTimeout, "--api-idle-timeout", unit: "seconds")
            _ = try Limits.check(apiMaxConnections, Limits.apiMaxConnections, "--api-max-connections")
        } catch {
            throw ValidationError("\(error)")
        }
        // Whoever can write the socket's directory can put a socket of their own in its place.
        let directory = (control as NSString).deletingLastPathComponent
        var st = stat()
        if stat(directory.isEmpty ? "." : directory, &st) == 0, st.st_mode & 0o022 != 0 {
            throw ValidationError("""
                the directory of --control \(control), \(directory.isEmpty ? "." : directory), is writable by group or others \
                (mode \(String(st.st_mode & 0o7777, radix: 8))): another user could put a socket of their own there; \
                use a directory only root can write, like /run/baton
                """)
        }
        if listen != nil {
            _ = try listenAddress()
            guard tlsCert != nil, tlsKey != nil, tlsClientCA != nil else {
                throw ValidationError("--listen needs --tls-cert, --tls-key and --tls-client-ca: the TCP API takes only clients with certificates")
            }
        } else if tlsCert != nil || tlsKey != nil || tlsClientCA != nil || tlsRevoked != nil {
            throw ValidationError("--tls-cert, --tls-key, --tls-client-ca and --tls-revoked go with --listen")
        }
        if let tlsRevoked {
            do { _ = try ClientCertificatePolicy.load(revokedFile: tlsRevoked) } catch { throw ValidationError("\(error)") }
        }
    }

    /// --listen as host and port ("[::1]:7391" for IPv6).
    func listenAddress() throws -> (host: String, port: Int)? {
        guard let listen else { return nil }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw ValidationError("invalid --listen '\(listen)': expected HOST:PORT, like 10.0.0.2:7391 or [2001:db8::2]:7391")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ValidationError("invalid --listen '\(listen)': no host") }
        return (host, port)
    }

    /// Where the API listens.
    func listeners() throws -> APIListeners {
        let tls = tlsCert.map { ServerTLS(certificate: $0, key: tlsKey!, clientCA: tlsClientCA!) }
        var l = APIListeners(control: control, listen: try listenAddress(), tls: tls)
        l.idleTimeout = apiIdleTimeout
        l.maxConnections = apiMaxConnections
        if let tlsRevoked { l.clients = try ClientCertificatePolicy.load(revokedFile: tlsRevoked) }
        return l
    }

    /// Enters the namespace (before any thread exists) and sets up logging.
    func prepare(_ label: String) throws -> Logger {
        blockTerminationSignals()
        // Everything batond creates is its own: the API socket is 0600 from the moment it is
        // bound (not only after the chmod that follows), the store and the key 0600 anyway.
        umask(0o077)
        if let netns {
            do {
                try NetworkNamespace.open(name: netns).enterOnCurrentThread()
            } catch {
                throw ValidationError("cannot enter network namespace '\(netns)': \(error)")
            }
        }
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }

    func identity() throws -> NodeIdentity {
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        return try NodeIdentity.loadOrCreate(at: stateDir + "/identity.key")
    }
}

/// SIGINT and SIGTERM, blocked in every thread (see `blockTerminationSignals`) and taken by
/// one thread with sigwait: the libraries in the process (NIO, dispatch, service-lifecycle)
/// may install handlers of their own, which must not swallow the daemon's stop.
private func terminationSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    return set
}

/// Called first thing, before any thread exists, so that every thread inherits the mask.
func blockTerminationSignals() {
    var set = terminationSignals()
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Runs `daemon` until SIGINT or SIGTERM, then stops it.
func serve(run: @escaping () throws -> Void, stop: @escaping @Sendable () -> Void) throws {
    Thread.detachNewThread {
        var set = terminationSignals()
        var signal: Int32 = 0
        while sigwait(&set, &signal) != 0 {}
        stop()
    }
    try run()
}

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Create this host's key pair if there is none, and print its public key.",
        discussion: "The private key stays in <state-dir>/identity.key (mode 0600); peers are given the public key (--peer, --agent); the agent enrols it (batonctl device add).")

    @Option(name: .long, help: ArgumentHelp("Where identity.key is kept.", valueName: "dir"))
    var stateDir: String = "/var/lib/baton"

    func run() throws {
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        print(try NodeIdentity.loadOrCreate(at: stateDir + "/identity.key").publicKey)
    }
}
