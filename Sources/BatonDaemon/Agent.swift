import BatonBPF
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import Foundation
import Logging

public struct AgentConfiguration: Sendable {
    /// The interface facing the correspondents and nodes; the steering program is attached here.
    public var interface: String
    public var pinRoot: String = DataPlane.defaultRoot
    public var maxRules: Int = 65536
    public var maxTakeovers: Int = 1024
    public var xdpMode: XDPMode = .native
    public var port: UInt16 = TransferProtocol.defaultPort
    public var control: String = "/run/baton/batond.sock"
    public var identity: NodeIdentity
    /// Nodes whose registrations are accepted.
    public var trusted: Set<PublicKey>
    public var announcements: AnnouncementPolicy = AnnouncementPolicy()
    /// A transfer whose sessions have all been idle this long ends (seconds).
    public var idleTimeout: Double = 30
    /// How long the agent keeps forwarding after the TN confirmed the wake-up (seconds): packets
    /// the correspondent sent before it learned the TN's MAC again still arrive here.
    public var linger: Double = 0.5
    /// How often idle/closed sessions and unanswered wake-ups are looked at (seconds).
    public var sweepInterval: Double = 0.1

    public init(interface: String, identity: NodeIdentity, trusted: Set<PublicKey>) {
        self.interface = interface
        self.identity = identity
        self.trusted = trusted
    }
}

/// The session agent: owns the data plane, takes over TNs' addresses for registered transfers,
/// steers their sessions, and hands the address back with a wake-up.
public final class Agent: @unchecked Sendable {
    enum State: String { case active, waking, lingering, ended }

    // Guarded by the agent's lock.
    final class Transfer: @unchecked Sendable {
        let id: TransferID
        let channel: TransferChannel
        let register: Register
        var rules: [SessionRule] = []
        var takeover: Takeover
        var state: State = .active
        var reason: String?
        var announcement: Announcement?
        let started = Date()
        let startedClock = ContinuousClock.now
        var ended: Date?
        var milestones: [String: Double] = [:]
        var wakeUpsSent = 0
        var nextWakeUp = ContinuousClock.now
        var lingerUntil: ContinuousClock.Instant?
        let idleTimeout: Double

        init(id: TransferID, channel: TransferChannel, register: Register, takeover: Takeover, idleTimeout: Double) {
            self.id = id
            self.channel = channel
            self.register = register
            self.takeover = takeover
            self.idleTimeout = idleTimeout
        }

        func mark(_ name: String) { milestones[name] = milliseconds(since: startedClock) }
    }

    public let configuration: AgentConfiguration
    let logger: Logger
    let dataPlane: DataPlane
    let link: XDPLink?
    let mac: MACAddress
    let ifindex: UInt32
    let announcer: Announcer
    let messenger: Messenger
    let rejections: Rejections
    // Recursive: handlers that hold it call helpers that take it too.
    private let lock = NSRecursiveLock()
    private var transfers: [TransferID: Transfer] = [:]
    /// Ended transfers, newest last, kept so that `transfer list` shows them and their replays
    /// are recognised.
    private var finished: [Transfer] = []
    private var control: ControlListener?
    private var stopped = false

    /// Opens (or adopts) the pinned data plane, attaches it to the interface and binds the
    /// protocol port. Call `run()` to start serving.
    public init(_ configuration: AgentConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        rejections = Rejections(logger: logger)
        let netlink = try Netlink()
        let link = try netlink.link(named: configuration.interface)
        guard let mac = link.mac else { throw ControlError("\(configuration.interface) has no MAC address") }
        self.mac = mac
        ifindex = UInt32(link.index)
        dataPlane = try DataPlane.open(root: configuration.pinRoot,
                                       options: .init(pinRoot: configuration.pinRoot, maxRules: configuration.maxRules,
                                                      maxTakeovers: configuration.maxTakeovers))
        self.link = try Self.attach(dataPlane, interface: configuration.interface, ifindex: UInt32(link.index),
                                    mode: configuration.xdpMode, root: configuration.pinRoot, logger: logger)
        announcer = try Announcer(interface: configuration.interface)
        messenger = try Messenger(port: configuration.port)
    }

    /// Keeps a pinned link on this interface, or attaches and pins a new one.
    private static func attach(_ dp: DataPlane, interface: String, ifindex: UInt32, mode: XDPMode, root: String,
                               logger: Logger) throws -> XDPLink? {
        let path = "\(root)/links/\(interface)"
        if BPFFS.exists(path) {
            if let existing = try? XDPLink.pinned(at: path), !existing.isDefunct, existing.ifindex == ifindex {
                logger.info("adopted XDP link \(existing.id) on \(interface)")
                return existing
            }
            try? BPFFS.remove(path)
        }
        let link = try XDPLink.attach(dp.steerProgram, ifindex: ifindex, mode: mode)
        try link.pin(at: path)
        logger.info("attached baton_steer to \(interface) (\(mode.rawValue)), link \(link.id) pinned at \(path)")
        return link
    }

