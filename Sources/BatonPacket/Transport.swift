import BatonModel

/// TCP flag bits as in bytes 12-13 of the header (NS/AE is bit 8).
public struct TCPFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x1ff }

    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
    public static let ece = TCPFlags(rawValue: 0x40)
    public static let cwr = TCPFlags(rawValue: 0x80)
    public static let ns = TCPFlags(rawValue: 0x100)
}

public struct TCPSegment: Hashable, Sendable {
    public var sport: UInt16
    public var dport: UInt16
    public var seq: UInt32
    public var ack: UInt32
    public var flags: TCPFlags
    public var window: UInt16
    public var urgentPointer: UInt16
    /// Raw option bytes; zero-padded (EOL) to a multiple of 4.
    public var options: [UInt8]
    /// Written instead of the computed data offset (32-bit words).
    public var dataOffsetOverride: UInt8?
    public var checksumOverride: UInt16?
    public var payload: [UInt8]

    public init(sport: UInt16, dport: UInt16, seq: UInt32 = 0, ack: UInt32 = 0, flags: TCPFlags = [.ack],
                window: UInt16 = 65535, urgentPointer: UInt16 = 0, options: [UInt8] = [],
                dataOffsetOverride: UInt8? = nil, checksumOverride: UInt16? = nil, payload: [UInt8] = []) {
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.urgentPointer = urgentPointer
        self.options = options
        self.dataOffsetOverride = dataOffsetOverride
        self.checksumOverride = checksumOverride
        self.payload = payload
    }

    /// Header and payload with the checksum field zero.
    func unsummed() -> [UInt8] {
        let opts = options.zeroPadded(toMultipleOf: 4)
        precondition(opts.count <= 40, "TCP options exceed 40 bytes")
        var b: [UInt8] = []
        b.put16(sport)
        b.put16(dport)
        b.put32(seq)
        b.put32(ack)
        let offset = dataOffsetOverride ?? UInt8((20 + opts.count) / 4)
        b.append((offset & 0x0f) << 4 | UInt8(flags.rawValue >> 8))
        b.append(UInt8(truncatingIfNeeded: flags.rawValue))
        b.put16(window)
        b.put16(0)
        b.put16(urgentPointer)
        return b + opts + payload
    }
}

public struct UDPDatagram: Hashable, Sendable {
    public var sport: UInt16
    public var dport: UInt16
    public var payload: [UInt8]
    /// false writes 0 ("no checksum", legal over IPv4 only).
    public var checksum: Bool
    public var checksumOverride: UInt16?
    public var lengthOverride: UInt16?

    public init(sport: UInt16, dport: UInt16, payload: [UInt8] = [], checksum: Bool = true,
                checksumOverride: UInt16? = nil, lengthOverride: UInt16? = nil) {
        self.sport = sport
        self.dport = dport
        self.payload = payload
        self.checksum = checksum
        self.checksumOverride = checksumOverride
        self.lengthOverride = lengthOverride
    }

    func unsummed() -> [UInt8] {
        var b: [UInt8] = []
        b.put16(sport)
        b.put16(dport)
        b.put16(lengthOverride ?? UInt16(truncatingIfNeeded: 8 + payload.count))
        b.put16(0)
        return b + payload
    }
}

/// An ICMP or ICMPv6 message: type, code, checksum, then `body` (the rest of
/// the header, e.g. identifier and sequence, and the data).
public struct ICMPMessage: Hashable, Sendable {
    public var type: UInt8
    public var code: UInt8
    public var body: [UInt8]
    public var checksumOverride: UInt16?

    public init(type: UInt8, code: UInt8 = 0, body: [UInt8] = [], checksumOverride: UInt16? = nil) {
        self.type = type
        self.code = code
        self.body = body
        self.checksumOverride = checksumOverride
    }

    /// Echo layout: identifier, sequence number, data.
    public init(type: UInt8, identifier: UInt16, sequence: UInt16, payload: [UInt8]) {
        var body: [UInt8] = []
        body.put16(identifier)
        body.put16(sequence)
        self.init(type: type, body: body + payload)
    }

    func unsummed() -> [UInt8] {
        [type, code, 0, 0] + body
    }
}

/// What an IP header carries.
public enum Transport: Hashable, Sendable {
    case tcp(TCPSegment)
    case udp(UDPDatagram)
    case icmp(ICMPMessage)
    case icmpv6(ICMPMessage)
    /// An encapsulated datagram: IPIP (4) for IPv4 inside, 41 for IPv6 inside.
    indirect case ip(IPDatagram)
    /// Any protocol's bytes as given (no checksum is computed).
    case raw(protocol: UInt8, bytes: [UInt8])

    public static func icmpEchoRequest(id: UInt16, sequence: UInt16, payload: [UInt8] = []) -> Transport {
        .icmp(ICMPMessage(type: 8, identifier: id, sequence: sequence, payload: payload))
    }

    public static func icmpEchoReply(id: UInt16, sequence: UInt16, payload: [UInt8] = []) -> Transport {
        .icmp(ICMPMessage(type: 0, identifier: id, sequence: sequence, payload: payload))
    }

    public static func icmpv6EchoRequest(id: UInt16, sequence: UInt16, payload: [UInt8] = []) -> Transport {
        .icmpv6(ICMPMessage(type: 128, identifier: id, sequence: sequence, payload: payload))
    }

    public static func icmpv6EchoReply(id: UInt16, sequence: UInt16, payload: [UInt8] = []) -> Transport {
        .icmpv6(ICMPMessage(type: 129, identifier: id, sequence: sequence, payload: payload))
    }

    public var protocolNumber: UInt8 {
        switch self {
        case .tcp: return IPProtocolNumber.tcp
        case .udp: return IPProtocolNumber.udp
        case .icmp: return IPProtocolNumber.icmp
        case .icmpv6: return IPProtocolNumber.icmpv6
        case .ip(let inner): return inner.isIPv4 ? IPProtocolNumber.ipip : IPProtocolNumber.ipv6
        case .raw(let p, _): return p
        }
    }

    /// The upper-layer bytes with their checksum, computed over the
    /// pseudo-header of `source` and `destination` (4 or 16 bytes each; for
    /// IPv6 the final destination).
    public func bytes(source: [UInt8], destination: [UInt8]) -> [UInt8] {
        func sealed(_ b: [UInt8], at offset: Int, pseudo: Bool, override: UInt16?) -> [UInt8] {
            let p = pseudo ? pseudoHeader(source: source, destination: destination,
                                          protocol: protocolNumber, length: b.count) : []
            var out = b
            out.set16(override ?? internetChecksum(p + b), at: offset)
            return out
        }
        switch self {
        case .tcp(let t):
            return sealed(t.unsummed(), at: 16, pseudo: true, override: t.checksumOverride)
        case .udp(let u):
            if let o = u.checksumOverride { return sealed(u.unsummed(), at: 6, pseudo: false, override: o) }
            guard u.checksum else { return u.unsummed() }
            var b = sealed(u.unsummed(), at: 6, pseudo: true, override: nil)
            // RFC 768: a computed 0 is sent as all ones; 0 means "no checksum".
            if b[6] == 0 && b[7] == 0 { b.set16(0xffff, at: 6) }
            return b
        case .icmp(let m):
            return sealed(m.unsummed(), at: 2, pseudo: false, override: m.checksumOverride)
        case .icmpv6(let m):
            return sealed(m.unsummed(), at: 2, pseudo: true, override: m.checksumOverride)
        case .ip(let inner):
            return inner.bytes
        case .raw(_, let b):
            return b
        }
    }
}
