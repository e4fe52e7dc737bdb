import BatonAPI
import BatonBPF
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation
import Logging
import Synchronization

/// Another daemon this node talks to: a target, or the agent.
public struct Peer: Sendable, Hashable {
    public var name: String
    /// Its addresses (an IPv4 and/or an IPv6 one); a transfer uses one of its own family if
    /// there is one.
    public var addresses: [IPAddress]
    public var port: UInt16
    public var key: PublicKey

    public init(name: String, addresses: [IPAddress], port: UInt16 = TransferProtocol.defaultPort, key: PublicKey) {
        self.name = name
        self.addresses = addresses
        self.port = port
        self.key = key
    }

    func address(_ family: IPAddress.Family) -> IPAddress? { addresses.first { $0.family == family } }

    func endpoint(_ family: IPAddress.Family) -> SocketAddress {
        SocketAddress(address(family) ?? addresses[0], port: port)
    }
}

public struct NodeConfiguration: Sendable {
    public var interface: String
    public var port: UInt16 = TransferProtocol.defaultPort
    /// Where the API listens (the Unix socket, and HTTPS if configured).
    public var listeners: APIListeners = APIListeners(control: DefaultPaths.controlSocket)
    public var identity: NodeIdentity
    /// The session agent (needed to transfer sessions away, not to receive them).
    public var agent: Peer?
    /// Targets this node may transfer to, by name; their keys are also trusted to offer
    /// sessions to this node.
    public var peers: [Peer] = []
    /// Temporary addresses are picked from these blocks when `transfer start` names none.
    public var temporaryPool: [IPPrefix] = []
    /// The reclaim announcement: a burst, no refresh (the address is ours again).
    public var announcements = AnnouncementPolicy(count: 3, interval: .milliseconds(100), refresh: nil)
    /// Where the decapsulation program is pinned (L3 mode).
    public var decapRoot: String = DefaultPaths.decapRoot
    public var xdpMode: XDPMode = .native
    /// How long the temporary address stays after the reclaim, for a wake-up ack that got lost.
    public var temporaryGrace: Double = 2
    /// How often the target looks at the TCP sessions it was given (seconds).
    public var sessionWatchInterval: Double = 1
    /// How long to wait for the target's and the agent's answers.
    public var answerTimeout: Duration = .seconds(3)
    /// Holds batond.sqlite with this node's transfers, so that a restart finishes them; nil:
    /// memory only.
    public var stateDirectory: String?
    /// Ended transfers kept in the store (and in `transfer list`).
    public var keepEnded: Int = 1024

    public init(interface: String, identity: NodeIdentity) {
        self.interface = interface
        self.identity = identity
    }
}

/// The node role: on the TN it moves sessions away (negotiate, temporary address, register,
/// off the wire) and takes its address back on wake-up; on the target it accepts sessions
/// (the original address held locally, decapsulation for the L3 mode). One daemon does both.
public final class Node: APIHandler, Sendable {
    /// A transfer this node started (it is the TN).
    // Guarded by the node's lock.
    final class Outgoing: @unchecked Sendable {
        let id: TransferID
        let channel: TransferChannel
        let request: TransferRequest
        let original: OriginalAddress
        let mode: TransferMode
        let target: Peer
        var temporary: IPAddress?
        var temporaryAdded = false
        var reclaimAnnouncement: Announcement?
        var accepted = false
        var state: TNTransferState = .negotiating
        var reason: String?
        let started: Date
        /// When the start request reached `start` (its checks are part of the milestones).
        let startedClock: ContinuousClock.Instant
        var ended: Date?
        var milestones: [String: Double] = [:]
        /// The clean-up after the end (temporary address, held copy) is done.
        var settled = false
        /// Sessions the target reported closed (`closed`).
        var closedAtTarget: Set<SessionMatch> = []
        /// The mac1 of the last `register` sent, and the cookie an agent under load answered
        /// it with (then sent in the retransmissions' mac2: `Cookie`).
        var lastMAC1: [UInt8]?
        var cookie: [UInt8]?

        init(id: TransferID, channel: TransferChannel, request: TransferRequest, original: OriginalAddress,
             mode: TransferMode, target: Peer, started: Date = Date(), startedClock: ContinuousClock.Instant = .now) {
            self.startedClock = startedClock
            self.id = id
            self.channel = channel
            self.request = request
            self.original = original
            self.mode = mode
            self.target = target
            self.started = started
        }

