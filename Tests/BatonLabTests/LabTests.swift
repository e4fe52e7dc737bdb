import BatonLab
import BatonModel
import BatonNet
import Glibc
import Testing

extension KernelTests {
    @Suite struct Labs {
        /// Sends one datagram from `sender` to `receiver` and checks it arrives with the sender's address.
        func expectDatagram(from sender: LabHost, to receiver: LabHost, _ family: IPAddress.Family, to address: IPAddress? = nil) throws {
            let server = try receiver.udpSocket(family)
            let client = try sender.udpSocket(family)
            let port = try server.localAddress().port
            let message = payload("\(sender.name)→\(receiver.name)")
            try client.send(message, to: address ?? receiver.address(family), port: port)
            let datagram = try #require(try server.receive(timeout: .seconds(3)), "no \(family) datagram \(sender.name)→\(receiver.name)")
            #expect(datagram.payload == message)
            #expect(datagram.source.address == sender.address(family))
            #expect(datagram.source.port == (try client.localAddress().port))
        }

        @Test func segmentHostsAreWiredAsDescribed() throws {
            try Lab.with(.segment(hosts: ["cn", "sa", "tn", "target"])) { lab in
                #expect(lab.prefix.count == 7 && lab.prefix.hasPrefix("bt"))
                #expect(lab.segments.map { $0.namespace.name! } == ["\(lab.prefix)-seg"])
                #expect(lab.hosts.map(\.name) == ["cn", "sa", "tn", "target"])
                let segment = lab.segments[0]
                #expect(segment.ipv4.length == 24 && segment.ipv6.length == 64)
                #expect(segment.ipv4.address.wireBytes[0] == 10 && segment.ipv6.address.wireBytes[0] == 0xfd)

                let bridge = try Netlink(in: segment.namespace).link(named: segment.bridge)
                for host in lab.hosts {
                    #expect(host.namespace.name == "\(lab.prefix)-\(host.name)")
                    #expect(host.interface == "eth0")
                    #expect(segment.ipv4.contains(host.ipv4) && segment.ipv6.contains(host.ipv6))

                    // What the lab reports is what the kernel has.
                    let link = try host.link()
                    #expect(link.index == host.ifindex)
                    #expect(link.mac == host.mac)
                    #expect(link.isUp)
                    let addresses = try host.addresses(interface: "eth0")
                    #expect(addresses.contains { $0.address == host.ipv4 && $0.prefixLength == 24 })
                    #expect(addresses.contains { $0.address == host.ipv6 && $0.prefixLength == 64 && !$0.flags.contains(.tentative) })
                    #expect(try host.link("lo").isUp)

                    // Bridge side: named <prefix><host>, enslaved, GRO on; TX checksum off on both ends.
                    let port = host.primary.bridgePort
                    #expect(port == lab.prefix + host.name)
                    let portLink = try Netlink(in: segment.namespace).link(named: port)
                    #expect(portLink.masterIndex == bridge.index)
                    #expect(portLink.index == host.primary.bridgePortIndex)
                    #expect(try Ethtool.gro(interface: port, in: segment.namespace))
                    #expect(try !Ethtool.txChecksum(interface: port, in: segment.namespace))
                    #expect(try !Ethtool.txChecksum(interface: "eth0", in: host.namespace))
                    #expect(try host.sysctl("net.ipv6.conf.eth0.accept_dad") == "0")
                }
                // Hosts are numbered in order, from .1.
                #expect(lab["cn"].ipv4 == segment.ipv4.address(at: 1))
                #expect(lab["target"].ipv6 == segment.ipv6.address(at: 4))
            }
        }

