import BatonModel

// Big-endian writers and bounds-checked readers shared by every header.

extension Array where Element == UInt8 {
    mutating func put16(_ v: UInt16) {
        append(UInt8(v >> 8))
        append(UInt8(truncatingIfNeeded: v))
    }

    mutating func put32(_ v: UInt32) {
        put16(UInt16(v >> 16))
        put16(UInt16(truncatingIfNeeded: v))
    }

    mutating func set16(_ v: UInt16, at i: Int) {
        self[i] = UInt8(v >> 8)
        self[i + 1] = UInt8(truncatingIfNeeded: v)
    }

    /// Options padded with zero bytes (end-of-list) to a multiple of `m`.
    func zeroPadded(toMultipleOf m: Int) -> [UInt8] {
        self + [UInt8](repeating: 0, count: roundUp(count, to: m) - count)
    }

    /// Reads a byte, or nil past the end (input-derived offsets never trap).
    func u8(_ i: Int) -> UInt8? {
        i >= 0 && i < count ? self[i] : nil
    }

    func u16(_ i: Int) -> UInt16? {
        guard i >= 0, i + 2 <= count else { return nil }
        return UInt16(self[i]) << 8 | UInt16(self[i + 1])
    }

    func u32(_ i: Int) -> UInt32? {
        guard let hi = u16(i), let lo = u16(i + 2) else { return nil }
        return UInt32(hi) << 16 | UInt32(lo)
    }

    /// `n` bytes from `i`, or nil if they are not all there.
    func bytes(_ i: Int, _ n: Int) -> [UInt8]? {
        guard i >= 0, n >= 0, i + n <= count else { return nil }
        return Array(self[i..<(i + n)])
    }
}

/// A range that never traps: an inverted pair gives an empty range at `lower`.
func span(_ lower: Int, _ upper: Int) -> Range<Int> {
    lower..<max(lower, upper)
}

func roundUp(_ n: Int, to m: Int) -> Int {
    (n + m - 1) / m * m
}

extension IPAddress {
    /// Wire bytes checked against the family a header needs: a wrong family is a
    /// programming error in the caller, not input data.
    func wire(_ family: Family) -> [UInt8] {
        let w = wireBytes
        precondition(self.family == family && w.count == (family == .v4 ? 4 : 16),
                     "\(self) is not an \(family.rawValue) address")
        return w
    }

    /// From 4 or 16 wire bytes already bounds-checked by the caller.
    static func fromWire(_ b: [UInt8]) -> IPAddress {
        if b.count == 4 {
            return .v4(UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]))
        }
        return .v6(b)
    }
}

extension MACAddress {
    /// From 6 bytes already bounds-checked by the caller.
    static func fromWire(_ b: [UInt8]) -> MACAddress {
        MACAddress(bytes: b) ?? .zero
    }
}
