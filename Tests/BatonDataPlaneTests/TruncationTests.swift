import BatonBPF
import BatonDataPlane
import BatonModel
import BatonPacket
import Testing

/// Every truncation of packets that are steered whole must be passed or
/// dropped, never steered: a cut header could name the wrong session.
@Suite(.serialized, .enabled(if: KernelRig.supported, "needs root and XDP"))
struct TruncationTests {
    /// The unpadded fixtures whose whole frame leaves (TX/redirect): every
    /// action, family, protocol, VLAN layout, option, extension header and
    /// fragment the table has.
    static func representatives(_ redirect: UInt32) -> [Fixture] {
        FixtureTable.all(redirectIfindex: redirect).filter {
            ($0.verdict == Fixture.TX || $0.verdict == Fixture.REDIRECT) && !$0.name.contains("padded")
        }
    }

    @Test func everyTruncationIsPassedOrDropped() throws {
        let rig = try KernelRig()
        defer { rig.teardown() }
        var runs = 0
        try rig.run { dp in
            let reps = Self.representatives(rig.redirectIfindex)
            #expect(reps.count >= 100)
            for fx in reps {
                try dp.flush()
                var model = ReferenceModel()
                for t in fx.takeovers { try dp.setTakeover(t); model.addTakeover(t) }
                for r in fx.rules { try dp.setRule(r); try model.addRule(r) }
                for b in fx.before { _ = try dp.steerProgram.testRun(b); _ = model.expect(b) }
                for len in 0..<fx.frame.count {
                    let cut = Array(fx.frame.prefix(len))
                    guard len >= 14 else {
                        // The kernel refuses test runs shorter than an Ethernet header;
                        // such runts never reach XDP on a real interface either.
                        #expect(throws: BPFError.self) { try dp.steerProgram.testRun(cut) }
                        continue
                    }
                    let expected = model.expect(cut)
                    let got = try dp.runCounting(cut, expectedHit: expected.hit)
                    runs += 1
                    #expect(got.verdict == Fixture.PASS || got.verdict == Fixture.DROP,
                            "\(fx.name) cut to \(len) of \(fx.frame.count) bytes: verdict \(got.verdict)")
                    #expect(got.verdict == expected.verdict && got.reasons == expected.reasons,
                            "\(fx.name) cut to \(len): kernel \(got.verdict) \(got.reasons), model \(expected)")
                    if got.verdict == Fixture.PASS {
                        #expect(got.output == cut, "\(fx.name) cut to \(len): a passed frame must be unchanged")
                    }
                }
            }
        }
        #expect(runs > 5000)
    }
}
