import BatonAPI
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import BatonStore
import Foundation
import Testing

/// The agent dies (SIGKILL, or a crash injected between two steps of a registration) and
/// starts again: the pinned data plane steers meanwhile, the store brings every transfer
/// back, and the maps end up holding exactly the stored rules.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct RestartTests {
    /// A 20 kpps call, transferred to the target and reaching it (idle timeout long enough that
    /// nothing ends on its own); `body` kills and restarts what it tests.
    private func withTransferredCall(_ layout: LabLayout, _ family: IPAddress.Family,
                                     _ body: (Rig, Rig.Call, TransferInfo) throws -> Void) throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--idle-timeout", "120"]
        try Rig.with(layout, family: family, options: options) { rig in
            let c = try rig.startCall(perSecond: 20_000, reaching: 1000)
            let transfer = try rig.transfer(c, layout)
            try rig.wait(3, "the call to reach the target") { c.atTarget.count(flow: 1) > 2000 }
            try body(rig, c, transfer)
        }
    }

    /// The TN dies (SIGKILL) while its address is taken over, and the transfer is ended: the
    /// wake-up is never confirmed, and after `--max-waking` the agent gives up: the takeover
    /// and the rules go, the transfer ends as `unanswered` and is counted, and a second
    /// `transfer end` is refused (nothing left to end). Also when the agent restarts while
    /// waking: the restored wake-up is given up too.
    @Test(arguments: [false, true])
    func agentGivesUpOnADeadTN(restartWhileWaking: Bool) throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--idle-timeout", "120", "--max-waking", "1"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let c = try rig.startCall(perSecond: 2000, reaching: 100)
            let transfer = try rig.transfer(c, .l2)
            try rig.wait(3, "the call to reach the target") { c.atTarget.count(flow: 1) > 200 }
            rig.daemons.tn.kill()
            try rig.agentControl.end(transfer.id)
            #expect(try rig.agentControl.show(transfer.id).state == .waking)
            if restartWhileWaking {
                rig.daemons.agent.kill()
                try rig.daemons.agent.restart()
                #expect(try rig.agentControl.show(transfer.id).state == .waking, "the restarted agent goes on waking")
            }
            try rig.wait(6, "the agent to give up on the unconfirmed wake-up") { try rig.agentControl.show(transfer.id).state == .ended }
            let ended = try rig.agentControl.show(transfer.id)
            #expect(ended.reason == "unanswered" && ended.milestones["given-up"] != nil, "\(ended)")
            #expect(try rig.agentControl.status().takeovers.isEmpty)
            #expect(try DataPlane.adopt(root: rig.daemons.pinRoots[0]).ruleCount() == 0, "the rules went with the takeover")
            #expect(try rig.agentControl.metrics().contains("baton_transfers_ended_total{reason=\"unanswered\"} 1"),
                    "counted (by the agent that gave up)")
            #expect { try rig.agentControl.end(transfer.id) } throws: { ($0 as? ControlError)?.code == .conflict }
            _ = c.sender.stop()
            _ = c.atTN.stop() + c.atTarget.stop()
        }
    }

    /// A 20 kpps call is transferred; the agent is killed with SIGKILL mid-transfer and
    /// restarted. Not one datagram is lost, `transfer list` is the same after the restart,
    /// the maps hold exactly the stored rules, and the transfer ends normally afterwards.
    @Test(arguments: [(LabLayout.l2, IPAddress.Family.v4), (.l3, .v6)])
    func agentKilledDuringTransfer(layout: LabLayout, family: IPAddress.Family) throws {
        try withTransferredCall(layout, family) { rig, c, transfer in
            let atTN = c.atTN, atTarget = c.atTarget, call = c.sender
            let before = try rig.agentControl.list()

            rig.daemons.agent.kill()
            let whileDead = atTarget.count(flow: 1)
            try rig.wait(3, "the pinned data plane to steer while the agent is dead") { atTarget.count(flow: 1) > whileDead + 5000 }
            try rig.daemons.agent.restart()

            let after = try rig.agentControl.list()
            #expect(after.map(\.id) == before.map(\.id), "the same transfers after the restart")
            #expect(after.map(\.state) == before.map(\.state))
            #expect(after.map { $0.sessions.map(\.match) } == before.map { $0.sessions.map(\.match) })
            let status = try rig.agentControl.status()
            let r = try #require(status.reconcile)
            #expect(r.transfersResumed == 1 && r.rulesKept == 1 && r.takeoversKept == 1, "\(r)")
            #expect(r.rulesRestored == 0 && r.rulesRemoved == 0 && r.rulesRewritten == 0 && r.takeoversRemoved == 0, "\(r)")
            try expectMapsHoldTheStore(rig)
            // The per-CPU counters went on counting while the agent was down; the metrics read them.
            let arrived = atTarget.count(flow: 1)
            let metrics = try rig.agentControl.metrics()
            let packets = metrics.split(separator: "\n").first { $0.hasPrefix("baton_transfer_packets{transfer=\"\(transfer.id)\"}") }
            let counted = packets.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            #expect(counted >= Double(arrived), "baton_transfer_packets counts what the target got: \(packets ?? "none")")
            #expect(metrics.contains("baton_rule_bytes{"), "per-rule bytes are exported")

            // It ends as if nothing happened: the restored channel wakes the TN up.
            Thread.sleep(forTimeInterval: 0.3)
            try rig.agentControl.end(transfer.id)
            try rig.wait(5, "the agent to clear the transfer") { try rig.agentControl.show(transfer.id).state == .ended }
            let endedAt = monotonicNanoseconds()
            try rig.wait(3, "the call to reach the TN again") { atTN.first(flow: 1, after: endedAt) != nil }
            Thread.sleep(forTimeInterval: 0.3)
            let report = FlowReport(flow: 1, sent: call.stop(), arrivals: atTN.stop() + atTarget.stop())
            print("\(layout.rawValue)/\(family): agent killed mid-transfer: \(report)")
            #expect(report.lost == 0, "no datagram lost across the agent's SIGKILL and restart: \(report)")
            #expect(report.reordered == 0 && report.duplicates == 0, "\(report)")
            try expectMapsHoldTheStore(rig)
        }
    }

    /// The TN and the target die (SIGKILL) mid-transfer and start again: their stores give
    /// back the transfer (keys, addresses moved), so the TN still answers the agent's wake-up
    /// and the target the release. Not one datagram of the call is lost.
    @Test(arguments: [(LabLayout.l2, IPAddress.Family.v4), (.l3, .v6)])
    func nodesKilledDuringTransfer(layout: LabLayout, family: IPAddress.Family) throws {
        try withTransferredCall(layout, family) { rig, c, transfer in
            let atTN = c.atTN, atTarget = c.atTarget, call = c.sender

            rig.daemons.tn.kill()
            rig.daemons.target.kill()
            let whileDead = atTarget.count(flow: 1)
            try rig.wait(3, "the call to go on reaching the target while the nodes are dead") { atTarget.count(flow: 1) > whileDead + 5000 }
            try rig.daemons.tn.restart()
            try rig.daemons.target.restart()
            #expect(try rig.tnControl.show(transfer.id).state == .active, "the TN knows its transfer again")
            #expect(try rig.targetControl.show(transfer.id).state == .accepted, "the target knows it holds the address")
            for node in [rig.daemons.tn, rig.daemons.target] {
                #expect(!node.logText().contains("resuming failed"), "\(node.host) resumed (adopting its decap link in L3)")
            }

            Thread.sleep(forTimeInterval: 0.3)
            try rig.agentControl.end(transfer.id)
            try rig.wait(5, "the restarted TN to answer the wake-up") { try rig.agentControl.show(transfer.id).state == .ended }
            let endedAt = monotonicNanoseconds()
            try rig.wait(3, "the call to reach the TN again") { atTN.first(flow: 1, after: endedAt) != nil }
            try rig.wait(5, "the restarted target to answer the release") { try rig.targetControl.show(transfer.id).state == .released }
            #expect(try rig.tnControl.show(transfer.id).state == .ended)
            Thread.sleep(forTimeInterval: 0.3)
            let report = FlowReport(flow: 1, sent: call.stop(), arrivals: atTN.stop() + atTarget.stop())
            print("\(layout.rawValue)/\(family): TN and target killed mid-transfer: \(report)")
            #expect(report.lost == 0, "no datagram lost across the nodes' SIGKILL and restart: \(report)")
            #expect(report.reordered == 0 && report.duplicates == 0, "\(report)")
        }
    }

    /// The TN dies half-way through a start: with the registration stored but not sent, and
    /// with the agent's answer in hand but the original still on the wire. The next start
    /// rolls the transfer back: the agent is asked to end (it may have taken over), the target
    /// to release, and the original stays the TN's.
    @Test(arguments: ["tn-registering", "tn-registered"])
    func tnCrashDuringStart(step: String) throws {
        try Rig.with(.l2, family: .v4) { rig in
            let original = rig.original
            let tn = rig.daemons.tn
            tn.stop()
            try tn.restart(environment: ["BATON_CRASH_AT": step])
            let session = SessionMatch(proto: .udp, source: rig.cn.address(.v4), sourcePort: 40000, destination: original, destinationPort: 5004)
            #expect(throws: (any Error).self) { try rig.tnControl.start(TransferRequest(to: "target", sessions: [session], mode: .l2)) }
            #expect(tn.waitForExit(timeout: 10), "\(step): the TN crashed at the step")
            try tn.restart()
            let t = try #require(try rig.tnControl.list().first, "\(step): the TN knows the interrupted start")
            #expect(t.state == .failed, "\(step): \(t)")
            try rig.wait(10, "\(step): the agent to let go and the target to release") {
                try rig.agentControl.status().takeovers.isEmpty
                    && rig.targetControl.list().map(\.state) == [.released]
            }
            #expect(try rig.tn.addresses(interface: rig.tn.interface, family: .v4).contains { $0.address == original },
                    "\(step): the original is on the TN's wire")
            #expect(try rig.agentControl.list().allSatisfy { [TransferState.ended, .failed].contains($0.state) }, "\(step)")
        }
    }

    /// The registration steps, in order (docs/daemon.md, "Restarts"). A crash is injected
    /// after each; the next start must leave the maps holding exactly the stored transfers'
    /// entries, and the agent and the TN must agree again (both active, or neither).
    static let steps = ["authorized", "stored", "rules-written", "takeover-written", "active", "registered-sent"]

    @Test func crashAtEveryRegistrationStep() throws {
        var options = LabDaemons.Options()
        // Short, so that a transfer the TN gave up on while the agent was down ends soon.
        options.agentArguments = ["--idle-timeout", "2"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let original = rig.original
            let session = SessionMatch(proto: .udp, source: rig.cn.address(.v4), sourcePort: 40000,
                                       destination: original, destinationPort: 5004)
            for step in Self.steps {
                let agent = rig.daemons.agent
                agent.stop()
                try agent.restart(environment: ["BATON_CRASH_AT": step])
                // The TN's start blocks while it waits for the agent: run it beside.
                let outcome = Outcome()
                let starter = Thread { outcome.set(Result { try rig.tnControl.start(TransferRequest(to: "target", sessions: [session], mode: .l2)) }) }
                starter.start()
                let crashed = agent.waitForExit(timeout: 10)
                #expect(crashed, "\(step): the agent crashed at the step; the TN's start: \(crashed ? "" : outcome.wait())")
                if !crashed { agent.kill() }
                try agent.restart()
                let r = try #require(try rig.agentControl.status().reconcile)
                print("crash at \(step): reconcile \(r); TN's start: \(outcome.wait())")
                try expectMapsHoldTheStore(rig, step)

                // Agent and TN agree again: both active, or neither.
                try rig.wait(15, "\(step): agent and TN to agree") {
                    let agentLive = try rig.agentControl.list().filter { [TransferState.active, .waking, .lingering].contains($0.state) }
                    let tnLive = try rig.tnControl.list().filter { [TransferState.active, .ending, .registering].contains($0.state) }
                    return agentLive.map(\.id) == tnLive.map(\.id)
                }
                // Then end whatever is left and come back to nothing.
                for t in try rig.agentControl.list() where t.state == .active { try rig.agentControl.end(t.id) }
                try rig.wait(10, "\(step): everything to end") {
                    try rig.agentControl.status().takeovers.isEmpty
                        && rig.tnControl.list().allSatisfy { [TransferState.ended, .failed].contains($0.state) }
                }
                try expectMapsHoldTheStore(rig, step)
                #expect(try rig.tn.addresses(interface: rig.tn.interface, family: .v4).contains { $0.address == original },
                        "\(step): the TN has its address on the wire again")
                // The grace period of the TN's temporary address, so the next step finds the pool free.
                Thread.sleep(forTimeInterval: 2.2)
            }
        }
    }

    /// The agent's pinned maps hold exactly the rules and takeovers of the stored transfers
    /// that are not over (read from the maps and from the store file, not from the agent).
    func expectMapsHoldTheStore(_ rig: Rig, _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dataPlane = try DataPlane.adopt(root: rig.daemons.pinRoots[0])
        let store = try Store.open(directory: "\(rig.daemons.directory)/sa")
        let live: Set<String> = ["active", "waking", "lingering"]
        let storedRules = try store.rules(states: live)
        let mapRules = try dataPlane.rules(withCounters: false).map(\.rule)
        #expect(Set(mapRules.map(\.match)) == Set(storedRules.map(\.match)) && mapRules.count == storedRules.count,
                "\(context): map rules \(mapRules.map(\.match)) ≠ stored \(storedRules.map(\.match))", sourceLocation: sourceLocation)
        for rule in mapRules {
            #expect(storedRules.contains(rule), "\(context): rule \(rule.match) forwards as stored", sourceLocation: sourceLocation)
        }
        let storedTakeovers = try store.transfers(states: live).map(\.takeover.address)
        let mapTakeovers = try dataPlane.takeovers().map(\.takeover.address)
        #expect(Set(mapTakeovers) == Set(storedTakeovers), "\(context): takeovers \(mapTakeovers) ≠ stored \(storedTakeovers)",
                sourceLocation: sourceLocation)
    }
}