        func mark(_ name: String) { milestones[name] = milliseconds(since: startedClock) }

        var isFinished: Bool { state == .ended || state == .failed }
    }

    /// The address a TN transfers sessions of, with its prefix length on the interface (to put
    /// it back the same way).
    struct OriginalAddress {
        let address: IPAddress
        let prefixLength: Int
    }

    /// A transfer offered to this node (it is the target).
    final class Incoming: @unchecked Sendable {
        let id: TransferID
        let channel: TransferChannel
        let offer: Offer
        var state: TargetTransferState = .accepted
        let started: Date
        var ended: Date?
        /// Its TCP sessions that this host's TCP stack has had open, and those it has seen
        /// closed since (see `watchSessions`).
        var seenOpen: Set<SessionMatch> = []
        var closedHere: [SessionMatch: String] = [:]
        /// Milliseconds from the offer's arrival to each step of `prepare` (not stored: they
        /// show where a start's time goes, `transfer show` on the target).
        let arrived: ContinuousClock.Instant
        var milestones: [String: Double] = [:]

        init(id: TransferID, channel: TransferChannel, offer: Offer, started: Date = Date(),
             arrived: ContinuousClock.Instant = .now) {
            self.id = id
            self.channel = channel
            self.offer = offer
            self.started = started
            self.arrived = arrived
        }

        func mark(_ name: String) { milestones[name] = milliseconds(since: arrived) }
    }

    public let configuration: NodeConfiguration
    let logger: Logger
    let mac: MACAddress
    let ifindex: UInt32
    let addresses: NodeAddresses
    let announcer: Announcer
    let messenger: Messenger
    let rejections: Rejections
    let metrics: DaemonMetrics
    /// What the node's lock guards: its transfers (and the fields of each), the decapsulator
    /// once loaded, the API server. Helpers that run under it take `inout Tables` and never
    /// take the lock again.
    struct Tables {
        var outgoing: [TransferID: Outgoing] = [:]
        var incoming: [TransferID: Incoming] = [:]
        var decapsulator: Decapsulator?
        var decapLink: XDPLink?
        var api: APIServer?
        var stopped = false
        /// Temporary addresses a `settle` is taking off the interface (outside the lock).
        var settling: Set<IPAddress> = []
    }
    let tables = Mutex(Tables())
    let store: Store?
    private let stoppedSignal = DispatchSemaphore(value: 0)

    public init(_ configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        metrics = DaemonMetrics()
        rejections = Rejections(logger: logger, metrics: metrics)
        let link = try Netlink().link(named: configuration.interface)
        guard let mac = link.mac else { throw ControlError("\(configuration.interface) has no MAC address") }
        self.mac = mac
        ifindex = UInt32(link.index)
        addresses = NodeAddresses(interface: configuration.interface)
        announcer = try Announcer(interface: configuration.interface)
        messenger = try Messenger(port: configuration.port)
        do {
            store = try configuration.stateDirectory.map { try Store.open(directory: $0) }
            try store?.beginCounterRun()
        } catch {
            throw ControlError("cannot open the store in \(configuration.stateDirectory ?? ""): \(error)")
        }
        try recover()
    }

    public func run() throws {
        let watch = SessionWatch(node: self, interval: .milliseconds(Int((configuration.sessionWatchInterval * 1000).rounded())))
        let server = try APIServer(handler: self, listeners: configuration.listeners, logger: logger, services: [watch])
        guard !tables.withLock({ $0.api = server; return $0.stopped }) else {
            server.stop()
            return
        }
        messenger.start { [self] in receive($0) }
        logger.info("node on \(configuration.interface) (\(mac)), port \(configuration.port), public key \(configuration.identity.publicKey)")
        stoppedSignal.wait()
    }

    public func stop() {
        let server = tables.withLock { s -> APIServer? in
            s.stopped = true
            return s.api
        }
        messenger.stop()
        server?.stop()
        stoppedSignal.signal()
    }

    private var trustedKeys: Set<PublicKey> { Set(configuration.peers.map(\.key)) }

    // MARK: - TN: moving sessions away

