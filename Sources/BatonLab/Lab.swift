import BatonModel
import BatonNet
import Glibc

/// Test hosts in network namespaces, joined by bridges that live in namespaces of their own.
///
/// Every name comes from a short random prefix ("bt" + 5 characters), so runs never collide and
/// leftovers of a crashed run can be found by name:
///
/// - segment namespace `<prefix>-seg` (a second segment: `<prefix>-seg1`) holding bridge `br0`;
/// - host namespace `<prefix>-<host>`, with `eth0` (`eth1`…) inside;
/// - bridge port (the veth's other end, in the segment namespace) `<prefix><host>` (`<prefix><host>1`…).
///
/// Nothing is created in the namespace of the process: veth peers are created directly in the
/// host namespaces. Deleting the namespaces (`teardown`) deletes everything.
public struct Lab: Sendable {
    /// "bt" + 5 random lowercase letters and digits.
    public let prefix: String
    public let segments: [Segment]
    /// In the order they were given.
    public let hosts: [LabHost]

    /// `built`: this process just made it, so from here on a signal to the process tears it
    /// down (`keep` opts out). A lab found again (`Lab.open`) is someone else's: not tracked.
    init(prefix: String, segments: [Segment], hosts: [LabHost], built: Bool = true) {
        self.prefix = prefix
        self.segments = segments
        self.hosts = hosts
        if built { track() }
    }

    /// The host called `name`. Traps if there is none: hosts are fixed when the lab is built.
    public subscript(_ name: String) -> LabHost {
        guard let host = host(name) else { preconditionFailure("lab \(prefix) has no host \(name)") }
        return host
    }

    public func host(_ name: String) -> LabHost? {
        hosts.first { $0.name == name }
    }

    /// Every namespace of the lab (hosts, then segments).
    public var namespaces: [NetworkNamespace] {
        hosts.map(\.namespace) + segments.map(\.namespace)
    }

    /// Frames the kernel dropped on the lab's links so far (rx and tx dropped of every host
    /// interface and bridge port), keyed "host/eth0" and "seg/port"; links with none are left
    /// out. A high-rate test names with it where packets it did not get were lost.
    public func linkDrops() throws -> [String: UInt64] {
        var drops: [String: UInt64] = [:]
        for (label, namespace) in hosts.map({ ($0.name, $0.namespace) }) + segments.map({ ($0.name, $0.namespace) }) {
            for link in try Netlink(in: namespace).links() {
                guard let s = link.statistics, s.rxDropped + s.txDropped > 0 else { continue }
                drops["\(label)/\(link.name)"] = s.rxDropped + s.txDropped
            }
        }
        return drops
    }

    /// `linkDrops` for a failure message: "none" when no link dropped, the error if unreadable.
    public var linkDropsText: String {
        do {
            let drops = try linkDrops()
            return drops.isEmpty ? "none" : drops.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        } catch {
            return "unreadable (\(error))"
        }
    }

    // MARK: - Topologies

    /// One L2 segment: a bridge and one host per name, each with an IPv4 (/24) and an IPv6
    /// (/64) address on `eth0`, numbered from 1 in the order given.
    public static func segment(hosts names: [String], prefix: String? = nil) throws -> Lab {
        let plan = try Plan(prefix: prefix, segments: 1)
        for (number, name) in names.enumerated() {
            try plan.addHost(name, on: [(segment: 0, number: number + 1)])
        }
        return try plan.build()
    }

    /// A routed variant: `router` joins a correspondent segment (`<prefix>-seg`) and a node
    /// segment (`<prefix>-seg1`) with `eth0` and `eth1`, has .1 / ::1 on both and forwards
    /// IPv4 and IPv6; the other hosts route the far segment through it.
    public static func routed(correspondents: [String] = ["cn"], router: String = "sa",
                              nodes: [String] = ["tn", "target"], prefix: String? = nil) throws -> Lab {
        let plan = try Plan(prefix: prefix, segments: 2)
        for (number, name) in correspondents.enumerated() {
            try plan.addHost(name, on: [(segment: 0, number: number + 2)], gateway: (segment: 0, number: 1))
        }
        try plan.addHost(router, on: [(segment: 0, number: 1), (segment: 1, number: 1)], forwards: true)
        for (number, name) in nodes.enumerated() {
            try plan.addHost(name, on: [(segment: 1, number: number + 2)], gateway: (segment: 1, number: 1))
        }
        return try plan.build()
    }

    /// The topologies `with` can build.
    public enum Topology: Sendable {
        case segment(hosts: [String])
        case routed(correspondents: [String] = ["cn"], router: String = "sa", nodes: [String] = ["tn", "target"])
        /// `Lab.transfer`: the correspondents, sa, tn and target (and rt in L3).
        case transfer(LabLayout, correspondents: [String] = ["cn"])
    }

