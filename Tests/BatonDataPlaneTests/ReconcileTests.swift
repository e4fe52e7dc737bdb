import BatonBPF
@testable import BatonDataPlane
import BatonModel
import BatonPacket
import CBatonABI
import Foundation
import Testing

/// DataPlane.reconcile: the maps end up holding exactly what the store
/// says, counters of entries that stay go on, and everything the data plane
/// keeps beside the entries (slots, match kinds, filter, statistics) agrees.
@Suite(.serialized, .enabled(if: KernelRig.supported, "needs root and XDP"))
struct ReconcileTests {
    static let targetMAC2 = MACAddress("02:00:00:00:00:33")!

    static func toTarget(_ s: FrameSpec, mac: MACAddress = World.targetMAC) -> SessionRule {
        SessionRule(match: s.match, forward: .l2(to: mac, from: World.saMAC))
    }

    static func takeover(_ family: IPAddress.Family, _ role: World.Role, answer: Bool = true) -> Takeover {
        Takeover(address: World.ip(family, role), defaultForward: .l2(to: World.tnMAC, from: World.saMAC),
                 agentMAC: answer ? World.saMAC : nil)
    }

    static func slot(_ dp: DataPlane, _ m: SessionMatch) throws -> UInt32? {
        switch m.destination.family {
        case .v4: try dp.rules4.lookup(baton_rule4_key(m, kind: try m.kind()))?.counter
        case .v6: try dp.rules6.lookup(baton_rule6_key(m, kind: try m.kind()))?.counter
        }
    }

    static func slotsInUse(_ dp: DataPlane) -> Int { dp.slots.words.reduce(0) { $0 + $1.nonzeroBitCount } }

    static func send(_ dp: DataPlane, _ s: FrameSpec) throws -> (verdict: UInt32, output: [UInt8]) {
        let r = try dp.steerProgram.testRun(s.bytes)
        return (r.retval, r.output)
    }

