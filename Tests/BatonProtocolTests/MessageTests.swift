import BatonModel
import Foundation
import Testing
@testable import BatonProtocol

@Suite struct MessageTests {
    @Test func everyTypeHasASample() {
        // A cookieReply is not a channel message (CookieTests).
        #expect(Set(samples.map(\.0.type)) == Set(MessageType.allCases).subtracting([.cookieReply]))
    }

    /// The type bytes are part of the wire format: they must never change.
    @Test func stableTypeValues() {
        let expected: [MessageType: UInt8] = [.offer: 1, .accept: 2, .reject: 3, .register: 4, .registered: 5,
                                              .end: 6, .wakeUp: 7, .wakeUpAck: 8, .release: 9, .released: 10,
                                              .closed: 11, .cookieReply: 12]
        for t in MessageType.allCases { #expect(t.rawValue == expected[t]) }
        #expect(Role.tn.rawValue == 1 && Role.target.rawValue == 2 && Role.agent.rawValue == 3)
    }

    @Test(arguments: samples.indices)
    func roundTrip(_ i: Int) throws {
        let (message, from, to) = samples[i]
        let p = Party()
        let bytes = try p.channel(from).seal(message, to: to, now: t0)
        let envelope = try Envelope.parse(bytes)
        #expect(envelope.type == message.type)
        #expect(envelope.sender == from)
        #expect(envelope.transfer == p.transfer)
        #expect(envelope.sealedKey == nil)
        #expect(envelope.timestamp == 1_750_000_000_123)
        #expect(envelope.bytes == bytes)
        #expect(try p.channel(to).open(envelope, now: t0) == message)
    }

    /// With a sealed key (the TN's first messages), the recipient makes its channel from the
    /// first message alone, holding its pair's key.
    @Test(arguments: samples.indices.filter { samples[$0].1 == .tn })
    func roundTripWithSealedKey(_ i: Int) throws {
        let (message, from, to) = samples[i]
        let p = Party()
        let sender = [Role.tn: p.tnID, .target: p.targetID, .agent: p.agentID][from]!
        let recipient = [Role.tn: p.tnID, .target: p.targetID, .agent: p.agentID][to]!
        let bytes = try p.channel(from).seal(message, to: to, sealingKeyFor: recipient.publicKey, identity: sender, now: t0)
        let envelope = try Envelope.parse(bytes)
        #expect(envelope.flags == 1)
        #expect(envelope.sealedKey?.senderPublicKey == sender.publicKey)
        let (channel, opened) = try TransferChannel.opening(envelope, identity: recipient, role: to,
                                                            trusted: { $0 == sender.publicKey }, now: t0)
        #expect(opened == message)
        #expect(channel.transfer == p.transfer)
        #expect(channel.role == to)
        #expect(channel.sessionKey == Party.held(p.key, by: to))
        // The new channel answers, and the sender's channel opens the answer.
        let reply = try channel.seal(.reject(Reject(reason: "ok")), now: t0)
        #expect(try parseAndOpen(reply, with: p.channel(from)) == .reject(Reject(reason: "ok")))
    }

    @Test func bodyIsEncrypted() throws {
        let p = Party()
        let secret = "correspondent-198.51.100.77-secret"
        let bytes = try p.tn.seal(.end(End(reason: secret)), now: t0)
        #expect(!String(decoding: bytes, as: UTF8.self).contains(secret))
        #expect(!String(decoding: bytes, as: UTF8.self).contains("reason"))
        #expect(try parseAndOpen(bytes, with: p.agent) == .end(End(reason: secret)))
    }

    @Test func headerLayout() throws {
        let p = Party()
        let counter = p.tn.nextCounter
        let bytes = try p.tn.seal(.release(Release()), now: t0)
        #expect(Array(bytes[0..<4]) == Array("BATN".utf8))
        #expect(bytes[4] == TransferProtocol.version)
        #expect(bytes[5] == MessageType.release.rawValue)
        #expect(bytes[6] == 0)
        #expect(bytes[7] == Role.tn.rawValue)
        #expect(Array(bytes[8..<16]) == p.transfer.bytes)
        #expect(bytes[16..<24].reduce(0) { $0 << 8 | UInt64($1) } == counter)
        #expect(bytes[24..<32].reduce(0) { $0 << 8 | UInt64($1) } == 1_750_000_000_123)
        #expect(bytes.count == 32 + 2 + 16)       // "{}" + tag
        #expect(p.tn.nextCounter == counter + 1)

        let sealed = try p.tn.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: p.tnID, now: t0)
        #expect(sealed[6] == 1)
        #expect(Array(sealed[32..<64]) == p.tnID.publicKey.bytes)
        #expect(try Envelope.parse(sealed).header.count == 144)
    }

