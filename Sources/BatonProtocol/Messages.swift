import BatonModel
import Foundation

// MARK: - Bodies

/// TN → target: take these sessions of `original`.
public struct Offer: Codable, Hashable, Sendable {
    public var sessions: [SessionMatch]
    public var original: IPAddress
    public var mode: TransferMode
    /// The agent's tunnel source address, for the target's decapsulation check (L3).
    public var agent: IPAddress
    /// Where the target sends its answers (accept, released): the TN's temporary address.
    /// Not the datagram's source: that is the original address, which the target holds
    /// locally from now on, so an answer to it would never leave the target.
    public var control: Endpoint

    public init(sessions: [SessionMatch], original: IPAddress, mode: TransferMode, agent: IPAddress, control: Endpoint) {
        self.sessions = sessions
        self.original = original
        self.mode = mode
        self.agent = agent
        self.control = control
    }
}

/// Target → TN: prepared; steer to this MAC (L2) or this address (L3).
public struct Accept: Codable, Hashable, Sendable {
    public var mac: MACAddress
    /// The target's own address: the tunnel destination in L3.
    public var address: IPAddress

    public init(mac: MACAddress, address: IPAddress) {
        self.mac = mac
        self.address = address
    }
}

/// Any role → any other: the request cannot be carried out.
public struct Reject: Codable, Hashable, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// TN → agent: take over `original` and steer.
public struct Register: Codable, Hashable, Sendable {
    public var original: IPAddress
    public var temporary: IPAddress
    public var tnMAC: MACAddress
    public var mode: TransferMode
    public var sessions: [SessionMatch]
    public var targetMAC: MACAddress
    public var targetAddress: IPAddress
    /// Where the agent sends `registered` and `wakeUp`: the TN's temporary address and port.
    public var control: Endpoint
    /// Seconds without traffic on the transferred sessions before the agent ends the transfer; nil = the agent's default.
    public var idleTimeout: Double?

    public init(original: IPAddress, temporary: IPAddress, tnMAC: MACAddress, mode: TransferMode,
                sessions: [SessionMatch], targetMAC: MACAddress, targetAddress: IPAddress,
                control: Endpoint, idleTimeout: Double? = nil) {
        self.original = original
        self.temporary = temporary
        self.tnMAC = tnMAC
        self.mode = mode
        self.sessions = sessions
        self.targetMAC = targetMAC
        self.targetAddress = targetAddress
        self.control = control
        self.idleTimeout = idleTimeout
    }
}

/// Agent → TN: the rules and the takeover are in place.
public struct Registered: Codable, Hashable, Sendable {
    /// The agent steers inline (switch mode): it took nothing over, so the TN keeps its
    /// address on the wire. Absent from older agents: nil.
    public var inline: Bool?
    public init(inline: Bool? = nil) { self.inline = inline }
}

/// TN → agent: please end the transfer (the agent answers with `wakeUp`).
public struct End: Codable, Hashable, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// Agent → TN: the takeover is over; reclaim your address.
public struct WakeUp: Codable, Hashable, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }

    /// The reasons batond uses.
    public enum Reason {
        /// The operator ended the transfer at the agent.
        public static let `operator` = "operator"
        /// The transferred sessions were idle for the idle timeout.
        public static let idle = "idle"
        /// The transferred sessions closed.
        public static let closed = "closed"
        /// The TN asked with `end`.
        public static let requested = "requested"
        /// Not a wake-up reason but how such a transfer ends: the TN never confirmed the
        /// wake-up, and the agent cleared the takeover after `--max-waking`.
        public static let unanswered = "unanswered"
        /// Not a wake-up reason either: ended by `transfer end --force` without the other
        /// side (the TN reclaimed with the agent silent, or the agent cleared without the TN).
        public static let forced = "forced"
        /// Not a wake-up reason: a transfer in its linger that a new transfer of the same
        /// device took over from (the address stayed taken over, its rules re-pointed).
        public static let superseded = "superseded"
    }
}

/// TN → agent: address reclaimed; drop the takeover and the rules.
public struct WakeUpAck: Codable, Hashable, Sendable {
    public init() {}
}

/// TN → target: the transfer is over; release the original address and decapsulation.
public struct Release: Codable, Hashable, Sendable {
    public init() {}
}

/// Target → TN: released.
public struct Released: Codable, Hashable, Sendable {
    public init() {}
}

/// Target → TN: these TCP sessions of the transfer are over at the target, as its own TCP
/// stack saw it (a FIN each way, or a reset it accepted); the TN ends the transfer once all
/// of them are. Sent again every second while the transfer is accepted (no answer).
public struct Closed: Codable, Hashable, Sendable {
    public var sessions: [SessionMatch]
    public init(sessions: [SessionMatch]) { self.sessions = sessions }
}

// MARK: - Message

