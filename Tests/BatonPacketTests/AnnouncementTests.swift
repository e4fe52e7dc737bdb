import Testing
import BatonModel
import BatonPacket

@Suite("ARP and neighbour discovery")
struct AnnouncementTests {
    let addr = ip("192.0.2.1")

    /// iputils arping's send_pack: -U sends a request with the target MAC of
    /// the broadcast destination, -A a reply with its own MAC as target MAC;
    /// both with sender IP = target IP, to ff:ff:ff:ff:ff:ff.
    @Test func gratuitousARPForms() throws {
        let u = Frame.gratuitousARP(mac: macA, ip: addr, form: .request).bytes
        #expect(u == hex("ffffffffffff 02000000000a 0806 0001 0800 06 04 0001 02000000000a c0000201 ffffffffffff c0000201"))
        let a = Frame.gratuitousARP(mac: macA, ip: addr, form: .reply).bytes
        #expect(a == hex("ffffffffffff 02000000000a 0806 0001 0800 06 04 0002 02000000000a c0000201 02000000000a c0000201"))
        let p = try ParsedFrame(a)
        let arp = try #require(p.arp)
        #expect(arp.operation == ARPPacket.reply && arp.senderMAC == macA && arp.targetMAC == macA)
        #expect(arp.senderIP == addr && arp.targetIP == addr && arp.hardwareType == 1 && arp.protocolType == 0x0800)
    }

    @Test func kernelGratuitousARP() {
        let f = Frame(ethernet: EthernetHeader(dst: .broadcast, src: macA),
                      network: .arp(ARPPacket(operation: ARPPacket.request, senderMAC: macA, senderIP: addr,
                                              targetMAC: .zero, targetIP: addr)))
        #expect(f.bytes == KernelFrames.garp)
    }

    @Test func requestAndReply() throws {
        let req = Frame.arpRequest(senderMAC: macA, senderIP: addr, targetIP: ip("192.0.2.2"), vlans: [VLANTag(vid: 12)])
        let p = try ParsedFrame(req.bytes)
        #expect(p.dst == .broadcast && p.vlans == [VLANTag(vid: 12)] && p.etherType == EtherType.arp)
        #expect(p.arp?.operation == 1 && p.arp?.targetMAC == .zero && p.arp?.targetIP == ip("192.0.2.2"))
        #expect(req.bytes.count == 46 && req.padded().bytes.count == 60 && p.issue == nil)
        let rep = try ParsedFrame(Frame.arpReply(senderMAC: macB, senderIP: ip("192.0.2.2"), targetMAC: macA, targetIP: addr).bytes)
        #expect(rep.dst == macA && rep.src == macB && rep.arp?.operation == 2 && rep.arp?.senderMAC == macB)
        // Odd hardware/protocol lengths parse as raw bytes.
        var odd = ARPPacket(operation: 1, senderMAC: macA, senderIP: addr, targetMAC: .zero, targetIP: addr)
        odd.hardwareLength = 5
        let q = try ParsedFrame(Frame(ethernet: EthernetHeader(dst: .broadcast, src: macA), network: .arp(odd)).bytes)
        #expect(q.arp?.senderHardware.count == 5 && q.arp?.senderMAC == nil && q.issue == nil)
        odd.hardwareLength = 200
        let r = try ParsedFrame(Frame(ethernet: EthernetHeader(dst: .broadcast, src: macA), network: .arp(odd)).bytes)
        #expect(r.arp == nil && r.issue == ParseIssue(.arp, .truncated, at: 14))
    }

    @Test func multicastAddresses() {
        #expect(ip("2001:db8::1:2345:6789").solicitedNodeMulticast == ip("ff02::1:ff45:6789"))
        #expect(MACAddress.ipv6Multicast(ip("ff02::1:ff45:6789")) == mac("33:33:ff:45:67:89"))
        #expect(MACAddress.ipv6Multicast(.allNodes) == mac("33:33:00:00:00:01"))
        #expect(IPAddress.allNodes == ip("ff02::1") && IPAddress.unspecifiedV6 == ip("::"))
    }

