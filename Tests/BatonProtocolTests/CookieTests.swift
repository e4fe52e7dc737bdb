import BatonModel
import Foundation
import Testing
@testable import BatonProtocol

/// The agent's cookie under load (issue 12 item 1, `Cookie`): only a sender that receives at
/// its address gets a cookie it can use, and a mac2 made with it opens the agent's door.
@Suite struct CookieTests {
    let p = Party()
    let here: [UInt8] = [192, 0, 2, 20]
    let elsewhere: [UInt8] = [192, 0, 2, 99]

    func register(cookie: [UInt8]? = nil) throws -> [UInt8] {
        try p.tn.seal(.register(sampleRegister), sealingKeyFor: p.agentID.publicKey, identity: p.tnID, cookie: cookie, now: t0)
    }

    @Test func aCookieRoundTrip() throws {
        let jar = CookieJar()
        let first = try Envelope.parse(try register())
        #expect(first.mac2 == nil && first.flags == Envelope.sealedKeyFlag)
        #expect(!jar.verifies(first, from: here), "no mac2, no entry")

        // The agent's reply opens only with the mac1 of the message it answers, and its key.
        let payload = Cookie.sealReply(jar.cookie(for: here), mac1: first.mac1!, responder: p.agentID.publicKey)
        let reply = try Envelope.parse(Cookie.replyDatagram(transfer: p.transfer, payload: payload, now: t0))
        #expect(reply.type == .cookieReply && reply.sender == .agent && reply.ciphertext == payload)
        #expect(Cookie.openReply(payload, mac1: Array(repeating: 0, count: 16), responder: p.agentID.publicKey) == nil)
        #expect(Cookie.openReply(payload, mac1: first.mac1!, responder: p.targetID.publicKey) == nil)
        var tampered = payload
        tampered[20] ^= 1
        #expect(Cookie.openReply(tampered, mac1: first.mac1!, responder: p.agentID.publicKey) == nil)
        let cookie = try #require(Cookie.openReply(payload, mac1: first.mac1!, responder: p.agentID.publicKey))

        // The retransmission carries mac2: the agent lets it through from that address only,
        // and its mac1 and sealed key are as good as without it.
        let second = try Envelope.parse(try register(cookie: cookie))
        #expect(second.flags == Envelope.sealedKeyFlag | Envelope.mac2Flag && second.mac2?.count == 16)
        #expect(jar.verifies(second, from: here))
        #expect(!jar.verifies(second, from: elsewhere), "a cookie is good for its address only")
        #expect(MAC1(recipient: p.agentID.publicKey).verifies(second))
        let (_, opened) = try TransferChannel.opening(second, identity: p.agentID, role: .agent, trusted: { _ in true }, now: t0)
        #expect(opened == .register(sampleRegister))
        // Another jar (another agent, or one restarted) knows nothing of it.
        #expect(!CookieJar().verifies(second, from: here))
        // A mac2 made with a cookie of the right length but not the jar's fails.
        let guessed = try Envelope.parse(try register(cookie: Array(repeating: 7, count: 16)))
        #expect(!jar.verifies(guessed, from: here))
    }

    /// The flag goes with a sealed key only, and the trailer must be there.
    @Test func mac2InTheEnvelope() throws {
        let bytes = try register(cookie: Array(repeating: 1, count: 16))
        // One byte short, the trailers shift into the ciphertext: nothing verifies.
        let cut = try Envelope.parse(Array(bytes.dropLast(1)))
        #expect(!MAC1(recipient: p.agentID.publicKey).verifies(cut))
        #expect(try Envelope.parse(bytes).bytes == bytes)
        var noKey = try p.tn.seal(.release(Release()), now: t0)
        noKey[6] = Envelope.mac2Flag
        #expect(throws: ProtocolError.unsupportedFlags(Envelope.mac2Flag)) { try Envelope.parse(noKey) }
        // A cookieReply is not a channel message: the TN's channel refuses to open it.
        let reply = try Envelope.parse(Cookie.replyDatagram(transfer: p.transfer, payload: Array(repeating: 0, count: 44), now: t0))
        #expect(throws: ProtocolError.self) { try p.tn.open(reply, now: t0) }
    }
}
