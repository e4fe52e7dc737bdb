import Testing
import BatonModel
import BatonPacket

@Suite("Checksums")
struct ChecksumTests {
    /// RFC 1071 §3 numerical example.
    @Test func rfc1071Example() {
        let data = hex("0001 f203 f4f5 f6f7")
        #expect(onesComplementSum(data) == 0xddf2)
        #expect(internetChecksum(data) == 0x220d)
        #expect(internetChecksum(data + [0x22, 0x0d]) == 0)
    }

    @Test func oddLengthPadsWithZero() {
        #expect(onesComplementSum([0x01]) == 0x0100)
        #expect(onesComplementSum([0x12, 0x34, 0x56]) == 0x6834)
        #expect(internetChecksum([UInt8]()) == 0xffff)
    }

    /// 0xffff + 0xffff + 0x0001 = 0x1ffff; one fold leaves 0x10000, a carry:
    /// only folding again gives the right 0x0001.
    @Test func foldsUntilNoCarry() {
        #expect(onesComplementSum(hex("ffff ffff 0001")) == 0x0001)
        #expect(onesComplementSum([UInt8](repeating: 0xff, count: 65536)) == 0xffff)
        var big = [UInt8](repeating: 0xff, count: 65534)
        big += [0, 2]
        #expect(onesComplementSum(big) == 0x0002)
    }

    /// Wikipedia, "IPv4 header checksum".
    @Test func wikipediaIPv4Header() throws {
        let header = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")
        #expect(internetChecksum(header) == 0)
        var zeroed = header
        zeroed[10] = 0
        zeroed[11] = 0
        #expect(internetChecksum(zeroed) == 0xb861)
        let built = IPv4Header(src: ip("192.168.0.1"), dst: ip("192.168.0.199"), ttl: 64, dontFragment: true)
            .bytes(protocol: 17, payloadLength: 0x73 - 20)
        #expect(built == header)
    }

    @Test(arguments: KernelFrames.all)
    func kernelFramesVerify(frame: [UInt8]) throws {
        let p = try ParsedFrame(frame)
        #expect(p.issue == nil)
        #expect(verifyAllChecksums(p))
        if p.ip?.ipv4 != nil { #expect(verifyIPv4HeaderChecksum(p)) }
        #expect(verifyL4Checksum(p) == .valid)
    }

    @Test(arguments: KernelFrames.all)
    func flippedBitsFail(frame: [UInt8]) throws {
        let p = try ParsedFrame(frame)
        let d = try #require(p.ip)
        // A flipped payload bit breaks the L4 checksum, a flipped TTL the header's.
        var b = frame
        b[b.count - 1] ^= 0x10
        #expect(verifyL4Checksum(try ParsedFrame(b)) == .invalid)
        if d.ipv4 != nil {
            var h = frame
            h[d.offset + 8] ^= 1
            #expect(!verifyIPv4HeaderChecksum(try ParsedFrame(h)))
        }
    }

    @Test func udpZeroChecksum() throws {
        let eth = EthernetHeader(dst: macB, src: macA)
        let udp = Transport.udp(UDPDatagram(sport: 1, dport: 2, payload: [1, 2, 3], checksum: false))
        let f4 = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2"))),
                                       transport: udp).bytes)
        #expect(f4.ip?.udp?.checksum == 0)
        #expect(verifyL4Checksum(f4) == .absent)
        #expect(verifyAllChecksums(f4))
        let f6 = try ParsedFrame(Frame(ethernet: eth, network: .ipv6(IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"))),
                                       transport: udp).bytes)
        #expect(verifyL4Checksum(f6) == .invalid)        // mandatory over IPv6
    }

    /// A computed UDP checksum of 0 is sent as 0xffff (RFC 768). The payload is
    /// chosen so that the sum comes out at exactly 0xffff.
    @Test func udpComputedZeroIsSentAsOnes() throws {
        let h = IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2"))
        let probe = Transport.udp(UDPDatagram(sport: 1, dport: 2, payload: [0, 0]))
            .bytes(source: h.src.wireBytes, destination: h.dst.wireBytes)
        let checksum = UInt16(probe[6]) << 8 | UInt16(probe[7])
        // Put the checksum the probe needed into the payload: the sum is now 0xffff, ~ is 0.
        let payload = [UInt8(checksum >> 8), UInt8(checksum & 0xff)]
        let b = Frame(ethernet: EthernetHeader(dst: macB, src: macA), network: .ipv4(h),
                      transport: .udp(UDPDatagram(sport: 1, dport: 2, payload: payload))).bytes
        let p = try ParsedFrame(b)
        #expect(p.ip?.udp?.checksum == 0xffff)
        #expect(verifyL4Checksum(p) == .valid)
    }

    @Test func checksumOverridesMakeBadPackets() throws {
        let eth = EthernetHeader(dst: macB, src: macA)
        let h = IPv4Header(src: ip("192.0.2.1"), dst: ip("192.0.2.2"), checksumOverride: 0xdead)
        let p = try ParsedFrame(Frame(ethernet: eth, network: .ipv4(h),
                                      transport: .tcp(TCPSegment(sport: 1, dport: 2, checksumOverride: 0xbeef))).bytes)
        #expect(p.ip?.ipv4?.checksum == 0xdead && !verifyIPv4HeaderChecksum(p))
        #expect(p.ip?.tcp?.checksum == 0xbeef && verifyL4Checksum(p) == .invalid)
        #expect(!verifyAllChecksums(p))
    }

    /// The RFC 8200 §8.1 pseudo-header uses the final destination of a routing header.
    @Test func routingHeaderFinalDestination() throws {
        let final = ip("2001:db8::99")
        for (type, addresses) in [(UInt8(0), [ip("2001:db8::50"), final]), (2, [final]), (4, [final, ip("2001:db8::2")])] {
            let h = IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"),
                               extensions: [.routing(type: type, segmentsLeft: 1, addresses: addresses)])
            #expect(h.finalDestination == final)
            let p = try ParsedFrame(Frame(ethernet: EthernetHeader(dst: macB, src: macA), network: .ipv6(h),
                                          transport: .udp(UDPDatagram(sport: 1, dport: 2, payload: [9]))).bytes)
            #expect(p.ip?.ipv6?.finalDestination == final)
            #expect(verifyL4Checksum(p) == .valid)
            // The same packet summed against the header's dst does not verify.
            let upper = Transport.udp(UDPDatagram(sport: 1, dport: 2, payload: [9]))
                .bytes(source: h.src.wireBytes, destination: h.dst.wireBytes)
            let d = try #require(p.ip)
            #expect(Array(p.bytes[d.upperLayerOffset...]) != upper)
        }
        // Segments left 0: the header's destination is final.
        let h = IPv6Header(src: ip("2001:db8::1"), dst: ip("2001:db8::2"),
                           extensions: [.routing(type: 0, segmentsLeft: 0, addresses: [final])])
        #expect(h.finalDestination == ip("2001:db8::2"))
    }
}
