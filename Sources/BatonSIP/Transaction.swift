/// RFC 3261 17's transactions as state machines with no clock and no socket: an event in,
/// the actions out (send, arm a timer, hand to the transaction user). The server drives
/// them on one event loop; the tests drive them with made-up times.
public struct TransactionTimers: Sendable {
    /// T1 (RTT estimate), T2 (longest retransmit interval), T4 (longest a message lives).
    public var t1: Double = 0.5
    public var t2: Double = 4
    public var t4: Double = 5
    public init() {}
    public init(t1: Double, t2: Double, t4: Double) {
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
    }
}

/// A server transaction's key (RFC 3261 17.2.3): top Via's branch and sent-by, and the
/// method (an ACK is keyed as its INVITE).
public struct ServerTransactionKey: Hashable, Sendable {
    public var branch: String
    public var sentBy: String
    public var method: String

    public init?(_ m: SIPMessage) {
        guard let v = m.vias.first, let b = v.branch, b.hasPrefix("z9hG4bK"), let method = m.method ?? m.cseq?.method else { return nil }
        branch = b
        sentBy = "\(v.host):\(v.port ?? 5060)"
        self.method = method == "ACK" ? "INVITE" : method
    }
}

/// A client transaction's key (RFC 3261 17.1.3): top Via's branch and the CSeq method.
public struct ClientTransactionKey: Hashable, Sendable {
    public var branch: String
    public var method: String

    public init?(_ m: SIPMessage) {
        guard let b = m.vias.first?.branch, let method = m.cseq?.method else { return nil }
        branch = b
        self.method = method == "ACK" ? "INVITE" : method
    }
}

public enum TransactionTimer: String, Sendable, Hashable {
    case a = "A", b = "B", d = "D", e = "E", f = "F", k = "K"          // client
    case g = "G", h = "H", i = "I", j = "J", l = "L", m = "M"          // server (L, M: RFC 6026)
}

public enum TransactionAction: Equatable, Sendable {
    /// Send these bytes to the transaction's peer.
    case send(SIPMessage)
    /// Arm (or re-arm) a timer; the driver calls `fire` when it expires.
    case arm(TransactionTimer, after: Double)
    /// Give the transaction user this message (a request, a response, an ACK).
    case deliver(SIPMessage)
    /// Tell the transaction user it timed out (Timer B or F) or the transport failed.
    case timeout
    /// The transaction is over: forget it.
    case terminated
}

/// A server transaction (RFC 3261 17.2, with RFC 6026's Accepted state for INVITE 2xx).
public struct ServerTransaction: Sendable {
    public enum State: Sendable, Equatable { case trying, proceeding, completed, confirmed, accepted, terminated }

    public let request: SIPMessage
    public let reliable: Bool
    public let timers: TransactionTimers
    public private(set) var state: State
    public private(set) var lastResponse: SIPMessage?
    private var gInterval: Double

    public var isInvite: Bool { request.method == "INVITE" }

    /// A new transaction for `request`; the actions hand it to the TU (and, for INVITE, say 100 Trying).
    public static func start(_ request: SIPMessage, reliable: Bool, timers: TransactionTimers = .init()) -> (ServerTransaction, [TransactionAction]) {
        let t = ServerTransaction(request: request, reliable: reliable, timers: timers,
                                  state: request.method == "INVITE" ? .proceeding : .trying, lastResponse: nil, gInterval: timers.t1)
        if request.method == "INVITE" {
            // 100 at once: it stops the client's Timer A retransmissions (17.2.1).
            var trying = request.response(100, "Trying")
            if let ts = request.headers["timestamp"] { trying.headers.add("Timestamp", ts) }
            var t2 = t
            t2.lastResponse = trying
            return (t2, [.send(trying), .deliver(request)])
        }
        return (t, [.deliver(request)])
    }

    /// A retransmission of the request, or the ACK to a non-2xx final response.
    public mutating func received(_ m: SIPMessage) -> [TransactionAction] {
        if m.method == "ACK" {
            switch state {
            case .completed:
                state = .confirmed
                return reliable ? terminate() : [.arm(.i, after: timers.t4)]
            case .accepted:
                // The ACK to a 2xx is the TU's (13.3.1.4): it stops the 2xx retransmissions.
                return [.deliver(m)]
            default:
                return []
            }
        }
        // A retransmitted request: answer with the last response, if any (17.2.1, 17.2.2).
        switch state {
        case .proceeding, .completed:
            return lastResponse.map { [.send($0)] } ?? []
        default:
            return []
        }
    }

