import BatonAPI
import BatonDataPlane
import BatonModel
import BatonNet
import BatonStore
import Foundation
import Logging
import Synchronization

/// The relay port pool: ports of the anchor's addresses that anchored sessions are given,
/// the next free one after the last given (so a port just freed is not handed out again at
/// once, where a late packet of its old session could still arrive).
struct PortPool: Sendable {
    let range: ClosedRange<UInt16>
    private(set) var used = Set<UInt16>()
    private var cursor: UInt16

    init(_ range: ClosedRange<UInt16>) {
        self.range = range
        cursor = range.lowerBound
    }

    var free: Int { range.count - used.count }

    mutating func take(_ port: UInt16) -> Bool {
        guard range.contains(port) else { return false }
        return used.insert(port).inserted
    }

    /// The next free port, or nil when every port is used.
    mutating func next() -> UInt16? {
        guard used.count < range.count else { return nil }
        while true {
            let p = cursor
            cursor = cursor == range.upperBound ? range.lowerBound : cursor + 1
            if used.insert(p).inserted { return p }
        }
    }

    mutating func release(_ port: UInt16) { used.remove(port) }
}

/// The agent's anchored sessions (docs/anchors.md): each is a forward rule (remote → anchor:
/// port, relayed to the device) and a reverse rule per device that may still send (the current
/// one; earlier ones for their grace period, or locked out). The table alone owns its lock; the
/// store is written before the maps (write-ahead), so that a restart finds every rule the maps
/// may hold (`recover`). Next hops are resolved before the lock is taken.
final class AnchorTable: Sendable {
    struct Configuration: Sendable {
        var ports: ClosedRange<UInt16> = 30000...39999
        var idleTimeout: Double = 60
        var grace: Double = 2
        var keepEnded = 1024
        /// Switch mode: the program sits on bridge ports, and a relay sent back out of the port
        /// it came in by never reaches a device on another port; anchored sessions are refused.
        var inline = false
    }

    struct Entry: Sendable {
        var session: AnchoredSession
        var rules: [SessionRule]
        /// Since when an unseen leg counts as idle: the creation, the last move, or this start.
        var since: ContinuousClock.Instant
    }

    private struct State: Sendable {
        var active: [String: Entry] = [:]
        var ended: [AnchoredSession] = []
        var pool: PortPool
        /// Ended sessions dropped from `ended` but still in the store: pruned in batches of
        /// `pruneBatch`, as one prune sorts every ended row (a call-heavy agent, issue 14).
        var unpruned = 0
        /// When each session could first be idle (monotonic seconds): its counters are not
        /// read before then (a sweep every 250 ms would otherwise read two rules of every
        /// session, 16,000 lookups a second with a thousand calls held).
        var idleDue: [String: Double] = [:]
    }
    static let pruneBatch = 64

    let configuration: Configuration
    let interface: String
    let mac: MACAddress
    let dataPlane: DataPlane
    let store: Store
    let nextHops: NextHops
    let metrics: DaemonMetrics
    let logger: Logger
    private let state: Mutex<State>

    init(configuration: Configuration, interface: String, mac: MACAddress, dataPlane: DataPlane, store: Store,
         nextHops: NextHops, metrics: DaemonMetrics, logger: Logger) {
        self.configuration = configuration
        self.interface = interface
        self.mac = mac
        self.dataPlane = dataPlane
        self.store = store
        self.nextHops = nextHops
        self.metrics = metrics
        self.logger = logger
        state = Mutex(State(pool: PortPool(configuration.ports)))
    }

    // MARK: - Restart

