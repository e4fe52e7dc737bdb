import Foundation
import Testing
@testable import BatonProtocol

/// The registrations' replay window: a tag seen again is a replay for as long as it is kept,
/// kept by time (not pushed out by many others), and forgotten once its timestamp is stale;
/// what was sealed before the window began (a restart) is refused.
@Suite struct ReplayWindowTests {
    let p = Party()

    @Test func sameSealingIsSeenAgainButARetransmissionIsNew() throws {
        let window = ReplayWindow(window: 61, notBefore: t0.addingTimeInterval(-1))
        let first = try Envelope.parse(try p.tn.seal(.release(Release()), now: t0))
        let again = try Envelope.parse(try p.tn.seal(.release(Release()), now: t0))
        #expect(window.check(first, now: t0) == .new)
        #expect(window.check(first, now: t0.addingTimeInterval(1)) == .seen)
        #expect(window.check(again, now: t0.addingTimeInterval(1)) == .new, "sealed anew: a new tag")
    }

    @Test func keptByTimeNotByCount() throws {
        let window = ReplayWindow(window: 61, notBefore: t0.addingTimeInterval(-1))
        let first = try Envelope.parse(try p.tn.seal(.release(Release()), now: t0))
        #expect(window.check(first, now: t0) == .new)
        for i in 0..<5000 {
            let other = try Envelope.parse(try p.tn.seal(.release(Release()), now: t0))
            #expect(window.check(other, now: t0.addingTimeInterval(Double(i) / 1000)) == .new)
        }
        #expect(window.check(first, now: t0.addingTimeInterval(60)) == .seen, "5000 others did not push it out")
        #expect(window.check(first, now: t0.addingTimeInterval(70)) == .new, "forgotten after the window")
        #expect(window.count == 1, "the others expired with it")
    }

    @Test func sealedBeforeTheStartIsRefused() throws {
        let window = ReplayWindow(window: 61, notBefore: t0)
        #expect(window.check(try Envelope.parse(try p.tn.seal(.release(Release()), now: t0.addingTimeInterval(-0.5))), now: t0) == .beforeStart)
        #expect(window.check(try Envelope.parse(try p.tn.seal(.release(Release()), now: t0)), now: t0) == .new)
    }
}

/// A restored channel (issue 12 item 10: the high-water marks are stored on state changes
/// only): what was sealed before the restart is refused, what is sealed after goes through.
@Suite struct RestoredChannelTests {
    @Test func refusesWhatWasSealedBeforeTheRestart() throws {
        let p = Party()
        let before = try p.tn.seal(.end(End(reason: "x")), now: t0)
        let restored = TransferChannel(transfer: p.transfer, key: Party.held(p.key, by: .agent), role: .agent)
        restored.refuseStampedBefore(t0.addingTimeInterval(1))
        #expect(throws: ProtocolError.sealedBeforeRestart(timestamp: 1_750_000_000_123)) {
            try parseAndOpen(before, with: restored, now: t0.addingTimeInterval(2))
        }
        let after = try p.tn.seal(.end(End(reason: "y")), now: t0.addingTimeInterval(2))
        #expect(try parseAndOpen(after, with: restored, now: t0.addingTimeInterval(2)) == .end(End(reason: "y")))
    }
}