    /// A restarted daemon: the maps pinned by the last process, adopted by
    /// a new DataPlane, made to match the store.
    @Test func makesTheMapsMatch() throws {
        let root = "/sys/fs/bpf/baton-test-reconcile-\(getpid())"
        defer { try? DataPlane.unload(root: root) }
        let old = try DataPlane.load(.init(pinRoot: root, maxRules: 1024, maxTakeovers: 64))

        // Before: what the last process left.
        let kept4 = FrameSpec(.v4, .udp), kept6 = FrameSpec(.v6, .tcp)
        let changed = FrameSpec(.v4, .tcp)
        let stale = FrameSpec(.v4, .udp, from: .cn2)
        var staleWildcard = FrameSpec(.v6, .udp)
        staleWildcard.dport = 7000
        let wildcard = SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: staleWildcard.dst, destinationPort: 7000)
        try old.setTakeover(Self.takeover(.v4, .tn))
        try old.setTakeover(Self.takeover(.v6, .tn))
        try old.setTakeover(Self.takeover(.v4, .other))
        try old.addRules([Self.toTarget(kept4), Self.toTarget(kept6), Self.toTarget(changed), Self.toTarget(stale),
                          SessionRule(match: wildcard, forward: .drop)])
        #expect(try old.configMap.lookup(0)!.match_kinds & (1 << UInt32(MatchKind.anySource.rawValue)) != 0)
        // Traffic: kept ones, the stale one, a takeover's default.
        for s in [kept4, kept6, kept6, stale, stale, stale] { #expect(try Self.send(old, s).verdict == Fixture.TX) }
        var byDefault = kept4
        byDefault.sport = 1
        #expect(try Self.send(old, byDefault).output == byDefault.rewritten(to: World.tnMAC))
        let slotsBefore = try [kept4, kept6, changed].map { try Self.slot(old, $0.match)! }
        let statsBefore = try old.stats()

        // The store's view: kept4, kept6, changed to another target, one new;
        // the v4 takeover as it was, the v6 one no longer answering, a new one.
        let new = FrameSpec(.v6, .icmp, from: .cn2)
        let wantedRules = [Self.toTarget(kept4), Self.toTarget(kept6), Self.toTarget(changed, mac: Self.targetMAC2),
                           Self.toTarget(new)]
        let wantedTakeovers = [Self.takeover(.v4, .tn), Self.takeover(.v6, .tn, answer: false), Self.takeover(.v6, .other)]

        let dp = try DataPlane.adopt(root: root)
        let started = Date()
        let report = try dp.reconcile(rules: wantedRules, takeovers: wantedTakeovers)
        print("reconcile of \(wantedRules.count) rules: \(Date().timeIntervalSince(started) * 1000) ms, \(report)")
        #expect(report.rulesKept == 2)
        #expect(report.rulesRewritten == 1)
        #expect(report.rulesRestored == 1)
        #expect(report.rulesRemoved == 2)
        #expect(report.takeoversKept == 1)
        #expect(report.takeoversRewritten == 1)
        #expect(report.takeoversRestored == 1)
        #expect(report.takeoversRemoved == 1)
        #expect(report.slotsRepaired == 0)
        #expect(Set(report.removedRules) == [stale.match, wildcard])
        #expect(report.restoredRules == [new.match])
        #expect(report.removedTakeovers == [World.ip(.v4, .other)])

        // Exactly the wanted entries.
        let rules = try dp.rules()
        #expect(rules.count == 4)
        for r in wantedRules { #expect(rules.first { $0.rule.match == r.match }?.rule == r, "\(r.match)") }
        #expect(try dp.takeovers().map(\.takeover) == wantedTakeovers.sorted { $0.address < $1.address })

        // Kept and rewritten ones kept their slots and counts; the new one has its own, empty.
        #expect(try [kept4, kept6, changed].map { try Self.slot(dp, $0.match)! } == slotsBefore)
        #expect(try dp.rule(kept4.match)?.counter.packets == 1)
        #expect(try dp.rule(kept6.match)?.counter.packets == 2)
        #expect(try dp.takeover(World.ip(.v4, .tn))?.counter.packets == 1)
        #expect(try dp.rule(new.match)?.counter == Counter())
        #expect(Self.slotsInUse(dp) == 4 + 3, "one slot per entry, the removed ones' freed")

        // The removed rule's packets stay in the statistics.
        let statsAfter = try dp.stats()
        #expect(statsAfter[.ruleHit] == statsBefore[.ruleHit])
        #expect(statsAfter[.defaultHit] == statsBefore[.defaultHit])

        // Packets follow the new maps.
        #expect(try Self.send(dp, changed).output == changed.rewritten(to: Self.targetMAC2))
        #expect(try Self.send(dp, new).output == new.rewritten(to: World.targetMAC))
        #expect(try dp.rule(new.match)?.counter.packets == 1)
        #expect(try Self.send(dp, stale).output == stale.rewritten(to: World.tnMAC), "stale rule gone: the default")
        var toStale = kept4
        toStale.dst = World.ip(.v4, .other)
        let passed = try dp.runCounting(toStale.bytes)
        #expect(passed.verdict == Fixture.PASS)
        #expect(passed.reasons == [.notTakenOver], "the stale takeover's filter bit is cleared")
        let kinds = try dp.configMap.lookup(0)!.match_kinds
        #expect(kinds & (1 << UInt32(MatchKind.anySource.rawValue)) == 0, "no any-src rule is left")
        #expect(kinds & (1 << UInt32(MatchKind.exact.rawValue)) != 0)

        // Again: nothing to do, nothing written.
        let again = try dp.reconcile(rules: wantedRules, takeovers: wantedTakeovers)
        #expect(again.changedNothing)
        #expect(again.rulesKept == 4 && again.takeoversKept == 3)
        #expect(try dp.rule(kept6.match)?.counter.packets == 2)

        // And a third process sees the same.
        let third = try DataPlane.adopt(root: root).reconcile(rules: wantedRules, takeovers: wantedTakeovers)
        #expect(third.changedNothing)
    }

    /// Empty store: everything goes, and the maps are as after a fresh load.
    @Test func emptyStoreClearsEverything() throws {
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: 256, maxTakeovers: 16))
        try dp.setTakeover(Self.takeover(.v4, .tn))
        try dp.addRules([Self.toTarget(FrameSpec(.v4, .udp)), Self.toTarget(FrameSpec(.v6, .udp))])
        _ = try Self.send(dp, FrameSpec(.v4, .udp))
        let report = try dp.reconcile(rules: [], takeovers: [])
        #expect(report.rulesRemoved == 2 && report.takeoversRemoved == 1)
        #expect(try dp.ruleCount() == 0)
        #expect(try dp.takeovers().isEmpty)
        #expect(Self.slotsInUse(dp) == 0)
        #expect(try dp.filterMap.entries().allSatisfy { $0.1 == 0 })
        #expect(try dp.configMap.lookup(0)!.match_kinds == UInt32(BATON_CONFIG_VALID))
        #expect(try dp.stats()[.ruleHit]?.packets == 1, "retired, not lost")
        var counted = 0
        try dp.counterMap.forEachPerCPU { _, per in counted += per.reduce(0) { $0 + Int($1.packets) } }
        #expect(counted == 0, "freed slots are zeroed")
    }

    /// Refused before any write: duplicates, too many.
    @Test func refusesBadInputChangingNothing() throws {
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: 4, maxTakeovers: 2))
        let a = Self.toTarget(FrameSpec(.v4, .udp))
        try dp.addRules([a])
        try dp.setTakeover(Self.takeover(.v4, .tn))
        func unchanged() throws {
            #expect(try dp.rules().map(\.rule) == [a])
            #expect(try dp.takeovers().map(\.takeover) == [Self.takeover(.v4, .tn)])
        }
        let b = Self.toTarget(FrameSpec(.v4, .tcp))
        var b2 = b
        b2.forward = .drop
        #expect(throws: DataPlaneError.invalid("rule \(b.match) is given twice; nothing was changed")) {
            try dp.reconcile(rules: [b, b2], takeovers: [])
        }
        try unchanged()
        #expect(throws: DataPlaneError.self) {
            try dp.reconcile(rules: [], takeovers: [Self.takeover(.v4, .other), Self.takeover(.v4, .other, answer: false)])
        }
        try unchanged()
        let many = (0..<5).map { i -> SessionRule in
            var s = FrameSpec(.v4, .udp)
            s.sport = UInt16(1000 + i)
            return Self.toTarget(s)
        }
        #expect(throws: DataPlaneError.self) { try dp.reconcile(rules: many, takeovers: []) }
        try unchanged()
        var invalid = a
        invalid.forward = .l2(to: .zero, from: World.saMAC)
        #expect(throws: DataPlaneError.self) { try dp.reconcile(rules: [invalid], takeovers: []) }
        try unchanged()
    }

    /// A full takeover table is the kernel's refusal (E2BIG), reported as `.full`, with the
    /// counter slot given back; replacing an existing takeover still works when full.
    @Test func fullTakeoverTable() throws {
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: 4, maxTakeovers: 2))
        try dp.setTakeover(Self.takeover(.v4, .tn))
        try dp.setTakeover(Self.takeover(.v6, .tn))
        let before = Self.slotsInUse(dp)
        #expect(throws: DataPlaneError.full("takeover table is full (2 addresses)")) {
            try dp.setTakeover(Self.takeover(.v4, .other))
        }
        #expect(Self.slotsInUse(dp) == before)
        try dp.setTakeover(Self.takeover(.v4, .tn, answer: false))
        #expect(try dp.takeovers().map(\.takeover.address) == [World.ip(.v4, .tn), World.ip(.v6, .tn)].sorted())
    }

    /// Slots a killed process allocated but never used are freed; two
    /// entries sharing a slot (which no API makes) are split.
    @Test func repairsCounterSlots() throws {
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: 256, maxTakeovers: 16))
        let a = Self.toTarget(FrameSpec(.v4, .udp)), b = Self.toTarget(FrameSpec(.v4, .tcp))
        try dp.addRules([a, b])
        try dp.setTakeover(Self.takeover(.v4, .tn))
        let leaked = try dp.slots.allocate(count: 5)
        try dp.counterMap.updatePerCPU(leaked[0], baton_counter(packets: 9, bytes: 900, last_seen: 1, tcp_flags: 0, pad: 0))
        // b now counts on a's slot.
        let slotA = try Self.slot(dp, a.match)!, slotB = try Self.slot(dp, b.match)!
        try dp.rules4.update(baton_rule4_key(b.match, kind: .exact), baton_rule(counter: slotA, pad: 0, fwd: b.forward.abi))
        try dp.slots.release(slotB)

        let report = try dp.reconcile(rules: [a, b], takeovers: [Self.takeover(.v4, .tn)])
        #expect(report.slotsRepaired == 5)
        #expect(report.rulesKept + report.rulesRewritten == 2 && report.rulesRewritten == 1)
        #expect(report.takeoversKept == 1)
        let slots = try [a, b].map { try Self.slot(dp, $0.match)! }
        #expect(Set(slots).count == 2, "each rule has its own slot again")
        #expect(Self.slotsInUse(dp) == 3)
        #expect(try dp.counter(leaked[0]) == Counter(), "a leaked slot is zeroed before reuse")
        #expect(try dp.reconcile(rules: [a, b], takeovers: [Self.takeover(.v4, .tn)]).changedNothing)
    }

    /// Many rules, as after a restart with a full store: into empty maps,
    /// then again (all kept), then with 1% changed, 1% stale, 1% new.
    /// Timings are printed, not asserted.
    @Test func manyRules() throws {
        #if DEBUG
        let n = 200_000
        #else
        let n = 1_000_000
        #endif
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: n + n / 50, maxTakeovers: 4096))
        // 1000 takeovers (v4 and v6), n / 1000 sessions each.
        var takeovers: [Takeover] = [], rules: [SessionRule] = []
        rules.reserveCapacity(n)
        for t in 0..<1000 {
            let family: IPAddress.Family = t % 4 == 3 ? .v6 : .v4
            let address = family == .v4 ? IPAddress.v4(0x0a00_0000 | UInt32(t)) : IPAddress("fd00::\(String(t, radix: 16))")!
            takeovers.append(Takeover(address: address, defaultForward: .l2(to: World.tnMAC, from: World.saMAC), agentMAC: World.saMAC))
            let source = family == .v4 ? World.ip(.v4, .cn) : World.ip(.v6, .cn)
            for s in 0..<(n / 1000) {
                rules.append(SessionRule(match: SessionMatch(proto: .udp, source: source, sourcePort: UInt16(1024 + s),
                                                             destination: address, destinationPort: 5060),
                                         forward: .l2(to: World.targetMAC, from: World.saMAC)))
            }
        }
        func timed(_ what: String, _ body: () throws -> DataPlane.Reconciliation) rethrows -> DataPlane.Reconciliation {
            let t0 = Date()
            let r = try body()
            print("reconcile \(what): \(String(format: "%.2f", Date().timeIntervalSince(t0))) s — kept \(r.rulesKept), "
                  + "restored \(r.rulesRestored), rewritten \(r.rulesRewritten), removed \(r.rulesRemoved)")
            return r
        }
        let first = try timed("\(n) rules into empty maps") { try dp.reconcile(rules: rules, takeovers: takeovers) }
        #expect(first.rulesRestored == n && first.takeoversRestored == 1000)
        let second = try timed("\(n) rules, all kept") { try dp.reconcile(rules: rules, takeovers: takeovers) }
        #expect(second.changedNothing && second.rulesKept == n)

        var next = rules
        let step = 100
        var stale = 0, fresh = 0, changed = 0
        for i in stride(from: 0, to: n, by: step) {
            next[i].forward = .l2(to: Self.targetMAC2, from: World.saMAC)
            changed += 1
        }
        for i in stride(from: 1, to: n, by: step) { next[i].match.destinationPort = 6000; fresh += 1; stale += 1 }
        let third = try timed("\(n) rules, 1% changed, 1% replaced") { try dp.reconcile(rules: next, takeovers: takeovers) }
        #expect(third.rulesRewritten == changed && third.rulesRestored == fresh && third.rulesRemoved == stale)
        #expect(third.rulesKept == n - changed - fresh)
        #expect(try dp.ruleCount() == n)
        #expect(Self.slotsInUse(dp) == n + 1000)
    }
}
