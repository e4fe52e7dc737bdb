import BatonModel

/// An IPv6 extension header (RFC 8200 §4). Each writes its own "next header"
/// byte, given by the header that follows it.
public enum IPv6ExtensionHeader: Hashable, Sendable {
    /// TLV options, padded with Pad1/PadN to `length` bytes in all (a multiple
    /// of 8), or to the next multiple of 8 when `length` is nil.
    case hopByHop(options: [UInt8] = [], length: Int? = nil)
    case destinationOptions(options: [UInt8] = [], length: Int? = nil)
    /// Type 0/2 (RFC 2460/6275) and 4 (SRH, RFC 8754) share this layout: 4
    /// bytes (reserved, or SRH last entry/flags/tag) then the addresses.
    case routing(type: UInt8 = 0, segmentsLeft: UInt8, addresses: [IPAddress])
    /// `offset` in 8-byte units.
    case fragment(offset: UInt16, more: Bool, identification: UInt32)
    /// AH (RFC 4302) of `length` bytes in all (12 + ICV, ICV all zero).
    case authentication(length: Int = 24, spi: UInt32 = 0, sequence: UInt32 = 0)
    /// Anything else: `[next header] + body` is written as given.
    case other(type: UInt8, body: [UInt8])

    /// The next-header value that names this header.
    public var type: UInt8 {
        switch self {
        case .hopByHop: return IPProtocolNumber.hopByHop
        case .destinationOptions: return IPProtocolNumber.destinationOptions
        case .routing: return IPProtocolNumber.routing
        case .fragment: return IPProtocolNumber.fragment
        case .authentication: return IPProtocolNumber.authentication
        case .other(let t, _): return t
        }
    }

    /// True for the headers that stay in every fragment (RFC 8200 §4.5).
    var isPerFragment: Bool {
        switch self {
        case .hopByHop, .routing: return true
        default: return false
        }
    }

    public func bytes(nextHeader: UInt8) -> [UInt8] {
        switch self {
        case .hopByHop(let options, let length), .destinationOptions(let options, let length):
            let total = max(roundUp(2 + options.count, to: 8), length ?? 0)
            precondition(total % 8 == 0, "option header length must be a multiple of 8")
            let pad = total - 2 - options.count
            var b: [UInt8] = [nextHeader, UInt8(total / 8 - 1)] + options
            if pad == 1 {
                b.append(0)                                    // Pad1
            } else if pad > 1 {
                b += [1, UInt8(pad - 2)] + [UInt8](repeating: 0, count: pad - 2)  // PadN
            }
            return b
        case .routing(let type, let left, let addresses):
            var b: [UInt8] = [nextHeader, UInt8(2 * addresses.count), type, left]
            b += type == 4 ? [UInt8(truncatingIfNeeded: max(addresses.count - 1, 0)), 0, 0, 0] : [0, 0, 0, 0]
            for a in addresses { b += a.wire(.v6) }
            return b
        case .fragment(let offset, let more, let id):
            var b: [UInt8] = [nextHeader, 0]
            b.put16(offset << 3 | (more ? 1 : 0))
            b.put32(id)
            return b
        case .authentication(let length, let spi, let seq):
            precondition(length >= 12 && length % 4 == 0, "AH length must be >= 12 and a multiple of 4")
            var b: [UInt8] = [nextHeader, UInt8(length / 4 - 2), 0, 0]
            b.put32(spi)
            b.put32(seq)
            return b + [UInt8](repeating: 0, count: length - 12)
        case .other(_, let body):
            return [nextHeader] + body
        }
    }
}

/// Where a packet with a routing header is finally going (RFC 8200 §8.1): the
/// last address for types 0/2, the first segment for an SRH. The builder and
/// the verifier both use this rule.
func routingFinalDestination(type: UInt8, segmentsLeft: UInt8, addresses: [IPAddress]) -> IPAddress? {
    guard segmentsLeft > 0 else { return nil }
    return type == 4 ? addresses.first : addresses.last
}

/// An IPv6 header and its extension headers, in order.
public struct IPv6Header: Hashable, Sendable {
    public var src: IPAddress
    public var dst: IPAddress
    public var hopLimit: UInt8
    public var trafficClass: UInt8
    /// 20 bits.
    public var flowLabel: UInt32
    public var extensions: [IPv6ExtensionHeader]
    public var nextHeaderOverride: UInt8?
    public var payloadLengthOverride: UInt16?
    public var version: UInt8

    public init(src: IPAddress, dst: IPAddress, hopLimit: UInt8 = 64, trafficClass: UInt8 = 0,
                flowLabel: UInt32 = 0, extensions: [IPv6ExtensionHeader] = [],
                nextHeaderOverride: UInt8? = nil, payloadLengthOverride: UInt16? = nil, version: UInt8 = 6) {
        self.src = src
        self.dst = dst
        self.hopLimit = hopLimit
        self.trafficClass = trafficClass
        self.flowLabel = flowLabel
        self.extensions = extensions
        self.nextHeaderOverride = nextHeaderOverride
        self.payloadLengthOverride = payloadLengthOverride
        self.version = version
    }

    /// The destination an upper-layer checksum uses.
    public var finalDestination: IPAddress {
        for case .routing(let type, let left, let addresses) in extensions.reversed() {
            if let final = routingFinalDestination(type: type, segmentsLeft: left, addresses: addresses) {
                return final
            }
        }
        return dst
    }

    /// The fixed header followed by the extension chain ending in `upper`,
    /// for an upper-layer part of `upperLength` bytes.
    public func bytes(upperProtocol upper: UInt8, upperLength: Int) -> [UInt8] {
        let types = extensions.map(\.type)
        var chain: [UInt8] = []
        for (ext, next) in zip(extensions, types.dropFirst() + [upper]) {
            chain += ext.bytes(nextHeader: next)
        }
        let payload = chain.count + upperLength
        precondition(payloadLengthOverride != nil || payload <= 0xffff, "IPv6 payload exceeds 65535 bytes (no jumbograms)")
        var h: [UInt8] = []
        h.put32(UInt32(version & 0x0f) << 28 | UInt32(trafficClass) << 20 | flowLabel & 0xfffff)
        h.put16(payloadLengthOverride ?? UInt16(payload))
        h.append(nextHeaderOverride ?? types.first ?? upper)
        h.append(hopLimit)
        return h + src.wire(.v6) + dst.wire(.v6) + chain
    }
}
