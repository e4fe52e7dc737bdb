import Testing
import BatonModel
import BatonPacket

/// The builder reproduces, byte for byte, frames the Linux kernel sent.
@Suite("Builder matches the kernel")
struct KernelExactnessTests {
    let eth = EthernetHeader(dst: macB, src: macA)

    @Test func udp4() {
        let f = Frame(ethernet: eth,
                      network: .ipv4(IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2"), identification: 0xa27c,
                                                dontFragment: true)),
                      transport: .udp(UDPDatagram(sport: 40000, dport: 5353, payload: Array("baton-udp-vector".utf8))))
        #expect(f.bytes == KernelFrames.udp4)
    }

    @Test func udp6() {
        let f = Frame(ethernet: eth,
                      network: .ipv6(IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"), flowLabel: 0x5ef86)),
                      transport: .udp(UDPDatagram(sport: 40001, dport: 5354, payload: Array("baton-udp6".utf8))))
        #expect(f.bytes == KernelFrames.udp6)
    }

    static let synOptions = hex("020405b4 0402 080a c86a0cd4 00000000 01 03030a")

    @Test func tcp4() {
        let f = Frame(ethernet: eth,
                      network: .ipv4(IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2"), identification: 0x6e05,
                                                dontFragment: true)),
                      transport: .tcp(TCPSegment(sport: 40002, dport: 80, seq: 0xe95a2855, flags: .syn, window: 0xfaf0,
                                                 options: Self.synOptions)))
        #expect(f.bytes == KernelFrames.tcp4)
    }

    @Test func tcp6() {
        let f = Frame(ethernet: eth,
                      network: .ipv6(IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"), flowLabel: 0x610dd)),
                      transport: .tcp(TCPSegment(sport: 40003, dport: 443, seq: 0xe24138a9, flags: .syn, window: 0xfd20,
                                                 options: hex("020405a0 0402 080a 5c646434 00000000 01 03030a"))))
        #expect(f.bytes == KernelFrames.tcp6)
    }

    @Test func dadNeighborSolicitation() {
        let target = ip("fe80::ff:fe00:a")
        let nonce = hex("0e01 d5bd070c1570")
        var f = Frame.neighborSolicitation(sourceMAC: macA, source: .unspecifiedV6, target: target)
        f.transport = .neighborSolicitation(target: target, options: nonce)
        #expect(f.bytes == KernelFrames.dadNS)
        // Without the nonce, the convenience builder gives the same frame less 8 bytes of option.
        let plain = Frame.neighborSolicitation(sourceMAC: macA, source: .unspecifiedV6, target: target)
        let p = try? ParsedFrame(plain.bytes)
        #expect(p?.ip?.icmp?.neighborDiscovery?.sourceLinkLayer == nil)
        #expect(plain.bytes.count == KernelFrames.dadNS.count - 8)
        #expect(p.map(verifyAllChecksums) == true)
    }

    @Test func mldv2WithHopByHop() {
        let records = hex("04000000ff0200000000000000000001ff000001 04000000ff0200000000000000000001ff00000a")
        let f = Frame(ethernet: EthernetHeader(dst: mac("33:33:00:00:00:16"), src: macA),
                      network: .ipv6(IPv6Header(src: ip("fe80::ff:fe00:a"), dst: ip("ff02::16"), hopLimit: 1,
                                                extensions: [.hopByHop(options: [5, 2, 0, 0])])),
                      transport: .icmpv6(ICMPMessage(type: 143, body: [0, 0, 0, 2] + records)))
        #expect(f.bytes == KernelFrames.mldv2)
    }

    @Test func icmpUnreachableQuotingUDP() throws {
        let quoted = Array(KernelFrames.icmpUnreachable[42...])
        let f = Frame(ethernet: EthernetHeader(dst: .zero, src: .zero),
                      network: .ipv4(IPv4Header(src: ip("127.0.0.1"), dst: ip("127.0.0.1"), tos: 0xc0, identification: 0x44da)),
                      transport: .icmp(ICMPMessage(type: 3, code: 3, body: [0, 0, 0, 0] + quoted)))
        #expect(f.bytes == KernelFrames.icmpUnreachable)
    }

    @Test func parsedKernelFields() throws {
        let t = try #require(try ParsedFrame(KernelFrames.tcp4).ip)
        #expect(t.src == ip("192.0.2.1") && t.dst == ip("192.0.2.2"))
        #expect(t.ipv4?.dontFragment == true && t.ipv4?.identification == 0x6e05 && t.ipv4?.ttl == 64)
        #expect(t.tcp?.sport == 40002 && t.tcp?.dport == 80 && t.tcp?.flags == .syn && t.tcp?.dataOffset == 10)
        #expect(t.tcp?.options == Self.synOptions && t.payload.isEmpty)

        let m = try #require(try ParsedFrame(KernelFrames.mldv2).ip)
        #expect(m.ipv6?.extensions.map(\.type) == [0] && m.upperLayerProtocol == 58 && m.icmp?.type == 143)

        let ns = try #require(try ParsedFrame(KernelFrames.dadNS).ip)
        #expect(ns.src == .unspecifiedV6 && ns.dst == ip("ff02::1:ff00:a") && ns.ipv6?.hopLimit == 255)
        #expect(ns.icmp?.neighborDiscovery?.target == ip("fe80::ff:fe00:a"))

        let u = try #require(try ParsedFrame(KernelFrames.icmpUnreachable).ip)
        #expect(u.icmp?.type == 3 && u.icmp?.code == 3 && u.icmp?.identifier == nil)
    }
}
