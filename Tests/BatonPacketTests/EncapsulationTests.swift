import Testing
import BatonModel
import BatonPacket

@Suite("IPIP and IPv6 tunnels")
struct EncapsulationTests {
    let eth = EthernetHeader(dst: macB, src: macA)
    let inner4 = IPDatagram(ipv4: IPv4Header(src: ip("198.51.100.7"), dst: ip("192.0.2.1"), ttl: 57, tos: 0x28,
                                             identification: 77, dontFragment: true),
                            transport: .tcp(TCPSegment(sport: 5060, dport: 40000, seq: 9, flags: [.psh, .ack], payload: [1, 2, 3])))
    let inner6 = IPDatagram(ipv6: IPv6Header(src: ip("2001:db8::7"), dst: ip("2001:db8::1"), trafficClass: 0x48, flowLabel: 0x54321),
                            transport: .udp(UDPDatagram(sport: 5004, dport: 5004, payload: [9, 9])))

    @Test func ipipRFC2003() throws {
        let outer = inner4.encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2"), ttl: 32, identification: 0x4242)
        let b = Frame(ethernet: eth, datagram: outer).bytes
        let p = try ParsedFrame(b)
        let o = try #require(p.ip)
        let v4 = try #require(o.ipv4)
        #expect(v4.protocol == 4 && v4.ttl == 32 && v4.tos == 0x28 && v4.dontFragment && v4.identification == 0x4242)
        #expect(Int(v4.totalLength) == 20 + inner4.bytes.count && v4.ihl == 5)
        #expect(Array(o.payloadBytes) == inner4.bytes)            // the inner datagram travels unchanged
        let i = try #require(o.inner)
        #expect(i.offset == 34 && i.src == ip("198.51.100.7") && i.ipv4?.ttl == 57 && i.tcp?.dport == 40000)
        #expect(p.innermost?.tcp?.flags == [.psh, .ack] && p.datagrams.count == 2 && p.issue == nil)
        #expect(verifyIPv4HeaderChecksum(o) && verifyIPv4HeaderChecksum(i) && verifyL4Checksum(o) == .notApplicable)
        #expect(verifyL4Checksum(i) == .valid && verifyAllChecksums(p))
    }

    @Test func configuredOuterFields() throws {
        let outer = inner4.encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2"), tos: 0, dontFragment: false)
        let v4 = try #require(try ParsedFrame(Frame(ethernet: eth, datagram: outer).bytes).ip?.ipv4)
        #expect(v4.tos == 0 && !v4.dontFragment && v4.ttl == 64)
        let outer6 = inner4.encapsulatedInIPv6(src: ip("fd00::1"), dst: ip("fd00::2"), hopLimit: 9, trafficClass: 0xe0, flowLabel: 0xabcde)
        let v6 = try #require(try ParsedFrame(Frame(ethernet: eth, datagram: outer6).bytes).ip?.ipv6)
        #expect(v6.hopLimit == 9 && v6.trafficClass == 0xe0 && v6.flowLabel == 0xabcde && v6.nextHeader == 4)
    }

    @Test func sixInFourAndFourInSixAndSixInSix() throws {
        let cases: [(IPDatagram, UInt8, UInt8)] = [
            (inner6.encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2")), 41, 0x48),
            (inner4.encapsulatedInIPv6(src: ip("fd00::1"), dst: ip("fd00::2")), 4, 0x28),
            (inner6.encapsulatedInIPv6(src: ip("fd00::1"), dst: ip("fd00::2")), 41, 0x48),
        ]
        for (outer, proto, tclass) in cases {
            let p = try ParsedFrame(Frame(ethernet: eth, datagram: outer).bytes)
            let o = try #require(p.ip)
            #expect(o.upperLayerProtocol == proto && p.issue == nil && verifyAllChecksums(p))
            #expect((o.ipv4?.tos ?? o.ipv6?.trafficClass) == tclass)     // copied from the inner header
            if let v6 = o.ipv6 { #expect(v6.flowLabel == 0 && v6.hopLimit == 64 && Int(v6.payloadLength) == o.end - o.upperLayerOffset) }
            if let v4 = o.ipv4 { #expect(!v4.dontFragment) }             // IPv6 inside has no DF to copy
            #expect(p.innermost?.sourcePort != nil && verifyL4Checksum(p) == .valid)
        }
    }

    /// The expected output of an XDP encapsulation: the received frame's IP
    /// datagram, wrapped, under a new Ethernet header.
    @Test func expectedOutputFromReceivedFrame() throws {
        let received = Frame(ethernet: EthernetHeader(dst: macA, src: macB, vlans: [VLANTag(vid: 10)]), datagram: inner4)
        let expected = Frame(ethernet: EthernetHeader(dst: mac("02:00:00:00:00:0c"), src: macA),
                             datagram: try #require(received.datagram).encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.3")))
        let p = try ParsedFrame(expected.bytes)
        let r = try ParsedFrame(received.bytes)
        #expect(Array(p.bytes[34...]) == Array(r.bytes[r.networkOffset...]))
    }

    @Test func nestedTunnelsParseToTheInnermost() throws {
        var d = inner6
        for i in 0..<5 {
            d = i.isMultiple(of: 2) ? d.encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2"))
                                    : d.encapsulatedInIPv6(src: ip("fd00::1"), dst: ip("fd00::2"))
        }
        let p = try ParsedFrame(Frame(ethernet: eth, datagram: d).bytes)
        #expect(p.datagrams.count == 6 && p.innermost?.udp?.dport == 5004 && verifyAllChecksums(p))
        // Deeper than the parser's limit: it stops with an issue instead of recursing on.
        for _ in 0..<10 { d = d.encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2")) }
        let deep = try ParsedFrame(Frame(ethernet: eth, datagram: d).bytes)
        #expect(deep.datagrams.count == 9 && deep.issue?.layer == .encapsulation)
    }

    @Test func truncatedInnerIsReported() throws {
        var b = Frame(ethernet: eth, datagram: inner4.encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2"))).bytes
        b = Array(b.prefix(34 + 12))
        let p = try ParsedFrame(b)
        #expect(p.ip?.inner == nil && p.issue == ParseIssue(.ipv4, .truncated, at: 14))
    }
}
