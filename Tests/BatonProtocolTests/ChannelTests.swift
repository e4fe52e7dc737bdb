import Foundation
import Testing
@testable import BatonProtocol

@Suite struct ChannelTests {
    let p = Party()

    /// `bytes` (with a sealed key) with its mac1 made for `recipient`.
    static func remac(_ bytes: [UInt8], for recipient: PublicKey) -> [UInt8] {
        let e = try! Envelope.parse(bytes)
        return e.header + e.ciphertext + MAC1(recipient: recipient).compute(header: e.header, ciphertext: e.ciphertext)
    }

    /// Junk with the sealed-key flag, and a datagram sealed for another node, cost an HMAC:
    /// refused as badMAC1 before the sealed key is looked at.
    @Test func mac1RefusesJunkFirst() throws {
        var junk = try p.tn.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: p.tnID, now: t0)
        for i in 32..<junk.count { junk[i] = UInt8.random(in: 0...255) }
        #expect(throws: ProtocolError.badMAC1) {
            try TransferChannel.opening(Envelope.parse(junk), identity: p.targetID, role: .target, trusted: { _ in true }, now: t0)
        }
        let good = try p.tn.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: p.tnID, now: t0)
        #expect(MAC1(recipient: p.targetID.publicKey).verifies(try Envelope.parse(good)))
        #expect(!MAC1(recipient: p.agentID.publicKey).verifies(try Envelope.parse(good)))
    }

    /// The agent's sealed key made while the target works: the register then carries that
    /// very block (and its retransmissions too, each under a fresh counter), and it opens.
    @Test func aSealedKeyPreparedAheadIsTheOneSent() throws {
        try p.tn.prepareSealedKey(to: .agent, for: p.agentID.publicKey, identity: p.tnID)
        let first = try Envelope.parse(p.tn.seal(.register(sampleRegister), sealingKeyFor: p.agentID.publicKey, identity: p.tnID, now: t0))
        let again = try Envelope.parse(p.tn.seal(.register(sampleRegister), sealingKeyFor: p.agentID.publicKey, identity: p.tnID, now: t0))
        #expect(first.sealedKey != nil && first.sealedKey == again.sealedKey)
        #expect(first.counter != again.counter && first.ciphertext != again.ciphertext)
        let (channel, message) = try TransferChannel.opening(first, identity: p.agentID, role: .agent, trusted: { _ in true }, now: t0)
        #expect(message == .register(sampleRegister))
        #expect(try channel.open(again, now: t0) == .register(sampleRegister))
        // Prepared for another key (the agent's key changed): sealed anew for the one asked.
        let other = NodeIdentity.generate()
        let forOther = try Envelope.parse(p.tn.seal(.register(sampleRegister), sealingKeyFor: other.publicKey, identity: p.tnID, now: t0))
        #expect(forOther.sealedKey != first.sealedKey)
        #expect(try TransferChannel.opening(forOther, identity: other, role: .agent, trusted: { _ in true }, now: t0).1 == .register(sampleRegister))
        // Only the TN holds pair keys to seal.
        #expect(throws: ProtocolError.wrongRole(type: .offer, sender: .target, recipient: .target)) {
            try p.target.prepareSealedKey(to: .target, for: p.agentID.publicKey, identity: p.targetID)
        }
    }

    @Test func identicalDatagramIsAReplay() throws {
        let bytes = try p.tn.seal(.release(Release()), now: t0)
        let counter = try Envelope.parse(bytes).counter
        #expect(try parseAndOpen(bytes, with: p.target) == .release(Release()))
        #expect(throws: ProtocolError.replayed(counter: counter, highest: counter)) { try parseAndOpen(bytes, with: p.target) }
    }

    @Test func olderCounterRejected() throws {
        let first = try p.tn.seal(.release(Release()), now: t0)
        let second = try p.tn.seal(.release(Release()), now: t0)
        let c1 = try Envelope.parse(first).counter, c2 = try Envelope.parse(second).counter
        #expect(c2 == c1 + 1)
        _ = try parseAndOpen(second, with: p.target)
        #expect(p.target.highestAccepted(from: .tn) == c2)
        #expect(throws: ProtocolError.replayed(counter: c1, highest: c2)) { try parseAndOpen(first, with: p.target) }
        // Gaps are fine: the TN's counter is shared by everything it sends.
        _ = try p.tn.seal(.end(End(reason: "x")), now: t0)
        #expect(try parseAndOpen(try p.tn.seal(.release(Release()), now: t0), with: p.target) == .release(Release()))
    }

    /// Every channel of a process takes its counters from one count: two channels under one
    /// key (a registration refused and its retransmission, on the agent) never share a nonce.
    @Test func oneCountForEveryChannel() throws {
        let first = TransferChannel(transfer: p.transfer, key: p.key, role: .tn)
        let second = TransferChannel(transfer: p.transfer, key: p.key, role: .tn)
        let a = try first.seal(.end(End(reason: "x")), now: t0), b = try second.seal(.end(End(reason: "y")), now: t0)
        #expect(try Envelope.parse(b).counter > Envelope.parse(a).counter)
        #expect(try parseAndOpen(a, with: p.agent) == .end(End(reason: "x")))
        #expect(try parseAndOpen(b, with: p.agent) == .end(End(reason: "y")))
    }

    /// A channel re-created (daemon restart) counts above the old one's counters.
    @Test func countersSurviveRecreation() throws {
        let before = try p.tn.seal(.release(Release()), now: t0)
        _ = try parseAndOpen(before, with: p.target)
        Thread.sleep(forTimeInterval: 0.001)
        // A new process: a new count, from the clock (the daemons also raise it past the last
        // run's stored reservation: CounterReservationTests).
        let again = TransferChannel(transfer: p.transfer, key: p.key, role: .tn, counters: CounterSource())
        #expect(try parseAndOpen(try again.seal(.release(Release()), now: t0), with: p.target) == .release(Release()))
    }

    @Test func wrongSessionKey() throws {
        let other = TransferChannel(transfer: p.transfer, key: SessionKey.random(), role: .target)
        let bytes = try p.tn.seal(.offer(sampleOffer), now: t0)
        #expect(throws: ProtocolError.authenticationFailed) { try parseAndOpen(bytes, with: other) }
        #expect(other.highestAccepted(from: .tn) == nil)
        #expect(try parseAndOpen(bytes, with: p.target) == .offer(sampleOffer))
    }

    @Test func wrongTransfer() throws {
        let other = TransferChannel(transfer: TransferID(rawValue: p.transfer.rawValue ^ 1), key: p.key, role: .target)
        let bytes = try p.tn.seal(.release(Release()), now: t0)
        #expect(throws: ProtocolError.wrongTransfer(expected: other.transfer, got: p.transfer)) { try parseAndOpen(bytes, with: other) }
    }

    @Test func staleTimestamp() throws {
        let bytes = try p.tn.seal(.release(Release()), now: t0)
        #expect(throws: ProtocolError.stale(skew: -30.5)) { try parseAndOpen(bytes, with: p.target, now: t0 + 30.5) }
        #expect(throws: ProtocolError.stale(skew: 31)) { try parseAndOpen(bytes, with: p.target, now: t0 - 31) }
        // A refused message leaves no trace: it still opens within the skew.
        #expect(p.target.highestAccepted(from: .tn) == nil)
        #expect(try parseAndOpen(bytes, with: p.target, now: t0 + 29.9) == .release(Release()))

        p.target.maxClockSkew = 5
        #expect(p.target.maxClockSkew == 5)
        let next = try p.tn.seal(.release(Release()), now: t0)
        #expect(throws: ProtocolError.stale(skew: -6)) { try parseAndOpen(next, with: p.target, now: t0 + 6) }
        #expect(try parseAndOpen(next, with: p.target, now: t0 + 4) == .release(Release()))
    }

    /// A datagram claiming the receiver's own role (reflected back to it, or sent by a
    /// second node of the same role) is refused even though it authenticates.
    @Test func ownRoleRejected() throws {
        let otherTN = TransferChannel(transfer: p.transfer, key: p.key, role: .tn)
        let bytes = try otherTN.seal(.reject(Reject(reason: "x")), to: .agent, now: t0)
        #expect(throws: ProtocolError.wrongRole(type: .reject, sender: .tn, recipient: .tn)) { try parseAndOpen(bytes, with: p.tn) }
        // Our own datagram reflected back.
        let own = try p.tn.seal(.end(End(reason: "x")), now: t0)
        #expect(throws: ProtocolError.wrongRole(type: .end, sender: .tn, recipient: .tn)) { try parseAndOpen(own, with: p.tn) }
        #expect(p.tn.highestAccepted(from: .tn) == nil)
    }

    @Test func wrongDirectionRejected() throws {
        // An offer reaching the agent is sealed under the target's pair: it does not open there.
        let offer = try p.tn.seal(.offer(sampleOffer), now: t0)
        #expect(throws: ProtocolError.authenticationFailed) { try parseAndOpen(offer, with: p.agent) }
        // A TN's reject names its recipient; a type sealed towards a role it never travels to is refused.
        #expect(throws: ProtocolError.wrongRole(type: .reject, sender: .tn, recipient: nil)) { try p.tn.seal(.reject(Reject(reason: "x"))) }
        #expect(throws: ProtocolError.wrongRole(type: .end, sender: .tn, recipient: .target)) { try p.tn.seal(.end(End(reason: "x")), to: .target) }
        // And a channel does not seal what its role never sends.
        #expect(throws: ProtocolError.wrongRole(type: .offer, sender: .target, recipient: nil)) { try p.target.seal(.offer(sampleOffer)) }
        #expect(throws: ProtocolError.wrongRole(type: .wakeUp, sender: .tn, recipient: nil)) { try p.tn.seal(.wakeUp(WakeUp(reason: "idle"))) }
    }

    @Test func untrustedSender() throws {
        let bytes = try p.tn.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: p.tnID, now: t0)
        let envelope = try Envelope.parse(bytes)
        #expect(throws: ProtocolError.untrustedSender(p.tnID.publicKey)) {
            try TransferChannel.opening(envelope, identity: p.targetID, role: .target, trusted: { _ in false }, now: t0)
        }
        #expect(throws: ProtocolError.untrustedSender(p.tnID.publicKey)) {
            try TransferChannel.opening(envelope, identity: p.targetID, role: .target, trusted: { $0 == p.agentID.publicKey }, now: t0)
        }
        let (_, m) = try TransferChannel.opening(envelope, identity: p.targetID, role: .target,
                                                 trusted: { $0 == p.tnID.publicKey }, now: t0)
        #expect(m == .offer(sampleOffer))
    }

    /// A trusted sender's key claimed by someone without its private key does not open.
    @Test func forgedTrustedSender() throws {
        let mallory = NodeIdentity.generate()
        let malloryChannel = TransferChannel(transfer: p.transfer, key: SessionKey.random(), role: .tn)
        var bytes = try malloryChannel.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: mallory, now: t0)
        bytes.replaceSubrange(32..<64, with: p.tnID.publicKey.bytes)
        // mallory knows the target's public key, so its mac1 is right.
        bytes = Self.remac(bytes, for: p.targetID.publicKey)
        #expect(throws: ProtocolError.badSealedKey) {
            try TransferChannel.opening(Envelope.parse(bytes), identity: p.targetID, role: .target,
                                        trusted: { $0 == p.tnID.publicKey }, now: t0)
        }
    }

    @Test func sealedForSomeoneElse() throws {
        let bytes = try p.tn.seal(.register(sampleRegister), sealingKeyFor: p.agentID.publicKey, identity: p.tnID, now: t0)
        // Its mac1 is the agent's: refused before any public-key operation.
        #expect(throws: ProtocolError.badMAC1) {
            try TransferChannel.opening(Envelope.parse(bytes), identity: p.targetID, role: .agent,
                                        trusted: { $0 == p.tnID.publicKey }, now: t0)
        }
        // With a mac1 for this node, the sealed key still does not open.
        #expect(throws: ProtocolError.badSealedKey) {
            try TransferChannel.opening(Envelope.parse(Self.remac(bytes, for: p.targetID.publicKey)), identity: p.targetID,
                                        role: .agent, trusted: { $0 == p.tnID.publicKey }, now: t0)
        }
    }

    @Test func openingNeedsASealedKey() throws {
        let bytes = try p.tn.seal(.offer(sampleOffer), now: t0)
        #expect(throws: ProtocolError.missingSealedKey) {
            try TransferChannel.opening(Envelope.parse(bytes), identity: p.targetID, role: .target, trusted: { _ in true }, now: t0)
        }
        #expect(throws: ProtocolError.missingIdentity) { try p.tn.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey) }
    }

    /// An authentic datagram whose body does not decode: refused, and its counter not recorded.
    @Test func malformedBody() throws {
        let bad = try p.tn.seal(type: .offer, body: Array("{\"sessions\":[]}".utf8), sealedKey: nil, now: t0)
        #expect(throws: ProtocolError.malformedBody("offer: original missing")) { try parseAndOpen(bad, with: p.target) }
        let notJSON = try p.tn.seal(type: .release, body: Array("nope".utf8), sealedKey: nil, now: t0)
        #expect(throws: ProtocolError.self) { try parseAndOpen(notJSON, with: p.target) }
        #expect(p.target.highestAccepted(from: .tn) == nil)
        let badMAC = try p.target.seal(type: .accept, body: Array("{\"mac\":\"zz\",\"address\":\"192.0.2.1\"}".utf8), sealedKey: nil, now: t0)
        #expect(throws: ProtocolError.self) { try parseAndOpen(badMAC, with: p.tn) }
        // Unknown keys are ignored (room for later additions).
        let extra = try p.tn.seal(type: .release, body: Array("{\"later\":1}".utf8), sealedKey: nil, now: t0)
        #expect(try parseAndOpen(extra, with: p.target) == .release(Release()))
    }

    @Test func tooLarge() throws {
        let huge = Reject(reason: String(repeating: "x", count: 70_000))
        #expect(throws: ProtocolError.self) { try p.tn.seal(.reject(huge), to: .agent) }
        #expect(throws: ProtocolError.tooLarge(60_001)) { try Envelope.parse([UInt8](repeating: 0, count: 60_001)) }
        let fits = Reject(reason: String(repeating: "x", count: 59_000))
        #expect(try parseAndOpen(try p.tn.seal(.reject(fits), to: .agent, now: t0), with: p.agent) == .reject(fits))
    }

    /// A whole transfer's exchange, each side opening what the other sealed.
    @Test func wholeExchange() throws {
        let tnChannel = TransferChannel(transfer: p.transfer, key: p.key, role: .tn)
        let trust: (PublicKey) -> Bool = { $0 == p.tnID.publicKey }

        let offer = try tnChannel.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: p.tnID)
        let (target, m1) = try TransferChannel.opening(Envelope.parse(offer), identity: p.targetID, role: .target, trusted: trust)
        #expect(m1 == .offer(sampleOffer))
        // A retransmission (new counter) goes through the channel the first one made.
        let offer2 = try tnChannel.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: p.tnID)
        #expect(try target.open(Envelope.parse(offer2)) == .offer(sampleOffer))
        #expect(throws: ProtocolError.self) { try target.open(Envelope.parse(offer)) }

        let accept = Accept(mac: mac2, address: v4b)
        #expect(try tnChannel.open(Envelope.parse(target.seal(.accept(accept)))) == .accept(accept))

        let register = try tnChannel.seal(.register(sampleRegister), sealingKeyFor: p.agentID.publicKey, identity: p.tnID)
        let (agent, m2) = try TransferChannel.opening(Envelope.parse(register), identity: p.agentID, role: .agent, trusted: trust)
        #expect(m2 == .register(sampleRegister))
        #expect(try tnChannel.open(Envelope.parse(agent.seal(.registered(Registered())))) == .registered(Registered()))
        #expect(try agent.open(Envelope.parse(tnChannel.seal(.end(End(reason: "done"))))) == .end(End(reason: "done")))
        #expect(try tnChannel.open(Envelope.parse(agent.seal(.wakeUp(WakeUp(reason: WakeUp.Reason.requested))))) == .wakeUp(WakeUp(reason: "requested")))
        #expect(try agent.open(Envelope.parse(tnChannel.seal(.wakeUpAck(WakeUpAck())))) == .wakeUpAck(WakeUpAck()))
        #expect(try target.open(Envelope.parse(tnChannel.seal(.release(Release())))) == .release(Release()))
        #expect(try tnChannel.open(Envelope.parse(target.seal(.released(Released())))) == .released(Released()))
    }

    @Test func concurrentSealsNeverShareACounter() async throws {
        let channel = p.tn
        let counters = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try (0..<200).map { _ in try Envelope.parse(channel.seal(.release(Release()))).counter }
                }
            }
            var all: [UInt64] = []
            for try await c in group { all += c }
            return all
        }
        #expect(counters.count == 1600)
        #expect(Set(counters).count == 1600)
    }
}
