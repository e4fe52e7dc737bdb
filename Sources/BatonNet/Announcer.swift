import BatonModel
import BatonPacket
import Foundation

/// How a takeover is announced: a burst of rounds, then a periodic refresh while it lasts.
///
/// A round is, for IPv4, one gratuitous ARP in the request form (`arping -U`) and one in the
/// reply form (`arping -A`), because some peers honour only one of them; for IPv6 one
/// unsolicited neighbour advertisement (Override set, Solicited clear, to ff02::1).
public struct AnnouncementPolicy: Sendable, Codable, Equatable {
    /// Rounds in the first burst; the first is sent at once. At least 1.
    public var count: Int = 3
    /// Spacing of the burst's rounds.
    public var interval: Duration = .milliseconds(100)
    /// After the burst, one round every `refresh` until the announcement is cancelled;
    /// nil: none.
    public var refresh: Duration? = .seconds(10)

    public init(count: Int = 3, interval: Duration = .milliseconds(100), refresh: Duration? = .seconds(10)) {
        self.count = count
        self.interval = interval
        self.refresh = refresh
    }

    /// A burst only, no refresh.
    public static func burst(_ count: Int = 3, interval: Duration = .milliseconds(100)) -> Self {
        Self(count: count, interval: interval, refresh: nil)
    }
}

/// Tells a segment that an address is now at a MAC: the takeover's gratuitous ARP and
/// unsolicited neighbour advertisements, sent through a `PacketSocket` on one interface.
///
/// Linux peers update an entry they already have (any state but permanent) from either;
/// they create none from them unless `arp_accept` / `accept_untracked_na` say so.
public final class Announcer: Sendable {
    private let socket: PacketSocket
    private let scheduler = AnnouncementScheduler()

    deinit { scheduler.close() }
    /// The interface the announcements leave from.
    public var interface: String { socket.interface }

    /// Opens a send-only packet socket on `interface` in `namespace` (nil: the calling
    /// thread's namespace).
    public init(interface: String, in namespace: NetworkNamespace? = nil) throws {
        socket = try PacketSocket(interface: interface, in: namespace, protocol: PacketSocket.sendOnly)
    }

    /// The frames of one round for `address` at `mac`: two gratuitous ARPs (request form, then
    /// reply form) for IPv4, one unsolicited NA for IPv6 (`router` sets its R flag).
    public static func frames(for address: IPAddress, at mac: MACAddress, router: Bool = false) -> [[UInt8]] {
        switch address.family {
        case .v4:
            return [Frame.gratuitousARP(mac: mac, ip: address, form: .request).bytes,
                    Frame.gratuitousARP(mac: mac, ip: address, form: .reply).bytes]
        case .v6:
            return [Frame.unsolicitedNeighborAdvertisement(mac: mac, address: address, router: router).bytes]
        }
    }

    /// The frames that make each of `peers` (of `address`'s family) learn `address` at `mac`
    /// without having asked: an ARP request from it for the peer (a host creates a neighbour
    /// entry for whoever asks for its address), or a neighbour solicitation with the source
    /// link-layer option (RFC 4861 §7.2.3: likewise).
    public static func introductions(of address: IPAddress, at mac: MACAddress, to peers: [IPAddress]) -> [[UInt8]] {
        peers.filter { $0.family == address.family && $0 != address }.map { peer in
            switch address.family {
            case .v4: Frame.arpRequest(senderMAC: mac, senderIP: address, targetIP: peer).bytes
            case .v6: Frame.neighborSolicitation(sourceMAC: mac, source: address, target: peer).bytes
            }
        }
    }

    /// Sends `introductions(of:at:to:)` now: a new address's first answers then need no
    /// resolution round trip.
    public func introduce(_ address: IPAddress, at mac: MACAddress, to peers: [IPAddress]) throws {
        for frame in Self.introductions(of: address, at: mac, to: peers) { try socket.send(frame) }
    }

    /// Sends one round now, synchronously.
    public func announceOnce(_ address: IPAddress, at mac: MACAddress, router: Bool = false) throws {
        for frame in Self.frames(for: address, at: mac, router: router) {
            try socket.send(frame)
        }
    }

    /// Sends the first round now (its errors are thrown here), the rest of the burst
    /// (`policy.count` rounds `policy.interval` apart) and then one round every
    /// `policy.refresh` from the announcer's scheduler thread, until the returned announcement
    /// is cancelled (or released). Errors there are kept in `Announcement.lastError`; it goes on.
    /// One thread serves every announcement of this announcer, however many takeovers run.
    public func start(_ address: IPAddress, at mac: MACAddress, router: Bool = false,
                      policy: AnnouncementPolicy) throws -> Announcement {
        // Only for errors: building it for every takeover showed in the registration profile.
        @Sendable func operation() -> String { "announce \(address) at \(mac)" }
        guard policy.count >= 1, policy.interval >= .zero, policy.refresh.map({ $0 > .zero }) ?? true else {
            throw NetError(subsystem: "socket", operation: operation(), errno: EINVAL,
                           detail: "policy needs count >= 1, interval >= 0, refresh > 0")
        }
        try announceOnce(address, at: mac, router: router)
        let state = AnnouncementState(rounds: 1)
        let first: Duration? = policy.count > 1 ? policy.interval : policy.refresh
        if let first {
            scheduler.schedule(ScheduledRound(due: .now + first, state: state, address: address, mac: mac, router: router,
                                              policy: policy, sent: 1)) { [self] round in
                do {
                    try announceOnce(round.address, at: round.mac, router: round.router)
                    return nil
                } catch let error as NetError {
                    return error
                } catch {
                    return NetError(subsystem: "socket", operation: operation(), errno: EIO, detail: String(describing: error))
                }
            }
        } else {
            state.finishIdle()
        }
        return Announcement(address: address, mac: mac, state: state)
    }

