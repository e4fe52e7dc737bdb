import BatonBPF
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Real frames across veth pairs and a bridge: a correspondent sends to an
/// address the agent has taken over; the agent's XDP program answers ARP/NDP
/// for it and steers the transferred flow to the target and every other flow
/// to the TN. Nothing here is simulated: the kernel delivers or it does not.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct SteeringOverVethTests {
    @Test(arguments: [IPAddress.Family.v4, .v6])
    func transferredFlowReachesTargetOthersReachTN(family: IPAddress.Family) throws {
        try Lab.with(.segment(hosts: ["cn", "sa", "tn", "target"])) { lab in
            let cn = lab["cn"], sa = lab["sa"], tn = lab["tn"], target = lab["target"]
            // The TN's original address: a fresh one on the segment, held as a
            // non-ARP local address by both TN and target (the LVS-DR way), so
            // only the agent answers for it.
            let original = family == .v4 ? offset(cn.ipv4, by: 40) : offset(cn.ipv6, by: 40)
            try tn.addNonARPAddress(original)
            try target.addNonARPAddress(original)

            let saMAC = sa.mac, tnMAC = tn.mac, targetMAC = target.mac
            let cnAddress = cn.address(family)

            // The agent: data plane in its namespace, attached natively to eth0.
            var link: XDPLink?
            let dp = try sa.run { try DataPlane.load(.init(pinRoot: nil, maxRules: 1024, maxTakeovers: 64)) }
            defer { try? link?.detach() }
            try dp.setRule(SessionRule(
                match: SessionMatch(proto: .udp, source: cnAddress, sourcePort: 40000, destination: original, destinationPort: 5000),
                forward: .l2(to: targetMAC, from: saMAC)))
            try dp.setTakeover(Takeover(address: original, defaultForward: .l2(to: tnMAC, from: saMAC), agentMAC: saMAC))
            link = try sa.run { try XDPLink.attach(dp.steerProgram, ifindex: UInt32(sa.ifindex), mode: .native) }

            let atTarget = try target.udpSocket(family, port: 5000)
            let atTN = try tn.udpSocket(family, port: 5000)
            let transferred = try cn.udpSocket(family, port: 40000)
            let other = try cn.udpSocket(family, port: 40001)
            defer { [atTarget, atTN, transferred, other].forEach { $0.close() } }

            for i in 0..<20 {
                try transferred.send(Array("call \(i)".utf8), to: original, port: 5000)
                try other.send(Array("stream \(i)".utf8), to: original, port: 5000)
            }
            var calls: [String] = [], streams: [String] = []
            while let d = try atTarget.receive(timeout: .milliseconds(500)) { calls.append(String(decoding: d.payload, as: UTF8.self)) }
            while let d = try atTN.receive(timeout: .milliseconds(200)) { streams.append(String(decoding: d.payload, as: UTF8.self)) }

            #expect(calls == (0..<20).map { "call \($0)" }, "the transferred flow reaches the target, in order")
            #expect(streams == (0..<20).map { "stream \($0)" }, "the other flow reaches the TN, in order")

            // The correspondent learnt the agent's MAC for the address from XDP's answer.
            let entry = try cn.neighbour(original)
            #expect(entry?.mac == sa.mac)

            let stats = try dp.stats()
            #expect(stats[.ruleHit]!.packets == 20)
            #expect(stats[.defaultHit]!.packets == 20)
            #expect(stats[family == .v4 ? .arpReply : .neighborAdvert]!.packets >= 1)
            let rule = try #require(try dp.rules().first)
            #expect(rule.counter.packets == 20)
            #expect(try dp.takeover(original)?.counter.packets == 20)
            // No checksum damage along the way (veth TX offload is off in the lab).
            let key = family == .v4 ? "Udp.InCsumErrors" : "Udp6.Udp6InCsumErrors"
            #expect((try target.snmpCounters()[key] ?? 0) == 0)
        }
    }

    @Test func detachingStopsSteering() throws {
        try Lab.with(.segment(hosts: ["cn", "sa", "tn"])) { lab in
            let cn = lab["cn"], sa = lab["sa"], tn = lab["tn"]
            let original = offset(cn.ipv4, by: 41)
            try tn.addNonARPAddress(original)
            let dp = try sa.run { try DataPlane.load(.init(pinRoot: nil, maxRules: 64, maxTakeovers: 8)) }
            try dp.setTakeover(Takeover(address: original,
                                        defaultForward: .l2(to: tn.mac, from: sa.mac), agentMAC: sa.mac))
            let link = try sa.run { try XDPLink.attach(dp.steerProgram, ifindex: UInt32(sa.ifindex), mode: .native) }
            let rx = try tn.udpSocket(.v4, port: 6000)
            let tx = try cn.udpSocket(.v4)
            defer { rx.close(); tx.close() }
            try tx.send([1], to: original, port: 6000)
            #expect(try rx.receive(timeout: .seconds(1)) != nil)
            try link.detach()
            // Without the program nobody answers for the address: nothing arrives.
            try cn.deleteNeighbour(original)
            try tx.send([2], to: original, port: 6000)
            #expect(try rx.receive(timeout: .milliseconds(800)) == nil)
            #expect(try sa.run { XDPLink.attachedPrograms(ifindex: UInt32(sa.ifindex)).native } == 0)
        }
    }
}

/// The address `n` above `a` in its subnet (the lab numbers hosts from 1).
func offset(_ a: IPAddress, by n: UInt8) -> IPAddress {
    var b = a.wireBytes
    b[b.count - 1] = b[b.count - 1] &+ n
    return IPAddress(wire: b)!
}
