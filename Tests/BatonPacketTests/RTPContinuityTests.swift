import BatonPacket
import Testing

/// The userspace relay's RTP continuity: what the remote hears across moves.
@Suite struct RTPContinuityTests {
    func rtp(seq: UInt16, ts: UInt32, ssrc: UInt32, pt: UInt8 = 0) -> [UInt8] {
        [0x80, pt, UInt8(seq >> 8), UInt8(seq & 0xff)] + withUnsafeBytes(of: ts.bigEndian, Array.init)
            + withUnsafeBytes(of: ssrc.bigEndian, Array.init) + [UInt8](repeating: 0xd5, count: 160)
    }

    func heard(_ p: [UInt8]) -> (seq: UInt16, ts: UInt32, ssrc: UInt32) {
        (UInt16(p[2]) << 8 | UInt16(p[3]), p[4..<8].reduce(0) { $0 << 8 | UInt32($1) }, p[8..<12].reduce(0) { $0 << 8 | UInt32($1) })
    }

    /// Device 1 from 65,530 (the sequence wraps), then device 2 with its own numbers, then device 1 again.
    @Test func oneStreamAcrossTwoMovesAndAWrap() {
        var c = RTPContinuity()
        var out: [(UInt16, UInt32, UInt32)] = []
        func send(_ p: [UInt8]) {
            var b = p
            #expect(b.withUnsafeMutableBytes { c.rewrite($0) })
            out.append(heard(b))
            #expect(b[12...] == p[12...], "the payload is untouched")
        }
        for i in 0..<10 { send(rtp(seq: 65_530 &+ UInt16(i), ts: 1000 + UInt32(i) * 160, ssrc: 0xd1)) }
        for i in 0..<10 { send(rtp(seq: 100 + UInt16(i), ts: 777_000 + UInt32(i) * 160, ssrc: 0xd2)) }
        for i in 0..<10 { send(rtp(seq: 9 + UInt16(i), ts: 50_000 + UInt32(i) * 160, ssrc: 0xd1)) }
        #expect(out.allSatisfy { $0.2 == 0xd1 })
        for (a, b) in zip(out, out.dropFirst()) {
            #expect(b.0 == a.0 &+ 1 && b.1 == a.1 &+ 160, "\(a) → \(b)")
        }
        #expect(out.first?.0 == 65_530 && c.rebases == 2)
    }

    @Test func aLatePacketKeepsItsPlaceAndRTCPAndNonRTPPass() {
        var c = RTPContinuity()
        for (seq, ts) in [(10, 1600), (12, 1920), (11, 1760)] as [(UInt16, UInt32)] {
            var b = rtp(seq: seq, ts: ts, ssrc: 7)
            b.withUnsafeMutableBytes { _ = c.rewrite($0) }
            #expect(heard(b).seq == seq)
        }
        #expect(c.lastSequence == 12)
        var rtcp = rtp(seq: 1, ts: 1, ssrc: 9, pt: 200 & 0x7f | 0x80)
        let before = rtcp
        #expect(!rtcp.withUnsafeMutableBytes { c.rewrite($0) } && rtcp == before)
        var short: [UInt8] = [0x80, 0, 0, 1]
        #expect(!short.withUnsafeMutableBytes { c.rewrite($0) })
        var v1 = rtp(seq: 1, ts: 1, ssrc: 1)
        v1[0] = 0x40
        #expect(!v1.withUnsafeMutableBytes { c.rewrite($0) })
    }
}
