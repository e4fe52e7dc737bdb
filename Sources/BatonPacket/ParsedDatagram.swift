import BatonModel

/// An IPv4 or IPv6 datagram found in a frame, with offsets into the frame's
/// bytes. Parsing never traps: each read is bounds-checked and the first
/// problem is kept in `issue`.
public struct ParsedDatagram: Sendable {
    /// The whole frame (shared, not copied).
    public let bytes: [UInt8]
    /// First byte of the IP header.
    public let offset: Int
    public internal(set) var version: UInt8 = 0
    public internal(set) var src: IPAddress = .v4(0)
    public internal(set) var dst: IPAddress = .v4(0)
    public internal(set) var ipv4: ParsedIPv4?
    public internal(set) var ipv6: ParsedIPv6?
    /// One past the last byte, by the length field, cut to what is there.
    public internal(set) var end: Int
    /// The protocol after all extension headers (IPv4: the protocol field).
    public internal(set) var upperLayerProtocol: UInt8 = 0
    /// Where the upper-layer header (or a non-first fragment's data) starts.
    public internal(set) var upperLayerOffset: Int
    public internal(set) var tcp: ParsedTCP?
    public internal(set) var udp: ParsedUDP?
    public internal(set) var icmp: ParsedICMP?
    /// The L4 payload (after the TCP/UDP/ICMP header), else all upper-layer bytes.
    public internal(set) var payload: Range<Int>
    /// The first problem at this level (an inner datagram keeps its own).
    public internal(set) var issue: ParseIssue?
    private var innerStorage: [ParsedDatagram] = []
    private var depth = 0

    /// Nested IPIP / IPv6-in-IP datagrams are parsed this deep at most.
    static let maxDepth = 8

    /// The datagram this one carries (IP protocol 4 or 41).
    public var inner: ParsedDatagram? { innerStorage.first }

    /// True for a piece of a larger datagram. An IPv6 atomic fragment
    /// (offset 0, M=0) is whole (RFC 6946).
    public var isFragment: Bool {
        if let v4 = ipv4 { return v4.moreFragments || v4.fragmentOffset != 0 }
        guard let f = ipv6?.fragment else { return false }
        return f.more || f.offset != 0
    }

    /// A fragment other than the first carries no upper-layer header.
    public var isNonFirstFragment: Bool {
        if let v4 = ipv4 { return v4.fragmentOffset != 0 }
        return (ipv6?.fragment?.offset ?? 0) != 0
    }

    public var sourcePort: UInt16? { tcp?.sport ?? udp?.sport }
    public var destinationPort: UInt16? { tcp?.dport ?? udp?.dport }
    public var payloadBytes: ArraySlice<UInt8> { bytes[payload] }
    /// Every datagram from this one inwards.
    public var chain: [ParsedDatagram] { [self] + (inner?.chain ?? []) }

    private init(bytes: [UInt8], offset: Int, limit: Int) {
        self.bytes = bytes
        self.offset = offset
        self.end = limit
        self.upperLayerOffset = limit
        self.payload = limit..<limit
    }

    /// Parses the datagram at `offset`, reading no further than `limit`.
    /// Nil (with the reason) when not even the fixed header is there.
    static func parse(_ b: [UInt8], at offset: Int, limit: Int, ipv6: Bool, depth: Int = 0)
        -> (ParsedDatagram?, ParseIssue?) {
        let limit = min(limit, b.count)
        var d = ParsedDatagram(bytes: b, offset: offset, limit: limit)
        d.depth = depth
        let ok = ipv6 ? d.parseIPv6() : d.parseIPv4()
        guard ok else { return (nil, d.issue) }
        return (d, nil)
    }

    private mutating func note(_ layer: ParseIssue.Layer, _ kind: ParseIssue.Kind, at o: Int) {
        if issue == nil { issue = ParseIssue(layer, kind, at: o) }
    }

    private func u16(_ i: Int) -> UInt16 { bytes.u16(i) ?? 0 }
    private func u32(_ i: Int) -> UInt32 { bytes.u32(i) ?? 0 }
    private func slice(_ i: Int, _ n: Int) -> [UInt8] { bytes.bytes(i, n) ?? [] }