/// A result handed from one thread to another.
final class Outcome: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<TransferInfo, any Error>?

    func set(_ r: Result<TransferInfo, any Error>) {
        result = r
        done.signal()
    }

    func wait() -> String {
        done.wait()
        switch result! {
        case .success(let t): return "\(t.state)"
        case .failure(let e): return "failed: \(e)"
        }
    }
}

extension RestartTests {
    /// `transfer end --force` (issue 12 item 7), for a peer that is gone. The agent killed: the
    /// TN's plain end fails and the transfer stays active; with --force the TN reclaims its
    /// address on its own (reason forced). Then, the agent back (it restores the transfer as
    /// active) and the TN killed: the agent's forced end clears the takeover and the rules at
    /// once, without waiting for a confirmation that cannot come.
    @Test func forcedEndWithoutThePeer() throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--idle-timeout", "120"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let c = try rig.startCall(perSecond: 2000, reaching: 100)
            let transfer = try rig.transfer(c, .l2)
            try rig.wait(3, "the call to reach the target") { c.atTarget.count(flow: 1) > 200 }

            rig.daemons.agent.kill()
            #expect { try rig.tnControl.end(transfer.id) } throws: { ($0 as? ControlError)?.code == .failed }
            #expect(try rig.tnControl.show(transfer.id).state == .active, "nothing ended without --force")
            let forced = try rig.tnControl.end(transfer.id, force: true)
            #expect(forced.state == .ended && forced.reason == "forced" && forced.milestones["forced"] != nil, "\(forced)")
            #expect(try rig.tnControl.status().addresses.contains { $0.hasPrefix("\(rig.original)/") },
                    "the original is back on the TN's interface")

            try rig.daemons.agent.restart()
            #expect(try rig.agentControl.show(transfer.id).state == .active, "the agent never heard of it")
            rig.daemons.tn.kill()
            let cleared = try rig.agentControl.end(transfer.id, force: true)
            #expect(cleared.state == .ended && cleared.reason == "forced", "\(cleared)")
            #expect(try rig.agentControl.status().takeovers.isEmpty)
            #expect(try DataPlane.adopt(root: rig.daemons.pinRoots[0]).ruleCount() == 0, "the rules went with the takeover")
            #expect(try rig.agentControl.metrics().contains("baton_transfers_ended_total{reason=\"forced\"} 1"))
            _ = c.sender.stop()
            _ = c.atTN.stop() + c.atTarget.stop()
        }
    }
}