    /// Loads the stored sessions (before the reconcile): the active ones with their ports
    /// taken again; returns the rules the maps must hold for them.
    func recover() throws -> [SessionRule] {
        let stored = try store.anchors()
        // An adopted stream keeps its state; a lost one starts again from its next packet.
        for (a, _) in stored where a.state == .active && a.rtpContinuity { try dataPlane.addRTPStream(a.anchor) }
        return state.withLock { s in
            var wanted: [SessionRule] = []
            for (a, rules) in stored {
                if a.state == .ended {
                    s.ended.append(a)
                    continue
                }
                _ = s.pool.take(a.anchor.port)
                _ = s.pool.take(a.relayPort)
                s.active[a.id] = Entry(session: a, rules: rules, since: .now)
                wanted += rules
            }
            s.unpruned = max(0, s.ended.count - configuration.keepEnded)
            s.ended = Array(s.ended.suffix(configuration.keepEnded))
            if !s.active.isEmpty { logger.info("anchors: \(s.active.count) anchored session(s) resumed") }
            return wanted
        }
    }

    // MARK: - Operations

    /// Two ports of the pool held for a session whose endpoints are not known yet (a SIP offer
    /// names the anchor before the answer names the remote's media). `create(_:reserved:)`
    /// turns them into a session; `release` gives them back. Not stored: a restart forgets
    /// them, and the calls being set up then fail.
    struct Reservation: Sendable, Hashable {
        var anchor: Endpoint
        var relayPort: UInt16
    }

    private func checkMode() throws {
        if configuration.inline {
            throw ControlError.forbidden("anchored sessions need the agent in --mode takeover: in switch mode a relayed packet would leave by the bridge port it came in by")
        }
    }

    func reserve(family: IPAddress.Family) throws -> Reservation {
        try checkMode()
        let address: IPAddress
        do { address = try NodeAddresses(interface: interface).global(family) } catch {
            throw ControlError.forbidden("no \(family.rawValue) anchor address on \(interface): \(error)")
        }
        return try state.withLock { s throws(ControlError) -> Reservation in
            guard s.pool.free >= 2, let port = s.pool.next(), let relay = s.pool.next() else {
                throw ControlError.conflict("the relay port pool is exhausted (\(s.pool.range.count) ports, --relay-ports)")
            }
            return Reservation(anchor: Endpoint(address: address, port: port), relayPort: relay)
        }
    }

    func release(_ r: Reservation) {
        state.withLock { s in
            s.pool.release(r.anchor.port)
            s.pool.release(r.relayPort)
        }
    }

