import BatonModel

/// Why parsing stopped short at some layer. `offset` is where that layer
/// starts in the frame.
public struct ParseIssue: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Layer: String, Hashable, Sendable {
        case ethernet, vlan, arp, ipv4, ipv6, ipv6Extension, tcp, udp, icmp, icmpv6, encapsulation
    }
    public enum Kind: String, Hashable, Sendable { case truncated, malformed }

    public let layer: Layer
    public let kind: Kind
    public let offset: Int

    public init(_ layer: Layer, _ kind: Kind, at offset: Int) {
        self.layer = layer
        self.kind = kind
        self.offset = offset
    }

    public var description: String { "\(kind.rawValue) \(layer.rawValue) at byte \(offset)" }
}

public struct ParsedARP: Hashable, Sendable {
    public let hardwareType: UInt16
    public let protocolType: UInt16
    public let hardwareLength: UInt8
    public let protocolLength: UInt8
    public let operation: UInt16
    public let senderHardware: [UInt8]
    public let senderProtocol: [UInt8]
    public let targetHardware: [UInt8]
    public let targetProtocol: [UInt8]

    public var senderMAC: MACAddress? { MACAddress(bytes: senderHardware) }
    public var targetMAC: MACAddress? { MACAddress(bytes: targetHardware) }
    public var senderIP: IPAddress? { senderProtocol.count == 4 ? .fromWire(senderProtocol) : nil }
    public var targetIP: IPAddress? { targetProtocol.count == 4 ? .fromWire(targetProtocol) : nil }
}

public struct ParsedIPv4: Hashable, Sendable {
    public let ihl: UInt8
    public let tos: UInt8
    public let totalLength: UInt16
    public let identification: UInt16
    public let reservedFlag: Bool
    public let dontFragment: Bool
    public let moreFragments: Bool
    /// 8-byte units.
    public let fragmentOffset: UInt16
    public let ttl: UInt8
    public let `protocol`: UInt8
    public let checksum: UInt16
    /// Bytes 20..<IHL*4 (empty if the header is malformed or cut short).
    public internal(set) var options: [UInt8]
}

public struct ParsedExtensionHeader: Hashable, Sendable {
    public struct Fragment: Hashable, Sendable {
        /// 8-byte units.
        public let offset: UInt16
        public let more: Bool
        public let identification: UInt32

        public init(offset: UInt16, more: Bool, identification: UInt32) {
            self.offset = offset
            self.more = more
            self.identification = identification
        }
    }
    public struct Routing: Hashable, Sendable {
        public let type: UInt8
        public let segmentsLeft: UInt8
        /// For types 0, 2 and 4 (same layout); empty for others.
        public let addresses: [IPAddress]

        public init(type: UInt8, segmentsLeft: UInt8, addresses: [IPAddress]) {
            self.type = type
            self.segmentsLeft = segmentsLeft
            self.addresses = addresses
        }
    }

    /// The next-header value that named this header.
    public let type: UInt8
    public let nextHeader: UInt8
    /// Where it starts in the frame, and its length in bytes.
    public let offset: Int
    public let length: Int
    public internal(set) var fragment: Fragment?
    public internal(set) var routing: Routing?
}

public struct ParsedIPv6: Hashable, Sendable {
    public let trafficClass: UInt8
    public let flowLabel: UInt32
    public let payloadLength: UInt16
    public let nextHeader: UInt8
    public let hopLimit: UInt8
    public internal(set) var extensions: [ParsedExtensionHeader]
    /// The destination an upper-layer checksum uses (RFC 8200 §8.1).
    public internal(set) var finalDestination: IPAddress

    public var fragment: ParsedExtensionHeader.Fragment? { extensions.lazy.compactMap(\.fragment).first }
}

public struct ParsedTCP: Hashable, Sendable {
    public let sport: UInt16
    public let dport: UInt16
    public let seq: UInt32
    public let ack: UInt32
    /// 32-bit words.
    public let dataOffset: UInt8
    public let flags: TCPFlags
    public let window: UInt16
    public let checksum: UInt16
    public let urgentPointer: UInt16
    public let options: [UInt8]
}

public struct ParsedUDP: Hashable, Sendable {
    public let sport: UInt16
    public let dport: UInt16
    public let length: UInt16
    public let checksum: UInt16
}

public struct ParsedNeighborDiscovery: Hashable, Sendable {
    public let target: IPAddress
    /// NA flags (all false for a solicitation).
    public let router: Bool
    public let solicited: Bool
    public let override: Bool
    public internal(set) var sourceLinkLayer: MACAddress?
    public internal(set) var targetLinkLayer: MACAddress?
}

/// ICMP or ICMPv6 (`isV6`).
public struct ParsedICMP: Hashable, Sendable {
    public let isV6: Bool
    public let type: UInt8
    public let code: UInt8
    public let checksum: UInt16
    /// Echo request/reply only.
    public internal(set) var identifier: UInt16?
    public internal(set) var sequence: UInt16?
    /// Neighbour solicitation/advertisement only.
    public internal(set) var neighborDiscovery: ParsedNeighborDiscovery?

    public var isEcho: Bool { isV6 ? type == 128 || type == 129 : type == 0 || type == 8 }
}