    func start(_ request: TransferRequest) throws -> TransferInfo {
        let (received, receivedClock) = (Date(), ContinuousClock.now)
        guard let agent = configuration.agent else { throw ControlError.conflict("this node has no agent configured (--agent)") }
        guard let target = configuration.peers.first(where: { $0.name == request.to }) else {
            let known = configuration.peers.map(\.name).joined(separator: ", ")
            throw ControlError.notFound("unknown target '\(request.to)': configured peers are \(known.isEmpty ? "none" : known) (--peer)")
        }
        let mode = request.mode
        if let idle = request.idleTimeout {
            do { try Limits.check(idle, Limits.idleTimeout, "idleTimeout", unit: "seconds") } catch { throw ControlError.invalid(error.description) }
        }
        guard let first = request.sessions.first else { throw ControlError.invalid("no sessions to transfer") }
        let originalAddress = first.destination
        for s in request.sessions where s.destination != originalAddress {
            throw ControlError.invalid("sessions go to \(originalAddress) and \(s.destination): a transfer moves sessions of one address")
        }
        for s in request.sessions { try s.validate() }
        let family = originalAddress.family
        if let t = request.temporary, t.family != family || t == originalAddress {
            throw ControlError.invalid("temporary address \(t) must be another \(family == .v4 ? "IPv4" : "IPv6") address")
        }
        if let busy = tables.withLock({ $0.outgoing.values.first { $0.original.address == originalAddress && !$0.isFinished } }) {
            throw ControlError.conflict("\(originalAddress) is already being transferred (transfer \(busy.id))")
        }
        guard let original = try addresses.onInterface(originalAddress) else {
            throw ControlError.invalid("\(originalAddress) is not an address of \(configuration.interface) on the wire")
        }
        let agentTunnelSource = agent.address(family)
        if mode == .l3, agentTunnelSource == nil {
            throw ControlError("the agent has no \(family == .v4 ? "IPv4" : "IPv6") address configured (--agent) to tunnel from")
        }

        let id = TransferID.random()
        let channel = TransferChannel(transfer: id, key: SessionKey.random(), role: .tn)
        let t = Outgoing(id: id, channel: channel, request: request,
                         original: OriginalAddress(address: original.address, prefixLength: original.prefixLength),
                         mode: mode, target: target, started: received, startedClock: receivedClock)
        try tables.withLock { s in
            if let busy = s.outgoing.values.first(where: { $0.original.address == originalAddress && !$0.isFinished }) {
                throw ControlError.conflict("\(originalAddress) is already being transferred (transfer \(busy.id))")
            }
            s.outgoing[id] = t
        }
        do {
            try negotiateAndRegister(t, agent: agent, agentTunnelSource: agentTunnelSource ?? agent.addresses[0])
        } catch {
            tables.withLock { _ in
                t.state = .failed
                t.reason = "\(error)"
                t.ended = Date()
                persist(t)
            }
            logger.error("transfer \(id): failed: \(error)")
            throw error
        }
        return tables.withLock { _ in info(t) }
    }