    public static func build(_ topology: Topology, prefix: String? = nil) throws -> Lab {
        switch topology {
        case .segment(let hosts):
            return try segment(hosts: hosts, prefix: prefix)
        case .routed(let correspondents, let router, let nodes):
            return try routed(correspondents: correspondents, router: router, nodes: nodes, prefix: prefix)
        case .transfer(let layout, let correspondents):
            return try transfer(layout, correspondents: correspondents, prefix: prefix)
        }
    }

    /// Builds a lab, runs `body`, and tears the lab down whether `body` returns or throws.
    public static func with<T>(_ topology: Topology, prefix: String? = nil, _ body: (Lab) throws -> T) throws -> T {
        let lab = try build(topology, prefix: prefix)
        let result: T
        do {
            result = try body(lab)
        } catch {
            try? lab.teardown()
            throw error
        }
        try lab.teardown()
        return result
    }

    /// The same for async bodies.
    public static func with<T>(_ topology: Topology, prefix: String? = nil,
                               isolation: isolated (any Actor)? = #isolation,
                               _ body: (Lab) async throws -> T) async throws -> T {
        let lab = try build(topology, prefix: prefix)
        let result: T
        do {
            result = try await body(lab)
        } catch {
            try? lab.teardown()
            throw error
        }
        try lab.teardown()
        return result
    }

    // MARK: - Teardown and leftovers

    /// Deletes every namespace of the lab, and with them every interface. Idempotent; tries all
    /// namespaces and then throws the first failure, if any.
    public func teardown() throws {
        SignalCleanup.shared.withdraw(lab: prefix)
        try Self.delete(names: namespaces.compactMap(\.name))
    }

    /// Registers the lab to be torn down if the process is interrupted (every topology does
    /// this as soon as it creates its first namespace).
    func track() { SignalCleanup.shared.add(self) }

    /// The lab outlives this process on purpose (`baton-lab up`): no teardown on a signal.
    public func keep() { SignalCleanup.shared.withdraw(lab: prefix) }

    /// Whether `name` looks like a namespace made by a lab: "bt" + 5 characters + "-".
    public static func isLabNamespace(_ name: String) -> Bool {
        let characters = Array(name.utf8)
        guard characters.count > 8, characters[0] == UInt8(ascii: "b"), characters[1] == UInt8(ascii: "t"),
              characters[7] == UInt8(ascii: "-") else { return false }
        return characters[2..<7].allSatisfy(Naming.isNameCharacter)
    }

    /// Deletes the namespaces of the lab with this prefix (`<prefix>-…`), e.g. after a crash.
    /// Returns the names it deleted.
    @discardableResult
    public static func removeStale(prefix: String) throws -> [String] {
        try removeAll { $0.hasPrefix(prefix + "-") }
    }

    /// Deletes every named namespace for which `matching` is true; `removeAll(matching:
    /// Lab.isLabNamespace)` removes all labs', including those of runs still in progress.
    @discardableResult
    public static func removeAll(matching: (String) -> Bool) throws -> [String] {
        let names = NetworkNamespace.list().filter(matching)
        try delete(names: names)
        return names
    }

    private static func delete(names: [String]) throws {
        var firstFailure: (any Error)?
        for name in names {
            do {
                try NetworkNamespace.delete(name: name)
            } catch {
                firstFailure = firstFailure ?? error
            }
        }
        if let firstFailure { throw firstFailure }
    }
}

/// One L2 segment: a bridge in its own namespace.
public struct Segment: Sendable {
    /// "seg", "seg1", …
    public let name: String
    public let namespace: NetworkNamespace
    /// The bridge's name inside `namespace`.
    public let bridge: String
    public let ipv4: IPPrefix
    public let ipv6: IPPrefix
}

/// One interface of a host.
public struct HostInterface: Sendable {
    /// "eth0", "eth1", … inside the host's namespace.
    public let name: String
    /// ifindex inside the host's namespace.
    public let index: Int
    public let mac: MACAddress
    public let ipv4: IPAddress
    public let ipv6: IPAddress
    /// The segment's IPv4 subnet (a /24).
    public let ipv4Network: IPPrefix
    /// The segment's IPv6 subnet (a /64).
    public let ipv6Network: IPPrefix
    /// The segment's name ("seg", "seg1").
    public let segment: String
    /// The veth's other end, a port of the bridge in the segment's namespace.
    public let bridgePort: String
    /// ifindex of `bridgePort` inside the segment's namespace.
    public let bridgePortIndex: Int
}

/// Something a lab cannot build: a bad name, a prefix in use.
public struct LabError: Error, CustomStringConvertible, Sendable {
    public let description: String
}
