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

    /// Sends one round now, synchronously.
    public func announceOnce(_ address: IPAddress, at mac: MACAddress, router: Bool = false) throws {
        for frame in Self.frames(for: address, at: mac, router: router) {
            try socket.send(frame)
        }
    }

    /// Sends the first round now (its errors are thrown here), the rest of the burst
    /// (`policy.count` rounds `policy.interval` apart) and then one round every
    /// `policy.refresh` from a background thread, until the returned announcement is cancelled
    /// (or released). Errors on that thread are kept in `Announcement.lastError`; it goes on.
    public func start(_ address: IPAddress, at mac: MACAddress, router: Bool = false,
                      policy: AnnouncementPolicy) throws -> Announcement {
        let operation = "announce \(address) at \(mac)"
        guard policy.count >= 1, policy.interval >= .zero, policy.refresh.map({ $0 > .zero }) ?? true else {
            throw NetError(subsystem: "socket", operation: operation, errno: EINVAL,
                           detail: "policy needs count >= 1, interval >= 0, refresh > 0")
        }
        try announceOnce(address, at: mac, router: router)
        let state = AnnouncementState(rounds: 1)
        let thread = Thread { [self] in
            var sent = 1
            while true {
                let wait: Duration
                if sent < policy.count {
                    wait = policy.interval
                } else if let refresh = policy.refresh {
                    wait = refresh
                } else {
                    break
                }
                guard state.sleep(for: wait) else { break }
                do {
                    try announceOnce(address, at: mac, router: router)
                    state.roundSent()
                } catch let error as NetError {
                    state.failed(error)
                } catch {
                    state.failed(NetError(subsystem: "socket", operation: operation, errno: EIO,
                                          detail: String(describing: error)))
                }
                sent += 1
            }
            state.finish()
        }
        thread.name = "baton-announce"
        thread.start()
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

/// Shared by an `Announcement` and its thread; every access holds `condition`.
final class AnnouncementState: @unchecked Sendable {
    private let condition = NSCondition()
    private var rounds: Int
    private var lastError: NetError?
    private var cancelled = false
    private var finished = false

    init(rounds: Int) { self.rounds = rounds }

    func snapshot() -> (rounds: Int, lastError: NetError?, finished: Bool) {
        condition.lock()
        defer { condition.unlock() }
        return (rounds, lastError, finished)
    }

    func roundSent() {
        condition.lock()
        rounds += 1
        condition.unlock()
    }

    func failed(_ error: NetError) {
        condition.lock()
        lastError = error
        condition.unlock()
    }

    /// Waits `duration` unless cancelled first; false if cancelled.
    func sleep(for duration: Duration) -> Bool {
        let (seconds, attoseconds) = duration.components
        let deadline = Date(timeIntervalSinceNow: Double(seconds) + Double(attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while !cancelled {
            if !condition.wait(until: deadline) { return !cancelled }
        }
        return false
    }

    func finish() {
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }
}