    /// False if the fixed 20 bytes are not all there.
    private mutating func parseIPv4() -> Bool {
        let o = offset
        guard end - o >= 20 else {
            note(.ipv4, .truncated, at: o)
            return false
        }
        let first = bytes[o]
        let ihl = Int(first & 0x0f)
        let total = Int(u16(o + 2))
        let flags = u16(o + 6)
        var v4 = ParsedIPv4(ihl: UInt8(ihl), tos: bytes[o + 1], totalLength: UInt16(total),
                            identification: u16(o + 4), reservedFlag: flags & 0x8000 != 0,
                            dontFragment: flags & 0x4000 != 0, moreFragments: flags & 0x2000 != 0,
                            fragmentOffset: flags & 0x1fff, ttl: bytes[o + 8], protocol: bytes[o + 9],
                            checksum: u16(o + 10), options: [])
        version = first >> 4
        src = .fromWire(slice(o + 12, 4))
        dst = .fromWire(slice(o + 16, 4))
        upperLayerProtocol = v4.protocol
        upperLayerOffset = o + 20
        defer { ipv4 = v4 }
        var sound = false
        if version != 4 || ihl < 5 {
            note(.ipv4, .malformed, at: o)
        } else if o + ihl * 4 > end {
            note(.ipv4, .truncated, at: o)
        } else {
            v4.options = slice(o + 20, ihl * 4 - 20)
            upperLayerOffset = o + ihl * 4
            if total < ihl * 4 {
                note(.ipv4, .malformed, at: o)
            } else if o + total > end {
                note(.ipv4, .truncated, at: o)
            } else {
                end = o + total
            }
            sound = total >= ihl * 4
        }
        payload = span(upperLayerOffset, end)
        // Upper layers only behind a sound header, and never in non-first fragments.
        if sound && v4.fragmentOffset == 0 {
            parseUpperLayer(firstFragment: v4.moreFragments)
        }
        return true
    }

    /// False if the fixed 40 bytes are not all there.
    private mutating func parseIPv6() -> Bool {
        let o = offset
        guard end - o >= 40 else {
            note(.ipv6, .truncated, at: o)
            return false
        }
        let word = u32(o)
        version = UInt8(word >> 28)
        src = .fromWire(slice(o + 8, 16))
        dst = .fromWire(slice(o + 24, 16))
        var v6 = ParsedIPv6(trafficClass: UInt8(truncatingIfNeeded: word >> 20), flowLabel: word & 0xfffff,
                            payloadLength: u16(o + 4), nextHeader: bytes[o + 6], hopLimit: bytes[o + 7],
                            extensions: [], finalDestination: dst)
        upperLayerProtocol = v6.nextHeader
        upperLayerOffset = o + 40
        defer { ipv6 = v6 }
        guard version == 6 else {
            note(.ipv6, .malformed, at: o)
            payload = span(upperLayerOffset, end)
            return true
        }
        if o + 40 + Int(v6.payloadLength) > end {
            note(.ipv6, .truncated, at: o)
        } else {
            end = o + 40 + Int(v6.payloadLength)
        }
        var next = v6.nextHeader
        var at = o + 40
        var complete = true
        var nonFirstFragment = false
        while IPProtocolNumber.ipv6Extensions.contains(next) && !nonFirstFragment {
            guard at + 2 <= end else {
                note(.ipv6Extension, .truncated, at: at)
                complete = false
                break
            }
            let lengthByte = Int(bytes[at + 1])
            let length = next == IPProtocolNumber.fragment ? 8
                : next == IPProtocolNumber.authentication ? (lengthByte + 2) * 4 : (lengthByte + 1) * 8
            guard at + length <= end else {
                note(.ipv6Extension, .truncated, at: at)
                complete = false
                break
            }
            var ext = ParsedExtensionHeader(type: next, nextHeader: bytes[at], offset: at, length: length)
            if next == IPProtocolNumber.fragment {
                let field = u16(at + 2)
                ext.fragment = .init(offset: field >> 3, more: field & 1 != 0, identification: u32(at + 4))
                nonFirstFragment = field >> 3 != 0
            } else if next == IPProtocolNumber.routing {
                let type = bytes[at + 2]
                let addresses = [0, 2, 4].contains(type)
                    ? stride(from: at + 8, to: at + length - 15, by: 16).map { IPAddress.fromWire(slice($0, 16)) } : []
                ext.routing = .init(type: type, segmentsLeft: bytes[at + 3], addresses: addresses)
                if let final = routingFinalDestination(type: type, segmentsLeft: bytes[at + 3], addresses: addresses) {
                    v6.finalDestination = final
                }
            }
            v6.extensions.append(ext)
            next = ext.nextHeader
            at += length
        }
        upperLayerOffset = at
        payload = span(at, end)
        upperLayerProtocol = next
        if complete && !nonFirstFragment {
            parseUpperLayer(firstFragment: v6.fragment?.more == true)
        }
        return true
    }

