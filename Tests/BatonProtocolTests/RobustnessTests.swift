import Foundation
import Testing
@testable import BatonProtocol

/// Every datagram that is not exactly what an honest sender produced must be
/// refused with a ProtocolError; nothing may trap.
@Suite struct RobustnessTests {
    let p = Party()

    private func datagrams() throws -> [(bytes: [UInt8], recipient: TransferChannel)] {
        [
            (try p.tn.seal(.offer(sampleOffer), sealingKeyFor: p.targetID.publicKey, identity: p.tnID, now: t0), p.target),
            (try p.tn.seal(.register(sampleRegister), now: t0), p.agent),
            (try p.agent.seal(.wakeUp(WakeUp(reason: "idle")), now: t0), p.tn),
            (try p.target.seal(.released(Released()), now: t0), p.tn),
        ]
    }

    /// Flips every bit of every byte: each variant is refused, through the
    /// existing channel and through `opening` alike; afterwards the originals
    /// still open (refusals leave no state behind).
    @Test func everyFlippedBitRejected() throws {
        let all = try datagrams()
        var checked = 0
        for (bytes, recipient) in all {
            for i in bytes.indices {
                for bit in 0..<8 {
                    var b = bytes
                    b[i] ^= UInt8(1 << bit)
                    // mac1 (the sealed-key datagram's last 16 bytes) is `opening`'s check, before
                    // any public-key operation; a channel authenticates by the AEAD alone.
                    let inMAC1 = bytes[6] == 1 && i >= bytes.count - MAC1.size
                    if !inMAC1 {
                        let e = error { _ = try parseAndOpen(b, with: recipient) }
                        #expect(e != nil, "byte \(i) bit \(bit) of a \(bytes[5]) datagram was accepted")
                    }
                    if recipient === p.target {
                        let e2 = error {
                            _ = try TransferChannel.opening(Envelope.parse(b), identity: p.targetID, role: .target,
                                                            trusted: { $0 == p.tnID.publicKey }, now: t0)
                        }
                        #expect(e2 != nil, "opening accepted byte \(i) bit \(bit)")
                    }
                    checked += 1
                }
            }
        }
        #expect(checked > 4000)
        for (bytes, recipient) in all {
            #expect(throws: Never.self) { try parseAndOpen(bytes, with: recipient) }
        }
    }

    /// Flips in the ciphertext or the authenticated header are reported as authentication failures.
    @Test func flipsAreForgeries() throws {
        let bytes = try p.tn.seal(.release(Release()), now: t0)
        for i in 8..<bytes.count {          // transfer ID onwards; earlier bytes fail parsing
            var b = bytes
            b[i] ^= 0x40
            let e = error { _ = try parseAndOpen(b, with: p.target) }
            if (8..<16).contains(i) {
                #expect(e == .wrongTransfer(expected: p.transfer, got: try Envelope.parse(b).transfer))
            } else {
                #expect(e == .authenticationFailed, "byte \(i): \(String(describing: e))")
            }
        }
    }

    @Test func everyTruncationRejected() throws {
        for (bytes, recipient) in try datagrams() {
            for n in 0..<bytes.count {
                let e = error { _ = try parseAndOpen(Array(bytes[0..<n]), with: recipient) }
                #expect(e != nil, "prefix of \(n) bytes accepted")
                let headerEnd = bytes[6] == 1 ? 144 : 32, trailer = bytes[6] == 1 ? MAC1.size : 0
                if n < 32 {
                    #expect(e == .truncated(length: n, needed: 48))
                } else if n < headerEnd + 16 + trailer {
                    #expect(e == .truncated(length: n, needed: headerEnd + 16 + trailer))
                } else {
                    #expect(e == .authenticationFailed)
                }
            }
            // Appended bytes are rejected as well.
            #expect(error { _ = try parseAndOpen(bytes + [0], with: recipient) } == .authenticationFailed)
        }
    }

