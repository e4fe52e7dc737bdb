import ArgumentParser
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonNet
import BatonProtocol
import Foundation

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the session agent: take over addresses, steer transferred sessions, wake TNs up.",
        discussion: """
        Loads the steering data plane (or adopts the one pinned at --root), attaches it to \
        --interface and serves registrations from trusted nodes (--trust). Stopping the agent \
        leaves the data plane pinned and attached: steering goes on.
        """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: ArgumentHelp("The data plane's pin root on bpffs.", valueName: "path"))
    var root: String = DataPlane.defaultRoot

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp(
        "The public key of a node allowed to register transfers (repeat for each).", valueName: "key"))
    var trust: [String] = []

    @Option(name: .long, help: ArgumentHelp("End a transfer when all its sessions have been idle this long (seconds).", valueName: "s"))
    var idleTimeout: Double = 30

    @Option(name: .long, help: ArgumentHelp("Keep forwarding this long after the TN confirmed the wake-up (seconds).", valueName: "s"))
    var linger: Double = 0.5

    @Option(name: .long, help: ArgumentHelp("Announcements (gratuitous ARP / unsolicited NA) per takeover burst.", valueName: "n"))
    var announceCount: Int = 3

    @Option(name: .long, help: ArgumentHelp("Milliseconds between the announcements of a burst.", valueName: "ms"))
    var announceInterval: Int = 100

    @Option(name: .long, help: ArgumentHelp("Announce again every this many seconds while a takeover lasts (0: never).", valueName: "s"))
    var announceRefresh: Double = 10

    @Option(name: .long, help: ArgumentHelp("Rule capacity when the data plane is loaded.", valueName: "n"))
    var maxRules: Int = 65536

    func validate() throws {
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
        guard linger >= 0 else { throw ValidationError("--linger must not be negative") }
        guard announceCount >= 1 else { throw ValidationError("--announce-count must be at least 1") }
        guard announceInterval >= 0, announceRefresh >= 0 else { throw ValidationError("announcement times must not be negative") }
        guard maxRules > 0 else { throw ValidationError("--max-rules must be positive") }
        for key in trust where PublicKey(key) == nil {
            throw ValidationError("invalid public key '\(key)' (--trust): expected 43 base64url characters, as `batond key` prints")
        }
    }

    func run() throws {
        let logger = try daemon.prepare("batond.agent")
        var c = AgentConfiguration(interface: daemon.interface, identity: try daemon.identity(),
                                   trusted: Set(trust.compactMap(PublicKey.init)))
        c.pinRoot = root
        c.port = UInt16(daemon.port)
        c.control = daemon.control
        c.xdpMode = XDPMode(rawValue: daemon.xdpMode)!
        c.idleTimeout = idleTimeout
        c.linger = linger
        c.maxRules = maxRules
        c.announcements = AnnouncementPolicy(count: announceCount, interval: .milliseconds(announceInterval),
                                             refresh: announceRefresh > 0 ? .milliseconds(Int(announceRefresh * 1000)) : nil)
        if trust.isEmpty { logger.warning("no --trust keys: every registration will be refused") }
        let agent: Agent
        do {
            agent = try Agent(c, logger: logger)
        } catch {
            throw DaemonFailure("cannot start the agent: \(error)")
        }
        try serve(run: { try agent.run() }, stop: { agent.stop() })
    }
}

/// A start-up failure, printed as one line.
struct DaemonFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
