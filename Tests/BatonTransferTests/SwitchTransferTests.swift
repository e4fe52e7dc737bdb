import BatonAPI
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Testing

/// Seed 000's transfer with the agent in switch mode (claims 17-18): batond agent --mode switch
/// on the lab's bridge (its segment namespace) steers inline; nothing is taken over or
/// announced, and the TN keeps its address on the wire. The same checks as the takeover's
/// transfer test: the call at 20 kpps moves to the target and back with nothing lost or
/// reordered, a second correspondent's flow and a TCP stream stay with the TN; and the
/// correspondent's neighbour entry never changes.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct SwitchTransferTests {
    @Test(arguments: [IPAddress.Family.v4, .v6])
    func callMovesToTargetAndBackAtTheSwitch(family: IPAddress.Family) throws {
        var options = LabDaemons.Options()
        options.switchMode = true
        options.agentArguments = ["--idle-timeout", "120", "--linger", "0.5"]
        try Rig.with(.l2, family: family, correspondents: ["cn", "cn2"], options: options) { rig in
            let cn = rig.cn, cn2 = rig.lab["cn2"], tn = rig.tn, target = rig.target
            let original = rig.original
            let traffic = try TransferTraffic(cn: cn, cn2: cn2, tn: tn, target: target, original: original, rate: 20_000)
            let atTN = traffic.atTN, atTarget = traffic.atTarget
            try rig.wait(3, "the call to reach the TN") { atTN.count(flow: 1) > 1000 }
            var seen = Set<MACAddress>()
            func look() throws { if let m = try rig.correspondentSees() { seen.insert(m) } }
            try look()

            let transfer = try rig.tnControl.start(TransferRequest(
                to: "target",
                sessions: [SessionMatch(proto: .udp, source: cn.address(family), sourcePort: 40000, destination: original, destinationPort: 5004)],
                mode: .l2))
            #expect(transfer.state == .active)
            #expect(transfer.milestones["inline"] != nil && transfer.milestones["off-wire"] == nil, "\(transfer.milestones)")
            try rig.wait(3, "the call to reach the target") { atTarget.count(flow: 1) > 2000 }
            try look()
            #expect(try tn.addresses(interface: tn.interface, family: family).contains { $0.address == original },
                    "the TN keeps its address on the wire")
            let status = try rig.agentControl.status()
            #expect(status.takeovers.isEmpty, "nothing is taken over")
            Thread.sleep(forTimeInterval: 0.5)
            try look()

            try rig.agentControl.end(transfer.id)
            try rig.wait(5, "the agent to clear the transfer") { try rig.agentControl.show(transfer.id).state == .ended }
            let endedAt = monotonicNanoseconds()
            try rig.wait(3, "the call to reach the TN again") { atTN.first(flow: 1, after: endedAt) != nil }
            Thread.sleep(forTimeInterval: 0.3)
            try look()

            let result = traffic.stop()
            let report = result.call, tcp = result.tcp
            let otherReport = try #require(result.other)
            print("switch/\(family): call: \(report) ranges \(report.ranges); other: \(otherReport)")
            #expect(report.lost == 0 && report.duplicates == 0 && report.reordered == 0, "\(report)")
            #expect(report.ranges["target"]?.count == 1 && report.ranges["tn"]?.count == 2, "\(report.ranges)")
            #expect(otherReport.lost == 0 && otherReport.perHost["target"] == nil, "\(otherReport)")
            #expect(tcp.failure == nil && tcp.read == tcp.written && tcp.written > 0, "\(tcp)")
            #expect(seen == [tn.mac], "the correspondent's neighbour entry never changes: \(seen)")
        }
    }
}

/// The switch-mode agent restarted during a transfer: its ports' links are adopted, the
/// reconcile keeps the rules and adds no takeover, the call goes on at the target meanwhile,
/// and the transfer ends as usual afterwards.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct SwitchRestartTests {
    @Test func aRestartedSwitchKeepsSteering() throws {
        var options = LabDaemons.Options()
        options.switchMode = true
        options.agentArguments = ["--idle-timeout", "120", "--linger", "0.2"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let call = try rig.startCall(perSecond: 2000, reaching: 200)
            let transfer = try rig.transfer(call, .l2)
            try rig.wait(3, "the call to reach the target") { call.atTarget.count(flow: 1) > 200 }
            rig.daemons.agent.stop()
            let whileDown = call.atTarget.count(flow: 1)
            usleep(300_000)
            #expect(call.atTarget.count(flow: 1) > whileDown + 300, "the switch steers while batond is down")
            try rig.daemons.agent.restart()
            let status = try rig.agentControl.status()
            #expect(status.reconcile?.rulesKept == 1 && status.reconcile?.rulesRemoved == 0 && status.reconcile?.takeoversRestored == 0,
                    "\(String(describing: status.reconcile))")
            #expect(status.takeovers.isEmpty)
            #expect(rig.daemons.agent.logText().contains("adopted XDP link"), "the ports' links are adopted")
            try rig.agentControl.end(transfer.id)
            try rig.wait(5, "the transfer to end") { try rig.agentControl.show(transfer.id).state == .ended }
            let endedAt = monotonicNanoseconds()
            try rig.wait(3, "the call back at the TN") { call.atTN.first(flow: 1, after: endedAt) != nil }
            let sent = call.sender.stop()
            let report = FlowReport(flow: 1, sent: sent, arrivals: call.atTN.stop() + call.atTarget.stop())
            #expect(report.lost == 0 && report.reordered == 0, "\(report)")
        }
    }
}