    /// The TU answers.
    public mutating func respond(_ r: SIPMessage) -> [TransactionAction] {
        guard let status = r.status, state == .trying || state == .proceeding || (state == .accepted && status / 100 == 2) else { return [] }
        lastResponse = r
        if status < 200 {
            state = .proceeding
            return [.send(r)]
        }
        if isInvite {
            if status < 300 {
                // The TU retransmits a 2xx until its ACK; the transaction absorbs the
                // INVITE's retransmissions for Timer L (RFC 6026 8.5).
                if state != .accepted { state = .accepted; return [.send(r), .arm(.l, after: 64 * timers.t1)] }
                return [.send(r)]
            }
            state = .completed
            gInterval = timers.t1
            var out: [TransactionAction] = [.send(r), .arm(.h, after: 64 * timers.t1)]
            if !reliable { out.append(.arm(.g, after: gInterval)) }
            return out
        }
        state = .completed
        return [.send(r)] + (reliable ? terminate() : [.arm(.j, after: 64 * timers.t1)])
    }

    public mutating func fire(_ timer: TransactionTimer) -> [TransactionAction] {
        switch (timer, state) {
        case (.g, .completed):
            gInterval = min(2 * gInterval, timers.t2)
            return (lastResponse.map { [.send($0)] } ?? []) + [.arm(.g, after: gInterval)]
        case (.h, .completed):
            return [.timeout] + terminate()
        case (.i, .confirmed), (.j, .completed), (.l, .accepted):
            return terminate()
        default:
            return []
        }
    }

    private mutating func terminate() -> [TransactionAction] {
        state = .terminated
        return [.terminated]
    }
}

/// A client transaction (RFC 3261 17.1, with RFC 6026's Accepted state for INVITE 2xx).
public struct ClientTransaction: Sendable {
    public enum State: Sendable, Equatable { case calling, trying, proceeding, completed, accepted, terminated }

    public let request: SIPMessage
    public let reliable: Bool
    public let timers: TransactionTimers
    public private(set) var state: State
    private var interval: Double

    public var isInvite: Bool { request.method == "INVITE" }

    public static func start(_ request: SIPMessage, reliable: Bool, timers: TransactionTimers = .init()) -> (ClientTransaction, [TransactionAction]) {
        let invite = request.method == "INVITE"
        let t = ClientTransaction(request: request, reliable: reliable, timers: timers, state: invite ? .calling : .trying, interval: timers.t1)
        var out: [TransactionAction] = [.send(request), .arm(invite ? .b : .f, after: 64 * timers.t1)]
        if !reliable { out.append(.arm(invite ? .a : .e, after: timers.t1)) }
        return (t, out)
    }

    public mutating func received(_ r: SIPMessage) -> [TransactionAction] {
        guard let status = r.status else { return [] }
        if isInvite {
            switch state {
            case .calling, .proceeding:
                if status < 200 { state = .proceeding; return [.deliver(r)] }
                if status < 300 {
                    state = .accepted
                    return [.deliver(r), .arm(.m, after: 64 * timers.t1)]
                }
                state = .completed
                return [.send(ack(for: r)), .deliver(r)] + (reliable ? terminate() : [.arm(.d, after: 32)])
            case .completed:
                // A retransmitted final response: ACK it again, tell nobody.
                return status >= 300 ? [.send(ack(for: r))] : []
            case .accepted:
                // Retransmitted 2xx go to the TU, which ACKs each (RFC 6026 7.2).
                return status / 100 == 2 ? [.deliver(r)] : []
            default:
                return []
            }
        }
        switch state {
        case .trying, .proceeding:
            if status < 200 { state = .proceeding; return [.deliver(r)] }
            state = .completed
            return [.deliver(r)] + (reliable ? terminate() : [.arm(.k, after: timers.t4)])
        default:
            return []
        }
    }

    public mutating func fire(_ timer: TransactionTimer) -> [TransactionAction] {
        switch (timer, state) {
        case (.a, .calling):
            interval *= 2
            return [.send(request), .arm(.a, after: interval)]
        case (.e, .trying), (.e, .proceeding):
            interval = state == .proceeding ? timers.t2 : min(2 * interval, timers.t2)
            return [.send(request), .arm(.e, after: interval)]
        case (.b, .calling), (.f, .trying), (.f, .proceeding):
            return [.timeout] + terminate()
        case (.d, .completed), (.k, .completed), (.m, .accepted):
            return terminate()
        default:
            return []
        }
    }

    /// The ACK of a non-2xx final response (17.1.1.3): same Request-URI, top Via, From,
    /// Call-ID, CSeq number; the response's To (with its tag); Route copied.
    func ack(for r: SIPMessage) -> SIPMessage {
        var h = SIPHeaders()
        if let v = request.headers.list("via")?.first { h.add("Via", v) }
        h.add("Max-Forwards", "70")
        if let f = request.headers["from"] { h.add("From", f) }
        if let t = r.headers["to"] { h.add("To", t) }
        if let c = request.callID { h.add("Call-ID", c) }
        if let n = request.cseq?.number { h.add("CSeq", "\(n) ACK") }
        for route in request.headers.values("route") { h.add("Route", route) }
        return SIPMessage(startLine: .request(method: "ACK", uri: request.requestURI!), headers: h)
    }

    private mutating func terminate() -> [TransactionAction] {
        state = .terminated
        return [.terminated]
    }
}