    private func negotiateAndRegister(_ t: Outgoing, agent: Peer, agentTunnelSource: IPAddress) throws {
        let original = t.original.address
        let family = original.family
        let identity = configuration.identity
        /// The agent answered with a `reject`: it wrote nothing, so the roll-back sends it no
        /// `end` (one refused start is one refusal there, not a refusal and a rejection).
        var refused = false
        do {
            // 1. The temporary address beside the original, first: the target and the agent
            //    answer there, since both will treat the original as not the TN's.
            let (temporary, waitForSettle) = try tables.withLock { s throws -> (IPAddress, Bool) in
                if let given = t.request.temporary {
                    t.temporary = given
                    return (given, s.settling.contains(given))
                }
                let inUse = Set(s.outgoing.values.filter { !$0.isFinished }.compactMap(\.temporary)).union(s.settling)
                guard let picked = try addresses.pick(from: configuration.temporaryPool, family: family, excluding: inUse) else {
                    throw ControlError("no free \(family == .v4 ? "IPv4" : "IPv6") temporary address: give one (--temporary) or configure a pool (--temporary-pool)")
                }
                t.temporary = picked
                return (picked, false)
            }
            // A given address an earlier transfer's clean-up is taking off the interface: put
            // it back once that is done (a netlink request or a few).
            if waitForSettle {
                let until = ContinuousClock.now + .seconds(2)
                while tables.withLock({ $0.settling.contains(temporary) }), ContinuousClock.now < until { usleep(500) }
            }
            if try addresses.onInterface(temporary) == nil {
                try addresses.addToInterface(temporary, prefixLength: t.original.prefixLength)
                t.temporaryAdded = true
            }
            let control = Endpoint(address: temporary, port: configuration.port)
            // The target and the agent answer at the temporary address: introduced to them
            // first (the frames go ahead of the offer on the same path), their answers need
            // no ARP/NDP round trip to a TN busy with the start. Best effort.
            do {
                try announcer.introduce(temporary, at: mac, to: [t.target.endpoint(family).address, agent.endpoint(family).address])
            } catch {
                logger.warning("transfer \(t.id): introducing \(temporary) to the target and the agent: \(error)")
            }
            tables.withLock { _ in t.mark("temporary") }

            // 2. Negotiate: the target prepares (holds the address, decap for L3) and accepts.
            //    The store learns of the temporary address while the target works, and the
            //    register's sealed key is made.
            let offer = Offer(sessions: t.request.sessions, original: original, mode: t.mode, agent: agentTunnelSource,
                              control: control)
            let answer = try messenger.request(transfer: t.id, to: t.target.endpoint(family), from: temporary, timeout: configuration.answerTimeout, {
                try t.channel.seal(.offer(offer), sealingKeyFor: t.target.key, identity: identity)
            }, meanwhile: { [self] in
                tables.withLock { _ in persist(t) }
                // The register's sealed key too: it needs nothing from the accept.
                try? t.channel.prepareSealedKey(to: .agent, for: agent.key, identity: identity)
            }, answer: { [.accept, .reject].contains($0.type) })
            let accept: Accept
            switch answer {
            case .accept(let a)?: accept = a
            case .reject(let r)?: throw ControlError("target \(t.target.name) refused: \(r.reason)")
            default: throw ControlError("target \(t.target.name) (\(t.target.endpoint(family))) did not answer")
            }
            tables.withLock { _ in
                t.accepted = true
                t.mark("accepted")
            }

            // 3. Decapsulation for the agent's tunnel (L3) before the agent may steer into it.
            //    Stored, with the accept, before the registration goes out: a restart then
            //    knows to release the target and to ask the agent to end a takeover it may
            //    have made.
            if t.mode == .l3 { try acceptTunnelled(original, from: agentTunnelSource) }
            tables.withLock { _ in
                t.state = .registering
                persist(t)
            }
            CrashPoint.reached("tn-registering")
            tables.withLock { _ in t.mark("registering") } // after the store write: the register goes out now

            // 4. Register with the agent; it writes its maps, announces, then answers.
            //    Meanwhile the original is held locally too (needed only once it leaves the
            //    wire, step 5), so nothing is lost whichever MAC the correspondent uses.
            let register = Register(original: original, temporary: temporary, tnMAC: mac, mode: t.mode,
                                    sessions: t.request.sessions, targetMAC: accept.mac, targetAddress: accept.address,
                                    control: control, idleTimeout: t.request.idleTimeout)
            let registered = try messenger.request(transfer: t.id, to: agent.endpoint(family), from: temporary, timeout: configuration.answerTimeout, {
                let cookie = tables.withLock { _ in t.cookie }
                let bytes = try t.channel.seal(.register(register), sealingKeyFor: agent.key, identity: identity, cookie: cookie)
                // mac1 is the 16 bytes before the mac2, if there is one.
                let mac1 = Array(bytes.dropLast(cookie == nil ? 0 : Cookie.macSize).suffix(MAC1.size))
                tables.withLock { _ in t.lastMAC1 = mac1 }
                return bytes
            }, meanwhile: { [self] in
                try addresses.hold(original)
                tables.withLock { _ in t.mark("held") }
            }, answer: { [.registered, .reject].contains($0.type) })
            var inline = false
            switch registered {
            case .registered(let r)?: inline = r.inline == true
            case .reject(let r)?:
                refused = true
                throw ControlError("agent refused: \(r.reason)")
            default: throw ControlError("agent \(agent.endpoint(family)) did not answer")
            }
            tables.withLock { _ in t.mark("registered") }
            CrashPoint.reached("tn-registered")

            // 5. Off the wire: the agent answers for the address now. An agent in switch mode
            //    takes nothing over: the address stays on the wire, as it was.
            if !inline { try addresses.removeFromInterface(original) }
            tables.withLock { _ in
                t.state = .active
                t.mark(inline ? "inline" : "off-wire")
                persist(t)
            }
            logger.info("transfer \(t.id): \(t.request.sessions.count) session(s) of \(original) moved to \(t.target.name); other sessions continue through \(temporary)")
        } catch {
            rollBack(t, wasRegistering: !refused && tables.withLock { _ in t.state == .registering }, agent: agent)
            throw error
        }
    }

