import BatonBPF
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An anchored session through the anchor's XDP relay (docs/dataplane.md, "Relay"), with real
/// frames over veth and a bridge: the remote party talks to anchor:5004 throughout while the
/// session moves from one device to another and back, each move make-before-break (the new
/// device's return rule first, then the remote's rule rewritten in place by one map update).
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct RelayOverVethTests {
    static let anchorPort: UInt16 = 5004, remotePort: UInt16 = 40000, devicePort: UInt16 = 6000

    @Test(arguments: [(IPAddress.Family.v4, 20_000), (.v6, 20_000), (.v4, 100_000)])
    func aStreamMovesBetweenDevicesAndTheRemoteSeesOneAddress(family: IPAddress.Family, rate: Int) throws {
        try Lab.with(.segment(hosts: ["remote", "anchor", "dev1", "dev2"])) { lab in
            // NAPI on every veth (GRO), as in the transfer lab: frames of a flow arrive in order.
            for host in lab.hosts {
                for i in host.interfaces { try Ethtool.setGRO(true, interface: i.name, in: host.namespace) }
            }
            try lab.waitUntilUp()
            let remote = lab["remote"], anchor = lab["anchor"], devices = [lab["dev1"], lab["dev2"]]
            let anchorAddress = anchor.address(family), remoteAddress = remote.address(family)
            let relayPorts: [UInt16] = [30000, 30001]

            func toDevice(_ d: Int) -> SessionRule {
                SessionRule(match: SessionMatch(proto: .udp, source: remoteAddress, sourcePort: Self.remotePort,
                                                destination: anchorAddress, destinationPort: Self.anchorPort),
                            forward: .relay(.init(source: anchorAddress, sourcePort: relayPorts[d],
                                                  destination: devices[d].address(family), destinationPort: Self.devicePort),
                                            nextHop: devices[d].mac, sourceMAC: anchor.mac))
            }
            func fromDevice(_ d: Int) -> SessionRule {
                SessionRule(match: SessionMatch(proto: .udp, source: devices[d].address(family), sourcePort: Self.devicePort,
                                                destination: anchorAddress, destinationPort: relayPorts[d]),
                            forward: .relay(.init(source: anchorAddress, sourcePort: Self.anchorPort,
                                                  destination: remoteAddress, destinationPort: Self.remotePort),
                                            nextHop: remote.mac, sourceMAC: anchor.mac))
            }

            var link: XDPLink?
            let dp = try anchor.run { try DataPlane.load(.init(pinRoot: nil, maxRules: 64, maxTakeovers: 8)) }
            defer { try? link?.detach() }
            try dp.setRule(fromDevice(0))
            try dp.setRule(toDevice(0))
            link = try anchor.run { try XDPLink.attach(dp.steerProgram, ifindex: UInt32(anchor.ifindex), mode: .native) }
            // The remote and the devices resolve the anchor's address as usual (it is its own).

            let remoteSocket = try remote.udpSocket(family, port: Self.remotePort)
            // Each device's session socket: it receives the stream and answers from the same
            // port (the return rule matches it).
            let deviceSockets = try devices.map { try $0.udpSocket(family, port: Self.devicePort) }
            let atDevice = deviceSockets.enumerated().map { i, s in SequenceReceiver(host: "dev\(i + 1)", socket: s) }
            // What the remote receives: every datagram's source and payload.
            let heard = Mutex<[(SocketAddress, [UInt8])]>([])
            let listening = Mutex(true)
            let listener = Thread {
                while listening.withLock({ $0 }) {
                    if let d = try? remoteSocket.receive(timeout: .milliseconds(50)) { heard.withLock { $0.append((d.source, d.payload)) } }
                }
            }
            listener.start()
            defer { listening.withLock { $0 = false } }

            /// Device `d` answers 20 datagrams to its relay port; `tag` names the phase.
            func answer(from d: Int, _ tag: String) throws {
                for i in 0..<20 {
                    try deviceSockets[d].send(Array("\(tag) \(i)".utf8), to: SocketAddress(anchorAddress, port: relayPorts[d]))
                }
            }

            let call = SequenceSender(socket: remoteSocket, to: SocketAddress(anchorAddress, port: Self.anchorPort),
                                      flow: 1, perSecond: rate)
            usleep(400_000)
            try answer(from: 0, "dev1 before")
            // Move to dev2: its return rule, then the remote's rule in place. dev1's return
            // rule stays (its late packets still reach the remote).
            try dp.setRule(fromDevice(1))
            try dp.setRule(toDevice(1))
            usleep(400_000)
            try answer(from: 1, "dev2")
            try answer(from: 0, "dev1 late")
            // And back.
            try dp.setRule(toDevice(0))
            usleep(400_000)
            try answer(from: 0, "dev1 after")
            let sent = call.stop()
            let arrivals = atDevice.flatMap { $0.stop() }
            usleep(100_000)
            listening.withLock { $0 = false }
            while !listener.isFinished { usleep(10_000) }

            let report = FlowReport(flow: 1, sent: sent, arrivals: arrivals)
            // The rate the sender reached is the machine's (a busy one sends fewer): shown, not
            // judged; what is judged is that every datagram sent arrived, in order, where it should.
            print("relay move at \(rate) packets/s asked: \(sent) sent in ~1.2 s")
            #expect(report.lost == 0 && report.reordered == 0 && report.duplicates == 0,
                    "\(report); drops on the lab's links: \(lab.linkDropsText)")
            #expect((report.perHost["dev1"] ?? 0) > 0 && (report.perHost["dev2"] ?? 0) > 0, "\(report)")
            // dev1, then dev2, then dev1 again: three runs of consecutive numbers.
            #expect(report.ranges["dev1"]?.count == 2 && report.ranges["dev2"]?.count == 1, "\(report.ranges)")

            let answers = heard.withLock { $0 }
            let texts = answers.map { String(decoding: $0.1, as: UTF8.self) }
            for tag in ["dev1 before", "dev2", "dev1 late", "dev1 after"] {
                #expect(texts.filter { $0.hasPrefix(tag + " ") }.count == 20, "\(tag): \(texts.filter { $0.hasPrefix(tag + " ") }.count) of 20 reached the remote")
            }
            #expect(answers.allSatisfy { $0.0 == SocketAddress(anchorAddress, port: Self.anchorPort) },
                    "the remote hears only anchor:\(Self.anchorPort): \(Set(answers.map { "\($0.0)" }))")

            // Counted where they went, and not one checksum broken on the way.
            let forward = try #require(try dp.rule(toDevice(0).match))
            // When short, where the rest went: the kernel's drops on the way (before XDP: the
            // remote's or the anchor's veth ring; after: a device's).
            #expect(forward.counter.packets == UInt64(sent), "drops on the lab's links: \(lab.linkDropsText)")
            #expect(try dp.stats()[.relayDropped]!.packets == 0)
            let key = family == .v4 ? "Udp.InCsumErrors" : "Udp6.Udp6InCsumErrors"
            for host in devices + [remote] { #expect((try host.snmpCounters()[key] ?? 0) == 0, "\(host.name) saw bad checksums") }
        }
    }

    /// A lockout on the old device's flow (seed 001): dropped until its end, counted on the
    /// rule; from its end on, as if the rule were gone (here the anchor's own stack takes the
    /// packets). Every datagram carries its send time: each one sent at or after the end
    /// must arrive, and every one that did not arrive was counted as dropped.
    @Test func aLockoutEndsWhenItSays() throws {
        try Lab.with(.segment(hosts: ["anchor", "dev1"])) { lab in
            try lab.waitUntilUp()
            let anchor = lab["anchor"], device = lab["dev1"]
            let match = SessionMatch(proto: .udp, source: device.ipv4, sourcePort: Self.devicePort,
                                     destination: anchor.ipv4, destinationPort: 30000)
            var link: XDPLink?
            let dp = try anchor.run { try DataPlane.load(.init(pinRoot: nil, maxRules: 16, maxTakeovers: 4)) }
            defer { try? link?.detach() }
            link = try anchor.run { try XDPLink.attach(dp.steerProgram, ifindex: UInt32(anchor.ifindex), mode: .native) }
            let atAnchor = try anchor.udpSocket(.v4, port: 30000)
            let fromDevice = try device.udpSocket(.v4, port: Self.devicePort)
            defer { atAnchor.close(); fromDevice.close() }
            // Read only at the end: room for all of them (a small datagram still costs a page).
            try atAnchor.setReceiveBufferSize(8 << 20, force: true)
            // Resolved first, so that no datagram waits for ARP.
            try fromDevice.send([0], to: anchor.ipv4, port: 30000)
            #expect(try atAnchor.receive(timeout: .seconds(1)) != nil)

            let end = monotonicNanoseconds() + 300_000_000
            try dp.setRule(SessionRule(match: match, forward: .drop(until: end)))
            var sent: [UInt64] = []
            let stop = end + 300_000_000
            while monotonicNanoseconds() < stop {
                let t = monotonicNanoseconds()
                try fromDevice.send(withUnsafeBytes(of: t.bigEndian) { Array($0) }, to: anchor.ipv4, port: 30000)
                sent.append(t)
                usleep(1000)
            }
            var arrived = Set<UInt64>()
            while let d = try atAnchor.receive(timeout: .milliseconds(300)) {
                if d.payload.count == 8 { arrived.insert(d.payload.reduce(0) { $0 << 8 | UInt64($1) }) }
            }
            let afterEnd = sent.filter { $0 >= end }
            #expect(afterEnd.allSatisfy(arrived.contains), "sent after the end but lost: \(afterEnd.filter { !arrived.contains($0) }.count) of \(afterEnd.count)")
            let dropped = sent.filter { !arrived.contains($0) }
            #expect(!dropped.isEmpty && dropped.allSatisfy { $0 < end }, "only datagrams sent before the end are dropped")
            #expect(try dp.rule(match)?.counter.packets == UInt64(dropped.count), "every drop counted on the lockout")
            #expect(try dp.rule(match)?.rule.forward == .drop(until: end), "the lockout reads back with its end")
        }
    }
}
