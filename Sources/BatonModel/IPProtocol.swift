/// The IP protocols a session rule names.
public enum IPProtocol: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case icmp = 1
    case tcp = 6
    case udp = 17
    case icmpv6 = 58

    public init?(name: String) {
        switch name.lowercased() {
        case "icmp": self = .icmp
        case "tcp": self = .tcp
        case "udp": self = .udp
        case "icmpv6", "icmp6", "ipv6-icmp": self = .icmpv6
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .icmp: return "icmp"
        case .tcp: return "tcp"
        case .udp: return "udp"
        case .icmpv6: return "icmpv6"
        }
    }

    /// ICMP echo identifiers stand in for ports; other ICMP carries none.
    public var hasPorts: Bool { self == .tcp || self == .udp }
}

/// Encoded by name ("udp"), as people write it in files; a JSON number is read too.
extension IPProtocol: TextCoded {
    public init?(text: String) {
        self.init(name: text)
    }
    public var text: String { description }
    public static var expectedText: String { "a protocol: tcp, udp, icmp or icmpv6" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(UInt8.self), let p = IPProtocol(rawValue: n) { self = p; return }
        let s = try c.decode(String.self)
        guard let p = IPProtocol(text: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not \(Self.expectedText): \(s)")
        }
        self = p
    }
    public func encode(to encoder: Encoder) throws { try encodeText(to: encoder) }
}