    /// Undoes a start that failed after the target accepted: the address stays ours. If the
    /// registration went out, the agent may have taken over all the same (its answer lost):
    /// it is asked to end, and its wake-up is acknowledged (see `receive`), so it lets go.
    func rollBack(_ t: Outgoing, wasRegistering registered: Bool, agent: Peer) {
        let original = t.original.address
        try? addresses.addToInterface(original, prefixLength: t.original.prefixLength)
        // The copy on lo and the decapsulation entry stay until `settle`: an earlier transfer
        // of the same address may still be settling, and its temporary address going would
        // take the original's local route away for an instant.
        let grace = configuration.temporaryGrace
        Thread.detachNewThread { [self] in
            if t.accepted { releaseTarget(t) }
            if registered, let bytes = try? t.channel.seal(.end(End(reason: "the TN gave up on the registration"))) {
                try? messenger.send(bytes, to: agent.endpoint(original.family), from: t.temporary)
            }
            Thread.sleep(forTimeInterval: grace)
            settle(t)
        }
    }

    /// After a transfer ended or failed (and its grace): the temporary address goes unless
    /// another transfer uses it, then the copy on lo (nothing of the transfer can still arrive)
    /// and the decapsulation entry, unless another transfer of the address has yet to settle.
    /// Takes the lock, but removes the temporary address outside it: a start, the reader and
    /// the API do not wait for that netlink work.
    func settle(_ t: Outgoing) {
        let original = t.original.address
        let temporary = tables.withLock { s -> IPAddress? in
            guard t.temporaryAdded, let temporary = t.temporary,
                  !s.outgoing.values.contains(where: { $0 !== t && $0.temporary == temporary && !$0.isFinished }),
                  s.settling.insert(temporary).inserted else { return nil }
            return temporary
        }
        if let temporary {
            do { try addresses.removeFromInterface(temporary) } catch { logger.error("removing temporary \(temporary): \(error)") }
        }
        tables.withLock { s in
            if let temporary { s.settling.remove(temporary) }
            // Another transfer of the address not settled yet (back to back, or still running)
            // needs the copy and the decapsulation entry: the last one to settle removes them.
            if !s.outgoing.values.contains(where: { $0 !== t && $0.original.address == original && !$0.settled }) {
                try? addresses.unhold(original)
                if t.mode == .l3 { _ = try? s.decapsulator?.remove(original) }
            }
            t.settled = true
            persist(t)
        }
    }

    /// On wake-up: the address goes back on the wire and is announced, then the agent hears
    /// that it may stop answering for it. The lock is held.
    private func reclaim(_ t: Outgoing, reason: String) {
        let original = t.original.address
        do {
            try addresses.addToInterface(original, prefixLength: t.original.prefixLength)
        } catch {
            logger.error("transfer \(t.id): putting \(original) back on \(configuration.interface) failed: \(error)")
            return // no ack: the agent keeps forwarding and asks again
        }
        do {
            // Kept on the transfer: releasing an announcement cancels the rest of its burst.
            t.reclaimAnnouncement = try announcer.start(original, at: mac, policy: configuration.announcements)
        } catch {
            logger.error("transfer \(t.id): announcing \(original) failed: \(error)")
        }
        t.state = .ended
        t.reason = reason
        t.ended = Date()
        t.mark("reclaimed")
        logger.info("transfer \(t.id): woken up (\(reason)); \(original) is back on \(configuration.interface)")
        persist(t)
        let grace = configuration.temporaryGrace
        Thread.detachNewThread { [self] in
            releaseTarget(t) // answered at the temporary address: before it goes
            Thread.sleep(forTimeInterval: grace)
            settle(t)
        }
    }

    /// An agent under load answered our `register` with a cookie: the retransmissions carry it.
    /// Good only if it opens with the agent's key and the mac1 of the register we sent last.
    /// Lock held.
    private func cookieReply(_ envelope: Envelope, for t: Outgoing, from source: SocketAddress) {
        guard envelope.sender == .agent, t.state == .registering, let mac1 = t.lastMAC1, let agent = configuration.agent,
              let cookie = Cookie.openReply(envelope.ciphertext, mac1: mac1, responder: agent.key) else {
            rejections.record("forged", from: source, "cookieReply for transfer \(t.id) that is not the agent's answer to our register")
            return
        }
        if t.cookie == nil { logger.info("transfer \(t.id): the agent is under load; retransmitting the registration with its cookie") }
        t.cookie = cookie
    }

