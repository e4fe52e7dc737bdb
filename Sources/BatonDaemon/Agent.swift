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
    typealias State = AgentTransferState

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
        /// The registration as stored (it never changes), encoded once: without its sessions,
        /// which are the rules, kept compactly by the store (sessions in every registration
        /// would make a restart with 1M rules slow).
        private(set) lazy var storedRegister = Data(register.storedBytes)

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
    let announcer: Announcer
    let messenger: Messenger
    let rejections: Rejections
    let metrics: DaemonMetrics
    let limiter: RateLimiter
    let enrolments: Enrolments
    /// Enrolled devices' static secrets: a registration then costs one X25519, not two.
    let staticSecrets: StaticSecrets
    /// What the start-up reconcile did.
    private(set) var reconciliation = ReconcileSummary()
    // Recursive: handlers that hold it call helpers that take it too.
    let lock = NSRecursiveLock()
    var transfers: [TransferID: Transfer] = [:]
    /// The transfer taking over each original address (one at most).
    var takenOver: [IPAddress: TransferID] = [:]
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
        do {
            store = try Store.open(directory: configuration.stateDirectory)
        } catch {
            throw ControlError("cannot open the store in \(configuration.stateDirectory): \(error)")
        }
        enrolments = Enrolments(store: store)
        staticSecrets = StaticSecrets(identity: configuration.identity)
        dataPlane = try DataPlane.open(root: configuration.pinRoot,
                                       options: .init(pinRoot: configuration.pinRoot, maxRules: configuration.maxRules,
                                                      maxTakeovers: configuration.maxTakeovers))
        announcer = try Announcer(interface: configuration.interface)
        messenger = try Messenger(port: configuration.port)
        // Before attaching: a fresh attach then steers by the reconciled maps from its first packet.
        reconciliation = try recover()
        self.link = try Self.attach(dataPlane, interface: configuration.interface, ifindex: UInt32(link.index),
                                    mode: configuration.xdpMode, logger: logger)
    }

    /// Keeps a pinned link on this interface, or attaches and pins a new one.
    private static func attach(_ dp: DataPlane, interface: String, ifindex: UInt32, mode: XDPMode,
                               logger: Logger) throws -> XDPLink? {
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
        let server = try APIServer(handler: self, listeners: configuration.listeners, logger: logger)
        lock.withLock { api = server }
        messenger.start { [self] in receive($0) }
        // Resumed transfers: announce again (the correspondents' caches may have expired while
        // we were down; XDP answered ARP/NDP meanwhile) and go on waking.
        announce(lock.withLock { Array(transfers.values) })
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

    /// Starts announcing the addresses of the transfers that are active and not announced yet.
    /// The first round is sent here, without the lock (a batch sends many frames).
    func announce(_ ts: [Transfer]) {
        let due = lock.withLock { ts.filter { $0.state == .active && $0.announcement == nil } }
        var started: [(Transfer, Announcement?)] = []
        for t in due {
            do {
                started.append((t, try announcer.start(t.register.original, at: mac, policy: configuration.announcements)))
            } catch {
                logger.error("transfer \(t.id): announcing \(t.register.original) failed: \(error); ARP/NDP answers still work")
                started.append((t, nil))
            }
        }
        lock.withLock {
            for (t, a) in started {
                // Ended meanwhile (or announced by another caller): this one stops at once.
                guard t.state == .active, t.announcement == nil else { a?.cancel(); continue }
                t.announcement = a
                t.mark("announced")
            }
        }
    }

    /// Lock held.
    func track(_ t: Transfer) {
        transfers[t.id] = t
        takenOver[t.register.original] = t.id
    }

    /// Lock held.
    func untrack(_ t: Transfer) {
        transfers[t.id] = nil
        if takenOver[t.register.original] == t.id { takenOver[t.register.original] = nil }
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
    func confirmWakeUp(_ t: Transfer) {
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
        untrack(t)
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
    /// idle and close checks come round less often, and the agent stays responsive. The
    /// counters are read without the lock (a chunk of transfers at a time), so that
    /// registrations are not held up behind the lookups.
    func sweep() {
        let deadline = ContinuousClock.now + Self.sweepBudget
        var first = true
        while ContinuousClock.now < deadline {
            // A new round starts only at the beginning of a sweep: at most one round each.
            guard let (clock, chunk) = lock.withLock({ nextSweepChunk(mayStartRound: first) }) else { break }
            first = false
            let ending = chunk.compactMap { c in idleOrClosed(c, clock: clock).map { (c.id, $0) } }
            lock.withLock {
                for (id, reason) in ending {
                    // It may have ended meanwhile (the TN asked, or an operator did).
                    if let t = transfers[id], t.state == .active { beginEnd(t, reason: reason) }
                }
            }
        }
        lock.withLock {
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
    }

    static let sweepBudget: Duration = .milliseconds(10)
    /// Transfers and rules per chunk: the budget is checked between chunks.
    static let sweepChunk = (transfers: 64, rules: 1024)

    /// What the idle and close check needs of a transfer, copied out from under the lock.
    struct SweepItem {
        let id: TransferID
        let matches: [SessionMatch]
        let since: ContinuousClock.Instant
        let idleTimeout: Double
    }

    /// The next active transfers to check, starting a new round when the last one is done (if
    /// `mayStartRound`); nil when there is nothing to check. Lock held.
    private func nextSweepChunk(mayStartRound: Bool) -> (KernelClock, [SweepItem])? {
        if sweepQueue.isEmpty, mayStartRound { sweepQueue = transfers.values.filter { $0.state == .active }.map(\.id) }
        guard !sweepQueue.isEmpty, let clock = try? dataPlane.clock() else { return nil }
        var chunk: [SweepItem] = []
        var rules = 0
        while chunk.count < Self.sweepChunk.transfers, rules < Self.sweepChunk.rules, let id = sweepQueue.popLast() {
            if let t = transfers[id], t.state == .active {
                chunk.append(SweepItem(id: id, matches: t.rules.map(\.match), since: t.since, idleTimeout: t.idleTimeout))
                rules += t.rules.count
            }
        }
        return (clock, chunk)
    }

    /// Why a transfer should end (its sessions closed, or idle), or nil. Reads the counters.
    private func idleOrClosed(_ item: SweepItem, clock: KernelClock) -> String? {
        let counters = item.matches.map { (try? dataPlane.rule($0))?.counter ?? Counter() }
        let closed = !counters.isEmpty && counters.allSatisfy(\.sawFinOrReset)
        // A session never seen is idle since the registration (or since this start).
        let since = milliseconds(since: item.since) / 1000
        let idle = counters.allSatisfy { c in min(c.idleSeconds(at: clock) ?? since, since) >= item.idleTimeout }
        if closed { return WakeUp.Reason.closed }
        return idle ? WakeUp.Reason.idle : nil
    }

    // MARK: - Store

    func record(_ t: Transfer) -> Store.TransferRecord {
        Store.TransferRecord(
            id: "\(t.id)", device: t.device, state: t.state.rawValue, original: "\(t.register.original)",
            register: t.storedRegister, sessionKey: Data(t.channel.storedKey.storedBytes),
            highestTN: t.channel.highestAccepted(from: .tn).map { Int64(bitPattern: $0) }, takeover: t.takeover,
            reason: t.reason, started: t.started.timeIntervalSince1970, ended: t.ended?.timeIntervalSince1970,
            milestones: t.milestones)
    }

    /// Lock held. A failed write is logged: the maps are right, and the next change or the
    /// next start's reconcile puts the store right.
    func persist(_ t: Transfer) {
        do { try store.update(record(t)) } catch { logger.error("transfer \(t.id): writing to the store failed: \(error)") }
    }
}
