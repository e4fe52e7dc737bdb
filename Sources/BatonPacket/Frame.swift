import BatonModel

/// An Ethernet frame to build: header, network layer, what IP carries, and
/// any bytes after the network packet (Ethernet padding or junk).
public struct Frame: Hashable, Sendable {
    public enum Network: Hashable, Sendable {
        case ipv4(IPv4Header)
        case ipv6(IPv6Header)
        case arp(ARPPacket)
        /// Bytes after the EtherType, as given.
        case raw(etherType: UInt16, bytes: [UInt8])
    }

    public var ethernet: EthernetHeader
    public var network: Network
    /// Used only when `network` is IPv4 or IPv6.
    public var transport: Transport
    public var trailer: [UInt8]

    public init(ethernet: EthernetHeader, network: Network,
                transport: Transport = .raw(protocol: IPProtocolNumber.noNextHeader, bytes: []),
                trailer: [UInt8] = []) {
        self.ethernet = ethernet
        self.network = network
        self.transport = transport
        self.trailer = trailer
    }

    public init(ethernet: EthernetHeader, datagram: IPDatagram, trailer: [UInt8] = []) {
        switch datagram.header {
        case .ipv4(let h): self.init(ethernet: ethernet, network: .ipv4(h), transport: datagram.transport, trailer: trailer)
        case .ipv6(let h): self.init(ethernet: ethernet, network: .ipv6(h), transport: datagram.transport, trailer: trailer)
        }
    }

    /// The IP datagram, if the network layer is IP.
    public var datagram: IPDatagram? {
        switch network {
        case .ipv4(let h): return IPDatagram(ipv4: h, transport: transport)
        case .ipv6(let h): return IPDatagram(ipv6: h, transport: transport)
        case .arp, .raw: return nil
        }
    }

    public var bytes: [UInt8] {
        let (type, payload): (UInt16, [UInt8])
        switch network {
        case .ipv4(let h): (type, payload) = (EtherType.ipv4, IPDatagram(ipv4: h, transport: transport).bytes)
        case .ipv6(let h): (type, payload) = (EtherType.ipv6, IPDatagram(ipv6: h, transport: transport).bytes)
        case .arp(let a): (type, payload) = (EtherType.arp, a.bytes)
        case .raw(let t, let b): (type, payload) = (t, b)
        }
        return ethernet.bytes(payloadType: type) + payload + trailer
    }

    /// The same frame with zero padding up to `minimum` bytes (60: the
    /// Ethernet minimum without FCS), as a NIC pads short frames.
    public func padded(to minimum: Int = 60) -> Frame {
        var f = self
        f.trailer += [UInt8](repeating: 0, count: max(0, minimum - bytes.count))
        return f
    }
}