    /// Serves the protocol port and the control socket, and sweeps, until `stop()`.
    public func run() throws {
        let listener = try ControlListener(path: configuration.control)
        lock.withLock { control = listener }
        listener.serve(controlHandler { [self] in try handle($0) })
        messenger.start { [self] in receive($0) }
        logger.info("agent on \(configuration.interface) (\(mac)), port \(configuration.port), control \(configuration.control), public key \(configuration.identity.publicKey)")
        while !lock.withLock({ stopped }) {
            Thread.sleep(forTimeInterval: configuration.sweepInterval)
            sweep()
        }
    }

    /// Stops serving. The data plane stays pinned and attached: steering goes on without us.
    public func stop() {
        lock.withLock { stopped = true }
        messenger.stop()
        control?.stop()
    }

    // MARK: - Protocol

    func receive(_ datagram: Datagram) {
        guard let envelope = rejections.envelope(of: datagram) else { return }
        lock.lock()
        defer { lock.unlock() }
        let known = transfers[envelope.transfer] ?? finished.last(where: { $0.id == envelope.transfer })
        do {
            if let known {
                let message = try known.channel.open(envelope)
                handle(message, for: known, from: datagram.source)
            } else {
                let (channel, message) = try TransferChannel.opening(
                    envelope, identity: configuration.identity, role: .agent,
                    trusted: { [trusted = configuration.trusted] in trusted.contains($0) })
                guard case .register(let register) = message else {
                    rejections.record("unexpected", from: datagram.source, "\(message.type) for unknown transfer \(envelope.transfer)")
                    return
                }
                do {
                    try admit(register, id: envelope.transfer, channel: channel)
                } catch {
                    // A registration the agent cannot carry out: nothing was written; tell the TN why.
                    logger.error("transfer \(envelope.transfer): registration refused: \(error)")
                    if let bytes = try? channel.seal(.reject(Reject(reason: "\(error)"))) {
                        try? messenger.send(bytes, to: datagram.source)
                    }
                }
            }
        } catch let e as ProtocolError {
            rejections.record(e, from: datagram.source)
        } catch {
            logger.error("transfer \(envelope.transfer): \(error)")
        }
    }

    /// Called with the lock held.
    private func handle(_ message: Message, for t: Transfer, from source: SocketAddress) {
        switch message {
        case .register:
            // A retransmission: the first `registered` was lost.
            if t.state == .active { send(.registered(Registered()), for: t) }
        case .end(let end):
            logger.info("transfer \(t.id): the TN asks to end it (\(end.reason))")
            beginEnd(t, reason: "requested")
        case .wakeUpAck:
            confirmWakeUp(t)
        default:
            rejections.record("unexpected", from: source, "\(message.type) for transfer \(t.id) in state \(t.state.rawValue)")
        }
    }

    /// Make-before-break: rules and the takeover entry go into the maps first (from then on the
    /// data plane answers ARP/NDP for the address and steers), then the TN is told, then the
    /// address is announced. Called with the lock held.
    private func admit(_ r: Register, id: TransferID, channel: TransferChannel) throws {
        try validate(r)
        let mode = r.mode
        let family = r.original.family
        let toTarget: Forwarding
        let toTN: Forwarding
        switch mode {
        case .l2:
            toTarget = .l2(to: r.targetMAC, from: mac)
            toTN = .l2(to: r.tnMAC, from: mac)
        case .l3:
            // Only tunnels need the agent's own address: an L2 takeover works without one.
            let ownAddress = try NodeAddresses(interface: configuration.interface).global(family)
            toTarget = .encap(to: r.targetAddress, from: ownAddress, nextHop: try nextHop(r.targetAddress), sourceMAC: mac)
            toTN = .encap(to: r.temporary, from: ownAddress, nextHop: r.tnMAC, sourceMAC: mac)
        }
        let rules = r.sessions.map { SessionRule(match: $0, forward: toTarget) }
        let takeover = Takeover(address: r.original, defaultForward: toTN, agentMAC: mac, temporaryAddress: r.temporary)
        try takeover.validate()
        for rule in rules { try rule.validate() }

        let t = Transfer(id: id, channel: channel, register: r, takeover: takeover,
                         idleTimeout: r.idleTimeout ?? configuration.idleTimeout)
        try dataPlane.addRules(rules)
        do {
            try dataPlane.setTakeover(takeover)
        } catch {
            for rule in rules { _ = try? dataPlane.removeRule(rule.match) }
            throw error
        }
        t.rules = rules
        t.mark("steering")
        transfers[id] = t
        send(.registered(Registered()), for: t)
        t.mark("registered")
        do {
            t.announcement = try announcer.start(r.original, at: mac, policy: configuration.announcements)
        } catch {
            logger.error("transfer \(id): announcing \(r.original) failed: \(error); ARP/NDP answers still work")
        }
        t.mark("announced")
        logger.info("transfer \(id): took over \(r.original) (\(mode.rawValue)), \(rules.count) session(s) → target \(r.targetAddress), others → TN \(r.temporary)")
    }

