// The one Internet checksum (RFC 1071) used by the builder and the verifier.

/// One's-complement sum of big-endian 16-bit words (an odd last byte is padded
/// with zero), folded until no carry is left. Katran saw ~1 bad checksum in 100k
/// packets with a single fold, hence the loop.
public func onesComplementSum<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
    var sum: UInt64 = 0
    var high = true
    for b in bytes {
        sum += high ? UInt64(b) << 8 : UInt64(b)
        high.toggle()
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16)
    }
    return UInt16(sum)
}

/// The Internet checksum: the complement of the folded sum. Summing data that
/// includes a correct checksum gives 0.
public func internetChecksum<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
    ~onesComplementSum(bytes)
}

/// The TCP/UDP/ICMPv6 pseudo-header: RFC 793/768 form for 4-byte addresses,
/// RFC 8200 §8.1 form (32-bit length, next header last) for 16-byte ones.
public func pseudoHeader(source: [UInt8], destination: [UInt8], protocol proto: UInt8, length: Int) -> [UInt8] {
    var p = source + destination
    if source.count == 4 {
        p += [0, proto]
        p.put16(UInt16(truncatingIfNeeded: length))
    } else {
        p.put32(UInt32(truncatingIfNeeded: length))
        p += [0, 0, 0, proto]
    }
    return p
}
