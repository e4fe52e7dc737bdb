import Testing
import BatonModel
import BatonPacket

@Suite("Builder → parser round trips")
struct RoundTripTests {
    let eth = EthernetHeader(dst: macB, src: macA)
    let v4 = IPv4Header(src: ip("192.0.2.1"), dst: ip("198.51.100.7"))
    let v6 = IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"))

    @Test func ethernetAndVLANs() throws {
        let tags = [VLANTag(vid: 100, tpid: EtherType.qinq), VLANTag(vid: 4095, pcp: 7, dei: true), VLANTag(tci: 0x0001)]
        let b = Frame(ethernet: EthernetHeader(dst: macB, src: macA, vlans: tags), network: .ipv4(v4),
                      transport: .udp(UDPDatagram(sport: 1, dport: 2))).bytes
        #expect(Array(b[12..<26]) == hex("88a8 0064 8100 ffff 8100 0001 0800"))
        let p = try ParsedFrame(b)
        #expect(p.dst == macB && p.src == macA && p.vlans == tags && p.etherType == EtherType.ipv4)
        #expect(p.networkOffset == 26 && p.vlans[1].vid == 4095 && p.vlans[1].pcp == 7 && p.vlans[1].dei)
        #expect(p.ip?.udp?.dport == 2 && p.issue == nil)
    }

    @Test func etherTypeOverride() throws {
        let b = Frame(ethernet: EthernetHeader(dst: macB, src: macA, etherType: EtherType.ipv6), network: .ipv4(v4),
                      transport: .udp(UDPDatagram(sport: 1, dport: 2))).bytes
        let p = try ParsedFrame(b)
        #expect(p.etherType == EtherType.ipv6)
        #expect(p.issue == ParseIssue(.ipv6, .truncated, at: 14))     // 28 bytes: not even an IPv6 header
        let raw = try ParsedFrame(Frame(ethernet: eth, network: .raw(etherType: 0x88b5, bytes: [1, 2, 3])).bytes)
        #expect(raw.etherType == 0x88b5 && raw.ip == nil && raw.arp == nil && Array(raw.networkBytes) == [1, 2, 3])
    }