    @Test func headerErrors() throws {
        let good = try p.tn.seal(.release(Release()), now: t0)
        func mutate(_ i: Int, _ v: UInt8) -> [UInt8] { var b = good; b[i] = v; return b }
        #expect(throws: ProtocolError.badMagic) { try Envelope.parse(mutate(0, UInt8(ascii: "X"))) }
        #expect(throws: ProtocolError.unsupportedVersion(3)) { try Envelope.parse(mutate(4, 3)) }
        #expect(throws: ProtocolError.unsupportedVersion(1)) { try Envelope.parse(mutate(4, 1)) }
        #expect(throws: ProtocolError.unknownType(0)) { try Envelope.parse(mutate(5, 0)) }
        #expect(throws: ProtocolError.unknownType(13)) { try Envelope.parse(mutate(5, 13)) }
        #expect(throws: ProtocolError.unsupportedFlags(2)) { try Envelope.parse(mutate(6, 2)) }
        #expect(throws: ProtocolError.unknownRole(0)) { try Envelope.parse(mutate(7, 0)) }
        #expect(throws: ProtocolError.unknownRole(4)) { try Envelope.parse(mutate(7, 4)) }
        #expect(throws: ProtocolError.truncated(length: 50, needed: 176)) { try Envelope.parse(mutate(6, 1)) }
        #expect(throws: ProtocolError.truncated(length: 0, needed: 48)) { try Envelope.parse([]) }
        #expect(throws: ProtocolError.truncated(length: 20, needed: 48)) { try Envelope.parse(Array(good[0..<20])) }
        #expect(throws: ProtocolError.truncated(length: 40, needed: 48)) { try Envelope.parse(Array(good[0..<40])) }
        #expect(throws: Never.self) { try Envelope.parse(Array(good[0..<48])) }
    }

    /// Seeded random input: pure garbage, garbage after a valid magic, and
    /// garbage after a fully valid header (with and without the sealed-key flag).
    @Test(arguments: [UInt64(1), 2, 3])
    func randomGarbage(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let template = try p.tn.seal(.release(Release()), now: t0)
        var refused = 0
        for i in 0..<1500 {
            let length = Int.random(in: 0...400, using: &rng)
            var b = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            switch i % 4 {
            case 0: break
            case 1: b = Array("BATN".utf8) + b
            case 2: b = Array(template[0..<32]) + b
            default:
                var h = Array(template[0..<32])
                h[6] = 1
                h[5] = UInt8.random(in: 1...10, using: &rng)
                h[7] = UInt8.random(in: 1...3, using: &rng)
                b = h + p.tnID.publicKey.bytes + b
            }
            let e = error { _ = try parseAndOpen(b, with: p.target) }
            #expect(e != nil)
            if b.count >= 32 + 112 + 16, i % 4 == 3 {
                let e2 = error {
                    _ = try TransferChannel.opening(Envelope.parse(b), identity: p.targetID, role: .target, trusted: { _ in true }, now: t0)
                }
                #expect(e2 != nil)
            }
            refused += 1
        }
        #expect(refused == 1500)
        #expect(p.target.highestAccepted(from: .tn) == nil)
    }

    /// Random multi-byte corruptions of valid datagrams.
    @Test func randomCorruption() throws {
        var rng = SeededRandom(seed: 42)
        let all = try datagrams()
        for i in 0..<2000 {
            let (bytes, recipient) = all[i % all.count]
            var b = bytes
            var onlyMAC1 = bytes[6] == 1
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let at = Int.random(in: 0..<b.count, using: &rng)
                b[at] = b[at] &+ UInt8.random(in: 1...255, using: &rng)
                onlyMAC1 = onlyMAC1 && at >= b.count - MAC1.size
            }
            // Corruption of mac1 alone is `opening`'s to catch (everyFlippedBitRejected).
            #expect(error { _ = try parseAndOpen(b, with: recipient) } != nil || onlyMAC1)
        }
    }
}