    /// Tells the target it may let go of the address (best effort, retried for a while).
    func releaseTarget(_ t: Outgoing) {
        let family = t.original.address.family
        _ = try? messenger.request(transfer: t.id, to: t.target.endpoint(family), from: t.temporary, timeout: .seconds(3), {
            try t.channel.seal(.release(Release()))
        }, answer: { $0.type == .released })
    }

    /// `transfer end` on the TN: asks the agent to end; returns once woken up and reclaimed.
    /// Nothing to end (not active) is a conflict; an agent that does not answer is a failure,
    /// and the transfer goes on (with `force`, the TN reclaims its address anyway): either way
    /// the caller hears whether anything ended.
    private func end(_ t: Outgoing, force: Bool, reason: String = "requested by the TN") throws -> TransferInfo {
        guard let agent = configuration.agent else { throw ControlError("no agent configured") }
        try tables.withLock { _ in
            guard t.state == .active else {
                throw ControlError.conflict("transfer \(t.id) is \(t.state.rawValue): only an active transfer can be ended")
            }
            t.state = .ending
            t.mark("end")
            persist(t)
        }
        let family = t.original.address.family
        /// No wake-up came (or the request could not be sent): still transferred.
        func stillActive() -> (TransferInfo, Bool) {
            tables.withLock { _ -> (TransferInfo, Bool) in
                if t.state == .ending {
                    t.state = .active
                    persist(t)
                    return (info(t), false)
                }
                return (info(t), true)
            }
        }
        /// The agent is silent and the operator said --force: the TN takes its address back
        /// on its own (as a wake-up would), and says so.
        func reclaimAnyway() -> TransferInfo? {
            tables.withLock { _ -> TransferInfo? in
                guard t.state == .active || t.state == .ending else { return nil }
                logger.warning("transfer \(t.id): the agent did not answer; reclaiming \(t.original.address) anyway (--force)")
                t.mark("forced")
                reclaim(t, reason: WakeUp.Reason.forced)
                // Not back on the interface (logged): nothing ended, the caller hears so.
                return t.state == .ended ? info(t) : nil
            }
        }
        do {
            _ = try messenger.request(transfer: t.id, to: agent.endpoint(family), from: t.temporary, timeout: configuration.answerTimeout, {
                try t.channel.seal(.end(End(reason: reason)))
            }, answer: { $0.type == .wakeUp })
        } catch {
            if force, let shown = reclaimAnyway() { return shown }
            _ = stillActive()
            throw error
        }
        // No wake-up within the timeout (one that came has ended it: nothing to reclaim).
        if force, let shown = reclaimAnyway() { return shown }
        let (shown, answered) = stillActive()
        guard answered else {
            throw ControlError("the agent \(agent.endpoint(family)) did not answer within \(configuration.answerTimeout): transfer \(t.id) goes on (still active); try again, or end it on the agent")
        }
        return shown
    }

    // MARK: - Target: accepting sessions

    /// Lock held.
    private func prepare(_ offer: Offer, id: TransferID, channel: TransferChannel, arrived: ContinuousClock.Instant,
                         _ s: inout Tables) throws -> Accept {
        let opened = milliseconds(since: arrived)
        guard offer.control.address != offer.original else {
            throw ControlError("the offer's control address is the original address itself: answers could not leave this node")
        }
        let own = try addresses.global(offer.original.family, excluding: offer.original)
        guard try addresses.onInterface(offer.original) == nil else {
            throw ControlError("\(offer.original) is this node's own address on the wire")
        }
        let checked = milliseconds(since: arrived)
        try addresses.hold(offer.original)
        let t = Incoming(id: id, channel: channel, offer: offer, arrived: arrived)
        t.milestones = ["opened": opened, "checked": checked]
        t.mark("held")
        if offer.mode == .l3 {
            try acceptTunnelled(offer.original, from: offer.agent, &s)
            t.mark("decap")
        }
        s.incoming[id] = t
        persist(t)
        t.mark("stored")
        logger.info("transfer \(id): accepted \(offer.sessions.count) session(s) of \(offer.original) (\(offer.mode.rawValue))")
        return Accept(mac: mac, address: own)
    }