    func create(_ request: AnchorRequest, reserved: Reservation? = nil) throws -> AnchoredSession {
        try checkMode()
        let proto: IPProtocol = request.proto == .tcp ? .tcp : .udp
        let family = request.remote.address.family
        let anchorAddress: IPAddress
        if let reserved {
            anchorAddress = reserved.anchor.address
        } else if let given = request.anchor {
            anchorAddress = given
        } else {
            do { anchorAddress = try NodeAddresses(interface: interface).global(family) } catch {
                throw ControlError.forbidden("no anchor address: \(error); give one (anchor) or add one to \(interface)")
            }
        }
        let own = try Netlink().addresses(interface: interface, family: anchorAddress.family).map(\.address)
        guard own.contains(anchorAddress) else {
            throw ControlError.forbidden("\(anchorAddress) is not an address of the agent's interface \(interface)")
        }
        let idle = request.idleTimeout ?? configuration.idleTimeout
        do { try Limits.check(idle, Limits.idleTimeout, "idleTimeout", unit: "seconds") } catch { throw ControlError.invalid(error.description) }
        var requestedPort: UInt16?
        if let p = request.port {
            guard let port = UInt16(exactly: p), configuration.ports.contains(port) else {
                throw ControlError.forbidden("port \(p) is outside the relay port pool \(configuration.ports.lowerBound)-\(configuration.ports.upperBound) (--relay-ports)")
            }
            requestedPort = port
        }
        // Checked before any next hop is asked for: a malformed request costs nothing.
        // (With stand-in ports until the pool gives the real ones.)
        let ports = configuration.ports, standIn = reserved?.anchor.port ?? requestedPort ?? ports.lowerBound
        var draft = AnchoredSession(id: Self.newID(), proto: proto, anchor: Endpoint(address: anchorAddress, port: standIn),
                                    relayPort: reserved?.relayPort ?? (standIn == ports.lowerBound ? ports.upperBound : ports.lowerBound),
                                    remote: request.remote, device: request.device, idleTimeout: idle, created: Date().timeIntervalSince1970,
                                    rtpContinuity: request.rtpContinuity ?? false)
        try Self.refused(draft.validate)
        let remoteHop = try hop(request.remote.address)
        let deviceHop = try hop(request.device.address)
        let created = try state.withLock { s throws(any Error) -> AnchoredSession in
            if let reserved {
                // The ports are the reservation's already; on failure they stay the caller's.
                draft.anchor.port = reserved.anchor.port
                draft.relayPort = reserved.relayPort
            } else if let port = requestedPort {
                guard s.pool.take(port) else { throw ControlError.conflict("port \(port) of the relay pool is taken") }
            } else {
                guard let port = s.pool.next() else { throw ControlError.conflict("the relay port pool is exhausted (\(s.pool.range.count) ports, --relay-ports)") }
                draft.anchor.port = port
            }
            if reserved == nil {
                guard let relay = s.pool.next() else {
                    s.pool.release(draft.anchor.port)
                    throw ControlError.conflict("the relay port pool is exhausted (\(s.pool.range.count) ports, --relay-ports)")
                }
                draft.relayPort = relay
            }
            let rules = draft.rules(hop: { $0 == draft.remote ? remoteHop : deviceHop }, sourceMAC: mac)
            do {
                for r in rules where try dataPlane.rule(r.match) != nil {
                    throw ControlError.conflict("a rule for \(r.match) exists already (a transfer's, or one added with batonctl rule)")
                }
                try store.save(draft, rules: rules)
                do {
                    // The stream's state before the rules that use it.
                    if draft.rtpContinuity { try dataPlane.addRTPStream(draft.anchor, fresh: true) }
                    try dataPlane.addRules(rules)
                } catch {
                    var failed = draft
                    failed.state = .ended
                    failed.reason = "failed: \(error)"
                    failed.ended = Date().timeIntervalSince1970
                    try? store.save(failed, rules: [])
                    if draft.rtpContinuity { _ = try? dataPlane.removeRTPStream(draft.anchor) }
                    throw error
                }
            } catch {
                if reserved == nil {
                    s.pool.release(draft.anchor.port)
                    s.pool.release(draft.relayPort)
                }
                throw error
            }
            s.active[draft.id] = Entry(session: draft, rules: rules, since: .now)
            return draft
        }
        metrics.anchorCreated()
        logger.info("anchor \(created.id): \(created.proto) \(created.remote) ↔ \(created.anchor) / :\(created.relayPort) ↔ \(created.device)")
        return created
    }

