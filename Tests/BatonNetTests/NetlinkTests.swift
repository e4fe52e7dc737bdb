import BatonModel
import BatonNet
import Glibc
import Testing

extension KernelTests {
    @Suite struct NetlinkRoundTrips {
        @Test func vethPeerIsCreatedDirectlyInTheOtherNamespace() throws {
            try withNamespaces("va", "vb") { namespaces in
                let (a, b) = (namespaces[0], namespaces[1])
                let inA = try Netlink(in: a)
                let inB = try Netlink(in: b)
                let hostLinks = try Netlink().links().map(\.name)

                try inA.createVeth("vtest0", peer: "eth0", peerNamespace: b)

                let near = try inA.link(named: "vtest0")
                let far = try inB.link(named: "eth0")
                #expect(near.kind == "veth")
                #expect(far.kind == "veth")
                #expect(near.peerIndex == far.index)
                #expect(far.peerIndex == near.index)
                #expect(try inA.links().map(\.name).sorted() == ["lo", "vtest0"])
                #expect(try inB.links().map(\.name).sorted() == ["eth0", "lo"])
                #expect(try Netlink().links().map(\.name) == hostLinks)  // nothing appeared here
            }
        }

        @Test func linkSettingsReadBack() throws {
            try withNamespaces("link") { namespaces in
                let netlink = try Netlink(in: namespaces[0])
                try netlink.createVeth("va", peer: "vb")
                try netlink.createBridge("br0")

                let mac = MACAddress("02:42:ba:70:00:01")!
                try netlink.setMAC("va", to: mac)
                try netlink.setMTU("va", to: 1400)
                try netlink.setMaster("va", to: "br0")
                try netlink.setUp("va")
                try netlink.setUp("vb")
                var link = try netlink.link(named: "va")
                let bridge = try netlink.link(named: "br0")
                #expect(link.mac == mac)
                #expect(link.mtu == 1400)
                #expect(link.masterIndex == bridge.index)
                #expect(link.isUp)
                #expect(bridge.kind == "bridge")
                #expect(try netlink.link(index: link.index).name == "va")

                try netlink.setMaster("va", to: nil)
                try netlink.setDown("va")
                try netlink.rename("va", to: "vrenamed")
                link = try netlink.link(named: "vrenamed")
                #expect(link.masterIndex == nil)
                #expect(!link.isUp)

                try netlink.deleteLink("vrenamed")  // takes its peer with it
                #expect(try netlink.links().map(\.name).sorted() == ["br0", "lo"])
            }
        }