    /// Lock held.
    private func release(_ t: Incoming, _ s: inout Tables) {
        guard t.state == .accepted else { return }
        t.state = .released
        t.ended = Date()
        persist(t)
        let original = t.offer.original
        let stillNeeded = s.incoming.values.contains { $0 !== t && $0.offer.original == original && $0.state == .accepted }
        if !stillNeeded {
            do { try addresses.unhold(original) } catch { logger.error("transfer \(t.id): releasing \(original): \(error)") }
            if t.offer.mode == .l3 { _ = try? s.decapsulator?.remove(original) }
        }
        logger.info("transfer \(t.id): released \(original)")
    }

    /// Decapsulates tunnelled packets for `original` from `agent` (L3 mode); loads and attaches
    /// baton_decap on first use.
    func acceptTunnelled(_ original: IPAddress, from agent: IPAddress) throws {
        try tables.withLock { s in try acceptTunnelled(original, from: agent, &s) }
    }

    /// Lock held.
    private func acceptTunnelled(_ original: IPAddress, from agent: IPAddress, _ s: inout Tables) throws {
        if s.decapsulator == nil {
            // Adopted after a restart: the last run's link stays pinned and attached.
            let d = try Decapsulator.open(root: configuration.decapRoot)
            let (link, adopted) = try d.adoptOrAttach(ifindex: ifindex, mode: configuration.xdpMode)
            s.decapLink = link
            s.decapsulator = d
            logger.info("baton_decap \(adopted ? "adopted" : "attached") on \(configuration.interface)")
        }
        try s.decapsulator!.accept(original, from: agent)
    }

    // MARK: - Protocol

    func receive(_ datagram: Datagram) {
        guard let envelope = rejections.envelope(of: datagram) else { return }
        tables.withLock { s in receive(envelope, from: datagram.source, &s) }
    }

    /// Lock held: the transfers change as the message says.
    private func receive(_ envelope: Envelope, from source: SocketAddress, _ s: inout Tables) {
        do {
            if let t = s.outgoing[envelope.transfer] {
                if envelope.type == .cookieReply {
                    cookieReply(envelope, for: t, from: source)
                    return
                }
                // Stored on state changes only (the restored channel refuses what was sealed
                // before a restart).
                let message = try t.channel.open(envelope)
                switch message {
                case .wakeUp(let w):
                    if t.state == .active || t.state == .ending { reclaim(t, reason: w.reason) }
                    // Ended, or failed and rolled back: the address is on the wire again.
                    if t.state == .ended || t.state == .failed {
                        try messenger.send(try t.channel.seal(.wakeUpAck(WakeUpAck())), to: source)
                    }
                    messenger.deliver(message, transfer: t.id)
                case .accept, .reject, .registered, .released:
                    messenger.deliver(message, transfer: t.id)
                case .closed(let c):
                    closedAtTarget(t, c.sessions)
                default:
                    rejections.record("unexpected", from: source, "\(message.type) for transfer \(t.id)")
                }
            } else if let t = s.incoming[envelope.transfer] {
                let message = try t.channel.open(envelope)
                switch message {
                case .offer:
                    // A retransmission: our accept was lost.
                    if t.state == .accepted, let own = try? addresses.global(t.offer.original.family, excluding: t.offer.original) {
                        try messenger.send(try t.channel.seal(.accept(Accept(mac: mac, address: own))), to: t.offer.control.socketAddress)
                    }
                case .release:
                    release(t, &s)
                    try messenger.send(try t.channel.seal(.released(Released())), to: t.offer.control.socketAddress)
                default:
                    rejections.record("unexpected", from: source, "\(message.type) for transfer \(t.id)")
                }
            } else {
                let arrived = ContinuousClock.now
                let (channel, message) = try TransferChannel.opening(
                    envelope, identity: configuration.identity, role: .target, trusted: { [keys = trustedKeys] in keys.contains($0) })
                guard case .offer(let offer) = message else {
                    rejections.record("unexpected", from: source, "\(message.type) for unknown transfer \(envelope.transfer)")
                    return
                }
                let reply: Message
                do {
                    reply = .accept(try prepare(offer, id: envelope.transfer, channel: channel, arrived: arrived, &s))
                } catch {
                    logger.error("transfer \(envelope.transfer): refusing the offer: \(error)")
                    reply = .reject(Reject(reason: "\(error)"))
                }
                try messenger.send(try channel.seal(reply), to: offer.control.socketAddress)
            }
        } catch let e as ProtocolError {
            rejections.record(e, from: source)
        } catch {
            logger.error("transfer \(envelope.transfer): \(error)")
        }
    }

