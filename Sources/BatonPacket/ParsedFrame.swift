import BatonModel

/// A received frame, parsed as deep as it goes. The initializer throws only
/// when the Ethernet header or a VLAN tag is cut short; deeper problems leave
/// the layers parsed so far and are reported by `issue`.
public struct ParsedFrame: Sendable {
    public let bytes: [UInt8]
    public let dst: MACAddress
    public let src: MACAddress
    /// Outermost first.
    public let vlans: [VLANTag]
    /// The EtherType after the tags.
    public let etherType: UInt16
    public let networkOffset: Int
    public let arp: ParsedARP?
    /// The outermost IP datagram; `ip?.inner` for an encapsulated one.
    public let ip: ParsedDatagram?
    private let networkIssue: ParseIssue?

    public init(_ bytes: [UInt8]) throws(ParseIssue) {
        guard bytes.count >= 14 else { throw ParseIssue(.ethernet, .truncated, at: 0) }
        self.bytes = bytes
        dst = .fromWire(Array(bytes[0..<6]))
        src = .fromWire(Array(bytes[6..<12]))
        var at = 12
        var type = bytes.u16(at) ?? 0
        var tags: [VLANTag] = []
        while EtherType.vlanTPIDs.contains(type) {
            guard let tci = bytes.u16(at + 2), let next = bytes.u16(at + 4) else {
                throw ParseIssue(.vlan, .truncated, at: at)
            }
            tags.append(VLANTag(tpid: type, tci: tci))
            type = next
            at += 4
        }
        vlans = tags
        etherType = type
        networkOffset = at + 2
        var arp: ParsedARP?
        var ip: ParsedDatagram?
        var problem: ParseIssue?
        switch type {
        case EtherType.arp:
            (arp, problem) = Self.parseARP(bytes, at: networkOffset)
        case EtherType.ipv4, EtherType.ipv6:
            (ip, problem) = ParsedDatagram.parse(bytes, at: networkOffset, limit: bytes.count,
                                                 ipv6: type == EtherType.ipv6)
        default:
            break
        }
        self.arp = arp
        self.ip = ip
        networkIssue = problem
    }

    /// Every IP datagram, outermost first.
    public var datagrams: [ParsedDatagram] { ip?.chain ?? [] }
    public var innermost: ParsedDatagram? { datagrams.last }

    /// The first problem found at any layer, outermost first.
    public var issue: ParseIssue? {
        networkIssue ?? datagrams.lazy.compactMap(\.issue).first
    }

    /// Everything after the network header's start.
    public var networkBytes: ArraySlice<UInt8> { bytes[networkOffset...] }

    private static func parseARP(_ b: [UInt8], at o: Int) -> (ParsedARP?, ParseIssue?) {
        guard let hw = b.u16(o), let proto = b.u16(o + 2), let hl = b.u8(o + 4), let pl = b.u8(o + 5),
              let op = b.u16(o + 6) else {
            return (nil, ParseIssue(.arp, .truncated, at: o))
        }
        let h = Int(hl), p = Int(pl)
        guard let sha = b.bytes(o + 8, h), let spa = b.bytes(o + 8 + h, p),
              let tha = b.bytes(o + 8 + h + p, h), let tpa = b.bytes(o + 8 + 2 * h + p, p) else {
            return (nil, ParseIssue(.arp, .truncated, at: o))
        }
        return (ParsedARP(hardwareType: hw, protocolType: proto, hardwareLength: hl, protocolLength: pl,
                          operation: op, senderHardware: sha, senderProtocol: spa,
                          targetHardware: tha, targetProtocol: tpa), nil)
    }
}
