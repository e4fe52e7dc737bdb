import BatonModel
import CMnl
import Foundation
import Glibc
import Synchronization

/// Typed rtnetlink (links, addresses, routes, neighbours) over libmnl.
///
/// The socket belongs to the network namespace of the thread that created it: `Netlink()`
/// talks to the caller's namespace, `Netlink(in:)` to another one, from any thread.
/// Interfaces are named as in that namespace; names are resolved through the same socket.
/// Requests are serialised by a lock, so one instance may be shared between threads.
public final class Netlink: Sendable {
    /// One request at a time on the socket.
    private let socket: Mutex<NetlinkSocket>
    /// Where the socket was opened, for messages; nil for "the caller's namespace".
    public let namespace: NetworkNamespace?

    /// A NETLINK_ROUTE socket in the calling thread's network namespace.
    public convenience init() throws {
        let socket = try NetError.wrap("netlink", "open socket") { try NetlinkSocket() }
        self.init(socket: socket, namespace: nil)
    }

    /// A NETLINK_ROUTE socket in `namespace`, usable from any thread.
    public convenience init(in namespace: NetworkNamespace) throws {
        let socket = try namespace.run {
            try NetError.wrap("netlink", "open socket in \(namespace)") { try NetlinkSocket() }
        }
        self.init(socket: socket, namespace: namespace)
    }

    private init(socket: sending NetlinkSocket, namespace: NetworkNamespace?) {
        self.socket = Mutex(socket)
        self.namespace = namespace
    }

    // MARK: - Links

    /// The link called `name`; throws ENODEV if there is none.
    public func link(named name: String) throws -> Link {
        try findLink(name, for: "show link \(name)")
    }

    /// The link with ifindex `index`; throws ENODEV if there is none.
    public func link(index: Int) throws -> Link {
        var header = ifinfomsg()
        header.ifi_index = Int32(index)
        let replies = try request("show link #\(index)", type: RTM_GETLINK, header: header)
        guard let link = replies.lazy.compactMap(Self.parseLink).first else {
            throw NetError(subsystem: "netlink", operation: "show link #\(index)", errno: ENODEV)
        }
        return link
    }

    /// All links, by ifindex.
    public func links() throws -> [Link] {
        let replies = try dump("list links", type: RTM_GETLINK, header: ifinfomsg())
        return replies.compactMap(Self.parseLink).sorted { $0.index < $1.index }
    }

    /// Creates a veth pair `name` ↔ `peer`. With `peerNamespace`, the peer is created directly
    /// in that namespace (IFLA_NET_NS_FD), so it never exists here, not even for a moment.
    public func createVeth(_ name: String, peer: String, peerNamespace: NetworkNamespace? = nil) throws {
        let operation = "add veth \(name) peer \(peer)" + (peerNamespace.map { " in \($0)" } ?? "")
        try withNamespaceFD(peerNamespace, operation) { fd in
            var peerAttributes: [NetlinkAttribute] = [.string(IFLA_IFNAME, peer)]
            if let fd { peerAttributes.append(.u32(IFLA_NET_NS_FD, UInt32(fd))) }
            let info: [NetlinkAttribute] = [
                .string(IFLA_INFO_KIND, "veth"),
                .nested(IFLA_INFO_DATA, [
                    .nested(VETH_INFO_PEER, header: Kernel.bytes(of: ifinfomsg()), peerAttributes),
                ]),
            ]
            try create(operation, [.string(IFLA_IFNAME, name), .nested(IFLA_LINKINFO, info)])
        }
    }

    /// Creates a bridge. STP stays off (the default), so ports forward as soon as they are up.
    public func createBridge(_ name: String, multicastSnooping: Bool = true) throws {
        let info: [NetlinkAttribute] = [
            .string(IFLA_INFO_KIND, "bridge"),
            .nested(IFLA_INFO_DATA, [.u8(IFLA_BR_MCAST_SNOOPING, multicastSnooping ? 1 : 0)]),
        ]
        try create("add bridge \(name)", [.string(IFLA_IFNAME, name), .nested(IFLA_LINKINFO, info)])
    }

