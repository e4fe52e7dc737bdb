import BatonBPF
import BatonDataPlane
import BatonModel
import BatonNet
import BatonPacket
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// baton_decap through BPF_PROG_TEST_RUN: what it strips, what it leaves
/// alone (unchanged, XDP_PASS), and which statistic each packet moves; the
/// steer → decap round trip; pinning; one live run across a veth pair.
@Suite(.serialized, .enabled(if: KernelRig.supported, "needs root and XDP"))
struct DecapTests {
    static let families: [IPAddress.Family] = [.v4, .v6]

    /// The agent's tunnel of `s`'s datagram, behind `s`'s own Ethernet header
    /// (the decap side never looks at MACs).
    static func tunnelled(_ s: FrameSpec, from agent: IPAddress? = nil, to outerDst: IPAddress? = nil,
                          trailer: [UInt8] = []) -> [UInt8] {
        let src = agent ?? World.ip(s.family, .sa), dst = outerDst ?? World.ip(s.family, .target)
        let outer = s.family == .v4 ? s.datagram.encapsulatedInIPv4(src: src, dst: dst)
                                    : s.datagram.encapsulatedInIPv6(src: src, dst: dst)
        return Frame(ethernet: s.ethernet, datagram: outer, trailer: trailer).bytes
    }

    /// A frame with an explicitly built outer header around `s`'s datagram.
    static func wrapped(_ s: FrameSpec, outer4: IPv4Header) -> [UInt8] {
        Frame(ethernet: s.ethernet, datagram: IPDatagram(ipv4: outer4, transport: .ip(s.datagram))).bytes
    }

    static func wrapped(_ s: FrameSpec, outer6: IPv6Header) -> [UInt8] {
        Frame(ethernet: s.ethernet, datagram: IPDatagram(ipv6: outer6, transport: .ip(s.datagram))).bytes
    }

    /// What one run added to a statistic.
    struct Delta: Equatable, CustomStringConvertible {
        var packets: UInt64
        var bytes: UInt64
        var description: String { "\(packets) packets, \(bytes) bytes" }
    }

    struct Run {
        var verdict: UInt32
        var output: [UInt8]
        var moved: [DecapReason: Delta]
    }

    /// One test run and the statistics it moved.
    static func decap(_ d: Decapsulator, _ frame: [UInt8]) throws -> Run {
        let before = try d.stats()
        let r = try d.program.testRun(frame)
        let after = try d.stats()
        var moved: [DecapReason: Delta] = [:]
        for reason in DecapReason.allCases where after[reason] != before[reason] {
            moved[reason] = Delta(packets: after[reason]!.packets - before[reason]!.packets,
                                      bytes: after[reason]!.bytes - before[reason]!.bytes)
        }
        return Run(verdict: r.retval, output: r.output, moved: moved)
    }