    /// TCP, UDP, ICMP/ICMPv6 headers, or an encapsulated datagram. In a first
    /// fragment the L4 data is partial, so lengths are not checked against it.
    private mutating func parseUpperLayer(firstFragment: Bool) {
        let s = upperLayerOffset
        let available = end - s
        switch upperLayerProtocol {
        case IPProtocolNumber.tcp:
            guard available >= 20 else { return note(.tcp, .truncated, at: s) }
            let words = bytes[s + 12] >> 4
            guard words >= 5 else { return note(.tcp, .malformed, at: s) }
            guard Int(words) * 4 <= available else { return note(.tcp, .truncated, at: s) }
            tcp = ParsedTCP(sport: u16(s), dport: u16(s + 2), seq: u32(s + 4), ack: u32(s + 8), dataOffset: words,
                            flags: TCPFlags(rawValue: u16(s + 12)), window: u16(s + 14), checksum: u16(s + 16),
                            urgentPointer: u16(s + 18), options: slice(s + 20, Int(words) * 4 - 20))
            payload = span(s + Int(words) * 4, end)
        case IPProtocolNumber.udp:
            guard available >= 8 else { return note(.udp, .truncated, at: s) }
            let length = Int(u16(s + 4))
            udp = ParsedUDP(sport: u16(s), dport: u16(s + 2), length: UInt16(length), checksum: u16(s + 6))
            payload = span(s + 8, end)
            guard !firstFragment else { return }
            if length < 8 {
                note(.udp, .malformed, at: s)
            } else if length > available {
                note(.udp, .truncated, at: s)
            } else {
                payload = span(s + 8, s + length)     // bytes past the UDP length are not payload
            }
        case IPProtocolNumber.icmp, IPProtocolNumber.icmpv6:
            let v6 = upperLayerProtocol == IPProtocolNumber.icmpv6
            let layer: ParseIssue.Layer = v6 ? .icmpv6 : .icmp
            guard available >= 4 else { return note(layer, .truncated, at: s) }
            var m = ParsedICMP(isV6: v6, type: bytes[s], code: bytes[s + 1], checksum: u16(s + 2))
            defer { icmp = m }
            guard available >= 8 else {
                payload = span(s + 4, end)
                return note(layer, .truncated, at: s)
            }
            payload = span(s + 8, end)
            if m.isEcho {
                m.identifier = u16(s + 4)
                m.sequence = u16(s + 6)
            }
            if v6 && (m.type == 135 || m.type == 136) {
                guard available >= 24 else { return note(layer, .truncated, at: s) }
                let flags = bytes[s + 4]
                let na = m.type == 136
                var nd = ParsedNeighborDiscovery(target: .fromWire(slice(s + 8, 16)), router: na && flags & 0x80 != 0,
                                                 solicited: na && flags & 0x40 != 0, override: na && flags & 0x20 != 0)
                var at = s + 24
                while at + 2 <= end {
                    let length = Int(bytes[at + 1]) * 8
                    guard length > 0, at + length <= end else { note(layer, .malformed, at: s); break }
                    if length >= 8 && (bytes[at] == 1 || bytes[at] == 2) {
                        let mac = MACAddress.fromWire(slice(at + 2, 6))
                        if bytes[at] == 1 { nd.sourceLinkLayer = mac } else { nd.targetLinkLayer = mac }
                    }
                    at += length
                }
                m.neighborDiscovery = nd
                payload = span(s + 24, end)
            }
        case IPProtocolNumber.ipip, IPProtocolNumber.ipv6:
            guard depth < Self.maxDepth else { return note(.encapsulation, .malformed, at: s) }
            let (inner, problem) = Self.parse(bytes, at: s, limit: end,
                                              ipv6: upperLayerProtocol == IPProtocolNumber.ipv6, depth: depth + 1)
            if let inner { innerStorage = [inner] } else if let problem { note(problem.layer, problem.kind, at: problem.offset) }
        default:
            break
        }
    }
}
