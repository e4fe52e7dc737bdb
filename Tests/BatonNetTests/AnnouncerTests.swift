import BatonLab
import BatonModel
import BatonNet
import Foundation
import Testing

/// An announcement frame as seen on the wire, decoded by hand (independently of BatonPacket,
/// which builds them).
struct SeenAnnouncement: Equatable {
    enum Kind: Equatable {
        /// ARP: operation 1 (request form) or 2 (reply form).
        case arp(operation: UInt16)
        /// Neighbour advertisement: its flags byte (R 0x80, S 0x40, O 0x20).
        case neighbourAdvertisement(flags: UInt8)
    }

    var kind: Kind
    var ethernetSource: MACAddress
    var ethernetDestination: MACAddress
    /// The address announced (ARP sender and target IP; NA target).
    var address: IPAddress
    /// ARP sender hardware address; NA target link-layer option.
    var mac: MACAddress?
    /// ARP only.
    var arpTargetMAC: MACAddress?
    /// NA only.
    var hopLimit: UInt8?
    var ipDestination: IPAddress?

    init?(_ frame: [UInt8]) {
        func u16(_ at: Int) -> UInt16 { UInt16(frame[at]) << 8 | UInt16(frame[at + 1]) }
        guard frame.count >= 14 else { return nil }
        ethernetDestination = MACAddress(bytes: frame[0..<6])!
        ethernetSource = MACAddress(bytes: frame[6..<12])!
        switch u16(12) {
        case 0x0806 where frame.count >= 42:
            let sender = IPAddress(wire: Array(frame[28..<32]))!, target = IPAddress(wire: Array(frame[38..<42]))!
            guard sender == target else { return nil }  // not gratuitous
            kind = .arp(operation: u16(20))
            address = sender
            mac = MACAddress(bytes: frame[22..<28])
            arpTargetMAC = MACAddress(bytes: frame[32..<38])
        case 0x86dd where frame.count >= 78:
            guard frame[20] == 58, frame[54] == 136 else { return nil }  // ICMPv6 NA
            kind = .neighbourAdvertisement(flags: frame[58])
            hopLimit = frame[21]
            ipDestination = IPAddress(wire: Array(frame[38..<54]))
            address = IPAddress(wire: Array(frame[62..<78]))!
            if frame.count >= 86, frame[78] == 2, frame[79] == 1 { mac = MACAddress(bytes: frame[80..<86]) }
        default:
            return nil
        }
    }
}

extension KernelTests {
    @Suite struct Announcers {
        let fakeMAC = MACAddress("02:00:5e:00:00:99")!

        /// Announcements of `address` captured on `socket` for `duration`.
        func captured(_ socket: PacketSocket, _ address: IPAddress, for duration: Duration) throws -> [SeenAnnouncement] {
            try socket.receiveAll(for: duration).compactMap(SeenAnnouncement.init).filter { $0.address == address }
        }