    private func validate(_ r: Register) throws {
        let family = r.original.family
        guard r.temporary.family == family, r.targetAddress.family == family else {
            throw ControlError("original \(r.original), temporary \(r.temporary) and target \(r.targetAddress) must be of one family")
        }
        guard !r.sessions.isEmpty else { throw ControlError("no sessions to transfer") }
        for s in r.sessions where s.destination != r.original {
            throw ControlError("session \(s) is not addressed to the original address \(r.original)")
        }
        if let other = transfers.values.first(where: { $0.register.original == r.original }) {
            throw ControlError("\(r.original) is already taken over by transfer \(other.id)")
        }
        let own = try Netlink().addresses(interface: configuration.interface, family: family).map(\.address)
        guard !own.contains(r.original) else { throw ControlError("\(r.original) is the agent's own address") }
    }

    /// The MAC of the next hop towards `destination`, resolving it if the kernel has none yet.
    private func nextHop(_ destination: IPAddress) throws -> MACAddress {
        let netlink = try Netlink()
        let routes = try netlink.routes(family: destination.family)
            .filter { $0.destination.contains(destination) }
            .sorted { $0.destination.length > $1.destination.length }
        let hop = routes.first?.gateway ?? destination
        let deadline = ContinuousClock.now + .seconds(2)
        var poked = false
        while ContinuousClock.now < deadline {
            if let n = try netlink.neighbour(hop, interface: configuration.interface), let mac = n.mac,
               !n.state.intersection(.valid).isEmpty {
                return mac
            }
            if !poked {
                // Any datagram makes the kernel resolve the next hop.
                try? messenger.send([0], to: SocketAddress(destination, port: 9))
                poked = true
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        throw ControlError("cannot resolve the next hop \(hop) towards \(destination)")
    }

    private func send(_ message: Message, for t: Transfer) {
        do {
            try messenger.send(try t.channel.seal(message), to: t.register.control.socketAddress)
        } catch {
            logger.error("transfer \(t.id): sending \(message.type) to \(t.register.control) failed: \(error)")
        }
    }

    // MARK: - Ending

    /// Starts the wake-up; forwarding goes on until the TN confirms. Lock held.
    private func beginEnd(_ t: Transfer, reason: String) {
        guard t.state == .active else { return }
        t.state = .waking
        t.reason = reason
        // No more announcements from here on: one sent after the TN's own would point the
        // correspondent back at us just before we let go. ARP/NDP answers go on until the
        // TN confirms, for correspondents that ask meanwhile.
        t.announcement?.cancel()
        t.announcement = nil
        t.mark("wake-up")
        t.nextWakeUp = .now
        sendWakeUp(t)
        logger.info("transfer \(t.id): ending (\(reason)); waking the TN at \(t.register.control)")
    }

    private func sendWakeUp(_ t: Transfer) {
        send(.wakeUp(WakeUp(reason: t.reason ?? "operator")), for: t)
        t.wakeUpsSent += 1
        // Every 200 ms, then at most once a second: the address stays forwarded meanwhile.
        t.nextWakeUp = .now + (t.wakeUpsSent < 10 ? .milliseconds(200) : .seconds(1))
    }

    /// The TN has its address back on the wire: stop answering ARP/NDP for it at once (the TN
    /// does now), keep forwarding for `linger`, then clear. Lock held.
    private func confirmWakeUp(_ t: Transfer) {
        guard t.state == .waking else { return }
        var quiet = t.takeover
        quiet.agentMAC = nil
        do {
            try dataPlane.setTakeover(quiet)
        } catch {
            logger.error("transfer \(t.id): could not stop answering for \(t.register.original): \(error)")
        }
        t.takeover = quiet
        t.state = .lingering
        t.lingerUntil = .now + .milliseconds(Int(configuration.linger * 1000))
        t.mark("reclaimed")
        logger.info("transfer \(t.id): the TN has reclaimed \(t.register.original)")
    }

    /// Lock held.
    private func clear(_ t: Transfer) {
        for rule in t.rules {
            do { _ = try dataPlane.removeRule(rule.match) } catch { logger.error("transfer \(t.id): removing rule \(rule.match): \(error)") }
        }
        do { _ = try dataPlane.removeTakeover(t.register.original) } catch { logger.error("transfer \(t.id): removing takeover: \(error)") }
        t.state = .ended
        t.ended = Date()
        t.mark("cleared")
        transfers[t.id] = nil
        finished.append(t)
        if finished.count > 1024 { finished.removeFirst(finished.count - 1024) }
        logger.info("transfer \(t.id): ended (\(t.reason ?? "")), entries cleared")
    }

    /// Ends idle or closed transfers, retransmits wake-ups, clears lingering transfers.
    func sweep() {
        lock.lock()
        defer { lock.unlock() }
        let active = transfers.values.filter { $0.state == .active }
        if !active.isEmpty, let clock = try? dataPlane.clock() {
            for t in active {
                let counters = t.rules.map { (try? dataPlane.rule($0.match))?.counter ?? Counter() }
                let closed = !counters.isEmpty && counters.allSatisfy(\.sawFinOrReset)
                // A session never seen is idle since the registration.
                let sinceRegistration = milliseconds(since: t.startedClock) / 1000
                let idle = counters.allSatisfy { c in
                    min(c.idleSeconds(at: clock) ?? sinceRegistration, sinceRegistration) >= t.idleTimeout
                }
                if closed { beginEnd(t, reason: "closed") } else if idle { beginEnd(t, reason: "idle") }
            }
        }
        for t in transfers.values {
            switch t.state {
            case .waking where ContinuousClock.now >= t.nextWakeUp:
                sendWakeUp(t)
            case .lingering where ContinuousClock.now >= t.lingerUntil!:
                clear(t)
            default:
                break
            }
        }
    }

    // MARK: - Control

    func handle(_ request: ControlRequest) throws -> ControlResponse {
        switch request.command {
        case .status:
            return ControlResponse(status: status())
        case .transferList:
            return ControlResponse(transfers: lock.withLock { (finished + transfers.values.sorted { $0.started < $1.started }).map(info) })
        case .transferShow:
            return ControlResponse(transfer: try lock.withLock { info(try find(request.transfer)) })
        case .transferEnd:
            return ControlResponse(transfer: try lock.withLock {
                let t = try find(request.transfer)
                beginEnd(t, reason: "operator")
                return info(t)
            })
        case .transferStart:
            throw ControlError("transfer start is the TN's: run it against the node daemon of the transferring node")
        }
    }

    private func find(_ id: String?) throws -> Transfer {
        guard let id, let tid = TransferID(id) else { throw ControlError("invalid transfer ID '\(id ?? "")': expected 16 hex digits") }
        guard let t = transfers[tid] ?? finished.last(where: { $0.id == tid }) else { throw ControlError("no transfer \(id)") }
        return t
    }

    private func info(_ t: Transfer) -> TransferInfo {
        let clock = try? dataPlane.clock()
        let sessions = t.rules.map { rule -> SessionInfo in
            let counter = t.state == .ended ? nil : (try? dataPlane.rule(rule.match))?.counter
            return SessionInfo(match: rule.match, forward: describe(rule.forward), packets: counter?.packets, bytes: counter?.bytes,
                               idleSeconds: clock.flatMap { counter?.idleSeconds(at: $0) }, closed: counter?.sawFinOrReset)
        }
        return TransferInfo(id: "\(t.id)", role: "agent", state: t.state.rawValue, original: t.register.original,
                            temporary: t.register.temporary, mode: t.register.mode.rawValue,
                            target: "\(t.register.targetAddress)", sessions: sessions, reason: t.reason,
                            started: unixTime(t.started), ended: t.ended.map { unixTime($0) }, milestones: t.milestones)
    }

    private func describe(_ f: Forwarding) -> String {
        switch f.action {
        case .l2: return "l2 → \(f.destinationMAC)"
        case .encap: return "encap → \(f.outerDestination.map { "\($0)" } ?? "?") via \(f.destinationMAC)"
        case .pass: return "pass"
        case .drop: return "drop"
        }
    }

    private func status() -> DaemonStatus {
        let addresses = ((try? Netlink().addresses(interface: configuration.interface)) ?? []).map(\.description)
        return lock.withLock {
            DaemonStatus(role: "agent", publicKey: "\(configuration.identity.publicKey)", interface: configuration.interface,
                         mac: mac, addresses: addresses, port: configuration.port,
                         activeTransfers: transfers.count, rejected: rejections.snapshot,
                         takeovers: transfers.values.map { "\($0.register.original)" }.sorted())
        }
    }
}
