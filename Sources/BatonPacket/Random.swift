import BatonModel

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and reproducible from one
/// seed, for randomized tests that must replay.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// One change to a frame's bytes; a value so a failing case can be printed and replayed.
public enum FrameMutation: Hashable, Sendable {
    /// Flip one bit at each of these bit positions.
    case flipBits([Int])
    case truncate(to: Int)
    case extend(with: [UInt8])
    /// Overwrite bytes at `offset` (a header field, or anywhere).
    case overwrite(offset: Int, bytes: [UInt8])

    public func apply(to frame: [UInt8]) -> [UInt8] {
        var b = frame
        switch self {
        case .flipBits(let bits):
            for bit in bits where bit >= 0 && bit / 8 < b.count { b[bit / 8] ^= 1 << UInt8(bit % 8) }
        case .truncate(let n):
            b = Array(b.prefix(max(0, n)))
        case .extend(let tail):
            b += tail
        case .overwrite(let offset, let bytes):
            for (i, v) in bytes.enumerated() where offset + i >= 0 && offset + i < b.count { b[offset + i] = v }
        }
        return b
    }
}

/// Random mutations for fuzz-like tests: bit flips, truncation, extension and,
/// most often, a header field (lengths, types, offsets found by parsing the
/// frame) set to a random or a boundary value.
public enum FrameMutator {
    /// Header fields worth corrupting: (offset, width in bytes).
    public static func headerFields(of frame: [UInt8]) -> [(offset: Int, width: Int)] {
        guard let p = try? ParsedFrame(frame) else { return [(12, 2)] }
        var f: [(Int, Int)] = [(p.networkOffset - 2, 2)]
        for i in p.vlans.indices { f += [(12 + 4 * i, 2), (14 + 4 * i, 2)] }
        if p.arp != nil { f += [(p.networkOffset + 4, 1), (p.networkOffset + 5, 1), (p.networkOffset + 6, 2)] }
        for d in p.datagrams {
            let o = d.offset
            if d.ipv4 != nil {
                f += [(o, 1), (o + 2, 2), (o + 6, 2), (o + 9, 1), (o + 10, 2)]
            } else {
                f += [(o, 1), (o + 4, 2), (o + 6, 1)]
                for e in d.ipv6?.extensions ?? [] { f += [(e.offset, 1), (e.offset + 1, 1), (e.offset + 2, 2)] }
            }
            let s = d.upperLayerOffset
            if d.tcp != nil { f += [(s + 12, 1), (s + 13, 1), (s + 16, 2)] }
            if d.udp != nil { f += [(s + 4, 2), (s + 6, 2)] }
            if d.icmp != nil { f += [(s, 1), (s + 2, 2)] }
        }
        return f
    }

    public static func randomMutation(of frame: [UInt8], using g: inout some RandomNumberGenerator) -> FrameMutation {
        let n = frame.count
        switch Int.random(in: 0..<8, using: &g) {
        case 0:
            return .flipBits((0..<Int.random(in: 1...4, using: &g)).map { _ in Int.random(in: 0..<max(1, n * 8), using: &g) })
        case 1:
            return .truncate(to: Int.random(in: 0...n, using: &g))
        case 2:
            return .extend(with: (0..<Int.random(in: 1...64, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) })
        default:
            let fields = headerFields(of: frame)
            let (offset, width) = fields[Int.random(in: 0..<fields.count, using: &g)]
            let boundary: [UInt8] = [0, 1, 4, 5, 6, 0x0f, 17, 41, 43, 44, 58, 59, 60, 0x7f, 0x80, 0xfe, 0xff]
            let value = (0..<width).map { _ in
                Bool.random(using: &g) ? UInt8.random(in: 0...255, using: &g) : boundary[Int.random(in: 0..<boundary.count, using: &g)]
            }
            return .overwrite(offset: offset, bytes: value)
        }
    }

    /// One to three random mutations applied in turn.
    public static func mutate(_ frame: [UInt8], using g: inout some RandomNumberGenerator) -> [UInt8] {
        var b = frame
        for _ in 0..<Int.random(in: 1...3, using: &g) { b = randomMutation(of: b, using: &g).apply(to: b) }
        return b
    }
}