/// The envelope's type byte. Values are stable: never reuse or renumber one.
public enum MessageType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case offer = 1
    case accept = 2
    case reject = 3
    case register = 4
    case registered = 5
    case end = 6
    case wakeUp = 7
    case wakeUpAck = 8
    case release = 9
    case released = 10
    case closed = 11
    /// Not a channel message: a responder's cookie for a sender (see `Cookie`).
    case cookieReply = 12

    public var description: String {
        switch self {
        case .offer: return "offer"
        case .accept: return "accept"
        case .reject: return "reject"
        case .register: return "register"
        case .registered: return "registered"
        case .end: return "end"
        case .wakeUp: return "wakeUp"
        case .wakeUpAck: return "wakeUpAck"
        case .release: return "release"
        case .released: return "released"
        case .closed: return "closed"
        case .cookieReply: return "cookieReply"
        }
    }

    /// Whether this type travels from `sender` to `recipient`. `reject` goes
    /// between any two distinct roles; every other type has one direction.
    public func travels(from sender: Role, to recipient: Role) -> Bool {
        guard sender != recipient else { return false }
        switch self {
        case .reject: return true
        case .offer, .release: return sender == .tn && recipient == .target
        case .accept, .released, .closed: return sender == .target && recipient == .tn
        case .register, .end, .wakeUpAck: return sender == .tn && recipient == .agent
        case .registered, .wakeUp, .cookieReply: return sender == .agent && recipient == .tn
        }
    }

    /// Whether `role` ever sends this type.
    public func isSent(by role: Role) -> Bool {
        Role.allCases.contains { travels(from: role, to: $0) }
    }
}

/// A protocol message: its type and body.
public enum Message: Sendable, Hashable, CustomStringConvertible {
    case offer(Offer)
    case accept(Accept)
    case reject(Reject)
    case register(Register)
    case registered(Registered)
    case end(End)
    case wakeUp(WakeUp)
    case wakeUpAck(WakeUpAck)
    case release(Release)
    case released(Released)
    case closed(Closed)

    public var type: MessageType {
        switch self {
        case .offer: return .offer
        case .accept: return .accept
        case .reject: return .reject
        case .register: return .register
        case .registered: return .registered
        case .end: return .end
        case .wakeUp: return .wakeUp
        case .wakeUpAck: return .wakeUpAck
        case .release: return .release
        case .released: return .released
        case .closed: return .closed
        }
    }

    public var description: String {
        switch self {
        case .reject(let r): return "reject(\(r.reason))"
        case .end(let e): return "end(\(e.reason))"
        case .wakeUp(let w): return "wakeUp(\(w.reason))"
        default: return type.description
        }
    }

    /// The JSON body (keys sorted, so equal messages encode equally).
    func encodeBody() throws(ProtocolError) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            switch self {
            case .offer(let b): return Array(try e.encode(b))
            case .accept(let b): return Array(try e.encode(b))
            case .reject(let b): return Array(try e.encode(b))
            case .register(let b): return Array(try e.encode(b))
            case .registered(let b): return Array(try e.encode(b))
            case .end(let b): return Array(try e.encode(b))
            case .wakeUp(let b): return Array(try e.encode(b))
            case .wakeUpAck(let b): return Array(try e.encode(b))
            case .release(let b): return Array(try e.encode(b))
            case .released(let b): return Array(try e.encode(b))
            case .closed(let b): return Array(try e.encode(b))
            }
        } catch {
            throw .malformedBody("cannot encode \(type): \(error)")
        }
    }

    static func decode(_ type: MessageType, body: [UInt8]) throws(ProtocolError) -> Message {
        let d = JSONDecoder()
        let data = Data(body)
        do {
            switch type {
            case .offer: return .offer(try d.decode(Offer.self, from: data))
            case .accept: return .accept(try d.decode(Accept.self, from: data))
            case .reject: return .reject(try d.decode(Reject.self, from: data))
            case .register: return .register(try d.decode(Register.self, from: data))
            case .registered: return .registered(try d.decode(Registered.self, from: data))
            case .end: return .end(try d.decode(End.self, from: data))
            case .wakeUp: return .wakeUp(try d.decode(WakeUp.self, from: data))
            case .wakeUpAck: return .wakeUpAck(try d.decode(WakeUpAck.self, from: data))
            case .release: return .release(try d.decode(Release.self, from: data))
            case .released: return .released(try d.decode(Released.self, from: data))
            case .closed: return .closed(try d.decode(Closed.self, from: data))
            case .cookieReply: throw ProtocolError.malformedBody("cookieReply is not a channel message")
            }
        } catch let e as DecodingError {
            throw .malformedBody("\(type): \(Self.explain(e))")
        } catch {
            throw .malformedBody("\(type): \(error)")
        }
    }

    private static func explain(_ e: DecodingError) -> String {
        func path(_ c: [CodingKey]) -> String { c.isEmpty ? "body" : c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        switch e {
        case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])) missing"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}
