/// Which packets a session rule takes, most specific first. Mirrors BATON_MATCH_*.
public enum MatchKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// source address and port, destination address and port, protocol
    case exact = 0
    /// any source port
    case anySourcePort = 1
    /// any source address and port
    case anySource = 2
    /// any source address and port, any destination port
    case anyPeer = 3

    public var description: String {
        switch self {
        case .exact: return "exact"
        case .anySourcePort: return "any-sport"
        case .anySource: return "any-src"
        case .anyPeer: return "any-peer"
        }
    }
}

/// Encoded by name ("any-sport").
extension MatchKind: TextCoded {
    public init?(text: String) {
        guard let k = MatchKind.allCases.first(where: { $0.description == text }) else { return nil }
        self = k
    }
    public var text: String { description }
    public static var expectedText: String { "a match kind: exact, any-sport, any-src or any-peer" }
    public init(from decoder: Decoder) throws { try self.init(textFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeText(to: encoder) }
}

/// The 5-tuple side of a rule. Packets are matched as the correspondent sends
/// them: source = correspondent, destination = the taken-over address.
/// A nil field is a wildcard; which fields may be nil is fixed by `kind`.
/// For ICMP/ICMPv6 echo the identifier stands in the source port and the
/// destination port is always 0.
public struct SessionMatch: Hashable, Sendable, Codable, CustomStringConvertible {
    public var proto: IPProtocol
    public var source: IPAddress?
    public var sourcePort: UInt16?
    public var destination: IPAddress
    public var destinationPort: UInt16?

    public init(proto: IPProtocol, source: IPAddress?, sourcePort: UInt16?, destination: IPAddress, destinationPort: UInt16?) {
        self.proto = proto
        self.source = source
        self.sourcePort = sourcePort
        self.destination = destination
        self.destinationPort = destinationPort
    }

    private var isICMP: Bool { proto == .icmp || proto == .icmpv6 }

    /// The match kind these fields make, or an error for a combination the
    /// data plane cannot look up (a source port without a source address...).
    public func kind() throws(ModelError) -> MatchKind {
        let dportGiven = destinationPort != nil || isICMP
        switch (source != nil, sourcePort != nil, dportGiven) {
        case (true, true, true): return .exact
        case (true, false, true): return .anySourcePort
        case (false, false, true): return .anySource
        case (false, false, false): return .anyPeer
        default:
            throw .invalid("unsupported wildcard: a rule may leave out the source port, then the source address, then the destination port, in that order")
        }
    }

    public func validate() throws(ModelError) {
        _ = try validatedKind()
    }

    /// `validate`, and the kind it found.
    public func validatedKind() throws(ModelError) -> MatchKind {
        let kind = try kind()
        if let s = source, s.family != destination.family {
            throw .invalid("source \(s) and destination \(destination) are of different families")
        }
        if proto == .icmp && destination.family != .v4 { throw .invalid("icmp rules are for IPv4; use icmpv6") }
        if proto == .icmpv6 && destination.family != .v6 { throw .invalid("icmpv6 rules are for IPv6; use icmp") }
        if isICMP, let p = destinationPort, p != 0 {
            throw .invalid("\(proto) has no destination port; the echo identifier is the source port")
        }
        return kind
    }

    public var description: String {
        let src = source.map { $0.family == .v6 ? "[\($0)]" : "\($0)" } ?? "*"
        let dst = destination.family == .v6 ? "[\(destination)]" : "\(destination)"
        let sp = sourcePort.map(String.init) ?? "*"
        let dp = isICMP ? "0" : (destinationPort.map(String.init) ?? "*")
        return "\(proto) \(src):\(sp) -> \(dst):\(dp)"
    }
}

/// "These sessions now go there."
public struct SessionRule: Equatable, Sendable, Codable {
    public var match: SessionMatch
    public var forward: Forwarding

    public init(match: SessionMatch, forward: Forwarding) {
        self.match = match
        self.forward = forward
    }

    public func validate() throws(ModelError) {
        try match.validate()
        try forward.validate(for: match.destination.family)
        try Self.check(forward.action, for: match.proto)
    }

    /// What an action asks of the match's protocol: a relay rewrites ports, so UDP
    /// and TCP only (the data plane would drop anything else as relay-dropped).
    @inline(__always)
    public static func check(_ action: Forwarding.Action, for proto: IPProtocol) throws(ModelError) {
        if action == .relay, proto != .udp, proto != .tcp {
            throw .invalid("relay rewrites udp and tcp only, not \(proto)")
        }
    }
}
