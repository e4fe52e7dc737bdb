import BatonAPI
import BatonBPF
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonSIPServer
import BatonStore
import Foundation
import Logging
import Synchronization

public struct AgentConfiguration: Sendable {
    /// The interface facing the correspondents and nodes; the steering program is attached here
    /// (switch mode: a bridge, and the program goes on its ports).
    public var interface: String
    /// Take addresses over (the default), or steer inline on a bridge (`AgentMode.switch`).
    public var mode: AgentMode = .takeover
    /// Switch mode: the bridge ports to steer from (empty: every port of `interface`).
    public var switchPorts: [String] = []
    public var pinRoot: String = DataPlane.defaultRoot
    public var maxRules: Int = 65536
    public var maxTakeovers: Int = 1024
    public var xdpMode: XDPMode = .native
    public var port: UInt16 = TransferProtocol.defaultPort
    /// Where the API listens (the Unix socket, and HTTPS if configured).
    public var listeners: APIListeners = APIListeners(control: DefaultPaths.controlSocket)
    /// Holds batond.sqlite: transfers, rules, takeovers, devices, policies.
    public var stateDirectory: String = "/var/lib/baton"
    public var identity: NodeIdentity
    public var announcements: AnnouncementPolicy = AnnouncementPolicy()
    /// A transfer whose sessions have all been idle this long ends (seconds).
    public var idleTimeout: Double = 30
    /// How long the agent keeps forwarding after the TN confirmed the wake-up (seconds): packets
    /// the correspondent sent before it learned the TN's MAC again still arrive here.
    public var linger: Double = 0.5
    /// How long a wake-up may go unconfirmed (seconds): then the agent clears the takeover (the
    /// TN is gone or cut off) instead of answering for its address forever.
    public var maxWaking: Double = 30
    /// How often idle/closed sessions and unanswered wake-ups are looked at (seconds).
    public var sweepInterval: Double = 0.1
    /// Registrations per second each device may make (token bucket), and the bucket's size.
    public var rateLimit: Double = 50
    public var rateBurst: Double = 100
    /// Sealed messages a second (mac1 valid) past which the agent is under load and opens
    /// only those whose mac2 carries a cookie it handed out (`Cookie`); 0: always.
    public var cookieThreshold = 1000
    /// Ended transfers kept in the store (and in `transfer list`).
    public var keepEnded: Int = 1024
    /// Anchored sessions: the relay port pool, the default idle timeout, and how long an
    /// earlier device's packets are still relayed after a move (seconds).
    public var relayPorts: ClosedRange<UInt16> = 30000...39999
    public var anchorIdleTimeout: Double = 60
    public var anchorGrace: Double = 2
    /// The SIP server (docs/sip.md), when the agent serves SIP domains.
    public var sip: SIPServerConfiguration?
    /// Where its calls' media is relayed: anchored sessions in XDP, or sockets in this process.
    public var sipMedia: SIPMedia = .xdp

    public init(interface: String, identity: NodeIdentity) {
        self.interface = interface
        self.identity = identity
    }
}

