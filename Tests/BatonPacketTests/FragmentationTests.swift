import Testing
import BatonModel
import BatonPacket

@Suite("Fragmentation")
struct FragmentationTests {
    let eth = EthernetHeader(dst: macB, src: macA)
    let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }

    func parsed(_ fragments: [IPDatagram]) throws -> [ParsedDatagram] {
        try fragments.map { try #require(try ParsedFrame(Frame(ethernet: eth, datagram: $0).bytes).ip) }
    }

    @Test func ipv4SplitAndReassemble() throws {
        // Record route is not copied into later fragments; the security-like 0x82 option is.
        let options: [UInt8] = [0x07, 7, 4, 0, 0, 0, 0, 0x82, 4, 0xaa, 0xbb]
        let whole = IPDatagram(ipv4: IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2"), identification: 0x777, options: options),
                               transport: .udp(UDPDatagram(sport: 5060, dport: 5060, payload: payload)))
        let frags = whole.fragments(sizes: [64, 128])
        #expect(frags.count == 3)
        let ps = try parsed(frags)
        #expect(ps.map { $0.ipv4?.fragmentOffset } == [0, 8, 24])
        #expect(ps.map { $0.ipv4?.moreFragments } == [true, true, false])
        #expect(ps.map { $0.end - $0.upperLayerOffset } == [64, 128, 308 - 192])
        #expect(ps.map { $0.ipv4?.identification } == [0x777, 0x777, 0x777])
        #expect(ps[0].ipv4?.options == options + [0] && ps[1].ipv4?.options == [0x82, 4, 0xaa, 0xbb])
        #expect(ps[0].udp?.dport == 5060 && ps[1].udp == nil && ps[2].udp == nil)      // L4 header only in the first
        #expect(ps.allSatisfy { verifyIPv4HeaderChecksum($0) && verifyL4Checksum($0) == .fragment && $0.issue == nil })
        let re = try #require(reassemble(ps.reversed()))
        #expect(re == whole.bytes)
        let p = try ParsedFrame(Frame(ethernet: eth, network: .raw(etherType: EtherType.ipv4, bytes: re)).bytes)
        #expect(verifyL4Checksum(p) == .valid && verifyAllChecksums(p))
    }

    @Test func ipv6SplitAndReassemble() throws {
        let h = IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"), flowLabel: 7,
                           extensions: [.hopByHop(), .destinationOptions(length: 8),
                                        .routing(type: 2, segmentsLeft: 1, addresses: [ip("2001:db8::99")]),
                                        .destinationOptions(length: 16)])
        let whole = IPDatagram(ipv6: h, transport: .tcp(TCPSegment(sport: 1, dport: 2, flags: .ack, payload: payload)))
        let frags = whole.fragments(sizes: [48, 48, 96], identification: 0xfeedbeef)
        #expect(frags.count == 4)
        let ps = try parsed(frags)
        for d in ps {
            // Per-fragment part: hop-by-hop, destination options, routing; then the fragment header.
            #expect(d.ipv6?.extensions.prefix(4).map(\.type) == [0, 60, 43, 44])
            #expect(d.ipv6?.fragment?.identification == 0xfeedbeef && d.ipv6?.finalDestination == ip("2001:db8::99"))
        }
        #expect(ps.map { $0.ipv6?.fragment?.offset } == [0, 6, 12, 24])
        #expect(ps.map { $0.ipv6?.fragment?.more } == [true, true, true, false])
        // The first fragment holds the trailing destination options and the TCP header.
        #expect(ps[0].ipv6?.extensions.map(\.type) == [0, 60, 43, 44, 60] && ps[0].tcp?.dport == 2)
        #expect(ps[1].tcp == nil && ps[1].upperLayerProtocol == 60 && ps.allSatisfy { $0.issue == nil })
        let re = try #require(reassemble(ps.shuffled()))
        #expect(re == whole.bytes)
        let p = try ParsedFrame(Frame(ethernet: eth, network: .raw(etherType: EtherType.ipv6, bytes: re)).bytes)
        #expect(verifyL4Checksum(p) == .valid)
    }

    @Test func fragmentsFromMTU() throws {
        for whole in [
            IPDatagram(ipv4: IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2")), transport: .udp(UDPDatagram(sport: 1, dport: 2, payload: payload))),
            IPDatagram(ipv6: IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"), extensions: [.hopByHop()]),
                       transport: .icmpv6EchoRequest(id: 1, sequence: 1, payload: payload)),
        ] {
            for mtu in [68, 100, 129, 1280, 1500] where whole.isIPv4 || mtu >= 72 {
                let frags = whole.fragments(mtu: mtu)
                #expect(frags.allSatisfy { $0.bytes.count <= mtu })
                #expect(reassemble(try parsed(frags)) == whole.bytes)
                if whole.bytes.count <= mtu { #expect(frags.count == 1) }
            }
        }
    }

    /// A fragment header with offset 0 and M=0 holds the whole datagram (RFC 6946).
    @Test func atomicFragmentIsWhole() throws {
        let h = IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"),
                           extensions: [.fragment(offset: 0, more: false, identification: 3)])
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv6(h), transport: .udp(UDPDatagram(sport: 1, dport: 2, payload: [5]))).bytes)
        let d = try #require(p.ip)
        #expect(!d.isFragment && d.ipv6?.fragment?.identification == 3 && verifyL4Checksum(d) == .valid)
        #expect(reassemble([d]).map { Array($0.prefix(6)) + [$0[6]] } == hex("6000 0000 0009 11"))
    }

    @Test func tinyFirstFragment() throws {
        let whole = IPDatagram(ipv4: IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2")),
                               transport: .tcp(TCPSegment(sport: 1, dport: 2, payload: payload)))
        let ps = try parsed(whole.fragments(sizes: [8]))
        #expect(ps[0].tcp == nil && ps[0].issue == ParseIssue(.tcp, .truncated, at: 34))
        #expect(reassemble(ps) == whole.bytes)
    }

    @Test func reassemblyRejectsGapsAndMixes() throws {
        let whole = IPDatagram(ipv4: IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2"), identification: 1),
                               transport: .udp(UDPDatagram(sport: 1, dport: 2, payload: payload)))
        let ps = try parsed(whole.fragments(sizes: [64, 64]))
        #expect(reassemble([ps[0], ps[2]]) == nil)          // gap
        #expect(reassemble([ps[0], ps[1]]) == nil)          // no last fragment
        #expect(reassemble([ps[1], ps[2]]) == nil)          // no first fragment
        let other = try parsed(whole.fragments(sizes: [64, 64], identification: 2))
        #expect(reassemble([ps[0], other[1], ps[2]]) == nil)
        #expect(reassemble([]) == nil)
    }
}