        /// Waits up to a second for `host`'s entry for `address` to point at `mac`.
        func expectEntry(_ host: LabHost, _ address: IPAddress, becomes mac: MACAddress) throws {
            let deadline = ContinuousClock.now + .seconds(1)
            var entry = try host.neighbour(address)
            while entry?.mac != mac, ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.02)
                entry = try host.neighbour(address)
            }
            #expect(entry?.mac == mac, "\(host.name)'s entry for \(address): \(String(describing: entry))")
            #expect(entry.map { !$0.state.isDisjoint(with: NeighbourState.valid) } == true)
        }

        @Test(arguments: [NeighbourState.stale, .reachable])
        func gratuitousARPUpdatesAnExistingEntry(state: NeighbourState) throws {
            try Lab.with(.segment(hosts: ["cn", "sa"])) { lab in
                try lab.waitUntilUp()  // a frame sent before the veths are up is lost
                let (cn, sa) = (lab["cn"], lab["sa"])
                let address = try #require(lab.segments[0].ipv4.address(at: 200))
                try cn.addNeighbour(address, mac: fakeMAC, state: state)
                #expect(try cn.neighbour(address)?.mac == fakeMAC)

                let capture = try PacketSocket(interface: "eth0", in: cn.namespace, protocol: PacketSocket.arp)
                defer { capture.close() }
                let announcer = try Announcer(interface: "eth0", in: sa.namespace)
                defer { announcer.close() }
                try announcer.announceOnce(address, at: sa.mac)

                // One round: the request form, then the reply form, both broadcast from sa.
                let seen = try captured(capture, address, for: .milliseconds(300))
                #expect(seen.map(\.kind) == [.arp(operation: 1), .arp(operation: 2)])
                #expect(seen.allSatisfy { $0.ethernetSource == sa.mac && $0.ethernetDestination == .broadcast && $0.mac == sa.mac })
                #expect(seen.map(\.arpTargetMAC) == [.broadcast, sa.mac])
                try expectEntry(cn, address, becomes: sa.mac)
            }
        }

        @Test(arguments: [NeighbourState.stale, .reachable])
        func unsolicitedNeighbourAdvertisementUpdatesAnExistingEntry(state: NeighbourState) throws {
            try Lab.with(.segment(hosts: ["cn", "sa"])) { lab in
                try lab.waitUntilUp()  // a frame sent before the veths are up is lost
                let (cn, sa) = (lab["cn"], lab["sa"])
                let address = try #require(lab.segments[0].ipv6.address(at: 200))
                try cn.addNeighbour(address, mac: fakeMAC, state: state)

                let capture = try PacketSocket(interface: "eth0", in: cn.namespace, protocol: PacketSocket.ipv6)
                defer { capture.close() }
                let announcer = try Announcer(interface: "eth0", in: sa.namespace)
                try announcer.announceOnce(address, at: sa.mac)

                // One round: one NA, O=1 S=0 R=0, to ff02::1 (33:33:00:00:00:01), hop limit 255,
                // with sa's MAC as the target link-layer address.
                let frames = try capture.receiveAll(for: .milliseconds(300))
                let seen = frames.compactMap(SeenAnnouncement.init).filter { $0.address == address }
                #expect(seen.map(\.kind) == [.neighbourAdvertisement(flags: 0x20)])
                let na = try #require(seen.first)
                #expect(na.hopLimit == 255)
                #expect(na.ipDestination == IPAddress("ff02::1"))
                #expect(na.ethernetDestination == MACAddress("33:33:00:00:00:01"))
                #expect(na.ethernetSource == sa.mac && na.mac == sa.mac)
                // Byte for byte what the announcer built.
                #expect(frames.contains(Announcer.frames(for: address, at: sa.mac)[0]))
                try expectEntry(cn, address, becomes: sa.mac)
            }
        }

        /// What the TN does with a new temporary address: the peers it introduces it to get an
        /// entry for it (a gratuitous ARP would create none: arp_accept=0), others do not.
        @Test(arguments: [IPAddress.Family.v4, .v6])
        func anIntroductionCreatesAnEntryOnlyAtThePeer(family: IPAddress.Family) throws {
            try Lab.with(.segment(hosts: ["tn", "target", "other"])) { lab in
                try lab.waitUntilUp()
                let (tn, target, other) = (lab["tn"], lab["target"], lab["other"])
                let network = family == .v4 ? lab.segments[0].ipv4 : lab.segments[0].ipv6
                let temporary = try #require(network.address(at: 200))
                let peer = family == .v4 ? target.ipv4 : target.ipv6
                #expect(try target.neighbour(temporary) == nil)
                let announcer = try Announcer(interface: "eth0", in: tn.namespace)
                defer { announcer.close() }
                try announcer.introduce(temporary, at: tn.mac, to: [peer, IPAddress(family == .v4 ? "192.0.2.1" : "2001:db8::1")!])
                try expectEntry(target, temporary, becomes: tn.mac)
                Thread.sleep(forTimeInterval: 0.1)
                #expect(try other.neighbour(temporary) == nil, "only the host asked about learns it")
            }
        }

        @Test func routerFlagIsSetOnlyWhenAsked() throws {
            let address = IPAddress("fd00::5")!
            let mac = MACAddress("02:00:00:00:00:05")!
            #expect(SeenAnnouncement(Announcer.frames(for: address, at: mac, router: true)[0])?.kind
                == .neighbourAdvertisement(flags: 0xa0))
            #expect(Announcer.frames(for: IPAddress("10.0.0.5")!, at: mac, router: true).count == 2)
        }

        @Test func aBurstArrivesAsItsRounds() throws {
            try Lab.with(.segment(hosts: ["cn", "sa"])) { lab in
                try lab.waitUntilUp()  // a frame sent before the veths are up is lost
                let (cn, sa) = (lab["cn"], lab["sa"])
                let address4 = try #require(lab.segments[0].ipv4.address(at: 200))
                let address6 = try #require(lab.segments[0].ipv6.address(at: 200))
                let capture = try PacketSocket(interface: "eth0", in: cn.namespace)
                defer { capture.close() }
                let announcer = try Announcer(interface: "eth0", in: sa.namespace)

                let policy = AnnouncementPolicy.burst(3, interval: .milliseconds(100))
                let started = ContinuousClock.now
                let v4 = try announcer.start(address4, at: sa.mac, policy: policy)
                let v6 = try announcer.start(address6, at: sa.mac, policy: policy)
                #expect(v4.rounds >= 1 && v6.rounds >= 1)  // the first round before returning

                let seen = try capture.receiveAll(for: .milliseconds(700)).compactMap(SeenAnnouncement.init)
                #expect(seen.filter { $0.address == address4 }.map(\.kind)
                    == [.arp(operation: 1), .arp(operation: 2), .arp(operation: 1), .arp(operation: 2),
                        .arp(operation: 1), .arp(operation: 2)])
                #expect(seen.filter { $0.address == address6 }.count == 3)
                #expect(ContinuousClock.now - started >= .milliseconds(200))
                for announcement in [v4, v6] {
                    #expect(announcement.isFinished)
                    #expect(announcement.rounds == 3)
                    #expect(announcement.lastError == nil)
                }
            }
        }

        @Test func cancelStopsTheRefresh() throws {
            try Lab.with(.segment(hosts: ["cn", "sa"])) { lab in
                try lab.waitUntilUp()  // a frame sent before the veths are up is lost
                let (cn, sa) = (lab["cn"], lab["sa"])
                let address = try #require(lab.segments[0].ipv4.address(at: 200))
                let capture = try PacketSocket(interface: "eth0", in: cn.namespace, protocol: PacketSocket.arp)
                defer { capture.close() }
                let announcer = try Announcer(interface: "eth0", in: sa.namespace)

                let announcement = try announcer.start(
                    address, at: sa.mac,
                    policy: AnnouncementPolicy(count: 1, interval: .zero, refresh: .milliseconds(150)))
                let before = try captured(capture, address, for: .milliseconds(700))
                #expect(before.count >= 6 && before.count % 2 == 0, "burst of 1 and refreshes: \(before.count) frames")
                #expect(!announcement.isFinished)

                announcement.cancel()
                #expect(announcement.isFinished)
                let rounds = announcement.rounds
                let after = try captured(capture, address, for: .milliseconds(500))
                #expect(after.count <= 2, "at most the round in flight when cancelled")
                #expect(announcement.rounds == rounds)
                #expect(try captured(capture, address, for: .milliseconds(400)).isEmpty)
            }
        }

        @Test func badPoliciesAreRefused() throws {
            try Lab.with(.segment(hosts: ["sa"])) { lab in
                let announcer = try Announcer(interface: "eth0", in: lab["sa"].namespace)
                for policy in [AnnouncementPolicy(count: 0), AnnouncementPolicy(refresh: .zero)] {
                    #expect(throws: NetError.self) { try announcer.start(lab["sa"].ipv4, at: lab["sa"].mac, policy: policy) }
                }
                #expect(throws: NetError.self) { try PacketSocket(interface: "nosuch0", in: lab["sa"].namespace) }
            }
        }

        @Test func policyRoundTripsThroughJSON() throws {
            let policy = AnnouncementPolicy(count: 5, interval: .milliseconds(250), refresh: nil)
            let decoded = try JSONDecoder().decode(AnnouncementPolicy.self, from: JSONEncoder().encode(policy))
            #expect(decoded == policy)
            #expect(AnnouncementPolicy() == AnnouncementPolicy(count: 3, interval: .milliseconds(100), refresh: .seconds(10)))
        }
    }
}