    public func deleteLink(_ name: String) throws {
        let operation = "delete link \(name)"
        var header = ifinfomsg()
        header.ifi_index = Int32(try findLink(name, for: operation).index)
        _ = try request(operation, type: RTM_DELLINK, header: header)
    }

    public func setUp(_ name: String) throws {
        try setFlags(name, up: true)
    }

    public func setDown(_ name: String) throws {
        try setFlags(name, up: false)
    }

    /// Enslaves `name` to the bridge `master`, or releases it when `master` is nil.
    public func setMaster(_ name: String, to master: String?) throws {
        let operation = master.map { "set \(name) master \($0)" } ?? "set \(name) nomaster"
        let masterIndex = try master.map { try findLink($0, for: operation).index } ?? 0
        try modify(name, operation, [.u32(IFLA_MASTER, UInt32(masterIndex))])
    }

    public func setMAC(_ name: String, to mac: MACAddress) throws {
        try modify(name, "set \(name) address \(mac)", [.bytes(IFLA_ADDRESS, mac.bytes)])
    }

    public func setMTU(_ name: String, to mtu: Int) throws {
        try modify(name, "set \(name) mtu \(mtu)", [.u32(IFLA_MTU, UInt32(clamping: mtu))])
    }

    /// Renames a link (it must be down).
    public func rename(_ name: String, to newName: String) throws {
        try modify(name, "set \(name) name \(newName)", [.string(IFLA_IFNAME, newName)])
    }

    /// Moves a link into `namespace`, optionally renaming it there. It arrives down.
    public func moveLink(_ name: String, to namespace: NetworkNamespace, newName: String? = nil) throws {
        let operation = "set \(name) netns \(namespace)" + (newName.map { " name \($0)" } ?? "")
        try withNamespaceFD(namespace, operation) { fd in
            var attributes: [NetlinkAttribute] = [.u32(IFLA_NET_NS_FD, UInt32(fd!))]
            if let newName { attributes.append(.string(IFLA_IFNAME, newName)) }
            try modify(name, operation, attributes)
        }
    }

    // MARK: - Addresses

    /// Adds `address/prefixLength` to `interface` (`ip address add`). For IPv6 pass `.nodad` to
    /// make it usable at once; `.noPrefixRoute` skips the subnet route.
    public func addAddress(_ address: IPAddress, prefixLength: Int, interface: String,
                           flags: AddressFlags = [], scope: Scope = .universe) throws {
        let operation = "add address \(address)/\(prefixLength) on \(interface)"
        try changeAddress(RTM_NEWADDR, operation, address, prefixLength, interface, flags, scope,
                          extraFlags: NLM_F_CREATE | NLM_F_EXCL)
    }

    public func addAddress(_ prefix: IPPrefix, interface: String, flags: AddressFlags = [], scope: Scope = .universe) throws {
        try addAddress(prefix.address, prefixLength: prefix.length, interface: interface, flags: flags, scope: scope)
    }

    public func deleteAddress(_ address: IPAddress, prefixLength: Int, interface: String) throws {
        let operation = "delete address \(address)/\(prefixLength) on \(interface)"
        try changeAddress(RTM_DELADDR, operation, address, prefixLength, interface, [], .universe, extraFlags: 0)
    }

    public func deleteAddress(_ prefix: IPPrefix, interface: String) throws {
        try deleteAddress(prefix.address, prefixLength: prefix.length, interface: interface)
    }

    /// Deletes `address` from `interface` whatever its prefix length (the kernel wants it).
    public func deleteAddress(_ address: IPAddress, interface: String) throws {
        guard let entry = try addresses(interface: interface, family: address.family).first(where: { $0.address == address })
        else {
            throw NetError(subsystem: "netlink", operation: "delete address \(address) on \(interface)",
                           errno: EADDRNOTAVAIL)
        }
        try deleteAddress(address, prefixLength: entry.prefixLength, interface: interface)
    }

