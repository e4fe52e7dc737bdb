import BatonModel

// Checksum verification over received bytes. Independent of the builder: it
// reads addresses, lengths and the final destination from the parsed wire
// bytes and sums them with the checksum field in place, which must give 0.
// Shared with the builder: only `internetChecksum` and `pseudoHeader`.

public enum ChecksumStatus: Hashable, Sendable {
    case valid
    case invalid
    /// UDP over IPv4 with checksum 0: none was computed.
    case absent
    /// The protocol carries no checksum we check (IPIP, ESP, unknown).
    case notApplicable
    /// A fragment: only the reassembled datagram can be checked.
    case fragment
    /// The upper-layer header or the datagram is cut short.
    case truncated

    /// Valid, or legitimately without a checksum.
    public var isAcceptable: Bool { self == .valid || self == .absent || self == .notApplicable }
}

/// True if `d` is IPv4 and its header sums to 0.
public func verifyIPv4HeaderChecksum(_ d: ParsedDatagram) -> Bool {
    guard let v4 = d.ipv4, v4.ihl >= 5, let header = d.bytes.bytes(d.offset, Int(v4.ihl) * 4) else { return false }
    return internetChecksum(header) == 0
}

/// The TCP, UDP, ICMP or ICMPv6 checksum of `d` (over IPv4 or IPv6).
public func verifyL4Checksum(_ d: ParsedDatagram) -> ChecksumStatus {
    if d.isFragment { return .fragment }
    // A bad IP header hides where the upper layer is; an L4 problem does not
    // stop us from summing its bytes.
    if let issue = d.issue, [.ipv4, .ipv6, .ipv6Extension].contains(issue.layer) {
        return issue.kind == .truncated ? .truncated : .invalid
    }
    let start = d.upperLayerOffset
    let segment = d.bytes[span(start, d.end)]
    let isV6 = d.ipv6 != nil
    let source = d.src.wireBytes
    let destination = (d.ipv6?.finalDestination ?? d.dst).wireBytes

    func sumsToZero(_ proto: UInt8, _ bytes: ArraySlice<UInt8>, pseudo: Bool) -> ChecksumStatus {
        let p = pseudo ? pseudoHeader(source: source, destination: destination, protocol: proto, length: bytes.count) : []
        return internetChecksum(p + bytes) == 0 ? .valid : .invalid
    }

    switch d.upperLayerProtocol {
    case IPProtocolNumber.tcp:
        guard segment.count >= 20 else { return .truncated }
        return sumsToZero(IPProtocolNumber.tcp, segment, pseudo: true)
    case IPProtocolNumber.udp:
        guard segment.count >= 8, let length = d.bytes.u16(start + 4), let checksum = d.bytes.u16(start + 6) else {
            return .truncated
        }
        if checksum == 0 { return isV6 ? .invalid : .absent }   // RFC 8200 §8.1: mandatory over IPv6
        guard Int(length) >= 8, Int(length) <= segment.count else { return .invalid }
        return sumsToZero(IPProtocolNumber.udp, d.bytes[start..<(start + Int(length))], pseudo: true)
    case IPProtocolNumber.icmp:
        guard segment.count >= 8 else { return .truncated }
        return sumsToZero(IPProtocolNumber.icmp, segment, pseudo: false)
    case IPProtocolNumber.icmpv6:
        guard segment.count >= 8 else { return .truncated }
        return sumsToZero(IPProtocolNumber.icmpv6, segment, pseudo: true)
    default:
        return .notApplicable
    }
}

/// Outermost datagram of a frame; false if the frame carries no IPv4.
public func verifyIPv4HeaderChecksum(_ frame: ParsedFrame) -> Bool {
    frame.ip.map(verifyIPv4HeaderChecksum) ?? false
}

/// The innermost datagram's upper-layer checksum (outer tunnel headers carry none).
public func verifyL4Checksum(_ frame: ParsedFrame) -> ChecksumStatus {
    frame.innermost.map(verifyL4Checksum) ?? .notApplicable
}

/// Every IPv4 header at every level valid and every upper-layer checksum acceptable.
public func verifyAllChecksums(_ frame: ParsedFrame) -> Bool {
    frame.datagrams.allSatisfy { d in
        (d.ipv4 == nil || verifyIPv4HeaderChecksum(d)) && verifyL4Checksum(d).isAcceptable
    }
}
