import ArgumentParser
import BatonBPF
import BatonAPI
import BatonDaemon
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import Foundation

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the session agent: take over addresses, steer transferred sessions, wake TNs up.",
        discussion: """
        Loads the steering data plane (or adopts the one pinned at --root), attaches it to \
        --interface, reconciles the maps with its store (--state-dir) and serves registrations \
        from enrolled devices (batonctl device add) that a policy allows (batonctl policy add). \
        Stopping the agent (SIGTERM) leaves the data plane pinned and attached: steering goes \
        on, and the next start resumes every stored transfer.
        """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: ArgumentHelp("The data plane's pin root on bpffs.", valueName: "path"))
    var root: String = DataPlane.defaultRoot

    @Option(name: .long, help: ArgumentHelp("Registrations per second each device may make (a device's own limit overrides it).", valueName: "n"))
    var rateLimit: Double = 50

    @Option(name: .long, help: ArgumentHelp("Registrations a device may make at once before --rate-limit applies.", valueName: "n"))
    var rateBurst: Double = 100

    @Option(name: .long, help: ArgumentHelp(
        "Sealed messages a second past which the agent answers registrations with a cookie and opens only those that carry it (0: always; 0-10000000).",
        valueName: "n"))
    var cookieThreshold: Int = 1000

    @Option(name: .long, help: ArgumentHelp("End a transfer when all its sessions have been idle this long (seconds).", valueName: "s"))
    var idleTimeout: Double = 30

    @Option(name: .long, help: ArgumentHelp("Keep forwarding this long after the TN confirmed the wake-up (seconds).", valueName: "s"))
    var linger: Double = 0.5

    @Option(name: .long, help: ArgumentHelp("Give up on a wake-up the TN has not confirmed after this long (seconds): clear the takeover.", valueName: "s"))
    var maxWaking: Double = 30

    @Option(name: .long, help: ArgumentHelp("Announcements (gratuitous ARP / unsolicited NA) per takeover burst.", valueName: "n"))
    var announceCount: Int = 3

    @Option(name: .long, help: ArgumentHelp("Milliseconds between the announcements of a burst.", valueName: "ms"))
    var announceInterval: Int = 100

    @Option(name: .long, help: ArgumentHelp("Announce again every this many seconds while a takeover lasts (0: never).", valueName: "s"))
    var announceRefresh: Double = 10

    @Option(name: .long, help: ArgumentHelp("Rule capacity when the data plane is loaded.", valueName: "n"))
    var maxRules: Int = 65536

    @Option(name: .long, help: ArgumentHelp("Takeover capacity (addresses taken over at once) when the data plane is loaded.", valueName: "n"))
    var maxTakeovers: Int = 1024

    @Option(name: .long, help: ArgumentHelp(
        "takeover: answer ARP/NDP for a TN's address and steer what arrives; switch: steer inline on the ports of the bridge --interface (nothing taken over or announced; transfers are l2, the target on a port of the bridge).",
        valueName: "takeover|switch"))
    var mode: String = "takeover"

    @Option(name: .customLong("switch-port"), help: ArgumentHelp(
        "With --mode switch: a bridge port to steer from (repeatable; default: every port of --interface).", valueName: "name"))
    var switchPorts: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Ports of the agent's addresses that anchored sessions are given (batonctl anchor create), FIRST-LAST within 1024-65535; two per session. Packets to a port given out never reach the agent's stack.",
        valueName: "first-last"))
    var relayPorts: String = "30000-39999"

    @Option(name: .long, help: ArgumentHelp("End an anchored session when neither leg has seen a packet for this long (seconds; a session may say otherwise).", valueName: "s"))
    var anchorIdleTimeout: Double = 60

    @Option(name: .long, help: ArgumentHelp("After a move without lockout, relay the old device's packets this long (seconds; a move may say otherwise).", valueName: "s"))
    var anchorGrace: Double = 2

    /// --relay-ports as a range.
    static func portRange(_ text: String) -> ClosedRange<UInt16>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = UInt16(parts[0]), let b = UInt16(parts[1]), a >= 1024, a < b else { return nil }
        return a...b
    }

    func validate() throws {
        guard let m = AgentMode(rawValue: mode) else { throw ValidationError("--mode must be takeover or switch, not '\(mode)'") }
        if m == .takeover, !switchPorts.isEmpty { throw ValidationError("--switch-port needs --mode switch") }
        guard let pool = Self.portRange(relayPorts) else {
            throw ValidationError("--relay-ports must be FIRST-LAST with 1024 <= FIRST < LAST <= 65535, not '\(relayPorts)'")
        }
        // A port given out is the relay's before the stack sees it: never the daemon's own.
        if let p = UInt16(exactly: daemon.port), pool.contains(p) {
            throw ValidationError("--relay-ports \(relayPorts) holds the protocol port \(daemon.port) (--port): relayed sessions would take its datagrams")
        }
        if let l = try? daemon.listenAddress(), let p = UInt16(exactly: l.port), pool.contains(p) {
            throw ValidationError("--relay-ports \(relayPorts) holds the API port \(l.port) (--listen)")
        }
        do {
            try Limits.check(anchorIdleTimeout, Limits.idleTimeout, "--anchor-idle-timeout", unit: "seconds")
            try Limits.check(anchorGrace, 0...3600, "--anchor-grace", unit: "seconds")
            try Limits.check(idleTimeout, Limits.idleTimeout, "--idle-timeout", unit: "seconds")
            try Limits.check(linger, Limits.linger, "--linger", unit: "seconds")
            try Limits.check(maxWaking, Limits.maxWaking, "--max-waking", unit: "seconds")
            try Limits.check(announceCount, Limits.announceCount, "--announce-count")
            try Limits.check(announceInterval, Limits.announceInterval, "--announce-interval", unit: "ms")
            try Limits.check(announceRefresh, Limits.announceRefresh, "--announce-refresh", unit: "seconds (0: never)")
            // A refresh below a tenth of a second would be a flood (and 0 ms once rounded).
            if announceRefresh > 0 { try Limits.check(announceRefresh, 0.1...3600, "--announce-refresh", unit: "seconds (0: never)") }
            try Limits.check(maxRules, Limits.maxRules, "--max-rules")
            try Limits.check(maxTakeovers, Limits.maxTakeovers, "--max-takeovers")
            try Limits.check(rateLimit, Limits.rateLimit, "--rate-limit", unit: "registrations/s")
            try Limits.check(rateBurst, Limits.rateBurst, "--rate-burst", unit: "registrations")
            try Limits.check(cookieThreshold, Limits.cookieThreshold, "--cookie-threshold", unit: "messages/s")
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        let logger = try daemon.prepare("batond.agent")
        var c = AgentConfiguration(interface: daemon.interface, identity: try daemon.identity())
        c.pinRoot = root
        c.port = UInt16(daemon.port)
        c.listeners = try daemon.listeners()
        c.stateDirectory = daemon.stateDir
        c.rateLimit = rateLimit
        c.rateBurst = rateBurst
        c.cookieThreshold = cookieThreshold
        c.xdpMode = XDPMode(rawValue: daemon.xdpMode)!
        c.idleTimeout = idleTimeout
        c.linger = linger
        c.maxWaking = maxWaking
        c.maxRules = maxRules
        c.maxTakeovers = maxTakeovers
        c.mode = AgentMode(rawValue: mode)!
        c.switchPorts = switchPorts
        c.relayPorts = Self.portRange(relayPorts)!
        c.anchorIdleTimeout = anchorIdleTimeout
        c.anchorGrace = anchorGrace
        c.announcements = AnnouncementPolicy(count: announceCount, interval: .milliseconds(announceInterval),
                                             refresh: announceRefresh > 0 ? .milliseconds(Int((announceRefresh * 1000).rounded())) : nil)
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