    @Test func registerBodyJSON() throws {
        let body = String(decoding: try Message.register(sampleRegister).encodeBody(), as: UTF8.self)
        #expect(body.contains("\"control\":{\"address\":\"192.0.2.20\",\"port\":7390}"))
        #expect(body.contains("\"tnMAC\":\"02:00:00:00:00:01\""))
        #expect(body.contains("\"idleTimeout\":12.5"))
        #expect(body.contains("\"mode\":\"l2\""))
    }

    @Test func directions() {
        #expect(MessageType.offer.travels(from: .tn, to: .target))
        #expect(!MessageType.offer.travels(from: .tn, to: .agent))
        #expect(!MessageType.offer.travels(from: .target, to: .tn))
        #expect(MessageType.wakeUp.travels(from: .agent, to: .tn))
        #expect(!MessageType.wakeUp.travels(from: .tn, to: .agent))
        for a in Role.allCases {
            #expect(!MessageType.reject.travels(from: a, to: a))
            for b in Role.allCases where a != b { #expect(MessageType.reject.travels(from: a, to: b)) }
        }
        // Every type but reject has exactly one direction.
        for t in MessageType.allCases where t != .reject {
            let pairs = Role.allCases.flatMap { a in Role.allCases.map { (a, $0) } }.filter { t.travels(from: $0.0, to: $0.1) }
            #expect(pairs.count == 1, "\(t)")
        }
    }

    @Test func endpointText() {
        #expect(Endpoint(address: v4a, port: 7390).description == "192.0.2.10:7390")
        #expect(Endpoint(address: v6a, port: 7390).description == "[2001:db8::10]:7390")
        #expect(Endpoint("192.0.2.10:7390") == Endpoint(address: v4a, port: 7390))
        #expect(Endpoint("[2001:db8::10]:1") == Endpoint(address: v6a, port: 1))
        #expect(Endpoint("2001:db8::10:1") == nil)
        #expect(Endpoint("[192.0.2.10]:1") == nil)
        #expect(Endpoint("192.0.2.10:65536") == nil)
        #expect(Endpoint("192.0.2.10") == nil)
        #expect(Endpoint("[2001:db8::10]") == nil)
    }

    @Test func errorDescriptionsAreOneLine() throws {
        let k = NodeIdentity.generate().publicKey
        let all: [ProtocolError] = [
            .tooLarge(70000), .truncated(length: 3, needed: 48), .badMagic, .unsupportedVersion(3), .unknownType(99),
            .unknownRole(9), .unsupportedFlags(0x80), .authenticationFailed, .badSealedKey, .missingSealedKey,
            .untrustedSender(k), .wrongTransfer(expected: TransferID(rawValue: 1), got: TransferID(rawValue: 2)),
            .wrongRole(type: .offer, sender: .agent, recipient: .target), .wrongRole(type: .offer, sender: .agent, recipient: nil),
            .replayed(counter: 5, highest: 7), .stale(skew: -31.5), .stale(skew: 40), .malformedBody("a\nb"),
            .missingIdentity, .counterExhausted,
        ]
        for e in all {
            #expect(!e.description.isEmpty)
            #expect(!e.description.contains("\n"), "\(e)")
        }
        #expect(ProtocolError.untrustedSender(k).description.contains(k.description))
        #expect(ProtocolError.stale(skew: -31.5).description == "stale: timestamp is 31.5 s in the past")
    }
}
