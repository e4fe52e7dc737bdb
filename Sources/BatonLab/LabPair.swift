import BatonNet

extension Lab {
    /// Two hosts joined by one veth pair, directly: no bridge, no segment namespace.
    ///
    /// - namespaces `<prefix>-<first>` and `<prefix>-<second>`, each with `eth0`, the two ends
    ///   of the one veth pair;
    /// - `first` has .1 and ::1, `second` .2 and ::2 of the lab's /24 and /64 (the same
    ///   numbering as `segment`);
    /// - TX checksumming is off at both ends (design.md: veth senders leave partial checksums)
    ///   and GRO on, as on the segment's ports. No XDP program is attached: a host that must
    ///   receive frames the other XDP_TX's or redirects needs one on its `eth0` (baton_pass is
    ///   enough; with GRO alone a veth delivers them only when the next ordinary packet comes).
    ///
    /// There is no bridge, so each interface's `bridgePort`/`bridgePortIndex` name the *other*
    /// end of the pair (`eth0` and its ifindex in the other host's namespace), `segment` is
    /// "pair", and `segments` is empty. `teardown()` deletes both namespaces.
    ///
    /// Made for the benchmark: a frame one host sends arrives at the other with nothing in
    /// between, so what is measured is the two hosts' paths only.
    public static func pair(_ first: String = "a", _ second: String = "b", prefix: String? = nil) throws -> Lab {
        let plan = try Plan(prefix: prefix, segments: 0)
        let prefix = plan.prefix
        for name in [first, second] {
            guard Naming.isName(name), !name.hasPrefix("seg") else {
                throw LabError(description: "lab: host name \"\(name)\" must be lowercase letters or digits, not seg…")
            }
        }
        guard first != second else { throw LabError(description: "lab: host \(first) given twice") }
        let ipv4 = Naming.ipv4Network(prefix: prefix, segment: 0)
        let ipv6 = Naming.ipv6Network(prefix: prefix, segment: 0)

        var made: [NetworkNamespace] = []
        do {
            let namespaces = try [first, second].map { name -> NetworkNamespace in
                let namespace = try NetworkNamespace.create(name: "\(prefix)-\(name)")
                made.append(namespace)
                try namespace.run {
                    // Before any interface exists, so eth0 and its link-local address skip DAD too.
                    try Sysctl.write("net.ipv6.conf.all.accept_dad", 0)
                    try Sysctl.write("net.ipv6.conf.default.accept_dad", 0)
                    try Netlink().setUp("lo")
                }
                return namespace
            }
            // eth0 in the first namespace, its peer eth0 made directly in the second.
            try namespaces[0].run {
                try Netlink().createVeth("eth0", peer: "eth0", peerNamespace: namespaces[1])
            }
            var links: [Link] = []
            for (number, namespace) in namespaces.enumerated() {
                links.append(try namespace.run {
                    let netlink = try Netlink()
                    try Ethtool.setTxChecksum(false, interface: "eth0")
                    try Ethtool.setGRO(true, interface: "eth0")
                    try netlink.addAddress(ipv4.address(at: number + 1)!, prefixLength: ipv4.length, interface: "eth0")
                    try netlink.addAddress(ipv6.address(at: number + 1)!, prefixLength: ipv6.length, interface: "eth0",
                                           flags: .nodad)
                    try netlink.setUp("eth0")
                    return try netlink.link(named: "eth0")
                })
            }
            let hosts = [first, second].enumerated().map { number, name in
                let other = 1 - number
                return LabHost(name: name, namespace: namespaces[number], interfaces: [
                    HostInterface(name: "eth0", index: links[number].index, mac: links[number].mac!,
                                  ipv4: ipv4.address(at: number + 1)!, ipv6: ipv6.address(at: number + 1)!,
                                  ipv4Network: ipv4, ipv6Network: ipv6, segment: "pair",
                                  bridgePort: "eth0", bridgePortIndex: links[other].index),
                ])
            }
            return Lab(prefix: prefix, segments: [], hosts: hosts)
        } catch {
            for namespace in made { try? namespace.delete() }
            throw error
        }
    }
}
