import BatonModel
import Foundation
import Testing
@testable import BatonProtocol

/// A key per pair and direction (docs/protocol.md, "Key schedule"): the target holds only
/// its pair's key, so whatever it seals claiming the TN or the agent, to the agent or the TN,
/// does not authenticate; and the TN's two pairs and four directions are distinct keys.
@Suite struct KeyScheduleTests {
    let p = Party()

    /// Every message of the TN-agent pair, sealed by the target (with its key, claiming the
    /// sender's role, also with a counter near 2^64 that would wedge the channel), is forged.
    @Test(arguments: samples.indices.filter { samples[$0].1 != .target && samples[$0].2 != .target })
    func theTargetCannotForgeTheAgentsPair(_ i: Int) throws {
        let (message, from, to) = samples[i]
        let targetKey = Party.held(p.key, by: .target)
        let forger = TransferChannel(transfer: p.transfer, key: targetKey, role: from,
                                     counters: CounterSource(start: .max - 10))
        let bytes = try forger.seal(message, to: to, now: t0)
        #expect(throws: ProtocolError.authenticationFailed) { try parseAndOpen(bytes, with: p.channel(to)) }
        #expect(p.channel(to).highestAccepted(from: from) == nil, "a forged counter was recorded")
        // The real sender's message still opens.
        #expect(try parseAndOpen(try p.channel(from).seal(message, to: to, now: t0), with: p.channel(to)) == message)
    }

    /// The agent, likewise, cannot speak for the TN to the target.
    @Test func theAgentCannotForgeTheTargetsPair() throws {
        let forger = TransferChannel(transfer: p.transfer, key: Party.held(p.key, by: .agent), role: .tn)
        #expect(throws: ProtocolError.authenticationFailed) {
            try parseAndOpen(try forger.seal(.release(Release()), now: t0), with: p.target)
        }
        let asTarget = TransferChannel(transfer: p.transfer, key: Party.held(p.key, by: .agent), role: .target)
        #expect(throws: ProtocolError.authenticationFailed) {
            try parseAndOpen(try asTarget.seal(.released(Released()), now: t0), with: p.tn)
        }
    }

    /// One pair's two directions are different keys: a TN's message to the agent does not open
    /// as the agent's to the TN, even with the role byte changed in the header.
    @Test func directionsAreDistinct() throws {
        var bytes = try p.tn.seal(.end(End(reason: "x")), now: t0)
        bytes[7] = Role.agent.rawValue
        #expect(throws: ProtocolError.authenticationFailed) { try parseAndOpen(bytes, with: p.tn) }
        #expect(TransferChannel.pairKey(root: p.key, peer: .target) != TransferChannel.pairKey(root: p.key, peer: .agent))
    }
}
