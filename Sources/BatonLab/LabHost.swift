import BatonModel
import BatonNet

/// A test host: a network namespace with one interface per segment it is on.
///
/// The helpers run in the host's namespace; each opens what it needs and closes it again, so a
/// `LabHost` holds nothing open and stays valid until `Lab.teardown()`. (Not `Host`: Foundation
/// has one, and files importing both would have to qualify it.)
public struct LabHost: Sendable {
    public let name: String
    public let namespace: NetworkNamespace
    /// `eth0` first; a router also has `eth1`.
    public let interfaces: [HostInterface]

    /// `eth0`.
    public var primary: HostInterface { interfaces[0] }
    /// `eth0`'s name.
    public var interface: String { primary.name }
    /// `eth0`'s ifindex inside the host's namespace.
    public var ifindex: Int { primary.index }
    public var mac: MACAddress { primary.mac }
    public var ipv4: IPAddress { primary.ipv4 }
    public var ipv6: IPAddress { primary.ipv6 }

    /// `eth0`'s address of `family`.
    public func address(_ family: IPAddress.Family) -> IPAddress {
        family == .v4 ? ipv4 : ipv6
    }

    /// Runs `body` on a thread inside the host's network namespace (see `NetworkNamespace.run`).
    public func run<T>(_ body: () throws -> T) throws -> T {
        try namespace.run(body)
    }

    /// A netlink socket in the host's namespace.
    public func netlink() throws -> Netlink {
        try Netlink(in: namespace)
    }

    /// `interface`'s link as the kernel sees it now (default `eth0`).
    public func link(_ interface: String? = nil) throws -> Link {
        try netlink().link(named: interface ?? self.interface)
    }

    // MARK: Addresses

    /// Adds `address` to `interface` (default `eth0`). The prefix length defaults to the
    /// segment's (/24, /64) on an `eth`, and to a host prefix (/32, /128) on `lo`.
    public func addAddress(_ address: IPAddress, prefixLength: Int? = nil, interface: String? = nil,
                           flags: AddressFlags = .nodad) throws {
        let interface = interface ?? self.interface
        let length = prefixLength ?? defaultPrefixLength(address.family, interface)
        try netlink().addAddress(address, prefixLength: length, interface: interface,
                                 flags: address.family == .v6 ? flags : flags.subtracting(.nodad))
    }

    /// Removes `address` from `interface` (default `eth0`), whatever its prefix length.
    public func deleteAddress(_ address: IPAddress, interface: String? = nil) throws {
        try netlink().deleteAddress(address, interface: interface ?? self.interface)
    }

    /// Addresses on `interface` (default: all interfaces).
    public func addresses(interface: String? = nil, family: IPAddress.Family? = nil) throws -> [InterfaceAddress] {
        try netlink().addresses(interface: interface, family: family)
    }

    /// Keeps `address` as a local address that the host does not claim on the wire (the LVS-DR
    /// arrangement): the address goes on `lo`, and for IPv4 `arp_ignore=1` (answer ARP only for
    /// addresses on the asking interface) and `arp_announce=2` (never use it as ARP source).
    /// IPv6 needs nothing more: NDP only answers for addresses of the receiving interface.
    public func addNonARPAddress(_ address: IPAddress) throws {
        if address.family == .v4 {
            try setSysctl("net.ipv4.conf.all.arp_ignore", 1)
            try setSysctl("net.ipv4.conf.all.arp_announce", 2)
        }
        try addAddress(address, interface: "lo")
    }

    // MARK: Routes

    public func addRoute(_ destination: IPPrefix, via gateway: IPAddress? = nil, interface: String? = nil) throws {
        try netlink().addRoute(destination, via: gateway, interface: gateway == nil ? interface ?? self.interface : interface)
    }

    public func deleteRoute(_ destination: IPPrefix, via gateway: IPAddress? = nil, interface: String? = nil) throws {
        try netlink().deleteRoute(destination, via: gateway, interface: interface)
    }

    public func routes(_ family: IPAddress.Family) throws -> [Route] {
        try netlink().routes(family: family)
    }

    // MARK: Sysctls

    /// Sets a sysctl in the host's namespace ("net.ipv4.conf.all.arp_ignore").
    public func setSysctl(_ key: String, _ value: Int) throws {
        try Sysctl.write(key, value, in: namespace)
    }

    public func setSysctl(_ key: String, _ value: String) throws {
        try Sysctl.write(key, value, in: namespace)
    }

    public func sysctl(_ key: String) throws -> String {
        try Sysctl.read(key, in: namespace)
    }

    /// SNMP counters of the host's namespace ("Udp.InCsumErrors", "Udp6InCsumErrors"…).
    public func snmpCounters() throws -> [String: Int64] {
        try SNMPCounters.read(in: namespace)
    }

    // MARK: Neighbours

    /// Adds or replaces a neighbour entry on `interface` (default `eth0`), permanent by default.
    public func addNeighbour(_ address: IPAddress, mac: MACAddress, interface: String? = nil,
                             state: NeighbourState = .permanent) throws {
        try netlink().addNeighbour(address, mac: mac, interface: interface ?? self.interface, state: state, replace: true)
    }

    public func deleteNeighbour(_ address: IPAddress, interface: String? = nil) throws {
        try netlink().deleteNeighbour(address, interface: interface ?? self.interface)
    }

    /// The host's neighbour entry for `address` on `interface` (default `eth0`), nil if none:
    /// state and link-layer address, e.g. to see whom the correspondent sends to.
    public func neighbour(_ address: IPAddress, interface: String? = nil) throws -> Neighbour? {
        try netlink().neighbour(address, interface: interface ?? self.interface)
    }

    // MARK: Sockets

    /// A UDP socket bound in the host's namespace (default: any address, ephemeral port).
    public func udpSocket(_ family: IPAddress.Family, address: IPAddress? = nil, port: UInt16 = 0) throws -> UDPSocket {
        try UDPSocket(in: namespace, family: family, address: address, port: port)
    }

    public func tcpListener(_ family: IPAddress.Family, address: IPAddress? = nil, port: UInt16 = 0) throws -> TCPListener {
        try TCPListener(in: namespace, family: family, address: address, port: port)
    }

    public func connectTCP(to destination: SocketAddress, from sourcePort: UInt16? = nil,
                           timeout: Duration = .seconds(5)) throws -> TCPConnection {
        try TCPConnection.connect(in: namespace, to: destination, from: sourcePort, timeout: timeout)
    }

    private func defaultPrefixLength(_ family: IPAddress.Family, _ interface: String) -> Int {
        guard let attached = interfaces.first(where: { $0.name == interface }) else { return family.bitWidth }
        return family == .v4 ? attached.ipv4Network.length : attached.ipv6Network.length
    }
}
