import BatonBPF
@testable import BatonDataPlane
import BatonModel
import BatonPacket
import Testing

/// RTP continuity (bpf/include/rtp.h) through BPF_PROG_TEST_RUN: an anchored session's
/// stream toward the remote, fed by one device and then by another, leaves the anchor as one
/// stream: the first SSRC, sequence numbers one apart across the move and across the 16-bit
/// wrap, timestamps one step apart. Every expected frame is built whole by BatonPacket, so
/// the program's incremental checksum updates are checked against sums computed afresh.
@Suite(.serialized, .enabled(if: KernelRig.supported, "needs root and XDP"))
struct RTPContinuityTests {
    static let anchorPort: UInt16 = 30000, relayPort: UInt16 = 30001, remotePort: UInt16 = 40000, devicePort: UInt16 = 6000

    /// An RTP packet: version 2, payload type `pt`, 160 bytes of audio.
    static func rtp(seq: UInt16, ts: UInt32, ssrc: UInt32, pt: UInt8 = 0, version: UInt8 = 2) -> [UInt8] {
        var b: [UInt8] = [version << 6, pt, UInt8(seq >> 8), UInt8(seq & 0xff)]
        for v in [ts, ssrc] { b += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
        return b + [UInt8](repeating: 0xd5, count: 160)
    }

    struct Rig {
        let family: IPAddress.Family
        var anchor: IPAddress { World.ip(family, .sa) }
        var remote: IPAddress { World.ip(family, .cn) }
        var devices: [IPAddress] { [World.ip(family, .target), World.ip(family, .tn)] }
        var macs: [MACAddress] { [World.targetMAC, World.tnMAC] }

        func rule(_ d: Int, rtp: Bool = true) -> SessionRule {
            SessionRule(match: SessionMatch(proto: .udp, source: devices[d], sourcePort: devicePort, destination: anchor, destinationPort: relayPort),
                        forward: .relay(.init(source: anchor, sourcePort: anchorPort, destination: remote, destinationPort: remotePort, rtp: rtp),
                                        nextHop: World.cnMAC, sourceMAC: World.saMAC))
        }

        func datagram(_ src: IPAddress, _ dst: IPAddress, _ sport: UInt16, _ dport: UInt16, ttl: UInt8, payload: [UInt8],
                      checksum: Bool = true) -> IPDatagram {
            let t = Transport.udp(UDPDatagram(sport: sport, dport: dport, payload: payload, checksum: checksum))
            return family == .v4 ? IPDatagram(ipv4: IPv4Header(src: src, dst: dst, ttl: ttl), transport: t)
                                 : IPDatagram(ipv6: IPv6Header(src: src, dst: dst, hopLimit: ttl), transport: t)
        }

        /// Device `d`'s packet to the anchor's relay port.
        func sent(_ d: Int, _ payload: [UInt8], checksum: Bool = true) -> [UInt8] {
            Frame(ethernet: EthernetHeader(dst: World.saMAC, src: macs[d]),
                  datagram: datagram(devices[d], anchor, devicePort, relayPort, ttl: 64, payload: payload, checksum: checksum)).bytes
        }

        /// What the remote must receive for `payload`.
        func relayed(_ payload: [UInt8], checksum: Bool = true) -> [UInt8] {
            Frame(ethernet: EthernetHeader(dst: World.cnMAC, src: World.saMAC),
                  datagram: datagram(anchor, remote, anchorPort, remotePort, ttl: 63, payload: payload, checksum: checksum)).bytes
        }
    }

    /// Sends `frame`, expects `want` out with XDP_TX and every checksum right.
    static func expectRelayed(_ dp: DataPlane, _ frame: [UInt8], _ want: [UInt8], _ what: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let got = try dp.steerProgram.testRun(frame)
        #expect(got.retval == XDPAction.tx.rawValue, "\(what): verdict \(got.retval)", sourceLocation: sourceLocation)
        #expect(got.output == want, "\(what)\n  got  \(hex(got.output))\n  want \(hex(want))", sourceLocation: sourceLocation)
        if let parsed = try? ParsedFrame(got.output) {
            #expect(verifyAllChecksums(parsed), "\(what): checksums", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [IPAddress.Family.v4, .v6])
    func oneStreamAcrossAMoveAndTheWrap(family: IPAddress.Family) throws {
        let rig = try KernelRig()
        defer { rig.teardown() }
        let r = Rig(family: family)
        try rig.run { dp in
            try dp.setRule(r.rule(0))
            try dp.setRule(r.rule(1))
            try dp.addRTPStream(Endpoint(address: r.anchor, port: Self.anchorPort))
            // Device 1 crosses the sequence wrap: 65533 ... 65535, 0, 1.
            var seq: UInt16 = 65533, ts: UInt32 = 4_000_000_000
            for i in 0..<5 {
                let s = seq &+ UInt16(i), t = ts &+ UInt32(i) * 160
                try Self.expectRelayed(dp, r.sent(0, Self.rtp(seq: s, ts: t, ssrc: 0x1111_1111)),
                                       r.relayed(Self.rtp(seq: s, ts: t, ssrc: 0x1111_1111)), "device 1, packet \(i): as it is")
            }
            seq = 1
            ts = 4_000_000_000 &+ 4 * 160
            // The session moves: device 2's stream, its own SSRC, numbers and clock, goes on from
            // the last packet sent: same SSRC, next sequence number, one 160 step on.
            for i in 0..<5 {
                let s = UInt16(20000 + i), t = UInt32(77) + UInt32(i) * 160
                try Self.expectRelayed(dp, r.sent(1, Self.rtp(seq: s, ts: t, ssrc: 0x2222_2222)),
                                       r.relayed(Self.rtp(seq: seq &+ 1 &+ UInt16(i), ts: ts &+ 160 &+ UInt32(i) * 160, ssrc: 0x1111_1111)),
                                       "device 2, packet \(i): rewritten onto device 1's stream")
            }
            let state = try #require(try dp.rtpStream(Endpoint(address: r.anchor, port: Self.anchorPort)))
            #expect(state.started && state.ssrc == 0x1111_1111 && state.ssrcIn == 0x2222_2222)
            #expect(state.rebases == 1 && state.packets == 10 && state.lastSequence == 6 && state.timestampStep == 160)
            // And back to device 1, whose numbers moved on meanwhile: still one stream.
            try Self.expectRelayed(dp, r.sent(0, Self.rtp(seq: 500, ts: 123_456, ssrc: 0x1111_1111)),
                                   r.relayed(Self.rtp(seq: 7, ts: ts &+ 160 &+ 5 * 160, ssrc: 0x1111_1111)), "device 1 again")
            // RTCP on the port (RFC 5761), and what is not RTP version 2: only the addresses and ports.
            let rtcp = Self.rtp(seq: 1, ts: 2, ssrc: 0x2222_2222, pt: 200)
            try Self.expectRelayed(dp, r.sent(1, rtcp), r.relayed(rtcp), "RTCP passes as it is")
            let notRTP = Self.rtp(seq: 1, ts: 2, ssrc: 3, version: 0)
            try Self.expectRelayed(dp, r.sent(1, notRTP), r.relayed(notRTP), "not RTP: as it is")
            let short = [UInt8](repeating: 0x80, count: 11)
            try Self.expectRelayed(dp, r.sent(1, short), r.relayed(short), "shorter than an RTP header: as it is")
            if family == .v4 {
                // No UDP checksum: it stays none, the header is still rewritten.
                try Self.expectRelayed(dp, r.sent(1, Self.rtp(seq: 20005, ts: 77 + 5 * 160, ssrc: 0x2222_2222), checksum: false),
                                       r.relayed(Self.rtp(seq: 8, ts: ts &+ 160 &+ 6 * 160, ssrc: 0x1111_1111), checksum: false),
                                       "without a checksum")
            }
        }
    }

    /// Without the stream's entry, or without the flag, a relay leaves RTP alone.
    @Test func onlyWhereAsked() throws {
        let rig = try KernelRig()
        defer { rig.teardown() }
        let r = Rig(family: .v4)
        try rig.run { dp in
            try dp.setRule(r.rule(0))
            try dp.setRule(r.rule(1, rtp: false))
            let p1 = Self.rtp(seq: 10, ts: 1000, ssrc: 0xaaaa_aaaa), p2 = Self.rtp(seq: 99, ts: 5, ssrc: 0xbbbb_bbbb)
            try Self.expectRelayed(dp, r.sent(0, p1), r.relayed(p1), "no baton_rtp entry")
            try dp.addRTPStream(Endpoint(address: r.anchor, port: Self.anchorPort))
            try Self.expectRelayed(dp, r.sent(0, p1), r.relayed(p1), "the first packet fixes the stream")
            try Self.expectRelayed(dp, r.sent(1, p2), r.relayed(p2), "a rule without the flag")
            // Adding it again keeps the state; removing it ends the rewriting.
            try dp.addRTPStream(Endpoint(address: r.anchor, port: Self.anchorPort))
            #expect(try dp.rtpStream(Endpoint(address: r.anchor, port: Self.anchorPort))?.packets == 1)
            #expect(try dp.removeRTPStream(Endpoint(address: r.anchor, port: Self.anchorPort)))
            #expect(try dp.rtpStream(Endpoint(address: r.anchor, port: Self.anchorPort)) == nil)
        }
    }
}