    @Test func solicitations() throws {
        let target = ip("2001:db8::2")
        // Resolution: to the solicited-node group, with source link-layer option.
        var p = try ParsedFrame(Frame.neighborSolicitation(sourceMAC: macA, source: ip("2001:db8::1"), target: target).bytes)
        var d = try #require(p.ip)
        #expect(p.dst == mac("33:33:ff:00:00:02") && d.dst == ip("ff02::1:ff00:2") && d.ipv6?.hopLimit == 255)
        #expect(d.icmp?.type == 135 && d.icmp?.neighborDiscovery?.target == target)
        #expect(d.icmp?.neighborDiscovery?.sourceLinkLayer == macA && verifyAllChecksums(p))
        // Unicast, without the option.
        p = try ParsedFrame(Frame.neighborSolicitation(sourceMAC: macA, source: ip("2001:db8::1"), target: target,
                                                       to: .unicast(macB), includeSourceLinkLayer: false).bytes)
        d = try #require(p.ip)
        #expect(p.dst == macB && d.dst == target && d.icmp?.neighborDiscovery?.sourceLinkLayer == nil && verifyAllChecksums(p))
        // DAD: from ::, never with the option.
        p = try ParsedFrame(Frame.neighborSolicitation(sourceMAC: macA, source: .unspecifiedV6, target: target).bytes)
        d = try #require(p.ip)
        #expect(d.src == .unspecifiedV6 && d.icmp?.neighborDiscovery?.sourceLinkLayer == nil && verifyAllChecksums(p))
    }

    @Test func advertisements() throws {
        let f = Frame.neighborAdvertisement(sourceMAC: macB, source: ip("2001:db8::2"), destinationMAC: macA,
                                            destination: ip("2001:db8::1"), target: ip("2001:db8::2"),
                                            router: true, solicited: true, override: false)
        let p = try ParsedFrame(f.bytes)
        let nd = try #require(p.ip?.icmp?.neighborDiscovery)
        #expect(p.ip?.icmp?.type == 136 && nd.router && nd.solicited && !nd.override)
        #expect(nd.targetLinkLayer == macB && nd.target == ip("2001:db8::2") && verifyAllChecksums(p))
        #expect(p.bytes[14 + 40 + 4] == 0xc0)
    }

    /// The takeover announcement, byte for byte as Linux sends it (ndisc_notify).
    @Test func unsolicitedAdvertisement() throws {
        let f = Frame.unsolicitedNeighborAdvertisement(mac: macA, address: ip("2001:db8::1"))
        #expect(f.bytes == KernelFrames.unsolicitedNA)
        let p = try ParsedFrame(f.bytes)
        let nd = try #require(p.ip?.icmp?.neighborDiscovery)
        #expect(p.dst == mac("33:33:00:00:00:01") && p.ip?.dst == .allNodes && p.ip?.ipv6?.hopLimit == 255)
        #expect(!nd.router && !nd.solicited && nd.override && nd.targetLinkLayer == macA)
        let router = try ParsedFrame(Frame.unsolicitedNeighborAdvertisement(mac: macA, address: ip("2001:db8::1"), router: true).bytes)
        #expect(router.ip?.icmp?.neighborDiscovery?.router == true)
    }

    @Test func malformedNDOption() throws {
        var f = Frame.neighborSolicitation(sourceMAC: macA, source: ip("2001:db8::1"), target: ip("2001:db8::2"))
        f.transport = .neighborSolicitation(target: ip("2001:db8::2"), options: [1, 0, 0, 0, 0, 0, 0, 0])   // length 0
        let p = try ParsedFrame(f.bytes)
        #expect(p.issue == ParseIssue(.icmpv6, .malformed, at: 54) && p.ip?.icmp?.neighborDiscovery != nil)
        #expect(verifyL4Checksum(p) == .valid)
    }
}