    /// Closes the socket; running announcements then only record errors.
    public func close() { socket.close() }
}

/// A running announcement (`Announcer.start`). Cancel it when the takeover ends; releasing
/// it cancels it too.
public final class Announcement: Sendable {
    public let address: IPAddress
    public let mac: MACAddress
    private let state: AnnouncementState

    init(address: IPAddress, mac: MACAddress, state: AnnouncementState) {
        self.address = address
        self.mac = mac
        self.state = state
    }

    deinit { state.cancel() }

    /// Stops it and waits until its thread has stopped: no round is sent after this returns.
    public func cancel() { state.cancel() }

    /// Rounds sent so far (the first included).
    public var rounds: Int { state.snapshot().rounds }

    /// The last error of the background thread, if any.
    public var lastError: NetError? { state.snapshot().lastError }

    /// True once it was cancelled or, without refresh, its burst is over.
    public var isFinished: Bool { state.snapshot().finished }
}

/// One announcement's later rounds, waiting in the scheduler.
struct ScheduledRound: Sendable {
    var due: ContinuousClock.Instant
    let state: AnnouncementState
    let address: IPAddress
    let mac: MACAddress
    let router: Bool
    let policy: AnnouncementPolicy
    var sent: Int

    /// When the round after this one is due, if any.
    func next() -> ContinuousClock.Instant? {
        if sent < policy.count { return due + policy.interval }
        return policy.refresh.map { due + $0 }
    }
}

/// Sends the rounds of every announcement of one announcer from one thread, earliest first
/// (thousands of takeovers must not mean thousands of threads). The thread starts with the
/// first scheduled round and stops when the announcer goes.
final class AnnouncementScheduler: @unchecked Sendable {
    typealias Send = @Sendable (ScheduledRound) -> NetError?
    private let condition = NSCondition()
    /// Sorted by `due`, latest first, so that the next one is popped from the end.
    private var rounds: [(round: ScheduledRound, send: Send)] = []
    private var running = false
    private var closed = false

    /// Stops the thread; rounds not yet sent are dropped (their announcements finish).
    func close() {
        condition.lock()
        closed = true
        for r in rounds { r.round.state.cancel() }
        rounds = []
        condition.broadcast()
        condition.unlock()
    }

    func schedule(_ round: ScheduledRound, send: @escaping Send) {
        condition.lock()
        defer { condition.unlock() }
        insert(round, send)
        if !running {
            running = true
            let thread = Thread { [weak self] in self?.loop() }
            thread.name = "baton-announce"
            thread.start()
        }
        condition.broadcast()
    }

    /// Lock held.
    private func insert(_ round: ScheduledRound, _ send: @escaping Send) {
        // Binary search for the first element due no later than `round` (the array is latest first).
        var low = 0, high = rounds.count
        while low < high {
            let mid = (low + high) / 2
            if rounds[mid].round.due > round.due { low = mid + 1 } else { high = mid }
        }
        rounds.insert((round, send), at: low)
    }

    private func loop() {
        condition.lock()
        while !closed {
            guard let last = rounds.last else {
                condition.wait()
                continue
            }
            let now = ContinuousClock.now
            if last.round.due > now {
                let (s, atto) = (last.round.due - now).components
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(s) + Double(atto) / 1e18))
                continue
            }
            var (round, send) = rounds.removeLast()
            guard round.state.beginRound() else { continue }
            condition.unlock()
            let error = send(round)
            condition.lock()
            round.sent += 1
            let next = round.next()
            if round.state.endRound(error: error, more: next != nil), let next {
                round.due = max(next, .now)
                insert(round, send)
            }
        }
        condition.unlock()
    }
}

/// Shared by an `Announcement` and the scheduler; every access holds `condition`.
final class AnnouncementState: @unchecked Sendable {
    private let condition = NSCondition()
    private var rounds: Int
    private var lastError: NetError?
    private var cancelled = false
    private var inFlight = false
    private var finished = false

    init(rounds: Int) { self.rounds = rounds }

    func snapshot() -> (rounds: Int, lastError: NetError?, finished: Bool) {
        condition.lock()
        defer { condition.unlock() }
        return (rounds, lastError, finished)
    }

    /// The scheduler is about to send a round; false if cancelled meanwhile (then finished).
    func beginRound() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if cancelled {
            finished = true
            return false
        }
        inFlight = true
        return true
    }

    /// The round is out; true if the announcement goes on.
    func endRound(error: NetError?, more: Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        inFlight = false
        if let error { lastError = error } else { rounds += 1 }
        if cancelled || !more { finished = true }
        condition.broadcast()
        return !finished
    }

    /// A burst of one round: over at once.
    func finishIdle() {
        condition.lock()
        finished = true
        condition.unlock()
    }

    /// No round is sent after this returns (one in flight is waited for).
    func cancel() {
        condition.lock()
        cancelled = true
        while inFlight { condition.wait() }
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}
