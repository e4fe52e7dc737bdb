import BatonBPF
import BatonDataPlane
import BatonModel
import BatonPacket
import Testing

/// The fixture table through BPF_PROG_TEST_RUN: every case's verdict, output
/// frame and statistic, its output checksums checked by BatonPacket, and the
/// reference model held to the same expectations.
@Suite(.serialized, .enabled(if: KernelRig.supported, "needs root and XDP"))
struct FixtureTests {
    @Test func fixtureTable() throws {
        let rig = try KernelRig()
        defer { rig.teardown() }
        let table = FixtureTable.all(redirectIfindex: rig.redirectIfindex)
        #expect(table.count >= 150, "the table covers at least 150 cases")
        var failures = 0
        try rig.run { dp in
            for fx in table {
                try dp.flush()
                var model = ReferenceModel()
                for t in fx.takeovers { try dp.setTakeover(t); model.addTakeover(t) }
                for r in fx.rules { try dp.setRule(r); try model.addRule(r) }
                for b in fx.before { _ = try dp.steerProgram.testRun(b); _ = model.expect(b) }

                let predicted = model.expect(fx.frame)
                let got = try dp.runCounting(fx.frame, expectedHit: predicted.hit)
                var ok = true
                func check(_ cond: Bool, _ what: String) {
                    if !cond { ok = false; Issue.record("\(fx.name): \(what)") }
                }
                check(got.verdict == fx.verdict, "verdict \(got.verdict), expected \(fx.verdict)")
                check(got.reasons.last == fx.reason, "statistic \(got.reasons), expected \(fx.reason)")
                if let want = fx.output {
                    check(sameFrame(got.output, want, maskFlowLabelAt: fx.outerIPv6At),
                          "output\n  got  \(hex(got.output))\n  want \(hex(want))")
                }
                if got.verdict == Fixture.TX || got.verdict == Fixture.REDIRECT,
                   let parsed = try? ParsedFrame(got.output), parsed.ip != nil,
                   !parsed.datagrams.contains(where: \.isFragment) {
                    check(verifyAllChecksums(parsed), "output checksums are wrong")
                }
                // The model must agree with the table too, or it is not a reference.
                check(predicted.verdict == fx.verdict, "reference model says verdict \(predicted.verdict)")
                check(predicted.reasons.last == fx.reason, "reference model says \(predicted.reasons)")
                if let want = fx.output, let mo = predicted.output {
                    check(sameFrame(mo, want, maskFlowLabelAt: fx.outerIPv6At), "reference model output differs")
                }
                if !ok { failures += 1 }
            }
        }
        #expect(failures == 0, "\(failures) of \(table.count) fixtures failed")
    }

    /// Counters: the rule's slot counts packets and bytes, FIN/RST are seen,
    /// the default path counts on the takeover.
    @Test func countersFollowTheirRule() throws {
        let rig = try KernelRig()
        defer { rig.teardown() }
        try rig.run { dp in
            let s = FrameSpec(.v4, .tcp)
            try dp.setTakeover(World.takeover(.v4))
            try dp.setRule(SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC)))
            for _ in 0..<5 { _ = try dp.steerProgram.testRun(s.bytes) }
            guard case .ipv4(let h) = s.frame.network else { return }
            let fin = Frame(ethernet: s.ethernet, network: .ipv4(h),
                            transport: .tcp(TCPSegment(sport: s.sport, dport: s.dport, flags: [.fin, .ack]))).bytes
            _ = try dp.steerProgram.testRun(fin)
            var other = s
            other.sport = 1
            _ = try dp.steerProgram.testRun(other.bytes)

