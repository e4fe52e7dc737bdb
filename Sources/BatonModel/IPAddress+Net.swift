#if canImport(Glibc)
import Glibc
#endif

// What BatonNet (netlink, sockets) needs of the address types. Pure values: no I/O.

extension IPAddress.Family: CustomStringConvertible {
    /// AF_INET or AF_INET6.
    public var addressFamily: Int32 { self == .v4 ? AF_INET : AF_INET6 }
    /// Bytes in an address of this family on the wire: 4 or 16.
    public var addressSize: Int { self == .v4 ? 4 : 16 }
    /// Bits in an address of this family: 32 or 128.
    public var bitWidth: Int { addressSize * 8 }
    /// "IPv4" or "IPv6".
    public var description: String { self == .v4 ? "IPv4" : "IPv6" }
}

extension IPAddress {
    /// The all-zeros address of `family` (INADDR_ANY, in6addr_any).
    public static func any(_ family: Family) -> IPAddress {
        family == .v4 ? .v4(0) : .v6([UInt8](repeating: 0, count: 16))
    }

    /// 127.0.0.1 or ::1.
    public static func loopback(_ family: Family) -> IPAddress {
        family == .v4 ? .v4(0x7f00_0001) : .v6([UInt8](repeating: 0, count: 15) + [1])
    }

    /// fe80::/10 for IPv6, 169.254.0.0/16 for IPv4.
    public var isLinkLocal: Bool {
        switch self {
        case .v4(let a): return a >> 16 == 0xa9fe
        case .v6(let b): return b[0] == 0xfe && b[1] & 0xc0 == 0x80
        }
    }
}

extension MACAddress {
    /// A random unicast, locally administered address (02:…), as the kernel picks for veths.
    public static func random() -> MACAddress {
        var bytes = (0..<6).map { _ in UInt8.random(in: 0...255) }
        bytes[0] = (bytes[0] & 0xfe) | 0x02
        return MACAddress(bytes: bytes)!
    }
}
