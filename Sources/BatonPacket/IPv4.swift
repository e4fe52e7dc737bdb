import BatonModel

/// An IPv4 header (RFC 791). Every field is settable; the `…Override` fields
/// and `version`/`ihl` exist to build malformed packets on purpose.
public struct IPv4Header: Hashable, Sendable {
    public var src: IPAddress
    public var dst: IPAddress
    public var ttl: UInt8
    public var tos: UInt8
    public var identification: UInt16
    public var dontFragment: Bool
    public var moreFragments: Bool
    /// The reserved ("evil") flag bit.
    public var reservedFlag: Bool
    /// In 8-byte units, as on the wire (13 bits).
    public var fragmentOffset: UInt16
    /// Raw option bytes; zero-padded (EOL) to a multiple of 4.
    public var options: [UInt8]
    public var protocolOverride: UInt8?
    public var totalLengthOverride: UInt16?
    public var checksumOverride: UInt16?
    public var version: UInt8
    /// Written instead of the computed IHL; the options are still all written.
    public var ihlOverride: UInt8?

    public init(src: IPAddress, dst: IPAddress, ttl: UInt8 = 64, tos: UInt8 = 0,
                identification: UInt16 = 0, dontFragment: Bool = false, moreFragments: Bool = false,
                fragmentOffset: UInt16 = 0, options: [UInt8] = [], reservedFlag: Bool = false,
                protocolOverride: UInt8? = nil, totalLengthOverride: UInt16? = nil,
                checksumOverride: UInt16? = nil, version: UInt8 = 4, ihlOverride: UInt8? = nil) {
        self.src = src
        self.dst = dst
        self.ttl = ttl
        self.tos = tos
        self.identification = identification
        self.dontFragment = dontFragment
        self.moreFragments = moreFragments
        self.reservedFlag = reservedFlag
        self.fragmentOffset = fragmentOffset
        self.options = options
        self.protocolOverride = protocolOverride
        self.totalLengthOverride = totalLengthOverride
        self.checksumOverride = checksumOverride
        self.version = version
        self.ihlOverride = ihlOverride
    }

    /// Bytes actually written: 20 plus the padded options.
    public var headerLength: Int { 20 + roundUp(options.count, to: 4) }

    /// The header for a payload of `payloadLength` bytes of protocol `proto`.
    public func bytes(protocol proto: UInt8, payloadLength: Int) -> [UInt8] {
        let opts = options.zeroPadded(toMultipleOf: 4)
        precondition(opts.count <= 40, "IPv4 options exceed 40 bytes")
        let total = headerLength + payloadLength
        precondition(totalLengthOverride != nil || total <= 0xffff, "IPv4 datagram exceeds 65535 bytes")
        var h: [UInt8] = []
        h.append((version & 0x0f) << 4 | (ihlOverride ?? UInt8(headerLength / 4)) & 0x0f)
        h.append(tos)
        h.put16(totalLengthOverride ?? UInt16(total))
        h.put16(identification)
        let flags: UInt16 = (reservedFlag ? 0x8000 : 0) | (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0)
        h.put16(flags | fragmentOffset & 0x1fff)
        h.append(ttl)
        h.append(protocolOverride ?? proto)
        h.put16(0)
        h += src.wire(.v4) + dst.wire(.v4) + opts
        h.set16(checksumOverride ?? internetChecksum(h), at: 10)
        return h
    }
}
