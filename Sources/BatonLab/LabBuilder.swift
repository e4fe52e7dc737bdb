import BatonBPF
import BatonModel
import BatonNet

/// Names and address ranges derived from a lab's prefix.
enum Naming {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
    static let interfaceNameLimit = 15  // IFNAMSIZ less the NUL

    static func isNameCharacter(_ byte: UInt8) -> Bool {
        alphabet.contains(byte)
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(isNameCharacter)
    }

    static func randomPrefix() -> String {
        "bt" + String(decoding: (0..<5).map { _ in alphabet.randomElement()! }, as: UTF8.self)
    }

    static func segmentName(_ index: Int) -> String {
        index == 0 ? "seg" : "seg\(index)"
    }

    static func bridgePort(prefix: String, host: String, interface: Int) -> String {
        prefix + host + (interface == 0 ? "" : String(interface))
    }

    /// FNV-1a: stable across runs (Swift's Hasher is seeded per process).
    static func hash(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// 10.A.B.0/24; segments of one lab differ in the low bit of B.
    static func ipv4Network(prefix: String, segment: Int) -> IPPrefix {
        let hash = hash(prefix)
        let second = UInt8(truncatingIfNeeded: hash)
        let third = UInt8(truncatingIfNeeded: hash >> 8) & 0xfe | UInt8(segment & 1)
        return IPPrefix(IPAddress(wire: [10, second, third, 0])!, length: 24)!
    }

    /// A ULA /64: fd + 40 bits of the prefix's hash + the segment as subnet id.
    static func ipv6Network(prefix: String, segment: Int) -> IPPrefix {
        let hash = hash(prefix)
        var bytes: [UInt8] = [0xfd] + (0..<5).map { UInt8(truncatingIfNeeded: hash >> (16 + 8 * $0)) }
        bytes += [0, UInt8(segment)] + [UInt8](repeating: 0, count: 8)
        return IPPrefix(IPAddress(wire: bytes)!, length: 64)!
    }
}

/// Collects a topology, then builds it; on any failure deletes what it made.
final class Plan {
    struct Attachment {
        var segment: Int
        var number: Int
    }

    struct HostPlan {
        var name: String
        var attachments: [Attachment]
        var gateway: Attachment?
        var forwards: Bool
    }

    let prefix: String
    private let segmentCount: Int
    private var hosts: [HostPlan] = []

    init(prefix: String?, segments: Int) throws {
        if let prefix {
            guard Naming.isName(prefix), prefix.utf8.count <= 8 else {
                throw LabError(description: "lab: prefix \"\(prefix)\" must be 1-8 lowercase letters or digits")
            }
            guard !Self.inUse(prefix) else {
                throw LabError(description: "lab: prefix \(prefix) is in use (namespaces \(prefix)-… exist)")
            }
            self.prefix = prefix
        } else {
            var candidate = Naming.randomPrefix()
            while Self.inUse(candidate) { candidate = Naming.randomPrefix() }
            self.prefix = candidate
        }
        segmentCount = segments
    }

    private static func inUse(_ prefix: String) -> Bool {
        NetworkNamespace.list().contains { $0.hasPrefix(prefix + "-") }
    }

    func addHost(_ name: String, on attachments: [(segment: Int, number: Int)],
                 gateway: (segment: Int, number: Int)? = nil, forwards: Bool = false) throws {
        guard Naming.isName(name), !name.hasPrefix("seg") else {
            throw LabError(description: "lab: host name \"\(name)\" must be lowercase letters or digits, not seg…")
        }
        guard !hosts.contains(where: { $0.name == name }) else {
            throw LabError(description: "lab: host \(name) given twice")
        }
        for index in attachments.indices {
            let port = Naming.bridgePort(prefix: prefix, host: name, interface: index)
            guard port.utf8.count <= Naming.interfaceNameLimit else {
                throw LabError(description: "lab: interface name \(port) (prefix \(prefix) + host \(name)) is longer than 15")
            }
        }
        hosts.append(HostPlan(
            name: name, attachments: attachments.map { Attachment(segment: $0.segment, number: $0.number) },
            gateway: gateway.map { Attachment(segment: $0.segment, number: $0.number) }, forwards: forwards))
    }

    func build() throws -> Lab {
        var made: [NetworkNamespace] = []
        do {
            let segments = try (0..<segmentCount).map { index in
                let segment = try buildSegment(index) { made.append($0) }
                return segment
            }
            let hosts = try hosts.map { plan in
                try buildHost(plan, segments) { made.append($0) }
            }
            return Lab(prefix: prefix, segments: segments, hosts: hosts)
        } catch {
            for namespace in made { try? namespace.delete() }
            throw error
        }
    }

