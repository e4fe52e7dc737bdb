/// An address with a prefix length: "10.0.0.0/24", "fd00::1/64".
public struct IPPrefix: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    public let address: IPAddress
    public let length: Int

    public init?(_ address: IPAddress, length: Int) {
        guard (0...address.family.bitWidth).contains(length) else { return nil }
        self.address = address
        self.length = length
    }

    /// "ADDRESS/LENGTH"; a bare address means a host prefix (/32 or /128).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        if parts.count == 2 {
            guard let length = Int(parts[1]) else { return nil }
            self.init(address, length: length)
        } else {
            self.init(address, length: address.family.bitWidth)
        }
    }

    public var family: IPAddress.Family { address.family }

    /// The prefix with the host bits cleared: 10.1.2.3/24 gives 10.1.2.0/24.
    public var network: IPPrefix {
        let masked = address.wireBytes.enumerated().map { index, byte -> UInt8 in
            let bitsLeft = length - index * 8
            if bitsLeft >= 8 { return byte }
            if bitsLeft <= 0 { return 0 }
            return byte & ~(UInt8(0xff) >> UInt8(bitsLeft))
        }
        return IPPrefix(IPAddress(wire: masked)!, length: length)!
    }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.family == family else { return false }
        return IPPrefix(other, length: length)!.network == network
    }

    /// Both hold at least one address in common (one contains the other).
    public func overlaps(_ other: IPPrefix) -> Bool {
        family == other.family && (contains(other.address) || other.contains(address))
    }

    /// The prefix's last address: 10.0.0.255 for 10.0.0.0/24 (an IPv4 segment's broadcast).
    public var lastAddress: IPAddress {
        let masked = network.address.wireBytes.enumerated().map { index, byte -> UInt8 in
            let bitsLeft = length - index * 8
            if bitsLeft >= 8 { return byte }
            if bitsLeft <= 0 { return 0xff }
            return byte | (UInt8(0xff) >> UInt8(bitsLeft))
        }
        return IPAddress(wire: masked)!
    }

    /// The `index`-th address in the prefix (index 1 of 10.0.0.0/24 is 10.0.0.1).
    public func address(at index: Int) -> IPAddress? {
        let hostBits = family.bitWidth - length
        guard index >= 0, hostBits >= 63 || index < (1 << hostBits) else { return nil }
        var bytes = network.address.wireBytes
        var carry = UInt64(index)
        for position in stride(from: bytes.count - 1, through: 0, by: -1) where carry > 0 {
            let sum = UInt64(bytes[position]) + (carry & 0xff)
            bytes[position] = UInt8(truncatingIfNeeded: sum)
            carry = (carry >> 8) + (sum >> 8)
        }
        return IPAddress(wire: bytes)
    }

    public var description: String { "\(address)/\(length)" }
}