    @Test func ipv4AllFields() throws {
        let options: [UInt8] = [0x07, 7, 4, 0, 0, 0, 0]       // record route, 1 slot: padded to 8
        let h = IPv4Header(src: ip("192.0.2.1"), dst: ip("198.51.100.7"), ttl: 3, tos: 0xb8, identification: 0xbeef,
                           dontFragment: true, moreFragments: true, fragmentOffset: 0, options: options, reservedFlag: true)
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(h),
                                      transport: .udp(UDPDatagram(sport: 7, dport: 9, payload: [1]))).bytes)
        let d = try #require(p.ip)
        let f = try #require(d.ipv4)
        #expect(d.version == 4 && f.ihl == 7 && f.tos == 0xb8 && f.totalLength == 28 + 9 && f.identification == 0xbeef)
        #expect(f.dontFragment && f.moreFragments && f.reservedFlag && f.fragmentOffset == 0 && f.ttl == 3 && f.protocol == 17)
        #expect(f.options == options + [0])
        #expect(d.src == h.src && d.dst == h.dst && d.upperLayerOffset == 14 + 28)
        #expect(verifyIPv4HeaderChecksum(d) && d.isFragment && !d.isNonFirstFragment)
        #expect(d.udp?.sport == 7 && Array(d.payloadBytes) == [1])
    }

    @Test func ipv4NonFirstFragmentHasNoL4() throws {
        let h = IPv4Header(src: ip("192.0.2.1"), dst: ip("198.51.100.7"), fragmentOffset: 185)
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(h), transport: .raw(protocol: 6, bytes: [UInt8](repeating: 1, count: 24))).bytes)
        let d = try #require(p.ip)
        #expect(d.ipv4?.fragmentOffset == 185 && d.isNonFirstFragment && d.tcp == nil && d.upperLayerProtocol == 6)
        #expect(d.payload == 34..<58 && p.issue == nil && verifyL4Checksum(d) == .fragment)
    }

    @Test func ipv4Overrides() throws {
        func parse(_ h: IPv4Header) throws -> ParsedFrame {
            try ParsedFrame(Frame(ethernet: eth, network: .ipv4(h), transport: .tcp(TCPSegment(sport: 1, dport: 2))).bytes)
        }
        var h = v4
        h.protocolOverride = 17
        var p = try parse(h)
        #expect(p.ip?.upperLayerProtocol == 17 && p.ip?.udp != nil && verifyIPv4HeaderChecksum(p))

        h = v4
        h.totalLengthOverride = 100                          // longer than the frame
        p = try parse(h)
        #expect(p.ip?.ipv4?.totalLength == 100 && p.issue == ParseIssue(.ipv4, .truncated, at: 14))
        #expect(p.ip?.tcp?.dport == 2 && verifyL4Checksum(p) == .truncated)

        h.totalLengthOverride = 19                           // shorter than the header
        p = try parse(h)
        #expect(p.issue == ParseIssue(.ipv4, .malformed, at: 14) && p.ip?.tcp == nil)

        h = v4
        h.ihlOverride = 4
        p = try parse(h)
        #expect(p.ip?.ipv4?.ihl == 4 && p.issue?.kind == .malformed)

        h = v4
        h.ihlOverride = 15                                   // 60 bytes, more than the packet
        p = try parse(h)
        #expect(p.ip?.ipv4?.ihl == 15 && p.issue == ParseIssue(.ipv4, .truncated, at: 14))

        h = v4
        h.version = 6
        p = try parse(h)
        #expect(p.ip?.version == 6 && p.ip?.ipv4 != nil && p.issue == ParseIssue(.ipv4, .malformed, at: 14))
    }

    @Test func trailerAfterTotalLength() throws {
        let f = Frame(ethernet: eth, network: .ipv4(v4), transport: .udp(UDPDatagram(sport: 1, dport: 2, payload: [7])))
        let padded = f.padded()
        #expect(padded.bytes.count == 60 && f.bytes.count == 43)
        let p = try ParsedFrame(padded.bytes)
        #expect(p.ip?.end == 43 && Array(p.ip?.payloadBytes ?? []) == [7] && p.issue == nil && verifyAllChecksums(p))
    }

    @Test func ipv6AllFieldsAndExtensions() throws {
        let h = IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"), hopLimit: 7, trafficClass: 0xb8, flowLabel: 0xfffff,
                           extensions: [
                               .hopByHop(options: [5, 2, 0, 0]),
                               .destinationOptions(length: 24),
                               .routing(type: 0, segmentsLeft: 2, addresses: [ip("2001:db8::50"), ip("2001:db8::60")]),
                               .fragment(offset: 0, more: true, identification: 0xcafef00d),
                               .authentication(length: 32, spi: 0x100, sequence: 7),
                               .destinationOptions(options: [0xc9, 2, 0xaa, 0xbb]),
                               .other(type: 253, body: [0, 1, 2, 3, 4, 5, 6]),
                           ])
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv6(h),
                                      transport: .tcp(TCPSegment(sport: 10, dport: 20, payload: [1, 2]))).bytes)
        let d = try #require(p.ip)
        let f = try #require(d.ipv6)
        #expect(d.version == 6 && f.hopLimit == 7 && f.trafficClass == 0xb8 && f.flowLabel == 0xfffff)
        #expect(f.extensions.map(\.type) == [0, 60, 43, 44, 51, 60, 253])
        #expect(f.extensions.map(\.length) == [8, 24, 40, 8, 32, 8, 8])
        #expect(f.extensions.map(\.nextHeader) == [60, 43, 44, 51, 60, 253, 6])
        #expect(f.nextHeader == 0 && Int(f.payloadLength) == 128 + 22)
        #expect(f.extensions[2].routing == .init(type: 0, segmentsLeft: 2, addresses: [ip("2001:db8::50"), ip("2001:db8::60")]))
        #expect(f.fragment == .init(offset: 0, more: true, identification: 0xcafef00d))
        #expect(f.finalDestination == ip("2001:db8::60"))
        #expect(d.upperLayerProtocol == 6 && d.tcp?.dport == 20 && Array(d.payloadBytes) == [1, 2] && p.issue == nil)
        // Option bytes: hop-by-hop router alert + PadN(0); destination options padded with PadN.
        #expect(Array(p.bytes[54..<62]) == hex("3c00 0502 0000 0100"))
        #expect(Array(p.bytes[62..<86]) == hex("2b02 0114") + [UInt8](repeating: 0, count: 20))
        #expect(Array(p.bytes[p.bytes.count - 30..<p.bytes.count - 22]) == hex("0600 0102 0304 0506"))
    }

    @Test func ipv6Pad1AndOverrides() throws {
        // 5 option bytes leave one byte: Pad1.
        let b = IPv6ExtensionHeader.hopByHop(options: [0x1e, 3, 1, 2, 3]).bytes(nextHeader: 59)
        #expect(b == hex("3b00 1e03 0102 0300"))
        var h = v6
        h.nextHeaderOverride = 17
        h.payloadLengthOverride = 1000
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv6(h), transport: .tcp(TCPSegment(sport: 1, dport: 2))).bytes)
        #expect(p.ip?.ipv6?.nextHeader == 17 && p.ip?.ipv6?.payloadLength == 1000 && p.ip?.udp != nil)
        #expect(p.issue == ParseIssue(.ipv6, .truncated, at: 14))
        h = v6
        h.version = 4
        let q = try ParsedFrame(Frame(ethernet: eth, network: .ipv6(h)).bytes)
        #expect(q.issue == ParseIssue(.ipv6, .malformed, at: 14) && q.ip?.version == 4)
    }

    @Test func tcpAllFields() throws {
        let t = TCPSegment(sport: 443, dport: 51000, seq: 0xdeadbeef, ack: 0x01020304, flags: [.fin, .psh, .ack, .urg, .ece, .cwr, .ns],
                           window: 1234, urgentPointer: 9, options: [1, 1, 4, 2, 8], payload: Array("data".utf8))
        for network in [Frame.Network.ipv4(v4), .ipv6(v6)] {
            let p = try ParsedFrame(Frame(ethernet: eth, network: network, transport: .tcp(t)).bytes)
            let d = try #require(p.ip)
            let s = try #require(d.tcp)
            #expect(s.sport == 443 && s.dport == 51000 && s.seq == 0xdeadbeef && s.ack == 0x01020304)
            #expect(s.flags == t.flags && s.window == 1234 && s.urgentPointer == 9 && s.dataOffset == 7)
            #expect(s.options == [1, 1, 4, 2, 8, 0, 0, 0] && Array(d.payloadBytes) == Array("data".utf8))
            #expect(d.sourcePort == 443 && d.destinationPort == 51000 && verifyAllChecksums(p))
        }
        var bad = t
        bad.dataOffsetOverride = 4
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(v4), transport: .tcp(bad)).bytes)
        #expect(p.ip?.tcp == nil && p.issue == ParseIssue(.tcp, .malformed, at: 34))
        bad.dataOffsetOverride = 15
        let q = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(v4), transport: .tcp(bad)).bytes)
        #expect(q.issue == ParseIssue(.tcp, .truncated, at: 34))
    }

    @Test func udpFields() throws {
        let u = UDPDatagram(sport: 53, dport: 33333, payload: [9, 8, 7])
        for network in [Frame.Network.ipv4(v4), .ipv6(v6)] {
            let p = try ParsedFrame(Frame(ethernet: eth, network: network, transport: .udp(u)).bytes)
            #expect(p.ip?.udp?.sport == 53 && p.ip?.udp?.dport == 33333 && p.ip?.udp?.length == 11)
            #expect(Array(p.ip?.payloadBytes ?? []) == [9, 8, 7] && verifyL4Checksum(p) == .valid)
        }
        var short = u
        short.lengthOverride = 9                            // bytes after the UDP length are not payload
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(v4), transport: .udp(short)).bytes)
        #expect(Array(p.ip?.payloadBytes ?? []) == [9] && p.issue == nil)
        short.lengthOverride = 7
        #expect(try ParsedFrame(Frame(ethernet: eth, network: .ipv4(v4), transport: .udp(short)).bytes).issue?.kind == .malformed)
        short.lengthOverride = 12
        #expect(try ParsedFrame(Frame(ethernet: eth, network: .ipv4(v4), transport: .udp(short)).bytes).issue?.kind == .truncated)
    }

    @Test func icmpKinds() throws {
        let cases: [(Frame.Network, Transport, UInt8, Bool)] = [
            (.ipv4(v4), .icmpEchoRequest(id: 0x1234, sequence: 7, payload: [1, 2, 3]), 8, false),
            (.ipv4(v4), .icmpEchoReply(id: 0x1234, sequence: 7, payload: [1, 2, 3]), 0, false),
            (.ipv6(v6), .icmpv6EchoRequest(id: 0x1234, sequence: 7, payload: [1, 2, 3]), 128, true),
            (.ipv6(v6), .icmpv6EchoReply(id: 0x1234, sequence: 7, payload: [1, 2, 3]), 129, true),
        ]
        for (network, transport, type, isV6) in cases {
            let p = try ParsedFrame(Frame(ethernet: eth, network: network, transport: transport).bytes)
            let m = try #require(p.ip?.icmp)
            #expect(m.type == type && m.code == 0 && m.isV6 == isV6 && m.isEcho)
            #expect(m.identifier == 0x1234 && m.sequence == 7 && Array(p.ip?.payloadBytes ?? []) == [1, 2, 3])
            #expect(verifyAllChecksums(p) && verifyL4Checksum(p) == .valid)
        }
        let unreachable = try ParsedFrame(Frame(ethernet: eth, network: .ipv6(v6),
                                                transport: .icmpv6(ICMPMessage(type: 1, code: 4, body: [0, 0, 0, 0, 0x60]))).bytes)
        #expect(unreachable.ip?.icmp?.type == 1 && unreachable.ip?.icmp?.code == 4 && unreachable.ip?.icmp?.identifier == nil)
        #expect(verifyL4Checksum(unreachable) == .valid)
    }

    @Test func rawProtocol() throws {
        let sctp: [UInt8] = [0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 1, 2, 3, 4]
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(v4), transport: .raw(protocol: 132, bytes: sctp)).bytes)
        #expect(p.ip?.upperLayerProtocol == 132 && Array(p.ip?.payloadBytes ?? []) == sctp)
        #expect(verifyL4Checksum(p) == .notApplicable && verifyAllChecksums(p))
        let none = try ParsedFrame(Frame(ethernet: eth, network: .ipv6(v6)).bytes)
        #expect(none.ip?.upperLayerProtocol == 59 && none.ip?.payload.isEmpty == true && none.issue == nil)
    }

    /// Random header combinations built, parsed and checked field by field.
    @Test func randomizedRoundTrips() throws {
        var g = SeededGenerator(seed: 0xba70)
        for _ in 0..<2000 {
            let useV6 = Bool.random(using: &g)
            let vlans = (0..<Int.random(in: 0...2, using: &g)).map { _ in VLANTag(tci: UInt16.random(in: 0...0xffff, using: &g)) }
            let payload = (0..<Int.random(in: 0...200, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            let sport = UInt16.random(in: 0...0xffff, using: &g), dport = UInt16.random(in: 0...0xffff, using: &g)
            let transport: Transport = switch Int.random(in: 0..<3, using: &g) {
            case 0: .tcp(TCPSegment(sport: sport, dport: dport, seq: UInt32.random(in: 0...UInt32.max, using: &g),
                                    flags: TCPFlags(rawValue: UInt16.random(in: 0...0x1ff, using: &g)), payload: payload))
            case 1: .udp(UDPDatagram(sport: sport, dport: dport, payload: payload))
            default: useV6 ? .icmpv6EchoRequest(id: sport, sequence: dport, payload: payload)
                           : .icmpEchoRequest(id: sport, sequence: dport, payload: payload)
            }
            let network: Frame.Network
            if useV6 {
                let src = IPAddress.v6((0..<16).map { _ in UInt8.random(in: 0...255, using: &g) })
                let dst = IPAddress.v6((0..<16).map { _ in UInt8.random(in: 0...255, using: &g) })
                let exts = [IPv6ExtensionHeader.hopByHop(), .destinationOptions(length: 16), .authentication()]
                    .filter { _ in Bool.random(using: &g) }
                network = .ipv6(IPv6Header(src: src, dst: dst, hopLimit: UInt8.random(in: 0...255, using: &g),
                                           trafficClass: UInt8.random(in: 0...255, using: &g),
                                           flowLabel: UInt32.random(in: 0...0xfffff, using: &g), extensions: exts))
            } else {
                network = .ipv4(IPv4Header(src: .v4(UInt32.random(in: 0...UInt32.max, using: &g)),
                                           dst: .v4(UInt32.random(in: 0...UInt32.max, using: &g)),
                                           ttl: UInt8.random(in: 0...255, using: &g), tos: UInt8.random(in: 0...255, using: &g),
                                           identification: UInt16.random(in: 0...0xffff, using: &g),
                                           dontFragment: Bool.random(using: &g),
                                           options: [UInt8](repeating: 1, count: Int.random(in: 0...12, using: &g))))
            }
            let frame = Frame(ethernet: EthernetHeader(dst: macB, src: macA, vlans: vlans), network: network, transport: transport)
            let p = try ParsedFrame(frame.bytes)
            let d = try #require(p.ip)
            #expect(p.issue == nil && p.vlans == vlans && verifyAllChecksums(p))
            #expect(Array(d.payloadBytes) == payload)
            switch (network, transport) {
            case (.ipv4(let h), _):
                #expect(d.src == h.src && d.dst == h.dst && d.ipv4?.ttl == h.ttl && d.ipv4?.tos == h.tos)
                #expect(d.ipv4?.identification == h.identification && d.ipv4?.dontFragment == h.dontFragment)
            case (.ipv6(let h), _):
                #expect(d.src == h.src && d.dst == h.dst && d.ipv6?.hopLimit == h.hopLimit)
                #expect(d.ipv6?.trafficClass == h.trafficClass && d.ipv6?.flowLabel == h.flowLabel)
                #expect(d.ipv6?.extensions.map(\.type) == h.extensions.map(\.type))
            default: break
            }
            switch transport {
            case .tcp(let t): #expect(d.tcp?.sport == t.sport && d.tcp?.dport == t.dport && d.tcp?.seq == t.seq && d.tcp?.flags == t.flags)
            case .udp(let u): #expect(d.udp?.sport == u.sport && d.udp?.dport == u.dport)
            default: #expect(d.icmp?.identifier == sport && d.icmp?.sequence == dport)
            }
        }
    }
}