        @Test func datagramFromCorrespondentReachesTransferringNode() throws {
            try Lab.with(.segment(hosts: ["cn", "tn"])) { lab in
                let (cn, tn) = (lab["cn"], lab["tn"])
                try expectDatagram(from: cn, to: tn, .v4)
                try expectDatagram(from: cn, to: tn, .v6)
                try expectDatagram(from: tn, to: cn, .v4)
                try expectDatagram(from: tn, to: cn, .v6)

                // The correspondent learnt the node's MAC for both families.
                for family in [IPAddress.Family.v4, .v6] {
                    let entry = try #require(try cn.neighbour(tn.address(family)))
                    #expect(entry.mac == tn.mac)
                    #expect(!entry.state.isDisjoint(with: NeighbourState.valid))
                }
                // No checksum errors: TX checksumming is off on the veths.
                #expect(try tn.snmpCounters()["Udp.InCsumErrors"] == 0)
            }
        }

        @Test func tcpStreamArrivesIntact() throws {
            try Lab.with(.segment(hosts: ["cn", "tn"])) { lab in
                let listener = try lab["tn"].tcpListener(.v6)
                let port = try listener.localAddress().port
                let client = try lab["cn"].connectTCP(to: SocketAddress(lab["tn"].ipv6, port: port))
                let server = try #require(try listener.accept(timeout: .seconds(3)))
                #expect(try server.remoteAddress().address == lab["cn"].ipv6)

                let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
                try client.send(data)
                try client.shutdownWrite()
                let received = try server.receive(exactly: data.count + 1)  // +1: must end exactly there
                #expect(received == data)
                try server.send(Array("ok".utf8))
                #expect(try client.receive(exactly: 2) == Array("ok".utf8))
            }
        }

        @Test func routedCorrespondentReachesNodesThroughTheRouter() throws {
            try Lab.with(.routed(correspondents: ["cn"], router: "sa", nodes: ["tn", "target"])) { lab in
                #expect(lab.segments.map { $0.namespace.name! } == ["\(lab.prefix)-seg", "\(lab.prefix)-seg1"])
                let (cn, sa, target) = (lab["cn"], lab["sa"], lab["target"])
                #expect(sa.interfaces.map(\.name) == ["eth0", "eth1"])
                #expect(sa.interfaces.map(\.bridgePort) == [lab.prefix + "sa", lab.prefix + "sa1"])
                #expect(lab.segments[0].ipv4.contains(cn.ipv4) && lab.segments[1].ipv4.contains(target.ipv4))
                #expect(!lab.segments[0].ipv4.contains(target.ipv4))
                #expect(try sa.sysctl("net.ipv4.ip_forward") == "1")

                try expectDatagram(from: cn, to: target, .v4)
                try expectDatagram(from: cn, to: target, .v6)
                try expectDatagram(from: target, to: cn, .v4)
                try expectDatagram(from: lab["tn"], to: cn, .v6)
                // The correspondent resolved the router, never the far host.
                #expect(try cn.neighbour(sa.ipv4)?.mac == sa.mac)
                #expect(try cn.neighbour(target.ipv4) == nil)
            }
        }

        @Test func nonARPAddressIsReachedOnlyThroughAStaticNeighbour() throws {
            // The LVS-DR arrangement: target holds the address on lo and stays silent about it;
            // the correspondent reaches it once told the target's MAC (what steering will do).
            try Lab.with(.segment(hosts: ["cn", "target"])) { lab in
                let (cn, target) = (lab["cn"], lab["target"])
                let virtual4 = try #require(lab.segments[0].ipv4.address(at: 200))
                let virtual6 = try #require(lab.segments[0].ipv6.address(at: 200))
                try target.addNonARPAddress(virtual4)
                try target.addNonARPAddress(virtual6)
                #expect(try target.sysctl("net.ipv4.conf.all.arp_ignore") == "1")
                #expect(try target.addresses(interface: "lo").contains { $0.address == virtual4 && $0.prefixLength == 32 })

                // Without help, neither ARP nor NDP finds the address.
                let server4 = try target.udpSocket(.v4)
                let server6 = try target.udpSocket(.v6)
                try cn.udpSocket(.v4).send(payload("unanswered"), to: virtual4, port: try server4.localAddress().port)
                try cn.udpSocket(.v6).send(payload("unanswered"), to: virtual6, port: try server6.localAddress().port)
                #expect(try server4.receive(timeout: .milliseconds(1500)) == nil)
                #expect(try server6.receive(timeout: .milliseconds(10)) == nil)
                #expect(try cn.neighbour(virtual4)?.mac == nil)
                #expect(try cn.neighbour(virtual6)?.mac == nil)

                try cn.addNeighbour(virtual4, mac: target.mac)
                try cn.addNeighbour(virtual6, mac: target.mac)
                let entry = try #require(try cn.neighbour(virtual4))
                #expect(entry.state == .permanent && entry.mac == target.mac)
                try expectDatagram(from: cn, to: target, .v4, to: virtual4)
                try expectDatagram(from: cn, to: target, .v6, to: virtual6)
            }
        }

