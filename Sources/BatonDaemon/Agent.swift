import BatonAPI
import BatonBPF
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
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
    /// Where the API listens (the Unix socket, and HTTPS if configured).
    public var listeners: APIListeners = APIListeners(control: "/run/baton/batond.sock")
    /// Holds batond.sqlite: transfers, rules, takeovers, devices, policies.
    public var stateDirectory: String = "/var/lib/baton"
    public var identity: NodeIdentity
    public var announcements: AnnouncementPolicy = AnnouncementPolicy()
    /// A transfer whose sessions have all been idle this long ends (seconds).
    public var idleTimeout: Double = 30
    /// How long the agent keeps forwarding after the TN confirmed the wake-up (seconds): packets
    /// the correspondent sent before it learned the TN's MAC again still arrive here.
    public var linger: Double = 0.5
    /// How often idle/closed sessions and unanswered wake-ups are looked at (seconds).
    public var sweepInterval: Double = 0.1
    /// Registrations per second each device may make (token bucket), and the bucket's size.
    public var rateLimit: Double = 50
    public var rateBurst: Double = 100
    /// Ended transfers kept in the store (and in `transfer list`).
    public var keepEnded: Int = 1024

    public init(interface: String, identity: NodeIdentity) {
        self.interface = interface
        self.identity = identity
    }
}

/// The session agent: owns the data plane, takes over TNs' addresses for registered transfers,
/// steers their sessions, and hands the address back with a wake-up. Every transfer is written
/// to the store before the maps (write-ahead), so a restart finds in the store everything the
/// maps may hold, and reconciles the maps to it (see `recover`).
public final class Agent: @unchecked Sendable {
    /// stored: in the store, maybe in the maps, `registered` not yet sent; active: the TN was
    /// told; waking, lingering: ending; ended; failed: rolled back before the TN was told.
    enum State: String { case stored, active, waking, lingering, ended, failed }

    // Guarded by the agent's lock.
    final class Transfer: @unchecked Sendable {
        let id: TransferID
        let channel: TransferChannel
        let register: Register
        /// The TN's enrolled device name.
        let device: String
        var rules: [SessionRule] = []
        var takeover: Takeover
        var state: State = .stored
        var reason: String?
        var announcement: Announcement?
        let started: Date
        var ended: Date?
        var milestones: [String: Double] = [:]
        var wakeUpsSent = 0
        var nextWakeUp = ContinuousClock.now
        var lingerUntil: ContinuousClock.Instant?
        let idleTimeout: Double
        /// When the agent (re)started serving it: idleness counts from here at the earliest.
        let since = ContinuousClock.now

        init(id: TransferID, channel: TransferChannel, register: Register, device: String, takeover: Takeover,
             idleTimeout: Double, started: Date = Date()) {
            self.id = id
            self.channel = channel
            self.register = register
            self.device = device
            self.takeover = takeover
            self.idleTimeout = idleTimeout
            self.started = started
        }

        func mark(_ name: String) { milestones[name] = (Date().timeIntervalSince(started) * 1000).rounded() }
    }

    public let configuration: AgentConfiguration
    let logger: Logger
    let dataPlane: DataPlane
    let store: Store
    private(set) var link: XDPLink?
    let mac: MACAddress
    let ifindex: UInt32
    let announcer: Announcer
    let messenger: Messenger
    let rejections: Rejections
    let metrics: DaemonMetrics
    let limiter: RateLimiter
    /// What the start-up reconcile did.
    private(set) var reconciliation = ReconcileSummary()
    // Recursive: handlers that hold it call helpers that take it too.
    let lock = NSRecursiveLock()
    var transfers: [TransferID: Transfer] = [:]
    /// Ended and failed transfers, newest last, kept so that `transfer list` shows them and
    /// their replays are recognised.
    var finished: [Transfer] = []
    private var api: APIServer?
    /// Active transfers the sweep has yet to look at in this round.
    private var sweepQueue: [TransferID] = []
    private var stopped = false