/// The session agent: owns the data plane, takes over TNs' addresses for registered transfers,
/// steers their sessions, and hands the address back with a wake-up. Every transfer is written
/// to the store before the maps (write-ahead), so a restart finds in the store everything the
/// maps may hold, and reconciles the maps to it (see `recover`).
///
/// It is made of parts with one job each: the `TransferTable` (the transfers, their lock and
/// their state transitions), `Admission` (a registration opened, authorized and checked),
/// the `Sweeper` (idle and closed sessions, wake-up retransmissions, a service of the API's
/// service group), `Announcements`, and the API (AgentAPI.swift, AgentAuthority.swift).
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    let logger: Logger
    let dataPlane: DataPlane
    let store: Store
    let mac: MACAddress
    let messenger: Messenger
    let rejections: Rejections
    let metrics: DaemonMetrics
    let enrolments: Enrolments
    /// Enrolled devices' static secrets: a registration then costs one X25519, not two.
    let staticSecrets: StaticSecrets
    let table: TransferTable
    let admission: Admission
    let announcements: Announcements
    let anchors: AnchorTable
    /// The registrar and B2BUA whose calls' media are `anchors`' sessions (nil: no SIP).
    let sip: SIPServer?
    /// The calls' relays when `--sip-media userspace`.
    let userspaceMedia: UserspaceMediaAnchors?
    /// What the start-up reconcile did.
    let reconciliation: ReconcileSummary
    private let links: [XDPLink]
    private struct Serving {
        var stopped = false
        var api: APIServer?
    }
    private let serving = Mutex(Serving())
    private let stoppedSignal = DispatchSemaphore(value: 0)

    /// Opens the store, opens (or adopts) the pinned data plane, reconciles the maps with the
    /// store, attaches and binds the protocol port. Call `run()` to start serving.
    public init(_ configuration: AgentConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        metrics = DaemonMetrics()
        rejections = Rejections(logger: logger, metrics: metrics)
        let netlink = try Netlink()
        let link = try netlink.link(named: configuration.interface)
        guard let mac = link.mac else { throw ControlError("\(configuration.interface) has no MAC address") }
        self.mac = mac
        do {
            store = try Store.open(directory: configuration.stateDirectory)
            try store.beginCounterRun()
        } catch {
            throw ControlError("cannot open the store in \(configuration.stateDirectory): \(error)")
        }
        enrolments = Enrolments(store: store)
        staticSecrets = StaticSecrets(identity: configuration.identity)
        dataPlane = try DataPlane.open(root: configuration.pinRoot,
                                       options: .init(pinRoot: configuration.pinRoot, maxRules: configuration.maxRules,
                                                      maxTakeovers: configuration.maxTakeovers))
        messenger = try Messenger(port: configuration.port)
        table = TransferTable(store: store, dataPlane: dataPlane, messenger: messenger, metrics: metrics, rejections: rejections,
                              logger: logger, linger: configuration.linger, maxWaking: configuration.maxWaking,
                              keepEnded: configuration.keepEnded, inline: configuration.mode == .switch)
        admission = Admission(configuration: configuration, mac: mac, table: table, enrolments: enrolments,
                              staticSecrets: staticSecrets, rejections: rejections, messenger: messenger, logger: logger)
        announcements = Announcements(announcer: try Announcer(interface: configuration.interface), mac: mac,
                                      policy: configuration.announcements, table: table, logger: logger)
        anchors = AnchorTable(configuration: .init(ports: configuration.relayPorts, idleTimeout: configuration.anchorIdleTimeout,
                                                   grace: configuration.anchorGrace, keepEnded: configuration.keepEnded,
                                                   inline: configuration.mode == .switch),
                              interface: configuration.interface, mac: mac, dataPlane: dataPlane, store: store,
                              nextHops: admission.nextHops, metrics: metrics, logger: logger)
        userspaceMedia = configuration.sip != nil && configuration.sipMedia == .userspace
            ? UserspaceMediaAnchors(pool: anchors, grace: configuration.anchorGrace) : nil
        let media: MediaAnchors = userspaceMedia ?? AgentMediaAnchors(anchors: anchors, dataPlane: dataPlane)
        let users = StoreCredentials(store: store)
        let sipMetrics = metrics, sipLogger = logger
        sip = configuration.sip.map { SIPServer($0, anchors: media, credentials: users, metrics: sipMetrics, logger: sipLogger) }
        // Before attaching: a fresh attach then steers by the reconciled maps from its first packet.
        reconciliation = try Self.recover(table: table, store: store, dataPlane: dataPlane,
                                          idleTimeout: configuration.idleTimeout, anchorRules: try anchors.recover(),
                                          takeovers: configuration.mode == .takeover, logger: logger)
        if configuration.mode == .switch {
            // Inline: on every port of the bridge (a bridge's own XDP never sees what it forwards).
            let bridge = link.index, wanted = configuration.switchPorts
            let ports = try netlink.links().filter { $0.masterIndex == bridge }
            let chosen = wanted.isEmpty ? ports : ports.filter { wanted.contains($0.name) }
            for name in configuration.switchPorts where !ports.contains(where: { $0.name == name }) {
                throw ControlError("--switch-port \(name) is not a port of \(configuration.interface)")
            }
            guard !chosen.isEmpty else { throw ControlError("\(configuration.interface) has no ports to steer from (--mode switch needs a bridge)") }
            let dp = dataPlane, xdpMode = configuration.xdpMode, log = logger
            self.links = try chosen.map { try Self.attach(dp, interface: $0.name, ifindex: UInt32($0.index), mode: xdpMode, logger: log) }
        } else {
            self.links = [try Self.attach(dataPlane, interface: configuration.interface, ifindex: UInt32(link.index),
                                          mode: configuration.xdpMode, logger: logger)]
        }
    }

    /// The interface's global IPv4 address (the SIP server's default), else its IPv6 one.
    public static func globalAddress(interface: String) throws -> IPAddress {
        let a = NodeAddresses(interface: interface)
        if let v4 = try? a.global(.v4) { return v4 }
        return try a.global(.v6)
    }

    /// Keeps a pinned link on this interface, or attaches and pins a new one.
    private static func attach(_ dp: DataPlane, interface: String, ifindex: UInt32, mode: XDPMode,
                               logger: Logger) throws -> XDPLink {
        let (link, adopted) = try dp.collection.adoptOrAttach("baton_steer", interface: interface, ifindex: ifindex, mode: mode)
        if adopted {
            logger.info("adopted XDP link \(link.id) on \(interface)")
        } else {
            logger.info("attached baton_steer to \(interface) (\(mode.rawValue)), link \(link.id) pinned at \(dp.collection.linkPath(interface) ?? "-")")
        }
        return link
    }

    /// Serves the protocol port and the API, and sweeps, until `stop()`.
    public func run() throws {
        let sweeper = Sweeper(table: table, dataPlane: dataPlane,
                              interval: .milliseconds(Int((configuration.sweepInterval * 1000).rounded())))
        let anchorSweep = AnchorSweeper(anchors: anchors, interval: .milliseconds(250))
        let server = try APIServer(handler: self, listeners: configuration.listeners, logger: logger, services: [sweeper, anchorSweep])
        let stoppedAlready = serving.withLock { s in
            s.api = server
            return s.stopped
        }
        if stoppedAlready {
            server.stop()
            return
        }
        messenger.start { [self] in receive($0) }
        if let sip {
            do { try sip.start() } catch {
                server.stop()
                throw ControlError("cannot serve SIP on \(sip.configuration.listen): \(error)")
            }
        }
        // Resumed transfers: announce again (the correspondents' caches may have expired while
        // we were down; XDP answered ARP/NDP meanwhile) and go on waking.
        if configuration.mode == .takeover { announcements.announce(table.read { Array($0.live.values) }) }
        logger.info("agent (\(configuration.mode.rawValue)) on \(configuration.interface) (\(mac)), port \(configuration.port), state \(store.path), public key \(configuration.identity.publicKey)")
        stoppedSignal.wait()
    }

    /// Stops serving (graceful shutdown). The data plane stays pinned and attached, and the
    /// store keeps every transfer: steering goes on without us, and the next start resumes.
    public func stop() {
        let api = serving.withLock { s -> APIServer? in
            s.stopped = true
            return s.api
        }
        table.cancelAnnouncements()
        messenger.stop()
        sip?.stop()
        userspaceMedia?.stop()
        api?.stop()
        stoppedSignal.signal()
    }

    /// A datagram on the protocol port.
    func receive(_ datagram: Datagram) {
        guard let envelope = rejections.envelope(of: datagram) else { return }
        if let answer = admission.receive(envelope, from: datagram.source), answer.datagram {
            // The first announcement round before the answer: it is what moves the
            // correspondents (the TN only needs the answer to take its address off the wire).
            if let t = answer.admitted, configuration.mode == .takeover { announcements.announce([t]) }
            try? messenger.send(answer.bytes, to: answer.to ?? SocketAddress(datagram.source.address,
                                                                            port: answer.port ?? datagram.source.port))
            if answer.admitted != nil { CrashPoint.reached("registered-sent") }
        }
    }
}