    /// Make-before-break: the new device's reverse rule first, then the forward rule switched
    /// in one map update, then the old device's reverse rule made a lockout (if asked).
    func move(_ id: String, to device: Endpoint, lockout: Double?, grace: Double?) throws -> AnchoredSession {
        if let lockout { try Self.checked { () throws(ModelError) in _ = try Limits.check(lockout, 0.001...86400, "lockout", unit: "seconds") } }
        if let grace { try Self.checked { () throws(ModelError) in _ = try Limits.check(grace, 0...3600, "grace", unit: "seconds") } }
        if lockout != nil && grace != nil { throw ControlError.forbidden("lockout and grace exclude each other: a locked-out device gets no grace") }
        let current = try entry(id)
        guard current.session.state == .active else { throw ControlError.conflict("anchor \(id) has ended") }
        var probe = current.session
        probe.device = device
        try Self.refused(probe.validate)
        let deviceHop = try hop(device.address)
        let moved = try state.withLock { s throws(any Error) -> AnchoredSession in
            guard var e = s.active[id] else { throw ControlError.conflict("anchor \(id) has ended") }
            let old = e.session
            guard device != old.device else { return old }
            var a = old
            let now = BootClock.wallSeconds()  // the scale lockout ends are converted on
            a.retired.removeAll { $0.device == device || $0.until <= now }
            // No grace and no lockout: the old device's rule goes in this move (not at the next sweep).
            let keep = lockout ?? grace ?? configuration.grace
            if keep > 0 { a.retired.append(.init(device: old.device, until: now + keep, lockedOut: lockout != nil)) }
            a.device = device
            a.moves += 1
            a.moved = now
            let remoteHop = e.rules.first { $0.match == old.reverseMatch(old.device) }?.forward.destinationMAC ?? deviceHop
            let rules = a.rules(hop: { $0 == a.remote ? remoteHop : deviceHop }, sourceMAC: mac)
            let owned = Set(e.rules.map(\.match))
            let newReverse = a.reverseMatch(device)
            if !owned.contains(newReverse), try dataPlane.rule(newReverse) != nil {
                throw ControlError.conflict("a rule for \(newReverse) exists already (a transfer's, or one added with batonctl rule)")
            }
            try store.save(a, rules: rules)
            let byMatch = Dictionary(rules.map { ($0.match, $0) }, uniquingKeysWith: { a, _ in a })
            do {
                try dataPlane.setRule(byMatch[newReverse]!)
                try dataPlane.setRule(byMatch[a.forwardMatch]!)
                if lockout != nil { try dataPlane.setRule(byMatch[a.reverseMatch(old.device)]!) }
                // Retired devices whose time was up when this move came.
                for m in owned.subtracting(byMatch.keys) { try dataPlane.removeRule(m) }
            } catch {
                // Back to where it was: the old rules, the old record.
                for r in e.rules { try? dataPlane.setRule(r) }
                if !owned.contains(newReverse) { _ = try? dataPlane.removeRule(newReverse) }
                try? store.save(old, rules: e.rules)
                throw ControlError("moving anchor \(id) failed, the session is as it was: \(error)")
            }
            e.session = a
            e.rules = rules
            e.since = .now
            s.active[id] = e
            return a
        }
        if moved.moves != current.session.moves {
            metrics.anchorMoved(lockout: lockout != nil)
            logger.info("anchor \(id): moved to \(device)\(lockout.map { ", \(current.session.device) locked out for \($0) s" } ?? "")")
        }
        return moved
    }

    func end(_ id: String, reason: String) throws -> AnchoredSession {
        _ = try entry(id)
        let ended = try state.withLock { s throws(any Error) -> AnchoredSession in
            guard let e = s.active[id] else { throw ControlError.conflict("anchor \(id) has ended") }
            return try finish(e, reason: reason, in: &s)
        }
        metrics.anchorEnded(reason: reason)
        logger.info("anchor \(id): ended (\(reason))")
        return ended
    }

    /// Under the lock: the rules out of the maps, the ports back to the pool, kept as ended.
    private func finish(_ e: Entry, reason: String, in s: inout State) throws -> AnchoredSession {
        var a = e.session
        a.state = .ended
        a.reason = reason
        a.ended = Date().timeIntervalSince1970
        for r in e.rules { _ = try dataPlane.removeRule(r.match) }
        if a.rtpContinuity { _ = try dataPlane.removeRTPStream(a.anchor) }
        try store.save(a, rules: [])
        s.active[a.id] = nil
        s.pool.release(a.anchor.port)
        s.pool.release(a.relayPort)
        s.ended.append(a)
        if s.ended.count > configuration.keepEnded {
            s.unpruned += s.ended.count - configuration.keepEnded
            s.ended.removeFirst(s.ended.count - configuration.keepEnded)
            if s.unpruned >= Self.pruneBatch {
                try? store.pruneAnchors(keep: configuration.keepEnded)
                s.unpruned = 0
            }
        }
        return a
    }

    // MARK: - Reading

    /// The session with `id` (active or among the last ended) and its rules.
    func entry(_ id: String) throws -> Entry {
        guard AnchoredSession.validID(id) else { throw ControlError.invalid("invalid anchor ID '\(id)': expected 16 hex digits") }
        return try state.withLock { s throws(ControlError) -> Entry in
            if let e = s.active[id] { return e }
            if let a = s.ended.last(where: { $0.id == id }) { return Entry(session: a, rules: [], since: .now) }
            throw ControlError.notFound("no anchor \(id)")
        }
    }

