import BatonAPI
import BatonBPF
import BatonDaemon
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Testing

/// Issue 12 item 13: handovers one after another, each started 0.3 s after the previous one
/// ended (well inside the agent's default linger), while a 20 kpps call and a flow that is
/// never transferred run. Every start is admitted (the new transfer takes over from the
/// lingering one), and nothing is lost at any clean-up (the previous transfers' temporary
/// addresses going, their lingers ending).
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct BackToBackTests {
    @Test(arguments: [LabLayout.l2, .l3])
    func handoversThreeTenthsOfASecondApart(layout: LabLayout) throws {
        // The agent's defaults (linger 0.5 s) and the nodes' (temporary grace 2 s): the
        // overlaps this test is about.
        var options = LabDaemons.Options()
        options.agentArguments = ["--idle-timeout", "120"]
        try Rig.with(layout, family: .v4, correspondents: ["cn", "cn2"], options: options) { rig in
            let call = try rig.startCall(perSecond: 20_000, reaching: 1000)
            // Never transferred: in L3 it reaches the TN through its temporary address.
            let atTNOther = SequenceReceiver(host: "tn", socket: try rig.tn.udpSocket(.v4, port: 5006))
            let other = SequenceSender(socket: try rig.lab["cn2"].udpSocket(.v4, port: 40000),
                                       to: SocketAddress(rig.original, port: 5006), flow: 2, perSecond: 2000)
            let rounds = 6
            var started: [TransferInfo] = []
            var refused: [String] = []
            var events: [(String, UInt64)] = []
            for i in 0..<rounds {
                let before = monotonicNanoseconds()
                events.append(("start \(i)", before))
                do {
                    let t = try rig.transfer(call, layout)
                    started.append(t)
                    try rig.wait(3, "round \(i): the call to reach the target") { call.atTarget.first(flow: 1, after: before) != nil }
                    Thread.sleep(forTimeInterval: 0.2)
                    events.append(("end \(i)", monotonicNanoseconds()))
                    _ = try rig.tnControl.end(t.id)
                    events.append(("ended \(i)", monotonicNanoseconds()))
                } catch {
                    refused.append("round \(i): \(error)")
                }
                Thread.sleep(forTimeInterval: 0.3)
            }
            // Past every linger and every temporary address's grace, the call still running.
            Thread.sleep(forTimeInterval: 3)
            let sent = call.sender.stop()
            let sentOther = other.stop()
            let arrivals = call.atTN.stop() + call.atTarget.stop() + atTNOther.stop()
            let report = FlowReport(flow: 1, sent: sent, arrivals: arrivals)
            let otherReport = FlowReport(flow: 2, sent: sentOther, arrivals: arrivals)
            print("\(layout.rawValue): call \(report); other \(otherReport)")
            // Where a loss fell, against the rounds' events: for whoever has to find out why.
            var bySeq: [UInt64: Arrival] = [:]
            for a in arrivals where a.flow == 1 { bySeq[a.sequence] = a }
            for n in 1..<UInt64(max(1, sent)) where bySeq[n] == nil {
                guard let prev = bySeq[n - 1] else { continue }
                print("lost \(n) after one at \(prev.host): " + events.map { "\($0.0) " + String(format: "%+.1f ms", (Double($0.1) - Double(prev.time)) / 1e6) }.joined(separator: ", "))
            }

            #expect(refused.isEmpty, "every start is admitted: \(refused)")
            #expect(started.count == rounds)
            #expect(report.lost == 0 && report.reordered == 0, "nothing of the call is lost or reordered: \(report)")
            #expect(otherReport.lost == 0, "nothing of the flow that stays with the TN is lost: \(otherReport)")
            let agent = try rig.agentControl.list()
            for t in started {
                let shown = agent.first { $0.id == t.id }
                #expect(shown?.state == .ended, "transfer \(t.id) ended at the agent: \(String(describing: shown?.state))")
            }
            // Each one but the last was taken over from in its linger, not waited out.
            let reasons = started.map { t in agent.first { $0.id == t.id }?.reason ?? "?" }
            #expect(reasons.dropLast().allSatisfy { $0 == "superseded" }, "ended by the next transfer: \(reasons)")
            #expect(try rig.agentControl.status().takeovers.isEmpty, "nothing left taken over")
            let tnAddresses = try rig.tn.addresses(interface: rig.tn.interface, family: .v4).map(\.address)
            #expect(tnAddresses == [rig.original], "only the original is left on the TN's interface: \(tnAddresses)")
        }
    }

    /// A start the agent refuses is one refusal there: the TN does not follow it with an
    /// `end` for a transfer the agent never had (which the agent counted as a second rejection).
    @Test func aRefusedStartIsCountedOnce() throws {
        try Rig.with(.l2, family: .v4) { rig in
            let call = try rig.startCall(perSecond: 1000, reaching: 20)
            // The TN's own subnet, but outside the prefixes it is enrolled with.
            let outside = try #require(IPPrefix(rig.original, length: 24)?.network.address(at: 250))
            var request = TransferRequest(to: "target", sessions: [call.session], mode: .l2)
            request.temporary = outside
            #expect { try rig.tnControl.start(request) } throws: { "\($0)".contains("does not own") }
            _ = call.sender.stop()
            Thread.sleep(forTimeInterval: 0.5) // an `end` would have come by now
            let metrics = try rig.agentControl.metrics().split(separator: "\n")
            let rejections = metrics.filter { $0.hasPrefix("baton_rejections_total{") }
            #expect(rejections == ["baton_rejections_total{reason=\"not-owner\"} 1"], "\(rejections)")
            #expect(metrics.contains("baton_registrations_total{result=\"refused\"} 1"))
            _ = call.atTN.stop(); _ = call.atTarget.stop()
        }
    }
}
