import BatonBPF
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Switch mode's data plane (issue 13 item 4; seed 000 claims 17-18): steering inline on the
/// host that forwards between ports, here the lab's bridge in its segment namespace. No
/// address is taken over and nothing is announced: `baton_steer` on the correspondent's
/// bridge port redirects the transferred session (rule only, l2 with the target's port as
/// egress, through the devmap) to the target, which holds the TN's address locally as it does
/// in a transfer; every other frame passes to the bridge as before. (The daemon's switch
/// role, `batond agent --mode switch`, is not built yet: these rules are written here by hand,
/// as that role would.)
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct SwitchModeTests {
    @Test(arguments: [IPAddress.Family.v4, .v6])
    func aSessionIsRedirectedAtTheSwitchAndBack(family: IPAddress.Family) throws {
        let lab = try Lab.transfer(.l2, correspondents: ["cn", "cn2"])
        defer { try? lab.teardown() }
        let cn = lab["cn"], cn2 = lab["cn2"], tn = lab["tn"], target = lab["target"]
        let segment = lab.segments[0]
        let original = tn.address(family)
        // The target holds the TN's address without answering for it (as batond node does).
        try target.run {
            if family == .v4 {
                try Sysctl.write("net.ipv4.conf.all.arp_ignore", 1)
                try Sysctl.write("net.ipv4.conf.all.arp_announce", 2)
            }
            try Netlink().addAddress(original, prefixLength: family.bitWidth, interface: "lo",
                                     flags: family == .v6 ? .nodad : [])
        }
        let cnPort = UInt32(cn.interfaces[0].bridgePortIndex), targetPort = UInt32(target.interfaces[0].bridgePortIndex)
        let bridgeMAC = try segment.namespace.run { try Netlink().link(named: segment.bridge).mac! }
        let dp = try segment.namespace.run { try DataPlane.load(.init(pinRoot: nil, maxRules: 64, maxTakeovers: 8)) }
        var link: XDPLink?
        defer { try? link?.detach() }
        // The lab runs baton_pass on every bridge port (LabBuilder); the switch's program
        // takes the correspondent's port instead.
        link = try segment.namespace.run {
            try XDPLink.detachFromInterface(ifindex: cnPort, mode: .native)
            return try XDPLink.attach(dp.steerProgram, ifindex: cnPort, mode: .native)
        }

        // The call to be transferred, a second correspondent's flow to the same port, and a
        // TCP stream to the TN: only the call moves.
        let traffic = try TransferTraffic(cn: cn, cn2: cn2, tn: tn, target: target, original: original, rate: 20_000,
                                          targetAddress: original)
        usleep(400_000)
        let before = try #require(try cn.neighbour(original)?.mac)
        #expect(before == tn.mac)

        // Transfer: one rule at the switch, the target's bridge port as egress.
        let session = SessionMatch(proto: .udp, source: cn.address(family), sourcePort: 40000, destination: original, destinationPort: 5004)
        try segment.namespace.run {
            try dp.setRule(SessionRule(match: session, forward: .l2(to: target.mac, from: bridgeMAC, ifindex: targetPort)))
        }
        usleep(500_000)
        let during = try cn.neighbour(original)?.mac
        // Back: the rule goes; the bridge delivers to the TN again.
        _ = try segment.namespace.run { try dp.removeRule(session) }
        usleep(400_000)
        let result = traffic.stop()
        let after = try cn.neighbour(original)?.mac
        let report = result.call, tcp = result.tcp
        #expect(report.lost == 0 && report.reordered == 0 && report.duplicates == 0, "\(report)")
        #expect((report.perHost["target"] ?? 0) > 5000 && report.ranges["tn"]?.count == 2 && report.ranges["target"]?.count == 1,
                "the call went tn, target, tn: \(report.ranges)")
        let otherReport = try #require(result.other)
        #expect(otherReport.lost == 0 && otherReport.perHost["target"] == nil, "the second correspondent's flow stays with the TN")
        #expect(tcp.failure == nil && tcp.read == tcp.written && tcp.read > 0, "the TCP stream to the TN is untouched")
        #expect(during == before && after == before, "the correspondent's neighbour entry never changes")
        let hits = try segment.namespace.run { try dp.stats() }
        #expect(hits[.redirectFailed]!.packets == 0)
        #expect(hits[.ruleHit]!.packets >= UInt64(report.perHost["target"] ?? 0))
    }
}