    private func buildSegment(_ index: Int, _ made: (NetworkNamespace) -> Void) throws -> Segment {
        let name = Naming.segmentName(index)
        let namespace = try NetworkNamespace.create(name: "\(prefix)-\(name)")
        made(namespace)
        let bridge = "br0"
        try namespace.run {
            // The segment only switches frames: no IPv6 chatter (RS, MLD) of its own.
            try Sysctl.write("net.ipv6.conf.all.disable_ipv6", 1)
            try Sysctl.write("net.ipv6.conf.default.disable_ipv6", 1)
            let netlink = try Netlink()
            try netlink.setUp("lo")
            // Without snooping the bridge floods multicast, so NDP never depends on MLD state.
            try netlink.createBridge(bridge, multicastSnooping: false)
            try netlink.setUp(bridge)
        }
        return Segment(name: name, namespace: namespace, bridge: bridge,
                       ipv4: Naming.ipv4Network(prefix: prefix, segment: index),
                       ipv6: Naming.ipv6Network(prefix: prefix, segment: index))
    }

    private func buildHost(_ plan: HostPlan, _ segments: [Segment], _ made: (NetworkNamespace) -> Void) throws -> LabHost {
        let namespace = try NetworkNamespace.create(name: "\(prefix)-\(plan.name)")
        made(namespace)
        try namespace.run {
            // Before any interface exists, so eth* and their link-local addresses skip DAD too.
            try Sysctl.write("net.ipv6.conf.all.accept_dad", 0)
            try Sysctl.write("net.ipv6.conf.default.accept_dad", 0)
            if plan.forwards {
                try Sysctl.write("net.ipv4.ip_forward", 1)
                try Sysctl.write("net.ipv6.conf.all.forwarding", 1)
            }
            try Netlink().setUp("lo")
        }

        var ports: [(name: String, index: Int)] = []
        for (index, attachment) in plan.attachments.enumerated() {
            let segment = segments[attachment.segment]
            let port = Naming.bridgePort(prefix: prefix, host: plan.name, interface: index)
            try segment.namespace.run {
                let netlink = try Netlink()
                try netlink.createVeth(port, peer: "eth\(index)", peerNamespace: namespace)
                try netlink.setMaster(port, to: segment.bridge)
                // See design.md: veth senders leave partial checksums. A veth
                // queues frames XDP_TX'd into it, but only wakes to deliver them
                // at once when it runs an XDP program itself (with GRO alone they
                // wait for the next ordinary packet): so every port runs baton_pass.
                try Ethtool.setTxChecksum(false, interface: port)
                try Ethtool.setGRO(true, interface: port)
                let index = try netlink.link(named: port).index
                try XDPLink.attachToInterface(try ToolPrograms.shared().pass, ifindex: UInt32(index), mode: .native)
                try netlink.setUp(port)
                ports.append((port, index))
            }
        }

        let interfaces = try namespace.run {
            let netlink = try Netlink()
            return try plan.attachments.enumerated().map { index, attachment -> HostInterface in
                let segment = segments[attachment.segment]
                let name = "eth\(index)"
                guard let ipv4 = segment.ipv4.address(at: attachment.number),
                      let ipv6 = segment.ipv6.address(at: attachment.number) else {
                    throw LabError(description: "lab: no address \(attachment.number) in \(segment.ipv4)")
                }
                try Ethtool.setTxChecksum(false, interface: name)
                try netlink.addAddress(ipv4, prefixLength: segment.ipv4.length, interface: name)
                try netlink.addAddress(ipv6, prefixLength: segment.ipv6.length, interface: name, flags: .nodad)
                try netlink.setUp(name)
                let link = try netlink.link(named: name)
                return HostInterface(
                    name: name, index: link.index, mac: link.mac!, ipv4: ipv4, ipv6: ipv6,
                    ipv4Network: segment.ipv4, ipv6Network: segment.ipv6, segment: segment.name,
                    bridgePort: ports[index].name, bridgePortIndex: ports[index].index)
            }
        }

        if let gateway = plan.gateway {
            try namespace.run {
                let netlink = try Netlink()
                let near = segments[gateway.segment]
                for far in segments where far.name != near.name {
                    try netlink.addRoute(far.ipv4, via: near.ipv4.address(at: gateway.number)!)
                    try netlink.addRoute(far.ipv6, via: near.ipv6.address(at: gateway.number)!)
                }
            }
        }
        return LabHost(name: plan.name, namespace: namespace, interfaces: interfaces)
    }
}