        /// IFLA_STATS64 read back: what one end sent, the other received; a datagram to a
        /// peer that is down is counted as dropped where it was sent.
        @Test func linkStatisticsCountWhatCrossed() throws {
            try withNamespaces("sa", "sb") { namespaces in
                let (a, b) = (namespaces[0], namespaces[1])
                let inA = try Netlink(in: a), inB = try Netlink(in: b)
                // IPv4 only: no IPv6 autoconfiguration frames in the counts.
                for n in namespaces { try Sysctl.write("net.ipv6.conf.default.disable_ipv6", 1, in: n) }
                try inA.createVeth("eth0", peer: "eth0", peerNamespace: b)
                for (netlink, last) in [(inA, 1), (inB, 2)] {
                    try netlink.addAddress(IPAddress("10.77.0.\(last)")!, prefixLength: 24, interface: "eth0")
                    try netlink.setUp("eth0")
                }
                let before = try #require(try inA.link(named: "eth0").statistics)
                let sender = try UDPSocket(in: a, family: .v4)
                // A listener, so b answers nothing (an ICMP error would need ARP, adding frames).
                let listener = try UDPSocket(in: b, family: .v4, port: 9)
                defer { listener.close(); sender.close() }
                // The neighbour entry first (its ARP exchange adds to the counts), then 10.
                try inA.addNeighbour(IPAddress("10.77.0.2")!, mac: try #require(try inB.link(named: "eth0").mac), interface: "eth0")
                for _ in 0..<10 { try sender.send([1, 2, 3], to: IPAddress("10.77.0.2")!, port: 9) }
                let sent = try #require(try inA.link(named: "eth0").statistics)
                let received = try #require(try inB.link(named: "eth0").statistics)
                #expect(sent.txPackets - before.txPackets == 10, "\(before) → \(sent)")
                #expect(received.rxPackets >= 10 && sent.txDropped == 0, "\(received)")

                try inB.setDown("eth0")
                try? sender.send([4], to: IPAddress("10.77.0.2")!, port: 9)
                let after = try #require(try inA.link(named: "eth0").statistics)
                #expect(after.txDropped == sent.txDropped + 1 && after.txPackets == sent.txPackets, "\(sent) → \(after)")
            }
        }

        @Test func moveLinkToAnotherNamespace() throws {
            try withNamespaces("ma", "mb") { namespaces in
                let inA = try Netlink(in: namespaces[0])
                let inB = try Netlink(in: namespaces[1])
                try inA.createVeth("m0", peer: "m1")
                try inA.moveLink("m1", to: namespaces[1], newName: "eth7")
                #expect(try inA.links().map(\.name).sorted() == ["lo", "m0"])
                #expect(try inB.link(named: "eth7").kind == "veth")
            }
        }

        @Test func addressesReadBackWithFlagsAndScope() throws {
            try withNamespaces("addr") { namespaces in
                let netlink = try Netlink(in: namespaces[0])
                try netlink.createVeth("a0", peer: "a1")
                try netlink.setUp("a0")
                try netlink.setUp("a1")
                let v4 = IPAddress("10.77.1.1")!
                let v6 = IPAddress("fd00:77::1")!
                try netlink.addAddress(v4, prefixLength: 24, interface: "a0")
                try netlink.addAddress(IPPrefix("fd00:77::1/64")!, interface: "a0", flags: [.nodad, .noPrefixRoute])
                try netlink.addAddress(IPAddress("10.77.9.9")!, prefixLength: 32, interface: "lo", scope: .host)

                let onA0 = try netlink.addresses(interface: "a0")
                let a0 = try netlink.link(named: "a0")
                let found4 = try #require(onA0.first { $0.address == v4 })
                let found6 = try #require(onA0.first { $0.address == v6 })
                #expect(found4.prefixLength == 24)
                #expect(found4.interfaceIndex == a0.index)
                #expect(found4.scope == .universe)
                #expect(found6.prefixLength == 64)
                #expect(found6.flags.contains([.nodad, .noPrefixRoute]))
                #expect(!found6.flags.contains(.tentative))  // nodad: usable at once
                let onLo = try netlink.addresses(interface: "lo", family: .v4)
                #expect(onLo.map(\.address) == [IPAddress("10.77.9.9")!])
                #expect(onLo.first?.scope == .host)

                // noprefixroute: the /24 has its route, the /64 has none.
                #expect(try netlink.routes(family: .v4).contains { $0.destination == IPPrefix("10.77.1.0/24")! })
                #expect(!(try netlink.routes(family: .v6).contains { $0.destination == IPPrefix("fd00:77::/64")! }))

                try netlink.deleteAddress(v4, prefixLength: 24, interface: "a0")
                try netlink.deleteAddress(v6, interface: "a0")
                #expect(try netlink.addresses(interface: "a0").allSatisfy { $0.address != v4 && $0.address != v6 })
            }
        }

        @Test func routesViaGatewayAndDevice() throws {
            try withNamespaces("route") { namespaces in
                let netlink = try Netlink(in: namespaces[0])
                try netlink.createVeth("r0", peer: "r1")
                try netlink.setUp("r0")
                try netlink.setUp("r1")
                try netlink.addAddress(IPAddress("10.78.0.1")!, prefixLength: 24, interface: "r0")
                try netlink.addAddress(IPAddress("fd00:78::1")!, prefixLength: 64, interface: "r0", flags: .nodad)
                let index = try netlink.link(named: "r0").index

                try netlink.addRoute(IPPrefix("10.99.0.0/16")!, via: IPAddress("10.78.0.2")!)
                try netlink.addRoute(IPPrefix("10.98.0.0/16")!, interface: "r0", metric: 7)
                try netlink.addRoute(IPPrefix("fd00:99::/48")!, via: IPAddress("fd00:78::2")!, interface: "r0")
                try netlink.addRoute(IPPrefix("0.0.0.0/0")!, via: IPAddress("10.78.0.254")!)

                let v4 = try netlink.routes(family: .v4)
                let viaGateway = try #require(v4.first { $0.destination == IPPrefix("10.99.0.0/16")! })
                #expect(viaGateway.gateway == IPAddress("10.78.0.2"))
                #expect(viaGateway.interfaceIndex == index)
                let onLink = try #require(v4.first { $0.destination == IPPrefix("10.98.0.0/16")! })
                #expect(onLink.gateway == nil)
                #expect(onLink.scope == .link)
                #expect(onLink.metric == 7)
                #expect(v4.contains { $0.destination.length == 0 && $0.gateway == IPAddress("10.78.0.254") })
                let v6 = try #require(try netlink.routes(family: .v6).first { $0.destination == IPPrefix("fd00:99::/48")! })
                #expect(v6.gateway == IPAddress("fd00:78::2"))
                #expect(v6.interfaceIndex == index)

                try netlink.deleteRoute(IPPrefix("10.99.0.0/16")!)
                try netlink.deleteRoute(IPPrefix("fd00:99::/48")!, via: IPAddress("fd00:78::2")!)
                #expect(!(try netlink.routes(family: .v4).contains { $0.destination == IPPrefix("10.99.0.0/16")! }))
                #expect(!(try netlink.routes(family: .v6).contains { $0.destination == IPPrefix("fd00:99::/48")! }))
            }
        }

        @Test func neighboursAddReadReplaceDelete() throws {
            try withNamespaces("neigh") { namespaces in
                let netlink = try Netlink(in: namespaces[0])
                try netlink.createVeth("n0", peer: "n1")
                try netlink.setUp("n0")
                try netlink.addAddress(IPAddress("10.79.0.1")!, prefixLength: 24, interface: "n0")
                let peer4 = IPAddress("10.79.0.2")!
                let peer6 = IPAddress("fd00:79::2")!
                let mac = MACAddress("02:00:00:00:79:02")!
                let otherMAC = MACAddress("02:00:00:00:79:03")!

                #expect(try netlink.neighbour(peer4, interface: "n0") == nil)
                try netlink.addNeighbour(peer4, mac: mac, interface: "n0")
                try netlink.addNeighbour(peer6, mac: mac, interface: "n0", state: .stale)

                let entry4 = try #require(try netlink.neighbour(peer4, interface: "n0"))
                #expect(entry4.mac == mac)
                #expect(entry4.state == .permanent)
                let entry6 = try #require(try netlink.neighbour(peer6, interface: "n0"))
                #expect(entry6.state == .stale)
                let listed = try netlink.neighbours(interface: "n0")
                #expect(Set(listed.map(\.address)).isSuperset(of: [peer4, peer6]))
                #expect(try netlink.neighbours(interface: "n0", family: .v4).allSatisfy { $0.address.family == .v4 })

                // add refuses an existing entry; replace overwrites it.
                let duplicate = #expect(throws: NetError.self) { try netlink.addNeighbour(peer4, mac: otherMAC, interface: "n0") }
                #expect(duplicate?.errno == EEXIST)
                try netlink.addNeighbour(peer4, mac: otherMAC, interface: "n0", state: .reachable, replace: true)
                let replaced = try #require(try netlink.neighbour(peer4, interface: "n0"))
                #expect(replaced.mac == otherMAC)
                #expect(replaced.state == .reachable)

                try netlink.deleteNeighbour(peer4, interface: "n0")
                try netlink.deleteNeighbour(peer6, interface: "n0")
                #expect(try netlink.neighbour(peer4, interface: "n0") == nil)
            }
        }

        @Test func errorsSayWhatFailedAndWhy() throws {
            try withNamespaces("err") { namespaces in
                let netlink = try Netlink(in: namespaces[0])
                try netlink.createVeth("veth0", peer: "veth1")
                let address = IPAddress("10.0.0.1")!

                let unknown = #expect(throws: NetError.self) {
                    try netlink.addAddress(address, prefixLength: 24, interface: "nope0")
                }
                #expect(unknown?.errno == ENODEV)
                #expect(unknown?.description == "netlink: add address 10.0.0.1/24 on nope0: No such device (ENODEV)")

                try netlink.addAddress(address, prefixLength: 24, interface: "veth0")
                let duplicate = #expect(throws: NetError.self) {
                    try netlink.addAddress(address, prefixLength: 24, interface: "veth0")
                }
                #expect(duplicate?.errno == EEXIST)
                #expect(duplicate?.description.hasPrefix("netlink: add address 10.0.0.1/24 on veth0: File exists (EEXIST)") == true)

                let sameName = #expect(throws: NetError.self) { try netlink.createVeth("veth0", peer: "other") }
                #expect(sameName?.errno == EEXIST)

                let badLength = #expect(throws: NetError.self) {
                    try netlink.addAddress(address, prefixLength: 33, interface: "veth0")
                }
                #expect(badLength?.errno == EINVAL)

