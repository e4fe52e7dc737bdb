import BatonModel
import BatonPacket

/// Bytes from hex, ignoring spaces and newlines (test literals only).
func hex(_ s: String) -> [UInt8] {
    let digits = Array(s.filter { !$0.isWhitespace })
    precondition(digits.count % 2 == 0, "odd hex literal")
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

func ip(_ s: String) -> IPAddress { IPAddress(s)! }
func mac(_ s: String) -> MACAddress { MACAddress(s)! }

let macA = mac("02:00:00:00:00:0a")
let macB = mac("02:00:00:00:00:0b")

/// Frames captured from Linux 6.18 on a veth pair with TX checksum offload
/// off (`ethtool -K va tx off`), in a throwaway network namespace: every
/// checksum was computed by the kernel, not by this package.
enum KernelFrames {
    /// UDP 192.0.2.1:40000 -> 192.0.2.2:5353, "baton-udp-vector".
    static let udp4 = hex("""
        02000000000b02000000000a0800 4500002ca27c400040111441c0000201c0000202
        9c4014e9001856b4 6261746f6e2d7564702d766563746f72
        """)
    /// UDP [2001:db8::1]:40001 -> [2001:db8::2]:5354, "baton-udp6", flow label 0x5ef86.
    static let udp6 = hex("""
        02000000000b02000000000a86dd 6005ef8600121140 20010db8000000000000000000000001
        20010db8000000000000000000000002 9c4114ea0012c890 6261746f6e2d75647036
        """)
    /// TCP SYN 192.0.2.1:40002 -> 192.0.2.2:80 with MSS, SACK-permitted, timestamps, NOP, window scale.
    static let tcp4 = hex("""
        02000000000b02000000000a0800 4500003c6e054000400648b3c0000201c0000202
        9c420050e95a285500000000a002faf045870000 020405b40402080ac86a0cd4000000000103030a
        """)
    /// TCP SYN [2001:db8::1]:40003 -> [2001:db8::2]:443, flow label 0x610dd.
    static let tcp6 = hex("""
        02000000000b02000000000a86dd 600610dd00280640 20010db8000000000000000000000001
        20010db8000000000000000000000002 9c4301bbe24138a900000000a002fd2075f90000
        020405a00402080a5c646434000000000103030a
        """)
    /// DAD neighbour solicitation for fe80::ff:fe00:a from ::, with a nonce option (RFC 7527).
    static let dadNS = hex("""
        3333ff00000a02000000000a86dd 6000000000203aff 00000000000000000000000000000000
        ff0200000000000000000001ff00000a 87007cd000000000 fe80000000000000000000fffe00000a 0e01d5bd070c1570
        """)
    /// MLDv2 report with a hop-by-hop header (router alert + PadN) before ICMPv6.
    static let mldv2 = hex("""
        33330000001602000000000a86dd 6000000000380001 fe80000000000000000000fffe00000a
        ff020000000000000000000000000016 3a00050200000100 8f006fda00000002
        04000000ff0200000000000000000001ff000001 04000000ff0200000000000000000001ff00000a
        """)
    /// ICMP port unreachable (type 3 code 3) quoting a UDP datagram, from 127.0.0.1 on lo.
    static let icmpUnreachable = hex("""
        0000000000000000000000000800 45c0004844da0000400137197f0000017f000001
        0303d9b200000000 4500002c807f40004011bc3f7f0000017f000001 9c4014e90018fe2b
        6261746f6e2d7564702d766563746f72
        """)

    /// Gratuitous ARP the kernel sends on link up with arp_notify=1: request
    /// form, target MAC zero.
    static let garp = hex("""
        ffffffffffff02000000000a0806 0001 0800 06 04 0001 02000000000a c0000201 000000000000 c0000201
        """)
    /// Unsolicited NA the kernel sends with ndisc_notify=1 for 2001:db8::1.
    static let unsolicitedNA = hex("""
        33330000000102000000000a86dd 6000000000203aff 20010db8000000000000000000000001
        ff020000000000000000000000000001 8800f92120000000 20010db8000000000000000000000001 020102000000000a
        """)

    static let all = [udp4, udp6, tcp4, tcp6, dadNS, mldv2, icmpUnreachable, unsolicitedNA]
}

/// A corpus of built frames covering every header kind, for truncation and mutation tests.
func sampleFrames() -> [[UInt8]] {
    let eth = EthernetHeader(dst: macB, src: macA)
    let tagged = EthernetHeader(dst: macB, src: macA, vlans: [VLANTag(vid: 100, tpid: EtherType.qinq), VLANTag(vid: 7, pcp: 5)])
    let v4 = IPv4Header(src: ip("192.0.2.1"), dst: ip("198.51.100.7"), identification: 0x1234, options: [0x94, 4, 0, 0])
    let v6 = IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"), flowLabel: 0xabcde,
                        extensions: [.hopByHop(), .routing(type: 2, segmentsLeft: 1, addresses: [ip("2001:db8::99")]),
                                     .fragment(offset: 0, more: false, identification: 9),
                                     .destinationOptions(length: 16), .authentication()])
    let tcp = Transport.tcp(TCPSegment(sport: 40000, dport: 443, seq: 1, ack: 2, flags: [.syn, .ack],
                                       options: [2, 4, 5, 0xb4], payload: Array("hello".utf8)))
    let udp = Transport.udp(UDPDatagram(sport: 5060, dport: 5060, payload: Array(repeating: 0x55, count: 33)))
    let inner = IPDatagram(ipv4: v4, transport: udp)
    var frames: [[UInt8]] = [
        Frame(ethernet: tagged, network: .ipv4(v4), transport: udp).bytes,
        Frame(ethernet: eth, network: .ipv4(v4), transport: tcp).bytes,
        Frame(ethernet: eth, network: .ipv4(v4), transport: .icmpEchoRequest(id: 7, sequence: 1, payload: [1, 2, 3])).bytes,
        Frame(ethernet: tagged, network: .ipv6(v6), transport: tcp).bytes,
        Frame(ethernet: eth, network: .ipv6(v6), transport: udp).bytes,
        Frame(ethernet: eth, network: .ipv6(IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"))),
              transport: .icmpv6EchoReply(id: 1, sequence: 2)).bytes,
        Frame(ethernet: eth, datagram: inner.encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2"))).bytes,
        Frame(ethernet: eth, datagram: inner.encapsulatedInIPv6(src: ip("fd00::1"), dst: ip("fd00::2"))
            .encapsulatedInIPv4(src: ip("10.0.0.1"), dst: ip("10.0.0.2"))).bytes,
        Frame.arpRequest(senderMAC: macA, senderIP: ip("192.0.2.1"), targetIP: ip("192.0.2.2"), vlans: [VLANTag(vid: 5)]).bytes,
        Frame.neighborSolicitation(sourceMAC: macA, source: ip("fe80::1"), target: ip("2001:db8::2")).bytes,
        Frame.unsolicitedNeighborAdvertisement(mac: macA, address: ip("2001:db8::1")).bytes,
    ]
    frames += IPDatagram(ipv4: v4, transport: tcp).fragments(sizes: [16]).map { Frame(ethernet: eth, datagram: $0).bytes }
    frames += IPDatagram(ipv6: IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2")), transport: udp)
        .fragments(sizes: [24]).map { Frame(ethernet: eth, datagram: $0).bytes }
    return frames + KernelFrames.all
}