        @Test func teardownLeavesNothingEvenWhenTheBodyThrows() throws {
            let linksBefore = try Netlink().links().map(\.name)
            var prefix = ""
            #expect(throws: Boom.self) {
                try Lab.with(.routed(correspondents: ["cn"], router: "sa", nodes: ["tn"])) { lab in
                    prefix = lab.prefix
                    #expect(NetworkNamespace.list().filter { $0.hasPrefix(lab.prefix + "-") }.count == 5)
                    throw Boom()
                }
            }
            #expect(!prefix.isEmpty)
            #expect(NetworkNamespace.list().allSatisfy { !$0.hasPrefix(prefix + "-") })
            #expect(try Netlink().links().map(\.name) == linksBefore)
            #expect(try Netlink().links().allSatisfy { !$0.name.hasPrefix(prefix) })
        }

        @Test func teardownIsIdempotent() throws {
            let lab = try Lab.segment(hosts: ["cn"])
            defer { try? lab.teardown() }
            try lab.teardown()
            try lab.teardown()
            #expect(NetworkNamespace.list().allSatisfy { !$0.hasPrefix(lab.prefix + "-") })
        }

        @Test func staleLabsAreRemovedByPrefix() throws {
            let lab = try Lab.segment(hosts: ["cn", "tn"])
            defer { try? lab.teardown() }
            // As if the process had crashed: only the names are left to go by.
            #expect(NetworkNamespace.list().filter(Lab.isLabNamespace).contains("\(lab.prefix)-cn"))
            let removed = try Lab.removeStale(prefix: lab.prefix)
            #expect(Set(removed) == ["\(lab.prefix)-seg", "\(lab.prefix)-cn", "\(lab.prefix)-tn"])
            #expect(NetworkNamespace.list().allSatisfy { !$0.hasPrefix(lab.prefix + "-") })
            #expect(try Lab.removeStale(prefix: lab.prefix).isEmpty)
        }

        @Test func badTopologiesAreRefusedBeforeAnythingIsMade() throws {
            let before = NetworkNamespace.list()
            #expect(throws: LabError.self) { try Lab.segment(hosts: ["cn", "cn"]) }
            #expect(throws: LabError.self) { try Lab.segment(hosts: ["Bad_Name"]) }
            #expect(throws: LabError.self) { try Lab.segment(hosts: ["waytoolongname"]) }  // bt12345 + 14 > 15
            #expect(throws: LabError.self) { try Lab.segment(hosts: ["seg"]) }
            #expect(throws: LabError.self) { try Lab.segment(hosts: ["cn"], prefix: "has-dash") }
            #expect(NetworkNamespace.list() == before)
        }

        @Test func asyncBodiesAreTornDownToo() async throws {
            var prefix = ""
            let count = try await Lab.with(.segment(hosts: ["cn"])) { lab in
                prefix = lab.prefix
                try await Task.sleep(for: .milliseconds(10))
                return lab.hosts.count
            }
            #expect(count == 1)
            #expect(NetworkNamespace.list().allSatisfy { !$0.hasPrefix(prefix + "-") })
        }
    }
}