    // MARK: - API

    public var apiRole: DaemonRole { .node }

    public func startTransfer(_ request: TransferRequest) throws -> TransferInfo { try start(request) }

    public func listTransfers() throws -> [TransferInfo] {
        tables.withLock { s in s.outgoing.values.map(info) + s.incoming.values.map(info) }.sorted { $0.started < $1.started }
    }

    public func showTransfer(_ text: String) throws -> TransferInfo {
        let id = try parseID(text)
        return try tables.withLock { s in
            if let t = s.outgoing[id] { return info(t) }
            if let t = s.incoming[id] { return info(t) }
            throw ControlError.notFound("no transfer \(id)")
        }
    }

    /// Ends a transfer whose sessions all closed at the target (see `SessionWatch`).
    func endClosed(_ t: Outgoing) throws -> TransferInfo {
        try end(t, force: false, reason: WakeUp.Reason.closed)
    }

    public func endTransfer(_ text: String, force: Bool) throws -> TransferInfo {
        let id = try parseID(text)
        guard let t = tables.withLock({ $0.outgoing[id] }) else {
            if tables.withLock({ $0.incoming[id] }) != nil {
                throw ControlError.conflict("transfer \(id) was accepted here as its target: end it on the TN or the agent")
            }
            throw ControlError.notFound("no transfer \(id)")
        }
        return try end(t, force: force)
    }

    public func metricsExposition() throws -> String {
        let byState = tables.withLock { s in
            var n: [String: Int] = [:]
            for t in s.outgoing.values { n[t.state.rawValue, default: 0] += 1 }
            for t in s.incoming.values { n[t.state.rawValue, default: 0] += 1 }
            return n
        }
        return metrics.render(transfersByState: byState, rules: [], mapRules: nil, mapTakeovers: nil, datapath: [:])
    }

    private func parseID(_ text: String) throws -> TransferID {
        guard let id = TransferID(text) else { throw ControlError.invalid("invalid transfer ID '\(text)': expected 16 hex digits") }
        return id
    }

    private func info(_ t: Outgoing) -> TransferInfo {
        TransferInfo(id: "\(t.id)", role: .tn, state: TransferState(t.state), original: t.original.address, temporary: t.temporary,
                     mode: t.mode, target: "\(t.target.name) (\(t.target.endpoint(t.original.address.family).address))",
                     sessions: t.request.sessions.map { SessionInfo(match: $0) }, reason: t.reason,
                     started: unixTime(t.started), ended: t.ended.map { unixTime($0) }, milestones: t.milestones)
    }

    private func info(_ t: Incoming) -> TransferInfo {
        TransferInfo(id: "\(t.id)", role: .target, state: TransferState(t.state), original: t.offer.original, temporary: nil,
                     mode: t.offer.mode, target: nil, sessions: t.offer.sessions.map { SessionInfo(match: $0) },
                     reason: nil, started: unixTime(t.started), ended: t.ended.map { unixTime($0) }, milestones: t.milestones)
    }

    public func status() throws -> DaemonStatus {
        let netlink = try? Netlink()
        let own = ((try? netlink?.addresses(interface: configuration.interface)) ?? []).map(\.description)
        let held = ((try? netlink?.addresses(interface: "lo")) ?? [])
            .filter { $0.address != IPAddress("127.0.0.1")! && $0.address != IPAddress("::1")! }.map { "\($0.address)" }
        return tables.withLock { s in
            DaemonStatus(role: .node, publicKey: "\(configuration.identity.publicKey)", interface: configuration.interface,
                         mac: mac, addresses: own, port: configuration.port,
                         activeTransfers: s.outgoing.values.filter { $0.state == .active }.count
                            + s.incoming.values.filter { $0.state == .accepted }.count,
                         rejected: rejections.snapshot, heldAddresses: held,
                         temporaryAddresses: s.outgoing.values.filter { !$0.isFinished }
                            .compactMap { $0.temporary.map { "\($0)" } },
                         takeovers: [])
        }
    }
}
