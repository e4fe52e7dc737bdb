#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address. The data plane stores both as 16 bytes, IPv4
/// IPv4-mapped (`::ffff:a.b.c.d`), so `bytes16` is the map form.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    case v4(UInt32)                 // host byte order: 10.0.0.1 == 0x0a000001
    case v6([UInt8])                // exactly 16 bytes, network order

    public enum Family: String, Sendable, Codable { case v4 = "ipv4", v6 = "ipv6" }

    /// Parses dotted-quad IPv4 or any RFC 4291 IPv6 text form.
    public init?(_ text: String) {
        var a4 = in_addr()
        if text.withCString({ inet_pton(AF_INET, $0, &a4) }) == 1 {
            self = .v4(UInt32(bigEndian: a4.s_addr))
            return
        }
        var a6 = in6_addr()
        if text.withCString({ inet_pton(AF_INET6, $0, &a6) }) == 1 {
            // An IPv4-mapped address names an IPv4 host: one value for one host.
            self.init(bytes16: withUnsafeBytes(of: &a6) { Array($0) })
            return
        }
        return nil
    }

    /// From the 16-byte map form: IPv4-mapped becomes `.v4`.
    public init(bytes16 b: [UInt8]) {
        precondition(b.count == 16, "address must be 16 bytes")
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
            self = .v4(UInt32(b[12]) << 24 | UInt32(b[13]) << 16 | UInt32(b[14]) << 8 | UInt32(b[15]))
        } else {
            self = .v6(b)
        }
    }

    /// From wire bytes: 4 for IPv4, 16 for IPv6.
    public init?(wire b: some Collection<UInt8>) {
        let a = Array(b)
        switch a.count {
        case 4: self = .v4(UInt32(a[0]) << 24 | UInt32(a[1]) << 16 | UInt32(a[2]) << 8 | UInt32(a[3]))
        case 16: self = .v6(a)
        default: return nil
        }
    }

    public var family: Family {
        if case .v4 = self { return .v4 }
        return .v6
    }

    /// Network-order bytes as on the wire: 4 or 16.
    public var wireBytes: [UInt8] {
        switch self {
        case .v4(let a): return [UInt8(a >> 24), UInt8(a >> 16 & 0xff), UInt8(a >> 8 & 0xff), UInt8(a & 0xff)]
        case .v6(let b): return b
        }
    }

    /// The data plane's 16-byte form.
    public var bytes16: [UInt8] {
        switch self {
        case .v4: return [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + wireBytes
        case .v6(let b): return b
        }
    }

    public var isUnspecified: Bool { wireBytes.allSatisfy { $0 == 0 } }

    public var isMulticast: Bool {
        switch self {
        case .v4(let a): return a >> 28 == 0xe
        case .v6(let b): return b[0] == 0xff
        }
    }

    public var description: String {
        switch self {
        case .v4:
            return wireBytes.map(String.init).joined(separator: ".")
        case .v6(let b):
            var a6 = in6_addr()
            withUnsafeMutableBytes(of: &a6) { $0.copyBytes(from: b) }
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            _ = inet_ntop(AF_INET6, &a6, &buf, socklen_t(buf.count))
            return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public static func < (l: IPAddress, r: IPAddress) -> Bool { l.bytes16.lexicographicallyPrecedes(r.bytes16) }
}

extension IPAddress: TextCoded {
    public init?(text: String) { self.init(text) }
    public var text: String { description }
    public static var expectedText: String { "an IP address" }
    public init(from decoder: Decoder) throws { try self.init(textFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeText(to: encoder) }
}
