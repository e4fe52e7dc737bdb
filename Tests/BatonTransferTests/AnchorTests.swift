import BatonAPI
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Synchronization
import Testing

/// Anchored sessions through batond's API (docs/anchors.md): the agent on "sa" is the anchor,
/// "cn" the remote party, "tn" and "target" two devices (their batond nodes take no part). The
/// remote talks to sa:PORT throughout; the session moves between the devices by the API.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct AnchorTests {
    static let remotePort: UInt16 = 40000, devicePort: UInt16 = 6000

    /// What the remote hears: each datagram's source and payload, on a thread of its own.
    final class Heard: @unchecked Sendable {
        final class Box: Sendable {
            let got = Mutex<[(SocketAddress, [UInt8])]>([])
            let listening = Mutex(true)
        }
        let box = Box()
        var thread: Thread?

        init(_ socket: UDPSocket) {
            let box = box
            let t = Thread {
                while box.listening.withLock({ $0 }) {
                    if let d = try? socket.receive(timeout: .milliseconds(50)) { box.got.withLock { $0.append((d.source, d.payload)) } }
                }
            }
            thread = t
            t.start()
        }

        func stop() -> [(SocketAddress, [UInt8])] {
            box.listening.withLock { $0 = false }
            while thread?.isFinished == false { usleep(10_000) }
            return box.got.withLock { $0 }
        }
    }

    /// A stream from the remote at `rate` through the anchor, moved device 1 → 2 → 1 by the
    /// API: 0 lost, 0 reordered; each device's answers reach the remote from anchor:port only;
    /// the counters say where the packets went.
    @Test(arguments: [(IPAddress.Family.v4, 20_000), (.v6, 20_000), (.v4, 100_000)])
    func aStreamMovesBetweenDevicesThroughTheAPI(family: IPAddress.Family, rate: Int) throws {
        try Rig.with(.l2, family: family) { rig in
            let remote = rig.cn, devices = [rig.tn, rig.target]
            let api = rig.agentControl
            let anchor = try api.createAnchor(AnchorRequest(remote: Endpoint(address: remote.address(family), port: Self.remotePort),
                                                            device: Endpoint(address: devices[0].address(family), port: Self.devicePort)))
            #expect(anchor.state == .active && anchor.anchor.address == rig.sa.address(family))
            #expect((30000...39999).contains(anchor.anchor.port) && (30000...39999).contains(anchor.relayPort))
            let anchorEndpoint = SocketAddress(anchor.anchor.address, port: anchor.anchor.port)
            let relay = SocketAddress(anchor.anchor.address, port: anchor.relayPort)

            let remoteSocket = try remote.udpSocket(family, port: Self.remotePort)
            let deviceSockets = try devices.map { try $0.udpSocket(family, port: Self.devicePort) }
            let atDevice = deviceSockets.enumerated().map { i, s in SequenceReceiver(host: "dev\(i + 1)", socket: s) }
            let heard = Heard(remoteSocket)
            func answer(from d: Int, _ tag: String) throws {
                for i in 0..<20 { try deviceSockets[d].send(Array("\(tag) \(i)".utf8), to: relay) }
            }

            let call = SequenceSender(socket: remoteSocket, to: anchorEndpoint, flow: 1, perSecond: rate)
            try rig.wait(3, "the stream to reach device 1") { atDevice[0].count(flow: 1) > rate / 10 }
            try answer(from: 0, "dev1 before")
            let moved = try api.moveAnchor(anchor.id, AnchorMove(device: Endpoint(address: devices[1].address(family), port: Self.devicePort)))
            #expect(moved.moves == 1 && moved.device.address == devices[1].address(family))
            #expect(moved.retired.count == 1 && moved.retired[0].lockedOut == false)
            try rig.wait(3, "the stream to reach device 2") { atDevice[1].count(flow: 1) > rate / 10 }
            try answer(from: 1, "dev2")
            try answer(from: 0, "dev1 late")
            let back = try api.moveAnchor(anchor.id, AnchorMove(device: Endpoint(address: devices[0].address(family), port: Self.devicePort)))
            #expect(back.moves == 2 && back.retired.map(\.device.address) == [devices[1].address(family)],
                    "device 1 is current again, device 2 retired: \(back.retired)")
            usleep(300_000)
            try answer(from: 0, "dev1 after")
            let sent = call.stop()
            let arrivals = atDevice.flatMap { $0.stop() }
            usleep(100_000)
            let answers = heard.stop()

            let report = FlowReport(flow: 1, sent: sent, arrivals: arrivals)
            #expect(report.lost == 0 && report.reordered == 0 && report.duplicates == 0,
                    "\(report); drops on the lab's links: \(rig.lab.linkDropsText)")
            #expect(report.ranges["dev1"]?.count == 2 && report.ranges["dev2"]?.count == 1, "\(report.ranges)")
            let texts = answers.map { String(decoding: $0.1, as: UTF8.self) }
            for tag in ["dev1 before", "dev2", "dev1 late", "dev1 after"] {
                #expect(texts.filter { $0.hasPrefix(tag + " ") }.count == 20, "\(tag) reached the remote")
            }
            #expect(answers.allSatisfy { $0.0 == anchorEndpoint }, "the remote hears only \(anchorEndpoint): \(Set(answers.map { "\($0.0)" }))")

            // The API's counters: every datagram of the stream on the forward leg.
            let shown = try api.anchor(anchor.id)
            #expect(shown.toDevice?.packets == UInt64(sent), "drops on the lab's links: \(rig.lab.linkDropsText)")
            // Device 1's return rule is one rule throughout (current, retired, current again):
            // its answers before, late and after.
            #expect(shown.toRemote?.packets == 60, "device 1's answers: \(String(describing: shown.toRemote))")
            #expect(shown.retired.first?.counters?.packets == 20, "device 2's, on its retired rule: \(shown.retired)")
            let metrics = try api.metrics()
            #expect(metrics.contains("baton_anchor_moves_total{lockout=\"false\"} 2"))
            #expect(metrics.contains("baton_anchors 1"))

            let ended = try api.endAnchor(anchor.id)
            #expect(ended.state == .ended && ended.reason == "operator")
            let dp = try DataPlane.adopt(root: rig.daemons.pinRoots[0])
            #expect(try dp.rule(SessionMatch(proto: .udp, source: remote.address(family), sourcePort: Self.remotePort,
                                             destination: anchor.anchor.address, destinationPort: anchor.anchor.port)) == nil,
                    "ending removes the rules")
            #expect(throws: ControlError.self) { try api.endAnchor(anchor.id) }
        }
    }

    /// RTP continuity through batond: a call's media from device 1, then device 2, then
    /// device 1 again (each with its own SSRC, numbers and clock, 20 ms packets), reaches the
    /// remote as one stream: device 1's SSRC, every sequence number one more than the last,
    /// every timestamp 160 on.
    @Test(arguments: [IPAddress.Family.v4, .v6])
    func theRemoteSeesOneRTPStream(family: IPAddress.Family) throws {
        try Rig.with(.l2, family: family) { rig in
            let api = rig.agentControl, devices = [rig.tn, rig.target]
            let endpoints = devices.map { Endpoint(address: $0.address(family), port: Self.devicePort) }
            let anchor = try api.createAnchor(AnchorRequest(remote: Endpoint(address: rig.cn.address(family), port: Self.remotePort),
                                                            device: endpoints[0], rtpContinuity: true))
            #expect(anchor.rtpContinuity && anchor.rtp?.started == false)
            let relay = SocketAddress(anchor.anchor.address, port: anchor.relayPort)
            let heard = Heard(try rig.cn.udpSocket(family, port: Self.remotePort))
            let sockets = try devices.map { try $0.udpSocket(family, port: Self.devicePort) }
            let ssrcs: [UInt32] = [0x1111_1111, 0x2222_2222]
            var next: [(seq: UInt16, ts: UInt32)] = [(65500, 1_000), (30000, 9_000_000)] // device 1 crosses the wrap
            func talk(_ d: Int, packets: Int) throws {
                for _ in 0..<packets {
                    let (seq, ts) = next[d]
                    var p: [UInt8] = [0x80, 0, UInt8(seq >> 8), UInt8(seq & 0xff)]
                    for v in [ts, ssrcs[d]] { p += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
                    try sockets[d].send(p + [UInt8](repeating: 0xd5, count: 160), to: relay)
                    next[d] = (seq &+ 1, ts &+ 160)
                    usleep(20_000)
                }
            }
            try talk(0, packets: 50)
            _ = try api.moveAnchor(anchor.id, AnchorMove(device: endpoints[1]))
            try talk(1, packets: 50)
            _ = try api.moveAnchor(anchor.id, AnchorMove(device: endpoints[0]))
            next[0] = (next[0].seq &+ 700, next[0].ts &+ 99_999) // device 1's clock ran on meanwhile
            try talk(0, packets: 50)
            usleep(100_000)
            let got = heard.stop().map(\.1).filter { $0.count == 172 }
            #expect(got.count == 150, "every RTP packet reached the remote")
            func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
            func u32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(u16(b, i)) << 16 | UInt32(u16(b, i + 2)) }
            #expect(Set(got.map { u32($0, 8) }) == [ssrcs[0]], "one SSRC")
            var gaps = 0
            for (a, b) in zip(got, got.dropFirst()) where u16(b, 2) != u16(a, 2) &+ 1 || u32(b, 4) != u32(a, 4) &+ 160 { gaps += 1 }
            #expect(gaps == 0, "sequence numbers and timestamps go on by one packet throughout")
            let state = try #require(try api.anchor(anchor.id).rtp)
            #expect(state.started && state.ssrc == Int(ssrcs[0]) && state.rebases == 2 && state.packets == 150)
        }
    }

    /// A move with a lockout: the old device's packets are dropped and counted while it lasts,
    /// and its rule is gone after it; the new device's reach the remote.
    @Test func aLockoutDropsTheOldDeviceForItsPeriod() throws {
        try Rig.with(.l2, family: .v4) { rig in
            let api = rig.agentControl, family = IPAddress.Family.v4
            let devices = [rig.tn, rig.target]
            let anchor = try api.createAnchor(AnchorRequest(remote: Endpoint(address: rig.cn.address(family), port: Self.remotePort),
                                                            device: Endpoint(address: devices[0].address(family), port: Self.devicePort)))
            let relay = SocketAddress(anchor.anchor.address, port: anchor.relayPort)
            let heard = Heard(try rig.cn.udpSocket(family, port: Self.remotePort))
            let sockets = try devices.map { try $0.udpSocket(family, port: Self.devicePort) }
            let moved = try api.moveAnchor(anchor.id, AnchorMove(device: Endpoint(address: devices[1].address(family), port: Self.devicePort),
                                                                 lockout: 1.5))
            #expect(moved.retired.first?.lockedOut == true)
            for i in 0..<50 { try sockets[0].send(Array("locked \(i)".utf8), to: relay) }
            for i in 0..<10 { try sockets[1].send(Array("new \(i)".utf8), to: relay) }
            usleep(200_000)
            let during = try api.anchor(anchor.id)
            #expect(during.retired.first?.counters?.packets == 50, "the old device's packets counted as dropped: \(during.retired)")
            try rig.wait(4, "the lockout's rule to go") { try api.anchor(anchor.id).retired.isEmpty }
            let texts = heard.stop().map { String(decoding: $0.1, as: UTF8.self) }
            #expect(texts.filter { $0.hasPrefix("new ") }.count == 10)
            #expect(!texts.contains { $0.hasPrefix("locked ") }, "nothing of the locked-out device reached the remote")
            #expect(try api.metrics().contains("baton_anchor_moves_total{lockout=\"true\"} 1"))
        }
    }

    /// An anchored session outlives a restart of the agent: the relay goes on in the kernel
    /// meanwhile, the session and its ports are adopted, its rules kept by the reconcile, and
    /// a move after the restart works.
    @Test func anAnchorOutlivesARestart() throws {
        try Rig.with(.l2, family: .v4) { rig in
            let api = rig.agentControl, family = IPAddress.Family.v4
            let devices = [rig.tn, rig.target]
            let anchor = try api.createAnchor(AnchorRequest(remote: Endpoint(address: rig.cn.address(family), port: Self.remotePort),
                                                            device: Endpoint(address: devices[0].address(family), port: Self.devicePort)))
            let atDevice = try devices.enumerated().map { i, h in SequenceReceiver(host: "dev\(i + 1)", socket: try h.udpSocket(family, port: Self.devicePort)) }
            let call = SequenceSender(socket: try rig.cn.udpSocket(family, port: Self.remotePort),
                                      to: SocketAddress(anchor.anchor.address, port: anchor.anchor.port), flow: 1, perSecond: 2000)
            try rig.wait(3, "the stream to reach device 1") { atDevice[0].count(flow: 1) > 200 }
            rig.daemons.agent.stop()
            let whileDown = atDevice[0].count(flow: 1)
            usleep(300_000)
            #expect(atDevice[0].count(flow: 1) > whileDown + 200, "the kernel relays while batond is down")
            try rig.daemons.agent.restart()
            try rig.wait(10, "the agent to serve again") { (try? api.status()) != nil }
            let status = try api.status()
            #expect((status.reconcile?.rulesKept ?? 0) >= 2 && status.reconcile?.rulesRemoved == 0, "\(String(describing: status.reconcile))")
            let listed = try api.anchors()
            #expect(listed.map(\.id) == [anchor.id] && listed[0].state == .active)
            _ = try api.moveAnchor(anchor.id, AnchorMove(device: Endpoint(address: devices[1].address(family), port: Self.devicePort)))
            try rig.wait(3, "the stream to reach device 2") { atDevice[1].count(flow: 1) > 200 }
            // A second session does not get the ports the first one holds.
            let other = try api.createAnchor(AnchorRequest(remote: Endpoint(address: rig.cn.address(family), port: Self.remotePort + 1),
                                                           device: Endpoint(address: devices[0].address(family), port: Self.devicePort)))
            #expect(Set([other.anchor.port, other.relayPort]).isDisjoint(with: [anchor.anchor.port, anchor.relayPort]))
            let sent = call.stop()
            let report = FlowReport(flow: 1, sent: sent, arrivals: atDevice.flatMap { $0.stop() })
            #expect(report.lost == 0 && report.reordered == 0, "\(report)")
        }
    }

    /// Bad requests get their status and change nothing; an idle session ends by itself and
    /// gives its ports back.
    @Test func badRequestsAndIdleSessions() throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--relay-ports", "31000-31003"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = rig.agentControl
            let remote = Endpoint(address: rig.cn.ipv4, port: Self.remotePort), device = Endpoint(address: rig.tn.ipv4, port: Self.devicePort)
            func code(_ body: () throws -> Any) -> ControlError.Code? {
                do { _ = try body(); return nil } catch let e as ControlError { return e.code } catch { return nil }
            }
            #expect(code { try api.createAnchor(AnchorRequest(remote: remote, device: Endpoint(address: rig.tn.ipv6, port: 6000))) } == .forbidden)
            #expect(code { try api.createAnchor(AnchorRequest(remote: remote, device: remote)) } == .forbidden)
            #expect(code { try api.createAnchor(AnchorRequest(remote: remote, device: Endpoint(address: rig.sa.ipv4, port: 6000))) } == .forbidden)
            #expect(code { try api.createAnchor(AnchorRequest(remote: remote, device: device, port: 5004)) } == .forbidden, "outside the pool")
            #expect(code { try api.createAnchor(AnchorRequest(remote: remote, device: device, anchor: rig.cn.ipv4)) } == .forbidden, "not the agent's")
            #expect(code { try api.createAnchor(AnchorRequest(remote: Endpoint(address: IPAddress("203.0.113.9")!, port: 1), device: device)) } == .forbidden,
                    "routed nowhere")
            #expect(code { try api.anchor("0123456789abcdef") } == .notFound)
            #expect(code { try api.anchor("nothex") } == .invalid)
            #expect(code { try api.moveAnchor("0123456789abcdef", AnchorMove(device: device)) } == .notFound)
            // Two sessions fill a pool of four ports; a third is refused, nothing written.
            let a = try api.createAnchor(AnchorRequest(remote: remote, device: device, idleTimeout: 0.5))
            let b = try api.createAnchor(AnchorRequest(remote: Endpoint(address: rig.cn.ipv4, port: 40001), device: device, idleTimeout: 60))
            #expect(code { try api.createAnchor(AnchorRequest(remote: Endpoint(address: rig.cn.ipv4, port: 40002), device: device)) } == .conflict)
            #expect(code { try api.moveAnchor(b.id, AnchorMove(device: Endpoint(address: rig.tn.ipv6, port: 6000))) } == .forbidden)
            #expect(code { try api.moveAnchor(b.id, AnchorMove(device: device, lockout: 0)) } == .invalid)
            let target = Endpoint(address: rig.target.ipv4, port: Self.devicePort)
            #expect(code { try api.moveAnchor(b.id, AnchorMove(device: target, lockout: 1, grace: 1)) } == .forbidden, "lockout and grace")
            // grace 0: the old device's rule goes in the move itself.
            let moved = try api.moveAnchor(b.id, AnchorMove(device: target, grace: 0))
            #expect(moved.retired.isEmpty && moved.device == target, "\(moved)")
            let dp = try DataPlane.adopt(root: rig.daemons.pinRoots[0])
            #expect(try dp.rule(SessionMatch(proto: .udp, source: device.address, sourcePort: device.port,
                                             destination: b.anchor.address, destinationPort: b.relayPort)) == nil)
            // The idle one ends by itself (no packet either way) and its ports come back.
            try rig.wait(5, "the idle session to end") { try api.anchor(a.id).state == .ended }
            #expect(try api.anchor(a.id).reason == "idle")
            let c = try api.createAnchor(AnchorRequest(remote: Endpoint(address: rig.cn.ipv4, port: 40003), device: device))
            #expect(c.state == .active)
            #expect(try api.anchor(b.id).state == .active)
            #expect(try api.metrics().contains("baton_anchors_ended_total{reason=\"idle\"} 1"))
        }
    }
}
