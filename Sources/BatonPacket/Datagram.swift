import BatonModel

public enum IPHeader: Hashable, Sendable {
    case ipv4(IPv4Header)
    case ipv6(IPv6Header)
}

/// An IP header and what it carries: the unit that is fragmented, encapsulated
/// and put in a frame.
public struct IPDatagram: Hashable, Sendable {
    public var header: IPHeader
    public var transport: Transport

    public init(_ header: IPHeader, _ transport: Transport) {
        self.header = header
        self.transport = transport
    }

    public init(ipv4: IPv4Header, transport: Transport) {
        self.init(.ipv4(ipv4), transport)
    }

    public init(ipv6: IPv6Header, transport: Transport) {
        self.init(.ipv6(ipv6), transport)
    }

    public var isIPv4: Bool {
        if case .ipv4 = header { return true }
        return false
    }

    public var bytes: [UInt8] {
        switch header {
        case .ipv4(let h):
            let upper = transport.bytes(source: h.src.wire(.v4), destination: h.dst.wire(.v4))
            return h.bytes(protocol: transport.protocolNumber, payloadLength: upper.count) + upper
        case .ipv6(let h):
            let upper = transport.bytes(source: h.src.wire(.v6), destination: h.finalDestination.wire(.v6))
            return h.bytes(upperProtocol: transport.protocolNumber, upperLength: upper.count) + upper
        }
    }

    /// TOS or traffic class, which a tunnel copies by default.
    var trafficClass: UInt8 {
        switch header {
        case .ipv4(let h): return h.tos
        case .ipv6(let h): return h.trafficClass
        }
    }

    /// This datagram inside an outer IPv4 header as an RFC 2003 tunnel entry
    /// point sends it (protocol 4, or 41 for IPv6 inside): TOS copied from the
    /// inner header unless given, DF copied from an inner IPv4 header unless
    /// given, identification and TTL as configured. The inner header is not
    /// changed (decrement its TTL yourself if the entry point forwarded it).
    public func encapsulatedInIPv4(src: IPAddress, dst: IPAddress, ttl: UInt8 = 64, tos: UInt8? = nil,
                                   dontFragment: Bool? = nil, identification: UInt16 = 0) -> IPDatagram {
        var innerDF = false
        if case .ipv4(let h) = header { innerDF = h.dontFragment }
        let outer = IPv4Header(src: src, dst: dst, ttl: ttl, tos: tos ?? trafficClass,
                               identification: identification, dontFragment: dontFragment ?? innerDF)
        return IPDatagram(ipv4: outer, transport: .ip(self))
    }

    /// This datagram inside an outer IPv6 header as an RFC 2473 tunnel entry
    /// point sends it (next header 41, or 4 for IPv4 inside): traffic class
    /// copied from the inner header unless given, flow label and hop limit as
    /// configured. No tunnel encapsulation limit option is added.
    public func encapsulatedInIPv6(src: IPAddress, dst: IPAddress, hopLimit: UInt8 = 64,
                                   trafficClass: UInt8? = nil, flowLabel: UInt32 = 0) -> IPDatagram {
        let outer = IPv6Header(src: src, dst: dst, hopLimit: hopLimit,
                               trafficClass: trafficClass ?? self.trafficClass, flowLabel: flowLabel)
        return IPDatagram(ipv6: outer, transport: .ip(self))
    }
}