                let missing = #expect(throws: NetError.self) { try netlink.deleteLink("nope0") }
                #expect(missing?.description == "netlink: delete link nope0: No such device (ENODEV)")

                let noSuchNamespace = NetworkNamespace(path: "/nonexistent/ns")
                #expect(throws: NetError.self) { try netlink.createVeth("x0", peer: "x1", peerNamespace: noSuchNamespace) }
            }
        }
    }

    @Suite struct Offloads {
        @Test func txChecksumAndGROToggleAndReadBack() throws {
            try withNamespaces("eth") { namespaces in
                let namespace = namespaces[0]
                try Netlink(in: namespace).createVeth("o0", peer: "o1")
                try Ethtool.setTxChecksum(false, interface: "o0", in: namespace)
                try Ethtool.setGRO(true, interface: "o0", in: namespace)
                #expect(try Ethtool.txChecksum(interface: "o0", in: namespace) == false)
                #expect(try Ethtool.gro(interface: "o0", in: namespace) == true)
                #expect(try Ethtool.txChecksum(interface: "o1", in: namespace) == true)  // the peer is untouched
                try Ethtool.setGRO(false, interface: "o0", in: namespace)
                #expect(try Ethtool.gro(interface: "o0", in: namespace) == false)

                let error = #expect(throws: NetError.self) { try Ethtool.setGRO(true, interface: "nope0", in: namespace) }
                #expect(error?.errno == ENODEV)
                #expect(error?.description.hasPrefix("ethtool: -K nope0 gro on: No such device (ENODEV)") == true)
            }
        }
    }
}