            let rule = try #require(try dp.rule(s.match))
            #expect(rule.counter.packets == 6)
            #expect(rule.counter.bytes == UInt64(5 * s.bytes.count + fin.count))
            #expect(rule.counter.sawFinOrReset)
            let clock = try dp.clock()
            let idle = try #require(rule.counter.idleSeconds(at: clock))
            #expect(idle >= 0 && idle < 5)
            let t = try #require(try dp.takeover(World.ip(.v4, .tn)))
            #expect(t.counter.packets == 1)
            #expect(t.counter.bytes == UInt64(other.bytes.count))
            // Removing and re-adding starts the counter from zero.
            try dp.removeRule(s.match)
            try dp.setRule(SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC)))
            #expect(try dp.rule(s.match)?.counter.packets == 0)
        }
    }

    /// The takeover record keeps what the control plane wrote, the TN's
    /// temporary address included, in L2 and encap mode alike.
    @Test func takeoverRecordRoundTrips() throws {
        let rig = try KernelRig()
        defer { rig.teardown() }
        try rig.run { dp in
            for family in [IPAddress.Family.v4, .v6] {
                let temp = World.ip(family, .temp)
                let l2 = Takeover(address: World.ip(family, .tn), defaultForward: .l2(to: World.tnMAC, from: World.saMAC),
                                  agentMAC: World.saMAC, router: family == .v6, temporaryAddress: temp)
                try dp.setTakeover(l2)
                #expect(try dp.takeover(l2.address)?.takeover == l2)
                let encap = Takeover(address: World.ip(family, .tn),
                                     defaultForward: .encap(to: temp, from: World.ip(family, .sa), nextHop: World.routerMAC,
                                                            sourceMAC: World.saMAC))
                #expect(encap.temporaryAddress == temp, "an encap default names the temporary address")
                try dp.setTakeover(encap)
                #expect(try dp.takeover(encap.address)?.takeover == encap)
                #expect(throws: DataPlaneError.self) {
                    try dp.setTakeover(Takeover(address: World.ip(family, .tn), defaultForward: .l2(to: World.tnMAC, from: World.saMAC),
                                                temporaryAddress: World.ip(family == .v4 ? .v6 : .v4, .temp)))
                }
            }
        }
    }

    /// The IPv4 flow cache: every rule change (replace, remove, a more
    /// specific rule added, a batch) is seen by the very next packet of a
    /// flow the cache already holds.
    @Test func flowCacheNeverServesAChangedRule() throws {
        let rig = try KernelRig()
        defer { rig.teardown() }
        try rig.run { dp in
            let s = FrameSpec(.v4, .udp)
            let a = MACAddress("02:00:00:00:0a:01")!, b = MACAddress("02:00:00:00:0a:02")!, c = MACAddress("02:00:00:00:0a:03")!
            func nextHop() throws -> MACAddress? {
                let r = try dp.steerProgram.testRun(s.bytes)
                return r.retval == Fixture.TX ? MACAddress(bytes: r.output[0..<6]) : nil
            }
            try dp.setTakeover(World.takeover(.v4))
            var wildcard = s.match
            wildcard.source = nil
            wildcard.sourcePort = nil
            try dp.setRule(SessionRule(match: wildcard, forward: .l2(to: a, from: World.saMAC)))
            #expect(try nextHop() == a)
            #expect(try nextHop() == a, "served from the cache")
            // A more specific rule for the cached flow wins at once.
            try dp.setRule(SessionRule(match: s.match, forward: .l2(to: b, from: World.saMAC)))
            #expect(try nextHop() == b)
            // Replaced in place.
            try dp.setRule(SessionRule(match: s.match, forward: .l2(to: c, from: World.saMAC)))
            #expect(try nextHop() == c)
            // Removed: back to the wildcard, then to the takeover's default.
            try dp.removeRule(s.match)
            #expect(try nextHop() == a)
            try dp.removeRule(wildcard)
            #expect(try nextHop() == World.tnMAC)
            // A batch that fails part way leaves nothing cached behind.
            try dp.addRules([SessionRule(match: s.match, forward: .l2(to: b, from: World.saMAC))])
            #expect(try nextHop() == b)
            #expect(throws: DataPlaneError.self) {
                try dp.addRules([SessionRule(match: wildcard, forward: .l2(to: c, from: World.saMAC)),
                                 SessionRule(match: s.match, forward: .l2(to: c, from: World.saMAC))])
            }
            #expect(try nextHop() == b)
            // Counters still land on the rule that was hit.
            #expect(try dp.rule(s.match)?.counter.packets == 2)
        }
    }
}