    /// Expects the frame passed unchanged, counted once under `reason`.
    static func expectUnchanged(_ d: Decapsulator, _ frame: [UInt8], _ reason: DecapReason, _ what: String,
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try decap(d, frame)
        #expect(r.verdict == Fixture.PASS, "\(what): verdict \(r.verdict)", sourceLocation: sourceLocation)
        #expect(r.output == frame, "\(what): a passed frame must be unchanged", sourceLocation: sourceLocation)
        #expect(r.moved == [reason: Delta(packets: 1, bytes: UInt64(frame.count))],
                "\(what): statistics \(r.moved), expected \(reason)", sourceLocation: sourceLocation)
    }

    /// Expects the outer header gone: exactly `inner` comes out, passed, counted as decapsulated.
    static func expectDecapsulated(_ d: Decapsulator, _ frame: [UInt8], to inner: [UInt8], _ what: String,
                                   sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try decap(d, frame)
        #expect(r.verdict == Fixture.PASS, "\(what): verdict \(r.verdict)", sourceLocation: sourceLocation)
        #expect(r.output == inner, "\(what): output\n  got  \(hex(r.output))\n  want \(hex(inner))",
                sourceLocation: sourceLocation)
        #expect(r.moved == [.decapsulated: Delta(packets: 1, bytes: UInt64(frame.count))],
                "\(what): statistics \(r.moved)", sourceLocation: sourceLocation)
    }

    // MARK: decapsulation

    /// IPIP and IPv6-in-IPv6 to an accepted address, from its agent or from
    /// any agent, every protocol and VLAN layout: the inner frame exactly.
    @Test func stripsTheOuterHeader() throws {
        let d = try Decapsulator.open(root: nil)
        var cases = 0
        for family in Self.families {
            try d.accept(World.ip(family, .tn), from: World.ip(family, .sa))
            try d.accept(World.ip(family, .temp), from: nil)
            for l4 in L4.allCases {
                for (vname, vlans) in FixtureTable.vlanSets {
                    for to in [World.Role.tn, .temp] {
                        var s = FrameSpec(family, l4, to: to)
                        s.vlans = vlans
                        s.tos = 0x28
                        try Self.expectDecapsulated(d, Self.tunnelled(s), to: s.bytes, "\(family) \(l4) \(vname) to \(to)")
                        cases += 1
                    }
                }
            }
        }
        #expect(cases == 36)
    }

    /// Outer IPv4 options are skipped (IHL 6 and 15); Ethernet padding after
    /// the outer datagram stays behind the inner one (the stack trims it).
    @Test func outerOptionsAndPadding() throws {
        let d = try Decapsulator.open(root: nil)
        let s = FrameSpec(.v4, .udp)
        try d.accept(s.dst, from: World.ip(.v4, .sa))
        for options in [[0x94, 0x04, 0x00, 0x00] as [UInt8], [UInt8](repeating: 0x01, count: 40)] {
            let outer = IPv4Header(src: World.ip(.v4, .sa), dst: World.ip(.v4, .target), options: options)
            try Self.expectDecapsulated(d, Self.wrapped(s, outer4: outer), to: s.bytes, "\(options.count) bytes of options")
        }
        for family in Self.families {
            var t = FrameSpec(family, .icmp)
            t.vlans = [VLANTag(vid: 7)]
            try d.accept(t.dst, from: nil)
            let pad = [UInt8](repeating: 0, count: 6)
            try Self.expectDecapsulated(d, Self.tunnelled(t, trailer: pad), to: t.bytes + pad, "\(family) padded")
        }
    }

    /// The round trip: a correspondent's frame through baton_steer with an
    /// encap rule (and an encap default), steer's output through baton_decap:
    /// the original IP packet, behind the Ethernet header steer wrote.
    @Test func steerThenDecapGivesTheOriginalPacket() throws {
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: 1024, maxTakeovers: 64))
        let d = try Decapsulator.open(root: nil)
        var runs = 0
        for family in Self.families {
            let sa = World.ip(family, .sa), target = World.ip(family, .target), temp = World.ip(family, .temp)
            var takeover = World.takeover(family)
            takeover.defaultForward = .encap(to: temp, from: sa, nextHop: World.tnMAC, sourceMAC: World.saMAC)
            try dp.setTakeover(takeover)
            try d.accept(World.ip(family, .tn), from: sa)
            for l4 in L4.allCases {
                for (vname, vlans) in FixtureTable.vlanSets {
                    var s = FrameSpec(family, l4)
                    s.vlans = vlans
                    try dp.flush()
                    try dp.setTakeover(takeover)
                    try dp.setRule(SessionRule(match: s.match, forward: .encap(to: target, from: sa, nextHop: World.routerMAC,
                                                                               sourceMAC: World.saMAC)))
                    var other = s
                    other.sport = 1 // no rule: the takeover's default, to the TN
                    for (frame, nextHop) in [(s, World.routerMAC), (other, World.tnMAC)] {
                        let steered = try dp.steerProgram.testRun(frame.bytes)
                        #expect(steered.retval == Fixture.TX, "\(family) \(l4) \(vname): steer verdict \(steered.retval)")
                        #expect(steered.output.count == frame.bytes.count + (family == .v4 ? 20 : 40))
                        let back = try d.program.testRun(steered.output)
                        #expect(back.retval == Fixture.PASS)
                        #expect(back.output == frame.rewritten(to: nextHop), "\(family) \(l4) \(vname) via \(nextHop)")
                        #expect(Array(back.output.dropFirst(frame.l3)) == Array(frame.bytes.dropFirst(frame.l3)),
                                "the IP packet is the original, byte for byte")
                        runs += 1
                    }
                }
            }
        }
        #expect(runs == 36)
        #expect(try d.stats()[.decapsulated]?.packets == 36)
    }

    // MARK: left alone

    /// Inner destination unknown, wrong agent, an IPv6 packet to an
    /// IPv4-mapped address: passed unchanged as not accepted.
    @Test func onlyAcceptedDestinationsFromTheirAgent() throws {
        let d = try Decapsulator.open(root: nil)
        for family in Self.families {
            let s = FrameSpec(family, .tcp)
            try Self.expectUnchanged(d, Self.tunnelled(s), .notAccepted, "\(family) nothing accepted")
            try d.accept(s.dst, from: World.ip(family, .sa))
            try Self.expectDecapsulated(d, Self.tunnelled(s), to: s.bytes, "\(family) accepted")
            try Self.expectUnchanged(d, Self.tunnelled(s, from: World.ip(family, .other)), .notAccepted, "\(family) wrong agent")
            try Self.expectUnchanged(d, Self.tunnelled(FrameSpec(family, .tcp, to: .other)), .notAccepted,
                                     "\(family) other inner destination")
            // The outer destination is not checked: the kernel delivered it here.
            try Self.expectDecapsulated(d, Self.tunnelled(s, to: World.ip(family, .other)), to: s.bytes,
                                        "\(family) any outer destination")
            // Without an agent, any outer source will do.
            try d.accept(s.dst, from: nil)
            try Self.expectDecapsulated(d, Self.tunnelled(s, from: World.ip(family, .other)), to: s.bytes,
                                        "\(family) any agent")
            #expect(try d.remove(s.dst))
            #expect(try !d.remove(s.dst))
            try Self.expectUnchanged(d, Self.tunnelled(s), .notAccepted, "\(family) removed")
        }
        // ::ffff:192.0.2.2 inside IPv6 never matches the IPv4 entry for 192.0.2.2.
        try d.accept(World.ip(.v4, .tn), from: nil)
        var mapped = FrameSpec(.v6, .udp)
        mapped.dst = .v6(World.ip(.v4, .tn).bytes16)
        try Self.expectUnchanged(d, Self.tunnelled(mapped), .notAccepted, "IPv6 to an IPv4-mapped address")
    }

    /// Plain packets, ARP, other tunnels (6in4, 4in6), an outer IPv6
    /// extension header: not ours, passed unchanged.
    @Test func notATunnel() throws {
        let d = try Decapsulator.open(root: nil)
        for family in Self.families {
            try d.accept(World.ip(family, .tn), from: nil)
            for l4 in L4.allCases {
                for (vname, vlans) in FixtureTable.vlanSets {
                    var s = FrameSpec(family, l4)
                    s.vlans = vlans
                    try Self.expectUnchanged(d, s.bytes, .notTunnel, "plain \(family) \(l4) \(vname)")
                }
            }
        }
        let s4 = FrameSpec(.v4, .udp), s6 = FrameSpec(.v6, .udp)
        let sa4 = World.ip(.v4, .sa), sa6 = World.ip(.v6, .sa)
        try Self.expectUnchanged(d, Self.wrapped(s6, outer4: IPv4Header(src: sa4, dst: World.ip(.v4, .target))), .notTunnel, "6in4")
        try Self.expectUnchanged(d, Self.wrapped(s4, outer6: IPv6Header(src: sa6, dst: World.ip(.v6, .target))), .notTunnel, "4in6")
        let ext = IPv6Header(src: sa6, dst: World.ip(.v6, .target), extensions: [.destinationOptions(options: [4, 1, 0])])
        try Self.expectUnchanged(d, Self.wrapped(s6, outer6: ext), .notTunnel, "outer IPv6 with a destination options header")
        let arp = Frame(ethernet: EthernetHeader(dst: .broadcast, src: World.cnMAC), network: .raw(etherType: EtherType.arp, bytes: [UInt8](repeating: 0, count: 28))).bytes
        try Self.expectUnchanged(d, arp, .notTunnel, "ARP")
        var tagged3 = s4
        tagged3.vlans = [VLANTag(vid: 1, tpid: EtherType.qinq), VLANTag(vid: 2), VLANTag(vid: 3)]
        try Self.expectUnchanged(d, Self.tunnelled(tagged3), .notTunnel, "three VLAN tags")
    }

    /// Headers that lie: passed unchanged as malformed (fragments as fragment).
    @Test func malformedAndFragments() throws {
        let d = try Decapsulator.open(root: nil)
        let sa4 = World.ip(.v4, .sa), tg4 = World.ip(.v4, .target), sa6 = World.ip(.v6, .sa), tg6 = World.ip(.v6, .target)
        let s4 = FrameSpec(.v4, .udp), s6 = FrameSpec(.v6, .udp)
        try d.accept(s4.dst, from: nil)
        try d.accept(s6.dst, from: nil)
        func v4(_ f: (inout IPv4Header) -> Void) -> [UInt8] {
            var h = IPv4Header(src: sa4, dst: tg4)
            f(&h)
            return Self.wrapped(s4, outer4: h)
        }
        try Self.expectUnchanged(d, v4 { $0.moreFragments = true }, .fragment, "outer first fragment")
        try Self.expectUnchanged(d, v4 { $0.fragmentOffset = 8 }, .fragment, "outer later fragment")
        try Self.expectUnchanged(d, v4 { $0.ihlOverride = 4 }, .malformed, "outer IHL 4")
        try Self.expectUnchanged(d, v4 { $0.version = 6 }, .malformed, "outer version 6 behind EtherType IPv4")
        try Self.expectUnchanged(d, v4 { $0.checksumOverride = 0x1234 }, .malformed, "outer checksum wrong")
        let tooLong = Self.tunnelled(s4).count - 14 + 1
        try Self.expectUnchanged(d, v4 { $0.totalLengthOverride = UInt16(tooLong) }, .malformed, "outer length past the frame")
        try Self.expectUnchanged(d, v4 { $0.totalLengthOverride = 39 }, .malformed, "outer length shorter than two headers")
        try Self.expectUnchanged(d, v4 { $0.ihlOverride = 15 }, .malformed, "outer IHL past its length")
        // IPv6 inside protocol 4.
        try Self.expectUnchanged(d, Self.wrapped(s6, outer4: IPv4Header(src: sa4, dst: tg4, protocolOverride: 4)), .malformed,
                                 "IPv6 inside IPIP")
        // The inner header claims more than the outer one carries.
        var inner4 = s4.datagram
        if case .ipv4(var h) = inner4.header { h.totalLengthOverride = UInt16(inner4.bytes.count + 1); inner4.header = .ipv4(h) }
        try Self.expectUnchanged(d, Frame(ethernet: s4.ethernet, datagram: inner4.encapsulatedInIPv4(src: sa4, dst: tg4)).bytes,
                                 .malformed, "inner IPv4 longer than the tunnel")
        var badInner = s4.datagram
        if case .ipv4(var h) = badInner.header { h.ihlOverride = 4; badInner.header = .ipv4(h) }
        try Self.expectUnchanged(d, Frame(ethernet: s4.ethernet, datagram: badInner.encapsulatedInIPv4(src: sa4, dst: tg4)).bytes,
                                 .malformed, "inner IHL 4")

        func v6(_ f: (inout IPv6Header) -> Void) -> [UInt8] {
            var h = IPv6Header(src: sa6, dst: tg6)
            f(&h)
            return Self.wrapped(s6, outer6: h)
        }
        try Self.expectUnchanged(d, v6 { $0.payloadLengthOverride = 0 }, .malformed, "outer payload length 0")
        try Self.expectUnchanged(d, v6 { $0.payloadLengthOverride = 39 }, .malformed, "outer payload shorter than a header")
        let past = Self.tunnelled(s6).count - 14 - 40 + 1
        try Self.expectUnchanged(d, v6 { $0.payloadLengthOverride = UInt16(past) }, .malformed, "outer payload past the frame")
        try Self.expectUnchanged(d, v6 { $0.version = 4 }, .malformed, "outer version 4 behind EtherType IPv6")
        try Self.expectUnchanged(d, Self.wrapped(s4, outer6: IPv6Header(src: sa6, dst: tg6, nextHeaderOverride: 41)), .malformed,
                                 "IPv4 inside IPv6-in-IPv6")
        var inner6 = s6.datagram
        if case .ipv6(var h) = inner6.header { h.payloadLengthOverride = UInt16(inner6.bytes.count - 40 + 1); inner6.header = .ipv6(h) }
        try Self.expectUnchanged(d, Frame(ethernet: s6.ethernet, datagram: inner6.encapsulatedInIPv6(src: sa6, dst: tg6)).bytes,
                                 .malformed, "inner IPv6 longer than the tunnel")
    }

    /// Every truncation of accepted tunnel packets (both families, untagged
    /// and QinQ, outer options): passed unchanged, counted as malformed.
    @Test func everyTruncationIsPassedUnchanged() throws {
        let d = try Decapsulator.open(root: nil)
        var frames: [(String, [UInt8])] = []
        for family in Self.families {
            try d.accept(World.ip(family, .tn), from: World.ip(family, .sa))
            for (vname, vlans) in [FixtureTable.vlanSets[0], FixtureTable.vlanSets[2]] {
                for l4 in L4.allCases {
                    var s = FrameSpec(family, l4)
                    s.vlans = vlans
                    frames.append(("\(family) \(l4) \(vname)", Self.tunnelled(s)))
                }
            }
        }
        let s = FrameSpec(.v4, .tcp)
        frames.append(("v4 outer options", Self.wrapped(s, outer4: IPv4Header(src: World.ip(.v4, .sa), dst: World.ip(.v4, .target),
                                                                              options: [UInt8](repeating: 1, count: 12)))))
        var runs = 0
        for (name, frame) in frames {
            for len in 14..<frame.count {
                try Self.expectUnchanged(d, Array(frame.prefix(len)), .malformed, "\(name) cut to \(len) of \(frame.count)")
                runs += 1
            }
            // The kernel refuses test runs shorter than an Ethernet header.
            #expect(throws: BPFError.self) { try d.program.testRun(Array(frame.prefix(13))) }
        }
        #expect(runs > 1000)
    }

    // MARK: control plane

    @Test func acceptedEntriesRoundTrip() throws {
        let d = try Decapsulator.open(root: nil)
        let entries = [
            DecapEntry(original: World.ip(.v4, .tn), agent: World.ip(.v4, .sa)),
            DecapEntry(original: World.ip(.v4, .temp), agent: nil),
            DecapEntry(original: World.ip(.v6, .tn), agent: World.ip(.v6, .sa)),
        ]
        for e in entries { try d.accept(e.original, from: e.agent) }
        #expect(try d.accepted() == entries.sorted { $0.original < $1.original })
        // Replaced in place.
        try d.accept(World.ip(.v4, .tn), from: nil)
        #expect(try d.accepted().first { $0.original == World.ip(.v4, .tn) }?.agent == nil)
        #expect(throws: DataPlaneError.self) { try d.accept(World.ip(.v4, .tn), from: World.ip(.v6, .sa)) }
        #expect(throws: DataPlaneError.self) { try d.accept(World.ip(.v6, .tn), from: IPAddress("::")!) }
        #expect(throws: DataPlaneError.self) { try d.accept(IPAddress("0.0.0.0")!, from: nil) }
        #expect(d.capacity == 4096)
    }

    /// Pinned under <root>/decap beside a steering data plane at the same
    /// root: adopted by the next open with its entries, unloaded alone.
    @Test func pinsBesideTheDataPlane() throws {
        let root = "/sys/fs/bpf/baton-test-decap-\(getpid())"
        defer { try? Decapsulator.unload(root: root); try? DataPlane.unload(root: root) }
        let dp = try DataPlane.load(.init(pinRoot: root, maxRules: 64, maxTakeovers: 16))
        let d = try Decapsulator.open(root: root)
        #expect(Decapsulator.isPinned(root: root))
        #expect(d.pinDirectory == root + "/decap")
        try d.accept(World.ip(.v4, .tn), from: World.ip(.v4, .sa))
        _ = try d.program.testRun(Self.tunnelled(FrameSpec(.v4, .udp)))

        let again = try Decapsulator.open(root: root)
        #expect(again.program.id == d.program.id, "adopted, not loaded again")
        #expect(try again.accepted() == [DecapEntry(original: World.ip(.v4, .tn), agent: World.ip(.v4, .sa))])
        #expect(try again.stats()[.decapsulated]?.packets == 1)
        #expect(DataPlane.isPinned(root: root))
        #expect(try DataPlane.adopt(root: root).steerProgram.id == dp.steerProgram.id)

        try Decapsulator.unload(root: root)
        try Decapsulator.unload(root: root) // idempotent
        #expect(!Decapsulator.isPinned(root: root))
        #expect(!BPFFS.exists(root + "/decap"))
        #expect(DataPlane.isPinned(root: root), "the data plane's pins stay")
        let fresh = try Decapsulator.open(root: root)
        #expect(try fresh.accepted().isEmpty, "a load after unload starts empty")
    }

    // MARK: live

    /// Real frames: a correspondent's UDP datagram, encapsulated by
    /// baton_steer (sent as live frames on one end of a veth pair), crosses
    /// to the other end, where baton_decap (native XDP) strips the tunnel
    /// and a UDP socket on the original address (held on lo) receives it.
    /// Once the address is no longer accepted, nothing arrives.
    @Test func liveAcrossAVethPair() throws {
        let tag = "\(getpid())-\(UInt32.random(in: 0...0xffff))"
        let sender = try NetworkNamespace.create(name: "btdc-s-\(tag)")
        defer { try? sender.delete() }
        let receiver = try NetworkNamespace.create(name: "btdc-r-\(tag)")
        defer { try? receiver.delete() }

        let senderIfindex: UInt32 = try sender.run {
            let nl = try Netlink()
            try nl.createVeth("dc0", peer: "dc1", peerNamespace: receiver)
            try nl.setUp("dc0")
            return UInt32(try nl.link(named: "dc0").index)
        }
        let d = try Decapsulator.open(root: nil)
        let (receiverMAC, link): (MACAddress, XDPLink) = try receiver.run {
            let nl = try Netlink()
            try nl.setUp("lo")
            try nl.setUp("dc1")
            for family in Self.families {
                try nl.addAddress(World.ip(family, .tn), prefixLength: family == .v4 ? 32 : 128, interface: "lo", flags: .nodad)
            }
            let l = try nl.link(named: "dc1")
            return (l.mac!, try d.attach(ifindex: UInt32(l.index), mode: .native))
        }
        defer { try? link.detach() }
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: 64, maxTakeovers: 16))

        for family in Self.families {
            var s = FrameSpec(family, .udp)
            s.dport = 7000
            let socket = try receiver.run { try UDPSocket(family: family, address: s.dst, port: s.dport) }
            defer { socket.close() }
            try d.accept(s.dst, from: World.ip(family, .sa))
            try dp.setRule(SessionRule(match: s.match, forward: .encap(to: World.ip(family, .target), from: World.ip(family, .sa),
                                                                       nextHop: receiverMAC, sourceMAC: World.saMAC)))
            func send() throws {
                _ = try sender.run { try dp.steerProgram.sendLiveFrames(s.bytes, count: 1, ingressIfindex: senderIfindex) }
            }
            try send()
            let got = try socket.receive(timeout: .seconds(3))
            #expect(got?.payload == Array("hello baton".utf8), "\(family): the inner datagram arrives")
            #expect(got?.source == SocketAddress(s.src, port: s.sport))
            #expect(try d.stats()[.decapsulated]!.packets >= 1)

            try d.remove(s.dst)
            let before = try d.stats()[.notAccepted]!.packets
            try send()
            #expect(try socket.receive(timeout: .milliseconds(300)) == nil, "\(family): not accepted, not delivered")
            #expect(try d.stats()[.notAccepted]!.packets == before + 1)
        }
    }
}
