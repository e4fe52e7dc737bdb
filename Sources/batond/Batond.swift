import ArgumentParser
import BatonDaemon
import BatonNet
import BatonProtocol
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
        public half to give to its peers. batonctl talks to the local daemon over --control.
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

    @Option(name: .long, help: ArgumentHelp("Where this host's key (identity.key) is kept.", valueName: "dir"))
    var stateDir: String = "/var/lib/baton"

    @Option(name: .long, help: ArgumentHelp("The control socket batonctl connects to.", valueName: "path"))
    var control: String = "/run/baton/batond.sock"

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
    }

    /// Enters the namespace (before any thread exists) and sets up logging.
    func prepare(_ label: String) throws -> Logger {
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

/// Runs `daemon` until SIGINT or SIGTERM, then stops it.
func serve(run: @escaping () throws -> Void, stop: @escaping @Sendable () -> Void) throws {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let queue = DispatchQueue(label: "batond.signals")
    let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
    for source in sources {
        source.setEventHandler { stop() }
        source.resume()
    }
    try run()
    _ = sources
}

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Create this host's key pair if there is none, and print its public key.",
        discussion: "The private key stays in <state-dir>/identity.key (mode 0600); peers are given the public key (--peer, --agent, --trust).")

    @Option(name: .long, help: ArgumentHelp("Where identity.key is kept.", valueName: "dir"))
    var stateDir: String = "/var/lib/baton"

    func run() throws {
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        print(try NodeIdentity.loadOrCreate(at: stateDir + "/identity.key").publicKey)
    }
}
