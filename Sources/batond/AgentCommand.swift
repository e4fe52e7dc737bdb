import ArgumentParser
import BatonBPF
import BatonAPI
import BatonDaemon
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonSIP
import BatonSIPServer
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

    @Option(name: .customLong("sip-domain"), help: ArgumentHelp(
        "Serve SIP for this domain (repeatable): a registrar with GRUU and a B2BUA whose calls' media are anchored sessions (docs/sip.md). Users: batonctl sip user add.",
        valueName: "domain"))
    var sipDomains: [String] = []

    @Option(name: .customLong("sip-listen"), help: ArgumentHelp(
        "With --sip-domain: the SIP server's address and port, UDP and TCP (default: --interface's global IPv4 address, port 5060).", valueName: "addr:port"))
    var sipListen: String?

    @Option(name: .customLong("sip-route"), help: ArgumentHelp(
        "With --sip-domain: send INVITEs for another domain to this address (repeatable; no DNS).", valueName: "domain=addr:port"))
    var sipRoutes: [String] = []

    @Option(name: .customLong("sip-lockout"), help: ArgumentHelp(
        "With --sip-domain: after a call moves to another device, drop the old device's media this long (seconds; default: relay it for --anchor-grace).",
        valueName: "s"))
    var sipLockout: Double?

    @Option(name: .customLong("sip-digest"), help: ArgumentHelp(
        "With --sip-domain: digest algorithms, challenged in this order (SHA-256, MD5). Clients that answer the first challenge whatever it is (sipp) need MD5 first.",
        valueName: "alg,alg"))
    var sipDigest: String = "SHA-256,MD5"

    /// --sip-digest's algorithms, in order.
    static func digestAlgorithms(_ text: String) throws -> [DigestAlgorithm] {
        let algs = text.split(separator: ",").map { DigestAlgorithm(header: $0.trimmingCharacters(in: .whitespaces)) }
        guard !algs.isEmpty, algs.allSatisfy({ $0 != nil }), Set(algs.compactMap { $0 }).count == algs.count else {
            throw ValidationError("--sip-digest takes SHA-256 and/or MD5, comma-separated, each once, not '\(text)'")
        }
        return algs.compactMap { $0 }
    }

    @Option(name: .customLong("sip-expires"), help: ArgumentHelp(
        "With --sip-domain: the registration lifetimes the registrar grants, MIN-MAX seconds (shorter asked: 423 with Min-Expires; longer: cut to MAX).",
        valueName: "min-max"))
    var sipExpires: String = "60-7200"

    /// --sip-expires as a range (1 s to a day: a binding must live long enough to be used).
    static func expiresRange(_ text: String) throws -> ClosedRange<UInt32> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = UInt32(parts[0]), let b = UInt32(parts[1]), a >= 1, a <= b, b <= 86400 else {
            throw ValidationError("--sip-expires must be MIN-MAX seconds with 1 <= MIN <= MAX <= 86400, not '\(text)'")
        }
        return a...b
    }

    @Option(name: .customLong("sip-media"), help: ArgumentHelp(
        "With --sip-domain: where calls' media is relayed: xdp (anchored sessions in the data plane) or userspace (sockets in batond, one thread; the benchmark's baseline, and a relay where XDP cannot run).",
        valueName: "xdp|userspace"))
    var sipMedia: String = "xdp"

    @Flag(name: .customLong("sip-rtp-continuity"), inversion: .prefixedNo, help: "With --sip-domain: RTP continuity on every call's anchor (the remote sees one SSRC and contiguous sequence numbers across a switch).")
    var sipRTPContinuity = true

    /// --sip-route's values: domain → endpoint.
    static func sipRoutes(_ values: [String]) throws -> [String: Endpoint] {
        var out: [String: Endpoint] = [:]
        for v in values {
            let parts = v.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, let e = Endpoint(String(parts[1])) else {
                throw ValidationError("--sip-route must be DOMAIN=ADDR:PORT, not '\(v)'")
            }
            out[parts[0].lowercased()] = e
        }
        return out
    }

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
        if !sipDomains.isEmpty && m == .switch {
            throw ValidationError("--sip-domain needs --mode takeover: its calls' media are anchored sessions, which switch mode cannot relay")
        }
        if sipDomains.isEmpty && (sipListen != nil || !sipRoutes.isEmpty || sipLockout != nil || sipExpires != "60-7200" || sipMedia != "xdp") {
            throw ValidationError("--sip-listen, --sip-route, --sip-lockout, --sip-expires and --sip-media need --sip-domain")
        }
        guard SIPMedia(rawValue: sipMedia) != nil else { throw ValidationError("--sip-media must be xdp or userspace, not '\(sipMedia)'") }
        for d in sipDomains where (try? SIPHost(parsing: d[...])).map({ if case .name = $0 { return false } else { return true } }) ?? true {
            throw ValidationError("--sip-domain must be a domain name, not '\(d)'")
        }
        if let l = sipListen {
            guard let e = Endpoint(l) else { throw ValidationError("--sip-listen must be ADDR:PORT ([v6]:PORT for IPv6), not '\(l)'") }
            if pool.contains(e.port) { throw ValidationError("--relay-ports \(relayPorts) holds the SIP port \(e.port) (--sip-listen)") }
        } else if !sipDomains.isEmpty && pool.contains(5060) {
            throw ValidationError("--relay-ports \(relayPorts) holds the SIP port 5060")
        }
        _ = try Self.sipRoutes(sipRoutes)
        _ = try Self.digestAlgorithms(sipDigest)
        _ = try Self.expiresRange(sipExpires)
        do {
            if let sipLockout { try Limits.check(sipLockout, 0.001...86400, "--sip-lockout", unit: "seconds") }
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
        if !sipDomains.isEmpty {
            let listen = try sipListen.flatMap(Endpoint.init) ?? Endpoint(address: Agent.globalAddress(interface: daemon.interface), port: 5060)
            var sip = SIPServerConfiguration(domains: Set(sipDomains), listen: listen)
            sip.routes = try Self.sipRoutes(sipRoutes)
            sip.lockout = sipLockout
            sip.rtpContinuity = sipRTPContinuity
            sip.digestAlgorithms = try Self.digestAlgorithms(sipDigest)
            let expires = try Self.expiresRange(sipExpires)
            (sip.minExpires, sip.maxExpires) = (expires.lowerBound, expires.upperBound)
            c.sip = sip
            c.sipMedia = SIPMedia(rawValue: sipMedia)!
        }
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
