/// The IP protocols a session rule names.
public enum IPProtocol: UInt8, Sendable, Codable, CaseIterable, CustomStringConvertible {
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