    /// Addresses, optionally of one interface and/or family.
    public func addresses(interface: String? = nil, family: IPAddress.Family? = nil) throws -> [InterfaceAddress] {
        let operation = "list addresses" + (interface.map { " on \($0)" } ?? "")
        let index = try interface.map { try findLink($0, for: operation).index }
        var header = ifaddrmsg()
        header.ifa_family = UInt8(family?.addressFamily ?? AF_UNSPEC)
        return try dump(operation, type: RTM_GETADDR, header: header).compactMap { message in
            guard message.type == UInt16(RTM_NEWADDR), let fixed = message.header(ifaddrmsg.self) else { return nil }
            let attributes = message.attributes(after: ifaddrmsg.self)
            guard let bytes = attributes[IFA_LOCAL] ?? attributes[IFA_ADDRESS], let address = IPAddress(wire: bytes)
            else { return nil }
            let entry = InterfaceAddress(
                address: address, prefixLength: Int(fixed.ifa_prefixlen), interfaceIndex: Int(fixed.ifa_index),
                flags: AddressFlags(rawValue: attributes.u32(IFA_FLAGS) ?? UInt32(fixed.ifa_flags)),
                scope: Scope(rawValue: fixed.ifa_scope))
            if let index, entry.interfaceIndex != index { return nil }
            return entry
        }
    }

    // MARK: - Routes

