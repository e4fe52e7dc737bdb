import BatonAPI
import BatonModel
import BatonNet
import Glibc
import Synchronization

/// The node's address moves, all through netlink and /proc/sys (never `ip`):
///
/// - a held address is a local address the node does not claim on the wire: on `lo`, with
///   `arp_ignore=1` (answer ARP only for addresses of the asking interface) and
///   `arp_announce=2` (never use it as an ARP source). IPv6 needs nothing more: NDP answers
///   only for addresses of the receiving interface. Sockets bound to it keep working;
/// - the temporary address goes on the interface beside the original before the original
///   leaves it, with `promote_secondaries` so that removing the (primary) original keeps the
///   temporary and the subnet route; the addresses that stay are held on `lo` while one goes
///   (see `removeFromInterface`).
struct NodeAddresses {
    let interface: String
    /// One address move at a time in this process (a transfer's start and an earlier one's
    /// clean-up run on different threads), and the addresses that are on `lo` only as a shield
    /// for a removal (see `removeFromInterface`): a real `hold` of one of them takes it over.
    private static let moves = Mutex<Set<IPAddress>>([])

    /// The interface's address `address`, with its prefix length; nil if it is not there.
    func onInterface(_ address: IPAddress) throws -> InterfaceAddress? {
        try Netlink().addresses(interface: interface, family: address.family).first { $0.address == address }
    }

    /// The interface's first global address of `family` other than `excluding`: what this host
    /// tunnels from (agent) or is tunnelled to (target).
    func global(_ family: IPAddress.Family, excluding: IPAddress? = nil) throws -> IPAddress {
        guard let a = try Netlink().addresses(interface: interface, family: family)
            .first(where: { $0.scope == .universe && $0.address != excluding })?.address else {
            throw ControlError("\(interface) has no global \(family == .v4 ? "IPv4" : "IPv6") address")
        }
        return a
    }

    /// Keeps `address` local without answering for it. Idempotent.
    func hold(_ address: IPAddress) throws {
        try Self.moves.withLock { shields in
            shields.remove(address)
            if address.family == .v4 {
                try Sysctl.write("net.ipv4.conf.all.arp_ignore", 1)
                try Sysctl.write("net.ipv4.conf.all.arp_announce", 2)
            }
            try addToLoopback(address, try Netlink())
        }
    }

    /// Adds `address` to `lo` as a host address; there already is fine. One netlink request
    /// (no dump first: a removal shields a dozen addresses at once, see `removeFromInterface`).
    private func addToLoopback(_ address: IPAddress, _ netlink: Netlink) throws {
        do {
            try netlink.addAddress(address, prefixLength: address.family.bitWidth, interface: "lo",
                                   flags: address.family == .v6 ? .nodad : [])
        } catch let e as NetError where e.errno == EEXIST {}
    }

    /// Stops holding `address` on `lo`. Idempotent.
    func unhold(_ address: IPAddress) throws {
        try Self.moves.withLock { shields in
            shields.remove(address)
            try removeFromLoopback(address, try Netlink())
        }
    }

    private func removeFromLoopback(_ address: IPAddress, _ netlink: Netlink) throws {
        do {
            try netlink.deleteAddress(address, interface: "lo")
        } catch let e as NetError where e.errno == EADDRNOTAVAIL || e.errno == ENOENT || e.errno == ESRCH {}
    }

    /// Puts `address` on the interface (no duplicate detection: it is ours and in use).
    func addToInterface(_ address: IPAddress, prefixLength: Int) throws {
        if address.family == .v4 {
            try Sysctl.write(Sysctl.interfaceKey(interface, "promote_secondaries", family: .v4), 1)
        }
        guard try onInterface(address) == nil else { return }
        try Netlink().addAddress(address, prefixLength: prefixLength, interface: interface,
                                 flags: address.family == .v6 ? .nodad : [])
    }

    /// Takes `address` off the interface without disturbing the addresses beside it. An IPv4
    /// address shares a subnet with the others of its prefix: removing the subnet's primary
    /// promotes a secondary, and the kernel deletes and re-adds the local routes of all of them,
    /// so for an instant they are not local and what arrives for them is dropped
    /// (IpInAddrErrors). Each of them is held on `lo` meanwhile (a /32 that the kernel keeps
    /// local through the promotion), then let go unless it was held already. Removing a
    /// secondary touches only its own routes (`__inet_del_ifa`): no shield, and the clean-up
    /// of a temporary address then costs one netlink request instead of several per sibling.
    func removeFromInterface(_ address: IPAddress) throws {
        try Self.moves.withLock { shields in
            let netlink = try Netlink()
            let present = try netlink.addresses(interface: interface, family: address.family)
            guard let removed = present.first(where: { $0.address == address }) else { return }
            var shielded: [IPAddress] = []
            defer {
                for a in shielded where shields.remove(a) != nil { try? removeFromLoopback(a, netlink) }
            }
            if address.family == .v4, !removed.flags.contains(.secondary) {
                let subnet = removed.prefix
                let siblings = present.filter { $0.address != address && $0.prefixLength == removed.prefixLength && subnet.contains($0.address) }
                // One dump of lo for all of them; what is held already stays as it is.
                let held = siblings.isEmpty ? [] : Set(try netlink.addresses(interface: "lo", family: .v4).map(\.address))
                for s in siblings where !held.contains(s.address) {
                    try addToLoopback(s.address, netlink)
                    shields.insert(s.address)
                    shielded.append(s.address)
                }
            }
            try netlink.deleteAddress(address, interface: interface)
        }
    }

    /// The first address of `pool` of `family` that is on no interface of this host and not in
    /// `inUse`.
    func pick(from pool: [IPPrefix], family: IPAddress.Family, excluding inUse: Set<IPAddress>) throws -> IPAddress? {
        let present = Set(try Netlink().addresses(family: family).map(\.address))
        for prefix in pool where prefix.family == family {
            let count = family == .v4 ? (1 << (32 - prefix.length)) : 1 << min(16, 128 - prefix.length)
            // Skip the network and broadcast addresses of IPv4 blocks larger than two.
            let range = family == .v4 && prefix.length < 31 ? 1..<(count - 1) : 0..<count
            for index in range {
                guard let candidate = prefix.network.address(at: index) else { break }
                if !present.contains(candidate), !inUse.contains(candidate) { return candidate }
            }
        }
        return nil
    }
}