    /// Opens the store, opens (or adopts) the pinned data plane, reconciles the maps with the
    /// store, attaches and binds the protocol port. Call `run()` to start serving.
    public init(_ configuration: AgentConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        metrics = DaemonMetrics()
        rejections = Rejections(logger: logger, metrics: metrics)
        limiter = RateLimiter(rate: configuration.rateLimit, burst: configuration.rateBurst)
        let netlink = try Netlink()
        let link = try netlink.link(named: configuration.interface)
        guard let mac = link.mac else { throw ControlError("\(configuration.interface) has no MAC address") }
        self.mac = mac
        ifindex = UInt32(link.index)
        do {
            store = try Store.open(directory: configuration.stateDirectory)
        } catch {
            throw ControlError("cannot open the store in \(configuration.stateDirectory): \(error)")
        }
        dataPlane = try DataPlane.open(root: configuration.pinRoot,
                                       options: .init(pinRoot: configuration.pinRoot, maxRules: configuration.maxRules,
                                                      maxTakeovers: configuration.maxTakeovers))
        announcer = try Announcer(interface: configuration.interface)
        messenger = try Messenger(port: configuration.port)
        // Before attaching: a fresh attach then steers by the reconciled maps from its first packet.
        reconciliation = try recover()
        self.link = try Self.attach(dataPlane, interface: configuration.interface, ifindex: UInt32(link.index),
                                    mode: configuration.xdpMode, root: configuration.pinRoot, logger: logger)
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

    /// Serves the protocol port and the API, and sweeps, until `stop()`.
    public func run() throws {
        let server = try APIServer(handler: self, listeners: configuration.listeners, logger: logger)
        lock.withLock { api = server }
        messenger.start { [self] in receive($0) }
        // Resumed transfers: announce again (the correspondents' caches may have expired while
        // we were down; XDP answered ARP/NDP meanwhile) and go on waking.
        lock.withLock {
            for t in transfers.values where t.state == .active { announce(t) }
        }
        logger.info("agent on \(configuration.interface) (\(mac)), port \(configuration.port), state \(store.path), public key \(configuration.identity.publicKey)")
        while !lock.withLock({ stopped }) {
            Thread.sleep(forTimeInterval: configuration.sweepInterval)
            sweep()
        }
    }

    /// Stops serving (graceful shutdown). The data plane stays pinned and attached, and the
    /// store keeps every transfer: steering goes on without us, and the next start resumes.
    public func stop() {
        lock.withLock {
            stopped = true
            for t in transfers.values { t.announcement?.cancel() }
        }
        messenger.stop()
        api?.stop()
    }

    // MARK: - Protocol

    func receive(_ datagram: Datagram) {
        guard let envelope = rejections.envelope(of: datagram) else { return }
        if let answer = receive(envelope, from: "\(datagram.source)") {
            try? messenger.send(answer.bytes, to: answer.to ?? datagram.source)
            answer.then?()
        }
    }

    /// What to send back to the sender of a message, and what to do once it is sent.
    struct Answer {
        var bytes: [UInt8]
        var accepted: Bool
        /// Where a datagram answer goes: the registration's control endpoint (the TN sends
        /// from its temporary address, but not necessarily from the protocol port).
        var to: SocketAddress?
        var then: (() -> Void)?
    }

    /// One authenticated message from a TN (over UDP or the API). Returns the answer for its
    /// sender (registrations); other answers go to the transfer's control endpoint.
    func receive(_ envelope: Envelope, from source: String) -> Answer? {
        lock.lock()
        defer { lock.unlock() }
        let known = transfers[envelope.transfer] ?? finished.last(where: { $0.id == envelope.transfer })
        do {
            if let known {
                let message = try known.channel.open(envelope)
                persist(known) // the TN's replay high-water mark moved
                return handle(message, for: known, from: source)
            }
            // Any sender's key opens the channel, so that an unenrolled device hears why it is
            // refused (sealed to it); `authorize` checks the enrolment before anything is written.
            let (channel, message) = try TransferChannel.opening(
                envelope, identity: configuration.identity, role: .agent, trusted: { _ in true })
            guard case .register(let register) = message else {
                rejections.record("unexpected", from: source, "\(message.type) for unknown transfer \(envelope.transfer)")
                return nil
            }
            let sender = envelope.sealedKey!.senderPublicKey
            do {
                let device = try authorize(register, from: sender, source: source)
                return try admit(register, id: envelope.transfer, channel: channel, device: device)
            } catch {
                // A registration the agent will not or cannot carry out: nothing was written; tell the TN why.
                logger.error("transfer \(envelope.transfer): registration refused: \(error)")
                metrics.registration(accepted: false)
                guard let bytes = try? channel.seal(.reject(Reject(reason: "\(error)"))) else { return nil }
                return Answer(bytes: bytes, accepted: false, to: register.control.socketAddress)
            }
        } catch let e as ProtocolError {
            rejections.record(e, from: source)
        } catch {
            logger.error("transfer \(envelope.transfer): \(error)")
        }
        return nil
    }

    /// Called with the lock held.
    private func handle(_ message: Message, for t: Transfer, from source: String) -> Answer? {
        switch message {
        case .register:
            // A retransmission: the first `registered` was lost (or we restarted before sending it).
            let to = t.register.control.socketAddress
            if t.state == .active {
                return (try? t.channel.seal(.registered(Registered()))).map { Answer(bytes: $0, accepted: true, to: to) }
            }
            if t.state == .failed {
                let reason = t.reason ?? "the agent rolled this registration back"
                return (try? t.channel.seal(.reject(Reject(reason: reason)))).map { Answer(bytes: $0, accepted: false, to: to) }
            }
        case .end(let end):
            logger.info("transfer \(t.id): the TN asks to end it (\(end.reason))")
            beginEnd(t, reason: WakeUp.Reason.requested)
        case .wakeUpAck:
            confirmWakeUp(t)
        default:
            rejections.record("unexpected", from: source, "\(message.type) for transfer \(t.id) in state \(t.state.rawValue)")
        }
        return nil
    }

    /// Make-before-break, write-ahead: the transfer goes into the store, then its rules and
    /// takeover into the maps (from then on the data plane answers ARP/NDP for the address and
    /// steers), then the store marks it active, then the TN is told; the address is announced
    /// once the answer is out. A crash between any two steps leaves the store knowing at least
    /// what the maps hold (see `recover`). Called with the lock held.
    private func admit(_ r: Register, id: TransferID, channel: TransferChannel, device: String) throws -> Answer {
        try validate(r)
        let family = r.original.family
        let toTarget: Forwarding
        let toTN: Forwarding
        switch r.mode {
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
        do {
            try takeover.validate()
            for rule in rules { try rule.validate() }
        } catch {
            throw ControlError.invalid("\(error)")
        }
        CrashPoint.reached("authorized")

        let t = Transfer(id: id, channel: channel, register: r, device: device, takeover: takeover,
                         idleTimeout: r.idleTimeout ?? configuration.idleTimeout)
        t.rules = rules
        try store.insert(record(t), rules: rules)
        CrashPoint.reached("stored")
        transfers[id] = t
        do {
            try dataPlane.addRules(rules)
            CrashPoint.reached("rules-written")
            do {
                try dataPlane.setTakeover(takeover)
            } catch {
                for rule in rules { _ = try? dataPlane.removeRule(rule.match) }
                throw error
            }
        } catch {
            transfers[id] = nil
            t.state = .failed
            t.reason = "\(error)"
            try? store.update(record(t))
            finished.append(t)
            throw error
        }
        CrashPoint.reached("takeover-written")
        t.mark("steering")
        t.state = .active
        t.mark("registered")
        try store.update(record(t))
        CrashPoint.reached("active")
        metrics.registration(accepted: true)
        metrics.takeover()
        logger.info("transfer \(id): took over \(r.original) for \(device) (\(r.mode.rawValue)), \(rules.count) session(s) → target \(r.targetAddress), others → TN \(r.temporary)")
        let bytes = try channel.seal(.registered(Registered()))
        return Answer(bytes: bytes, accepted: true, to: r.control.socketAddress, then: { [self] in
            CrashPoint.reached("registered-sent")
            lock.withLock { announce(t) }
        })
    }

    /// Lock held.
    func announce(_ t: Transfer) {
        guard t.state == .active, t.announcement == nil else { return }
        do {
            t.announcement = try announcer.start(t.register.original, at: mac, policy: configuration.announcements)
        } catch {
            logger.error("transfer \(t.id): announcing \(t.register.original) failed: \(error); ARP/NDP answers still work")
        }
        t.mark("announced")
    }

    private func validate(_ r: Register) throws {
        let family = r.original.family
        guard r.temporary.family == family, r.targetAddress.family == family else {
            throw ControlError.invalid("original \(r.original), temporary \(r.temporary) and target \(r.targetAddress) must be of one family")
        }
        guard !r.sessions.isEmpty else { throw ControlError.invalid("no sessions to transfer") }
        for s in r.sessions where s.destination != r.original {
            throw ControlError.invalid("session \(s) is not addressed to the original address \(r.original)")
        }
        if let other = transfers.values.first(where: { $0.register.original == r.original }) {
            throw ControlError.conflict("\(r.original) is already taken over by transfer \(other.id)")
        }
        let own = try Netlink().addresses(interface: configuration.interface, family: family).map(\.address)
        guard !own.contains(r.original) else { throw ControlError.forbidden("\(r.original) is the agent's own address") }
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

    func send(_ message: Message, for t: Transfer) {
        do {
            try messenger.send(try t.channel.seal(message), to: t.register.control.socketAddress)
        } catch {
            logger.error("transfer \(t.id): sending \(message.type) to \(t.register.control) failed: \(error)")
        }
    }

    // MARK: - Ending

    /// Starts the wake-up; forwarding goes on until the TN confirms. Lock held.
    func beginEnd(_ t: Transfer, reason: String) {
        guard t.state == .active else { return }
        t.state = .waking
        t.reason = reason
        // No more announcements from here on: one sent after the TN's own would point the
        // correspondent back at us just before we let go. ARP/NDP answers go on until the
        // TN confirms, for correspondents that ask meanwhile.
        t.announcement?.cancel()
        t.announcement = nil
        t.mark("wake-up")
        persist(t)
        t.nextWakeUp = .now
        sendWakeUp(t)
        logger.info("transfer \(t.id): ending (\(reason)); waking the TN at \(t.register.control)")
    }

    private func sendWakeUp(_ t: Transfer) {
        send(.wakeUp(WakeUp(reason: t.reason ?? WakeUp.Reason.operator)), for: t)
        if t.wakeUpsSent == 0 { metrics.wakeUp() }
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
        persist(t)
        logger.info("transfer \(t.id): the TN has reclaimed \(t.register.original)")
    }

    /// Lock held. The store first: a crash after it leaves map entries that the next start
    /// removes as stale, never a stored transfer without its entries.
    private func clear(_ t: Transfer) {
        t.state = .ended
        t.ended = Date()
        t.mark("cleared")
        persist(t)
        for rule in t.rules {
            do { _ = try dataPlane.removeRule(rule.match) } catch { logger.error("transfer \(t.id): removing rule \(rule.match): \(error)") }
        }
        do { _ = try dataPlane.removeTakeover(t.register.original) } catch { logger.error("transfer \(t.id): removing takeover: \(error)") }
        transfers[t.id] = nil
        finished.append(t)
        metrics.ended(reason: t.reason ?? "")
        if finished.count > configuration.keepEnded {
            finished.removeFirst(finished.count - configuration.keepEnded)
            try? store.prune(keep: configuration.keepEnded)
        }
        logger.info("transfer \(t.id): ended (\(t.reason ?? "")), entries cleared")
    }

    /// Ends idle or closed transfers, retransmits wake-ups, clears lingering transfers.
    /// Reading counters costs a lookup per rule, so each sweep looks at the active transfers
    /// for at most `sweepBudget`, going on where the last one stopped: with many rules the
    /// idle and close checks come round less often, and the agent stays responsive.
    func sweep() {
        lock.lock()
        defer { lock.unlock() }
        let deadline = ContinuousClock.now + Self.sweepBudget
        if let clock = try? dataPlane.clock() {
            if sweepQueue.isEmpty { sweepQueue = transfers.values.filter { $0.state == .active }.map(\.id) }
            while let id = sweepQueue.popLast() {
                if let t = transfers[id], t.state == .active { check(t, clock: clock) }
                if ContinuousClock.now >= deadline { break }
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

    static let sweepBudget: Duration = .milliseconds(10)

    /// Lock held.
    private func check(_ t: Transfer, clock: KernelClock) {
        let counters = t.rules.map { (try? dataPlane.rule($0.match))?.counter ?? Counter() }
        let closed = !counters.isEmpty && counters.allSatisfy(\.sawFinOrReset)
        // A session never seen is idle since the registration (or since this start).
        let since = milliseconds(since: t.since) / 1000
        let idle = counters.allSatisfy { c in min(c.idleSeconds(at: clock) ?? since, since) >= t.idleTimeout }
        if closed { beginEnd(t, reason: WakeUp.Reason.closed) } else if idle { beginEnd(t, reason: WakeUp.Reason.idle) }
    }

    // MARK: - Store

    func record(_ t: Transfer) -> Store.TransferRecord {
        Store.TransferRecord(
            id: "\(t.id)", device: t.device, state: t.state.rawValue, original: "\(t.register.original)",
            register: Self.encodeWithoutSessions(t.register), sessionKey: Data(t.channel.storedKey.storedBytes),
            highestTN: t.channel.highestAccepted(from: .tn).map { Int64(bitPattern: $0) }, takeover: t.takeover,
            reason: t.reason, started: t.started.timeIntervalSince1970, ended: t.ended?.timeIntervalSince1970,
            milestones: t.milestones)
    }

    /// The registration without its sessions: those are the rules, which the store keeps
    /// compactly (JSON of a million sessions would make a restart slow).
    static func encodeWithoutSessions(_ r: Register) -> Data {
        var r = r
        r.sessions = []
        return (try? JSONEncoder().encode(r)) ?? Data()
    }

    /// Lock held. A failed write is logged: the maps are right, and the next change or the
    /// next start's reconcile puts the store right.
    func persist(_ t: Transfer) {
        do { try store.update(record(t)) } catch { logger.error("transfer \(t.id): writing to the store failed: \(error)") }
    }
}