    /// Adds a route (`ip route add DEST [via GATEWAY] [dev INTERFACE]`). At least one of
    /// `gateway` and `interface` is needed.
    public func addRoute(_ destination: IPPrefix, via gateway: IPAddress? = nil, interface: String? = nil,
                         source: IPAddress? = nil, metric: Int? = nil, table: Int = Route.mainTable,
                         replace: Bool = false) throws {
        let operation = "add route " + Self.routeText(destination, gateway, interface)
        try changeRoute(RTM_NEWROUTE, operation, destination, gateway, interface, source, metric, table,
                        extraFlags: NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL))
    }

    /// Deletes the route matching the given fields.
    public func deleteRoute(_ destination: IPPrefix, via gateway: IPAddress? = nil, interface: String? = nil,
                            metric: Int? = nil, table: Int = Route.mainTable) throws {
        let operation = "delete route " + Self.routeText(destination, gateway, interface)
        try changeRoute(RTM_DELROUTE, operation, destination, gateway, interface, nil, metric, table, extraFlags: 0)
    }

    /// Routes of `family` in `table` (nil: all tables, including "local").
    public func routes(family: IPAddress.Family, table: Int? = Route.mainTable) throws -> [Route] {
        var header = rtmsg()
        header.rtm_family = UInt8(family.addressFamily)
        return try dump("list \(family) routes", type: RTM_GETROUTE, header: header).compactMap { message in
            guard message.type == UInt16(RTM_NEWROUTE), let fixed = message.header(rtmsg.self),
                  fixed.rtm_flags & UInt32(RTM_F_CLONED) == 0 else { return nil }
            let attributes = message.attributes(after: rtmsg.self)
            let routeTable = Int(attributes.u32(RTA_TABLE.rawValue) ?? UInt32(fixed.rtm_table))
            if let table, routeTable != table { return nil }
            let destination = attributes[RTA_DST.rawValue].flatMap { IPAddress(wire: $0) } ?? .any(family)
            return Route(
                destination: IPPrefix(destination, length: Int(fixed.rtm_dst_len))!,
                gateway: attributes[RTA_GATEWAY.rawValue].flatMap { IPAddress(wire: $0) },
                interfaceIndex: attributes.u32(RTA_OIF.rawValue).map(Int.init),
                preferredSource: attributes[RTA_PREFSRC.rawValue].flatMap { IPAddress(wire: $0) },
                metric: attributes.u32(RTA_PRIORITY.rawValue).map(Int.init),
                table: routeTable, type: RouteType(rawValue: fixed.rtm_type), scope: Scope(rawValue: fixed.rtm_scope))
        }
    }

    // MARK: - Neighbours

    /// Adds a neighbour entry (`ip neigh add`, or `replace` with `replace: true`).
    public func addNeighbour(_ address: IPAddress, mac: MACAddress, interface: String,
                             state: NeighbourState = .permanent, replace: Bool = false) throws {
        let operation = "\(replace ? "replace" : "add") neighbour \(address) lladdr \(mac) on \(interface) \(state)"
        let index = try findLink(interface, for: operation).index
        var header = ndmsg()
        header.ndm_family = UInt8(address.family.addressFamily)
        header.ndm_ifindex = Int32(index)
        header.ndm_state = state.rawValue
        let flags = NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL)
        _ = try request(operation, type: RTM_NEWNEIGH, flags: flags, header: header,
                        [.bytes(NDA_DST, address.wireBytes), .bytes(NDA_LLADDR, mac.bytes)])
    }

    public func deleteNeighbour(_ address: IPAddress, interface: String) throws {
        let operation = "delete neighbour \(address) on \(interface)"
        var header = ndmsg()
        header.ndm_family = UInt8(address.family.addressFamily)
        header.ndm_ifindex = Int32(try findLink(interface, for: operation).index)
        _ = try request(operation, type: RTM_DELNEIGH, header: header, [.bytes(NDA_DST, address.wireBytes)])
    }

    /// The neighbour entry for `address` on `interface`, or nil if there is none.
    public func neighbour(_ address: IPAddress, interface: String) throws -> Neighbour? {
        try neighbour(address, interfaceIndex: try findLink(interface, for: "show neighbour \(address) on \(interface)").index)
    }

    /// The neighbour entry for `address` on the link with ifindex `interfaceIndex` (one
    /// request, for callers that keep the index), or nil if there is none.
    public func neighbour(_ address: IPAddress, interfaceIndex: Int) throws -> Neighbour? {
        let operation = "show neighbour \(address) on ifindex \(interfaceIndex)"
        var header = ndmsg()
        header.ndm_family = UInt8(address.family.addressFamily)
        header.ndm_ifindex = Int32(interfaceIndex)
        do {
            let replies = try request(operation, type: RTM_GETNEIGH, header: header, [.bytes(NDA_DST, address.wireBytes)])
            return replies.lazy.compactMap(Self.parseNeighbour).first
        } catch let error as NetError where error.errno == ENOENT {
            return nil
        }
    }

    /// Neighbour entries (ARP and NDP), optionally of one interface and/or family.
    public func neighbours(interface: String? = nil, family: IPAddress.Family? = nil) throws -> [Neighbour] {
        let operation = "list neighbours" + (interface.map { " on \($0)" } ?? "")
        let index = try interface.map { try findLink($0, for: operation).index }
        // One family at a time: an AF_UNSPEC dump also returns the bridge FDB.
        return try (family.map { [$0] } ?? [.v4, .v6]).flatMap { family in
            var header = ndmsg()
            header.ndm_family = UInt8(family.addressFamily)
            return try dump(operation, type: RTM_GETNEIGH, header: header).compactMap(Self.parseNeighbour)
        }.filter { index == nil || $0.interfaceIndex == index }
    }

    /// The port of `bridge` that `mac` was learned on (its forwarding database), or nil.
    public func bridgePort(of mac: MACAddress, bridge: String) throws -> Int? {
        let operation = "look up \(mac) in the forwarding database of \(bridge)"
        let master = try findLink(bridge, for: operation).index
        var header = ndmsg()
        header.ndm_family = UInt8(AF_BRIDGE)
        for message in try dump(operation, type: RTM_GETNEIGH, header: header) where message.type == UInt16(RTM_NEWNEIGH) {
            guard let fixed = message.header(ndmsg.self) else { continue }
            let attributes = message.attributes(after: ndmsg.self)
            if Int(fixed.ndm_ifindex) != master, attributes.u32(NDA_MASTER).map(Int.init) == master,
               attributes[NDA_LLADDR].flatMap({ MACAddress(bytes: $0) }) == mac {
                return Int(fixed.ndm_ifindex)
            }
        }
        return nil
    }

    // MARK: - Plumbing

    private func request<Header: BitwiseCopyable>(
        _ operation: String, type: some BinaryInteger, flags: Int32 = 0, header: Header,
        _ attributes: [NetlinkAttribute] = []
    ) throws -> [NetlinkMessage] {
        let message = NetlinkRequest(type: UInt16(type), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK | flags),
                                     header: Kernel.bytes(of: header), attributes: attributes)
        return try NetError.wrap("netlink", operation) {
            try socket.withLock { try $0.transact(message) }
        }
    }

    private func dump<Header: BitwiseCopyable>(
        _ operation: String, type: some BinaryInteger, header: Header
    ) throws -> [NetlinkMessage] {
        let message = NetlinkRequest(type: UInt16(type), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP),
                                     header: Kernel.bytes(of: header))
        return try NetError.wrap("netlink", operation) {
            try socket.withLock { try $0.transact(message) }
        }
    }

    /// Looks `name` up, reporting a miss as a failure of `operation` (ENODEV).
    private func findLink(_ name: String, for operation: String) throws -> Link {
        guard !name.isEmpty, name.utf8.count < Int(IFNAMSIZ) else {
            throw NetError(subsystem: "netlink", operation: operation, errno: EINVAL, detail: "invalid interface name")
        }
        let replies = try request(operation, type: RTM_GETLINK, header: ifinfomsg(), [.string(IFLA_IFNAME, name)])
        guard let link = replies.lazy.compactMap(Self.parseLink).first else {
            throw NetError(subsystem: "netlink", operation: operation, errno: ENODEV)
        }
        return link
    }

    private func create(_ operation: String, _ attributes: [NetlinkAttribute]) throws {
        _ = try request(operation, type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, header: ifinfomsg(), attributes)
    }

    private func modify(_ name: String, _ operation: String, _ attributes: [NetlinkAttribute]) throws {
        var header = ifinfomsg()
        header.ifi_index = Int32(try findLink(name, for: operation).index)
        _ = try request(operation, type: RTM_NEWLINK, header: header, attributes)
    }

    private func setFlags(_ name: String, up: Bool) throws {
        let operation = "set \(name) \(up ? "up" : "down")"
        var header = ifinfomsg()
        header.ifi_index = Int32(try findLink(name, for: operation).index)
        header.ifi_flags = up ? UInt32(IFF_UP) : 0
        header.ifi_change = UInt32(IFF_UP)
        _ = try request(operation, type: RTM_NEWLINK, header: header)
    }

    private func changeAddress(_ type: Int, _ operation: String, _ address: IPAddress, _ prefixLength: Int,
                               _ interface: String, _ flags: AddressFlags, _ scope: Scope, extraFlags: Int32) throws {
        guard (0...address.family.bitWidth).contains(prefixLength) else {
            throw NetError(subsystem: "netlink", operation: operation, errno: EINVAL, detail: "bad prefix length")
        }
        var header = ifaddrmsg()
        header.ifa_family = UInt8(address.family.addressFamily)
        header.ifa_prefixlen = UInt8(prefixLength)
        header.ifa_flags = UInt8(truncatingIfNeeded: flags.rawValue)
        header.ifa_scope = scope.rawValue
        header.ifa_index = UInt32(try findLink(interface, for: operation).index)
        var attributes: [NetlinkAttribute] = [.bytes(IFA_ADDRESS, address.wireBytes)]
        if address.family == .v4 { attributes.append(.bytes(IFA_LOCAL, address.wireBytes)) }
        // Flags above bit 7 (noprefixroute, mngtmpaddr) only fit in IFA_FLAGS.
        if type == RTM_NEWADDR { attributes.append(.u32(IFA_FLAGS, flags.rawValue)) }
        _ = try request(operation, type: type, flags: extraFlags, header: header, attributes)
    }

    private func changeRoute(_ type: Int, _ operation: String, _ destination: IPPrefix, _ gateway: IPAddress?,
                             _ interface: String?, _ source: IPAddress?, _ metric: Int?, _ table: Int,
                             extraFlags: Int32) throws {
        if let gateway, gateway.family != destination.family {
            throw NetError(subsystem: "netlink", operation: operation, errno: EINVAL, detail: "gateway family differs")
        }
        if type == RTM_NEWROUTE, gateway == nil, interface == nil {
            throw NetError(subsystem: "netlink", operation: operation, errno: EINVAL, detail: "need a gateway or an interface")
        }
        let index = try interface.map { try findLink($0, for: operation).index }
        var header = rtmsg()
        header.rtm_family = UInt8(destination.family.addressFamily)
        header.rtm_dst_len = UInt8(destination.length)
        header.rtm_table = table < 256 ? UInt8(table) : 0
        if type == RTM_NEWROUTE {
            header.rtm_protocol = UInt8(RTPROT_BOOT)
            header.rtm_type = UInt8(RTN_UNICAST)
            // As iproute2: an IPv4 route without a gateway is on-link.
            header.rtm_scope = gateway == nil && destination.family == .v4 ? Scope.link.rawValue : Scope.universe.rawValue
        } else {
            header.rtm_scope = Scope.nowhere.rawValue
        }
        var attributes: [NetlinkAttribute] = [.u32(RTA_TABLE.rawValue, UInt32(table))]
        if destination.length > 0 { attributes.append(.bytes(RTA_DST.rawValue, destination.network.address.wireBytes)) }
        if let gateway { attributes.append(.bytes(RTA_GATEWAY.rawValue, gateway.wireBytes)) }
        if let index { attributes.append(.u32(RTA_OIF.rawValue, UInt32(index))) }
        if let source { attributes.append(.bytes(RTA_PREFSRC.rawValue, source.wireBytes)) }
        if let metric { attributes.append(.u32(RTA_PRIORITY.rawValue, UInt32(metric))) }
        _ = try request(operation, type: type, flags: extraFlags, header: header, attributes)
    }

    /// Opens `namespace` for IFLA_NET_NS_FD and keeps the descriptor open during `body`.
    private func withNamespaceFD(_ namespace: NetworkNamespace?, _ operation: String, _ body: (Int32?) throws -> Void) throws {
        guard let namespace else { return try body(nil) }
        let fd = Glibc.open(namespace.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw NetError(subsystem: "netlink", operation: operation, errno: errno, detail: "open \(namespace.path)")
        }
        defer { close(fd) }
        try body(fd)
    }

    private static func routeText(_ destination: IPPrefix, _ gateway: IPAddress?, _ interface: String?) -> String {
        "\(destination)" + (gateway.map { " via \($0)" } ?? "") + (interface.map { " dev \($0)" } ?? "")
    }

    private static func parseLink(_ message: NetlinkMessage) -> Link? {
        guard message.type == UInt16(RTM_NEWLINK), let fixed = message.header(ifinfomsg.self) else { return nil }
        let attributes = message.attributes(after: ifinfomsg.self)
        guard let name = attributes.string(IFLA_IFNAME) else { return nil }
        let master = attributes.u32(IFLA_MASTER).flatMap { $0 == 0 ? nil : Int($0) }
        let peer = attributes.s32(IFLA_LINK).flatMap { $0 == 0 ? nil : Int($0) }  // absent when it is the link itself
        return Link(
            index: Int(fixed.ifi_index), name: name,
            mac: attributes[IFLA_ADDRESS].flatMap { MACAddress(bytes: $0) },
            mtu: Int(attributes.u32(IFLA_MTU) ?? 0), flags: LinkFlags(rawValue: fixed.ifi_flags),
            masterIndex: master, kind: attributes.nested(IFLA_LINKINFO)?.string(IFLA_INFO_KIND),
            peerIndex: peer,
            operationalState: attributes.u8(IFLA_OPERSTATE).flatMap(OperationalState.init) ?? .unknown,
            statistics: attributes[IFLA_STATS64].flatMap { Kernel.load(rtnl_link_stats64.self, from: $0) }.map(LinkStatistics.init))
    }

    private static func parseNeighbour(_ message: NetlinkMessage) -> Neighbour? {
        guard message.type == UInt16(RTM_NEWNEIGH), let fixed = message.header(ndmsg.self) else { return nil }
        let attributes = message.attributes(after: ndmsg.self)
        guard let destination = attributes[NDA_DST].flatMap({ IPAddress(wire: $0) }) else { return nil }
        return Neighbour(
            address: destination, mac: attributes[NDA_LLADDR].flatMap { MACAddress(bytes: $0) },
            interfaceIndex: Int(fixed.ndm_ifindex), state: NeighbourState(rawValue: fixed.ndm_state),
            isRouter: fixed.ndm_flags & UInt8(NTF_ROUTER) != 0)
    }
}