    /// Active sessions oldest first, then the ended ones.
    func entries() -> [Entry] {
        state.withLock { s in
            s.active.values.sorted { ($0.session.created, $0.session.id) < ($1.session.created, $1.session.id) }
                + s.ended.map { Entry(session: $0, rules: [], since: .now) }
        }
    }

    var freePorts: Int { state.withLock { $0.pool.free } }

    // MARK: - Sweep

    /// Retired devices whose time is up lose their rule; sessions idle in both directions
    /// for their idle timeout end. Counters are read without the lock.
    func sweep() {
        let now = BootClock.wallSeconds()  // the scale lockout ends are converted on
        let active = state.withLock { Array($0.active.values) }
        // Retired devices whose time is up go whether or not the clock can be read.
        for e in active where e.session.retired.contains(where: { $0.until <= now }) { expireRetired(e.session.id, now: now) }
        guard !active.isEmpty, let clock = try? dataPlane.clock() else { return }
        let monotonic = Double(monotonicNanoseconds()) / 1e9
        var due = state.withLock { s in
            if s.idleDue.count > s.active.count { s.idleDue = s.idleDue.filter { s.active[$0.key] != nil } }
            return s.idleDue
        }
        defer { state.withLock { s in for (id, t) in due where s.active[id] != nil { s.idleDue[id] = t } } }
        for e in active {
            let a = e.session
            if let t = due[a.id], t > monotonic { continue }
            let legs = [a.forwardMatch, a.reverseMatch(a.device)].map { (try? dataPlane.rule($0))?.counter ?? Counter() }
            let since = Double(milliseconds(since: e.since)) / 1000
            // Idle clocks only grow until a packet (or a move) resets them: none can reach the
            // timeout before the least idle leg does.
            let idle = legs.map { min($0.idleSeconds(at: clock) ?? since, since) }
            due[a.id] = monotonic + a.idleTimeout - (idle.min() ?? 0)
            if idle.allSatisfy({ $0 >= a.idleTimeout }) {
                let ended = state.withLock { s -> Bool in
                    guard let current = s.active[a.id], current.session.moves == a.moves else { return false }
                    do {
                        _ = try finish(current, reason: "idle", in: &s)
                        return true
                    } catch {
                        logger.error("anchor \(a.id): ending it (idle) failed: \(error)")
                        return false
                    }
                }
                if ended {
                    metrics.anchorEnded(reason: "idle")
                    logger.info("anchor \(a.id): ended (idle for \(a.idleTimeout) s)")
                }
            }
        }
    }

    private func expireRetired(_ id: String, now: Double) {
        state.withLock { s in
            guard var e = s.active[id] else { return }
            let gone = e.session.retired.filter { $0.until <= now }
            guard !gone.isEmpty else { return }
            e.session.retired.removeAll { $0.until <= now }
            let matches = Set(gone.map { e.session.reverseMatch($0.device) })
            e.rules.removeAll { matches.contains($0.match) }
            do {
                // The record first: a restart then never brings the rule back.
                try store.save(e.session, rules: e.rules)
                for m in matches { _ = try dataPlane.removeRule(m) }
            } catch {
                logger.error("anchor \(id): removing a retired device's rule failed: \(error)")
                return
            }
            s.active[id] = e
        }
    }

    // MARK: - Helpers

    private func hop(_ address: IPAddress) throws -> MACAddress {
        do {
            return try nextHops.relayMAC(toward: address)
        } catch let e as ControlError {
            throw ControlError("\(e.description) (the anchor relays to it)", code: e.code)
        }
    }

    static func newID() -> String {
        var g = SystemRandomNumberGenerator()
        let s = String(g.next() as UInt64, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    private static func checked(_ body: () throws(ModelError) -> Void) throws {
        do { try body() } catch { throw ControlError.invalid(error.description) }
    }

    /// A well-formed session the agent may not relay (families, endpoints): 403, as the
    /// document says (the schema cannot express these).
    private static func refused(_ body: () throws(ModelError) -> Void) throws {
        do { try body() } catch { throw ControlError.forbidden(error.description) }
    }
}
