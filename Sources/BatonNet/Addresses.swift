import BatonModel

// Addresses are BatonModel's `IPAddress` and `MACAddress`; what netlink and sockets need of
// them beyond that (`any`, `loopback`, `addressFamily`, `bitWidth`…) is in
// BatonModel/IPAddress+Net.swift; IPPrefix is BatonModel's too.

/// An IP address and a port.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(_ address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// "10.0.0.1:53" or "[fd00::1]:53".
    public var description: String {
        address.family == .v4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}
