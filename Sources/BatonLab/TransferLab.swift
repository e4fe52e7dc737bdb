import BatonModel
import BatonNet
import Glibc

/// The two arrangements a whole transfer is tried in (`Lab.transfer`).
public enum LabLayout: String, Sendable, CaseIterable, Codable {
    /// One segment: the correspondents, "sa", "tn" and "target"; the agent steers by MAC rewrite.
    case l2
    /// "target" on a second segment behind router "rt": the agent must tunnel (IPIP) to it.
    case l3

    /// The transfer mode this layout calls for: MAC rewrite on one segment, a tunnel across the router.
    public var transferMode: TransferMode { self == .l2 ? .l2 : .l3 }
}

extension Lab {
    /// The hosts every transfer lab has besides its correspondents.
    public static let transferRoles = ["sa", "tn", "target"]
    /// The router of the L3 layout.
    public static let transferRouter = "rt"

    /// The topology for whole transfers (tests, the demo, the benchmark).
    ///
    /// - `.l2`: one segment with `correspondents`, then "sa", "tn", "target" (numbered in that
    ///   order from .1 / ::1).
    /// - `.l3`: `correspondents`, "tn" and "sa" on segment 0 and "target" on segment 1, behind
    ///   router "rt" (`Lab.routed(correspondents: correspondents + ["tn", "sa"], router: "rt",
    ///   nodes: ["target"])`). The target is reached only through rt, so steering to it has to be
    ///   encapsulated by the agent. rt has `rp_filter` off (all, default and both interfaces): the
    ///   target answers from the TN's address, a segment-0 address, out of segment 1, and a
    ///   strict or loose reverse-path check would drop those packets.
    public static func transfer(_ layout: LabLayout, correspondents: [String] = ["cn"], prefix: String? = nil) throws -> Lab {
        let reserved = transferRoles + [transferRouter]
        if let clash = correspondents.first(where: reserved.contains) {
            throw LabError(description: "lab: correspondent name \(clash) is taken by the transfer layout (\(reserved.joined(separator: ", ")))")
        }
        guard !correspondents.isEmpty else {
            throw LabError(description: "lab: a transfer lab needs at least one correspondent")
        }
        let lab = switch layout {
        case .l2: try segment(hosts: correspondents + transferRoles, prefix: prefix)
        case .l3: try routed(correspondents: correspondents + ["tn", "sa"], router: transferRouter,
                             nodes: ["target"], prefix: prefix)
        }
        do {
            // GRO puts every host's veth in NAPI mode: frames are received from one ring in
            // the order they were sent. Without it a veth hands each frame to the backlog of
            // whichever CPU forwarded it, and a flow whose upstream processing hops between
            // the two CPUs (the agent's NAPI is also driven by other flows) arrives reordered
            // now and then: measured 1 in ~2000 datagrams of a 20 kpps call. A NIC hashes a
            // flow to one queue and never does that; the lab should not either.
            for host in lab.hosts {
                for interface in host.interfaces {
                    try Ethtool.setGRO(true, interface: interface.name, in: host.namespace)
                }
            }
            if layout == .l3 {
                let router = lab[transferRouter]
                try router.run {
                    // conf.all and the interface's value: the kernel uses the larger of the two.
                    for key in ["all", "default"] + router.interfaces.map(\.name) {
                        try Sysctl.write(Sysctl.interfaceKey(key, "rp_filter", family: .v4), 0)
                    }
                }
            }
            try lab.waitUntilUp()
        } catch {
            try? lab.teardown()
            throw error
        }
        return lab
    }

