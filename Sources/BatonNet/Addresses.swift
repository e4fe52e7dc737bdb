import Glibc

/// IPv4 or IPv6.
public enum IPFamily: Sendable, Hashable, CustomStringConvertible {
    case v4
    case v6

    /// AF_INET or AF_INET6.
    public var addressFamily: Int32 { self == .v4 ? AF_INET : AF_INET6 }
    /// Bytes in an address of this family.
    public var addressSize: Int { self == .v4 ? 4 : 16 }
    /// Bits in an address of this family.
    public var bitWidth: Int { addressSize * 8 }
    public var description: String { self == .v4 ? "IPv4" : "IPv6" }
}

/// An IPv4 or IPv6 address, as the bytes in network order.
///
/// Called `IPAddr` (and `MACAddr`), not `IPAddress`, so that files importing both BatonNet and
/// BatonModel need no module prefixes: BatonModel's `IPAddress` is the data plane's form.
/// Convert with the bytes, e.g. `IPAddress(wire: addr.bytes)`.
public enum IPAddr: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    case v4(IPv4Addr)
    case v6(IPv6Addr)

    /// Parses dotted-quad or RFC 4291 text with inet_pton.
    public init?(_ text: String) {
        if let v4 = IPv4Addr(text) {
            self = .v4(v4)
        } else if let v6 = IPv6Addr(text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    /// 4 bytes make IPv4, 16 make IPv6.
    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4: self = .v4(IPv4Addr(bytes: bytes)!)
        case 16: self = .v6(IPv6Addr(bytes: bytes)!)
        default: return nil
        }
    }

    public var family: IPFamily {
        if case .v4 = self { return .v4 }
        return .v6
    }

    public var bytes: [UInt8] {
        switch self {
        case .v4(let address): return address.bytes
        case .v6(let address): return address.bytes
        }
    }

    public var description: String {
        switch self {
        case .v4(let address): return address.description
        case .v6(let address): return address.description
        }
    }

    /// The all-zeros address of `family` (INADDR_ANY, in6addr_any).
    public static func any(_ family: IPFamily) -> IPAddr {
        IPAddr(bytes: [UInt8](repeating: 0, count: family.addressSize))!
    }

    /// 127.0.0.1 or ::1.
    public static func loopback(_ family: IPFamily) -> IPAddr {
        family == .v4 ? IPAddr("127.0.0.1")! : IPAddr("::1")!
    }
}

public struct IPv4Addr: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 else { return nil }
        self.bytes = bytes
    }

    public init?(_ text: String) {
        guard let bytes = Kernel.parseAddress(text, family: AF_INET, size: 4) else { return nil }
        self.bytes = bytes
    }

    public var description: String { Kernel.formatAddress(bytes, family: AF_INET) }
}

public struct IPv6Addr: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public init?(_ text: String) {
        guard let bytes = Kernel.parseAddress(text, family: AF_INET6, size: 16) else { return nil }
        self.bytes = bytes
    }

    /// fe80::/10.
    public var isLinkLocal: Bool { bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 }

    public var description: String { Kernel.formatAddress(bytes, family: AF_INET6) }
}

/// An address with a prefix length: "10.0.0.0/24", "fd00::1/64".
public struct IPPrefix: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    public let address: IPAddr
    public let length: Int

    public init?(_ address: IPAddr, length: Int) {
        guard (0...address.family.bitWidth).contains(length) else { return nil }
        self.address = address
        self.length = length
    }

    /// "ADDRESS/LENGTH"; a bare address means a host prefix (/32 or /128).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddr(String(parts[0])) else { return nil }
        if parts.count == 2 {
            guard let length = Int(parts[1]) else { return nil }
            self.init(address, length: length)
        } else {
            self.init(address, length: address.family.bitWidth)
        }
    }

    public var family: IPFamily { address.family }

    /// The prefix with the host bits cleared: 10.1.2.3/24 gives 10.1.2.0/24.
    public var network: IPPrefix {
        let masked = address.bytes.enumerated().map { index, byte -> UInt8 in
            let bitsLeft = length - index * 8
            if bitsLeft >= 8 { return byte }
            if bitsLeft <= 0 { return 0 }
            return byte & ~(UInt8(0xff) >> UInt8(bitsLeft))
        }
        return IPPrefix(IPAddr(bytes: masked)!, length: length)!
    }

    public func contains(_ other: IPAddr) -> Bool {
        guard other.family == family else { return false }
        return IPPrefix(other, length: length)!.network == network
    }

    /// The `index`-th address in the prefix (index 1 of 10.0.0.0/24 is 10.0.0.1).
    public func address(at index: Int) -> IPAddr? {
        let hostBits = family.bitWidth - length
        guard index >= 0, hostBits >= 63 || index < (1 << hostBits) else { return nil }
        var bytes = network.address.bytes
        var carry = UInt64(index)
        for position in stride(from: bytes.count - 1, through: 0, by: -1) where carry > 0 {
            let sum = UInt64(bytes[position]) + (carry & 0xff)
            bytes[position] = UInt8(truncatingIfNeeded: sum)
            carry = (carry >> 8) + (sum >> 8)
        }
        return IPAddr(bytes: bytes)
    }

    public var description: String { "\(address)/\(length)" }
}

/// An Ethernet address.
public struct MACAddr: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// "aa:bb:cc:dd:ee:ff" (or with dashes).
    public init?(_ text: String) {
        let parts = text.split(whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count <= 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    public static let broadcast = MACAddr(bytes: [UInt8](repeating: 0xff, count: 6))!
    public static let zero = MACAddr(bytes: [UInt8](repeating: 0, count: 6))!

    /// A random unicast, locally administered address (02:…), as the kernel picks for veths.
    public static func random() -> MACAddr {
        var bytes = (0..<6).map { _ in UInt8.random(in: 0...255) }
        bytes[0] = (bytes[0] & 0xfe) | 0x02
        return MACAddr(bytes: bytes)!
    }

    public var isMulticast: Bool { bytes[0] & 1 == 1 }

    public var description: String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }
}

/// An IP address and a port.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddr
    public var port: UInt16

    public init(_ address: IPAddr, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// "10.0.0.1:53" or "[fd00::1]:53".
    public var description: String {
        address.family == .v4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}
