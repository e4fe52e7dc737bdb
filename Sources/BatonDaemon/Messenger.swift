import BatonAPI
import BatonModel
import BatonNet
import BatonProtocol
import Foundation
import Logging
import Synchronization

/// The daemon's protocol sockets: one IPv4 and one IPv6 UDP socket on the protocol port, each
/// read by its own thread, plus the mailbox through which blocked requesters get their answers.
final class Messenger: Sendable {
    let port: UInt16
    private let v4: UDPSocket
    private let v6: UDPSocket?
    private struct State {
        var stopped = false
        /// Requesters waiting for answers, per transfer (a TN may wait for the agent and the
        /// target of one transfer at once).
        var slots: [TransferID: [ObjectIdentifier: Slot]] = [:]
    }
    private let state = Mutex(State())

    init(port: UInt16) throws {
        self.port = port
        v4 = try UDPSocket(family: .v4, port: port)
        // A host without IPv6 still works over IPv4.
        v6 = try? UDPSocket(family: .v6, port: port)
    }

    /// Starts the reader threads; `handle` runs on them, one datagram at a time per socket.
    func start(_ handle: @escaping @Sendable (Datagram) -> Void) {
        for socket in [v4, v6].compactMap({ $0 }) {
            Thread.detachNewThread { [self] in
                while !state.withLock({ $0.stopped }) {
                    guard let datagram = try? socket.receive(timeout: .milliseconds(200), maximumSize: 65536) else { continue }
                    handle(datagram)
                }
            }
        }
    }

    func stop() {
        state.withLock { $0.stopped = true }
    }

    /// `source`: the address to send from (a TN's temporary address: its original may be
    /// held by the target, which then drops datagrams from it as martians); nil: the kernel's choice.
    func send(_ bytes: [UInt8], to destination: SocketAddress, from source: IPAddress? = nil) throws {
        if let source, source.family == destination.address.family {
            let socket = try UDPSocket(family: source.family, address: source, port: 0)
            defer { socket.close() }
            try socket.send(bytes, to: destination)
            return
        }
        guard let socket = destination.address.family == .v4 ? v4 : v6 else {
            throw ControlError("no IPv6 socket to reach \(destination)")
        }
        try socket.send(bytes, to: destination)
    }

    // MARK: Answers to requests in flight

    /// Hands `message` to a requester waiting on `transfer`; false if nobody waits.
    @discardableResult
    func deliver(_ message: Message, transfer: TransferID) -> Bool {
        // Put outside the lock: a slot has its own.
        let waiting = state.withLock { s in s.slots[transfer].map { Array($0.values) } ?? [] }
        for slot in waiting { slot.put(message) }
        return !waiting.isEmpty
    }

    /// Sends what `make` seals (a fresh counter each time: an identical datagram is always a
    /// replay), every `retransmit` until `answer` accepts a delivered message or `timeout`.
    /// `meanwhile` runs once, after the first send: work that need not be done before the
    /// request goes out overlaps the peer's (an error it throws ends the wait).
    func request(transfer: TransferID, to destination: SocketAddress, from source: IPAddress? = nil, timeout: Duration,
                 retransmit: Duration = .milliseconds(Int(TransferProtocol.retransmitInterval * 1000)), _ make: () throws -> [UInt8],
                 meanwhile: (() throws -> Void)? = nil, answer: (Message) -> Bool) throws -> Message? {
        let slot = Slot()
        state.withLock { $0.slots[transfer, default: [:]][ObjectIdentifier(slot)] = slot }
        defer {
            state.withLock { s in
                s.slots[transfer]?[ObjectIdentifier(slot)] = nil
                if s.slots[transfer]?.isEmpty == true { s.slots[transfer] = nil }
            }
        }
        let deadline = ContinuousClock.now + timeout
        var pending = meanwhile
        while ContinuousClock.now < deadline {
            try send(try make(), to: destination, from: source)
            if let work = pending {
                pending = nil
                try work()
            }
            let wait = min(retransmit, deadline - ContinuousClock.now)
            let until = ContinuousClock.now + wait
            while ContinuousClock.now < until {
                if let m = slot.take(timeout: until - ContinuousClock.now), answer(m) { return m }
            }
        }
        return nil
    }
}

/// Messages delivered for one waiting requester.
private final class Slot: Sendable {
    private let queue = Mutex<[Message]>([])
    private let signal = DispatchSemaphore(value: 0)

    func put(_ m: Message) {
        queue.withLock { $0.append(m) }
        signal.signal()
    }

    func take(timeout: Duration) -> Message? {
        let (s, atto) = timeout.components
        let nanos = max(0, Int(s) * 1_000_000_000 + Int(atto / 1_000_000_000))
        guard signal.wait(timeout: .now() + .nanoseconds(nanos)) == .success else { return nil }
        return queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    }
}

/// Counts rejected messages by reason, and logs them: each one, up to `logsPerSecond` a
/// second per reason; past that a flood costs no log line, and the next line says how many
/// were left out.
final class Rejections: Sendable {
    static let logsPerSecond = 10

    private struct LogWindow {
        var start: ContinuousClock.Instant
        var logged = 0
        var suppressed = 0
    }

    private let counts = Mutex<[String: Int]>([:])
    private let windows = Mutex<[String: LogWindow]>([:])
    private let logger: Logger
    private let metrics: DaemonMetrics?

    init(logger: Logger, metrics: DaemonMetrics? = nil) {
        self.logger = logger
        self.metrics = metrics
    }

    /// `source`: the datagram's sender, or "api".
    func record(_ reason: String, from source: some CustomStringConvertible, _ detail: String) {
        counts.withLock { $0[reason, default: 0] += 1 }
        metrics?.rejection(reason)
        let now = ContinuousClock.now
        let left: Int? = windows.withLock { w in
            var window = w[reason] ?? LogWindow(start: now)
            if now - window.start >= .seconds(1) { window = LogWindow(start: now, suppressed: window.suppressed) }
            defer { w[reason] = window }
            guard window.logged < Self.logsPerSecond else {
                window.suppressed += 1
                return nil
            }
            window.logged += 1
            defer { window.suppressed = 0 }
            return window.suppressed
        }
        guard let left else { return }
        logger.warning("rejected message from \(source): \(reason): \(detail)\(left > 0 ? " (\(left) more \(reason) not logged)" : "")")
    }

    func record(_ error: ProtocolError, from source: some CustomStringConvertible) {
        record(Self.reason(error), from: source, error.description)
    }

    var snapshot: [String: Int] { counts.withLock { $0 } }

    /// The datagram's envelope, or nil (recorded) if its header is malformed.
    func envelope(of datagram: Datagram) -> Envelope? {
        do {
            return try Envelope.parse(datagram.payload)
        } catch {
            record(error, from: datagram.source)
            return nil
        }
    }

    static func reason(_ e: ProtocolError) -> String {
        switch e {
        case .replayed, .sealedBeforeRestart: return "replayed"
        case .stale: return "stale"
        case .untrustedSender: return "untrusted"
        case .authenticationFailed, .badSealedKey: return "forged"
        case .badMAC1: return "junk"
        case .wrongRole: return "misdirected"
        case .missingSealedKey, .wrongTransfer: return "unknown-transfer"
        default: return "malformed"
        }
    }
}

extension Endpoint {
    var socketAddress: SocketAddress { SocketAddress(address, port: port) }
}

func unixTime(_ date: Date = Date()) -> Double { date.timeIntervalSince1970 }

func milliseconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    let (s, atto) = d.components
    return Double(s) * 1000 + Double(atto) / 1e15
}