    /// Waits until every host interface and bridge port of the lab is operationally up.
    ///
    /// A new veth's carrier reaches the rest of the kernel through linkwatch, which handles
    /// such events at most about once a second: until then the interface has no queueing
    /// discipline (frames sent are dropped silently) and a bridge port does not forward. Sockets
    /// that resolve neighbours retry and never notice; a single frame sent at once (an
    /// announcement) is lost. Throws `LabError` naming what is still down after `timeout`.
    public func waitUntilUp(timeout: Duration = .seconds(5)) throws {
        var checks: [(namespace: NetworkNamespace, names: [String])] = hosts.map { host in
            (host.namespace, host.interfaces.map(\.name))
        }
        for segment in segments {
            let ports = hosts.flatMap(\.interfaces).filter { $0.segment == segment.name }.map(\.bridgePort)
            checks.append((segment.namespace, ports))
        }
        let sockets = try checks.map { (try Netlink(in: $0.namespace), $0.names, $0.namespace) }
        let deadline = ContinuousClock.now + timeout
        while true {
            var down: [String] = []
            for (netlink, names, namespace) in sockets {
                for name in names where try netlink.link(named: name).operationalState != .up {
                    down.append("\(name) in \(namespace)")
                }
            }
            if down.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                throw LabError(description: "lab: not up after \(timeout): \(down.joined(separator: ", "))")
            }
            usleep(20_000)
        }
    }

    /// Builds a transfer lab, runs `body`, and tears the lab down whether `body` returns or throws.
    public static func withTransfer<T>(_ layout: LabLayout, correspondents: [String] = ["cn"], prefix: String? = nil,
                                       _ body: (Lab) throws -> T) throws -> T {
        try with(.transfer(layout, correspondents: correspondents), prefix: prefix, body)
    }

    /// The same for async bodies.
    public static func withTransfer<T>(_ layout: LabLayout, correspondents: [String] = ["cn"], prefix: String? = nil,
                                       isolation: isolated (any Actor)? = #isolation,
                                       _ body: (Lab) async throws -> T) async throws -> T {
        try await with(.transfer(layout, correspondents: correspondents), prefix: prefix, isolation: isolation, body)
    }

    /// Which transfer layout this lab has, judged by its hosts and segments; nil for other labs.
    public var layout: LabLayout? {
        let names = Set(hosts.map(\.name))
        guard Set(Self.transferRoles).isSubset(of: names) else { return nil }
        if segments.count == 1, !names.contains(Self.transferRouter) { return .l2 }
        if segments.count == 2, names.contains(Self.transferRouter) { return .l3 }
        return nil
    }

    /// The hosts that are not "sa", "tn", "target" or "rt": in a transfer lab, the correspondents.
    public var correspondents: [LabHost] {
        let roles = Self.transferRoles + [Self.transferRouter]
        return hosts.filter { !roles.contains($0.name) }
    }

    // MARK: - Reading a lab back from the kernel

    /// Prefixes of the labs whose namespaces exist now (names as `isLabNamespace` accepts), sorted.
    public static func presentPrefixes() -> [String] {
        let names = NetworkNamespace.list().filter(isLabNamespace)
        return Array(Set(names.map { String($0.prefix(7)) })).sorted()
    }

    /// Whether any namespace `<prefix>-…` exists.
    public static func exists(prefix: String) -> Bool {
        NetworkNamespace.list().contains { $0.hasPrefix(prefix + "-") }
    }

    /// The lab with `prefix` as the kernel has it now, e.g. one `baton-lab up` left running:
    /// segments from the `<prefix>-seg…` namespaces, hosts from the others, and per host its
    /// `eth*` interfaces with their MACs and addresses (the first global IPv4 and IPv6 address
    /// of each; 0.0.0.0 / :: if it has none). Hosts come in the order they were built in (for
    /// the labs `segment`, `routed` and `transfer` make). Throws `LabError` if no namespace has
    /// the prefix.
    public static func open(prefix: String) throws -> Lab {
        let names = NetworkNamespace.list().filter { $0.hasPrefix(prefix + "-") }
        guard !names.isEmpty else { throw LabError(description: "lab: no lab with prefix \(prefix)") }
        let suffixes = names.map { String($0.dropFirst(prefix.count + 1)) }

        let segmentNames = suffixes.filter { $0 == "seg" || ($0.hasPrefix("seg") && Int($0.dropFirst(3)) != nil) }
        let segments = try segmentNames.sorted { segmentIndex($0) < segmentIndex($1) }.map { name -> Segment in
            let index = segmentIndex(name)
            return Segment(name: name, namespace: try NetworkNamespace.open(name: "\(prefix)-\(name)"), bridge: "br0",
                           ipv4: Naming.ipv4Network(prefix: prefix, segment: index),
                           ipv6: Naming.ipv6Network(prefix: prefix, segment: index))
        }
        // Bridge ports by name, per segment.
        var ports: [String: (segment: Segment, index: Int)] = [:]
        for segment in segments {
            for link in try Netlink(in: segment.namespace).links() where link.name != segment.bridge {
                ports[link.name] = (segment, link.index)
            }
        }

        var hosts: [LabHost] = []
        for name in suffixes where !segmentNames.contains(name) {
            let namespace = try NetworkNamespace.open(name: "\(prefix)-\(name)")
            let netlink = try Netlink(in: namespace)
            let links = try netlink.links().filter { $0.name.hasPrefix("eth") && Int($0.name.dropFirst(3)) != nil }
                .sorted { Int($0.name.dropFirst(3))! < Int($1.name.dropFirst(3))! }
            let addresses = try netlink.addresses()
            var interfaces: [HostInterface] = []
            for link in links {
                let number = Int(link.name.dropFirst(3))!
                let portName = Naming.bridgePort(prefix: prefix, host: name, interface: number)
                let port = ports[portName]
                let ipv4Network = port?.segment.ipv4 ?? Naming.ipv4Network(prefix: prefix, segment: 0)
                let ipv6Network = port?.segment.ipv6 ?? Naming.ipv6Network(prefix: prefix, segment: 0)
                let own = addresses.filter { $0.interfaceIndex == link.index && $0.scope == .universe }
                func pick(_ family: IPAddress.Family, _ network: IPPrefix) -> IPAddress {
                    let candidates = own.filter { $0.address.family == family }
                    return (candidates.first { network.contains($0.address) } ?? candidates.first)?.address ?? .any(family)
                }
                interfaces.append(HostInterface(
                    name: link.name, index: link.index, mac: link.mac ?? .zero,
                    ipv4: pick(.v4, ipv4Network), ipv6: pick(.v6, ipv6Network),
                    ipv4Network: ipv4Network, ipv6Network: ipv6Network,
                    segment: port?.segment.name ?? (segments.isEmpty ? "pair" : "?"),
                    bridgePort: port == nil ? (segments.isEmpty ? "eth0" : "") : portName,
                    bridgePortIndex: port?.index ?? 0))
            }
            hosts.append(LabHost(name: name, namespace: namespace, interfaces: interfaces))
        }
        // The order they were built in: by their last interface's segment, then its address
        // (so a router comes after the hosts of its first segment, before those of its second).
        hosts.sort { a, b in
            let (sa, sb) = (a.interfaces.last.map { segmentIndex($0.segment) } ?? Int.max,
                            b.interfaces.last.map { segmentIndex($0.segment) } ?? Int.max)
            if sa != sb { return sa < sb }
            let (ia, ib) = (a.interfaces.last?.ipv4.wireBytes ?? [], b.interfaces.last?.ipv4.wireBytes ?? [])
            if ia != ib { return ia.lexicographicallyPrecedes(ib) }
            return a.name < b.name
        }
        return Lab(prefix: prefix, segments: segments, hosts: hosts, built: false)
    }

    /// "seg" → 0, "seg1" → 1, "pair" → 0; anything else sorts last.
    private static func segmentIndex(_ name: String) -> Int {
        if name == "seg" || name == "pair" { return 0 }
        if name.hasPrefix("seg"), let number = Int(name.dropFirst(3)) { return number }
        return Int.max
    }
}
