import BatonDataPlane
import BatonModel
import BatonPacket

/// One row of the fixture table (Katran's idea): an input frame, the maps'
/// contents, and what the program must do: verdict, output frame, statistic.
/// Expected frames are built with BatonPacket from the input's description,
/// not by transforming its bytes, so they check the program independently.
struct Fixture: CustomStringConvertible {
    var name: String
    var frame: [UInt8]
    var takeovers: [Takeover]
    var rules: [SessionRule] = []
    var verdict: UInt32
    /// nil: the output is not compared (drops).
    var output: [UInt8]? = nil
    var reason: StatReason
    /// Where an outer IPv6 header starts, to mask its flow label.
    var outerIPv6At: Int? = nil
    /// Frames sent before this one (first fragments...).
    var before: [[UInt8]] = []

    var description: String { name }

    static let PASS: UInt32 = 2, DROP: UInt32 = 1, TX: UInt32 = 3, REDIRECT: UInt32 = 4
}

enum L4: String, CaseIterable {
    case tcp, udp, icmp

    func proto(_ family: IPAddress.Family) -> IPProtocol {
        switch self {
        case .tcp: return .tcp
        case .udp: return .udp
        case .icmp: return family == .v4 ? .icmp : .icmpv6
        }
    }

    /// The transport of a correspondent's packet; for echo `sport` is the identifier.
    func transport(_ family: IPAddress.Family, sport: UInt16, dport: UInt16, payload: [UInt8] = Array("hello baton".utf8)) -> Transport {
        switch self {
        case .tcp: return .tcp(TCPSegment(sport: sport, dport: dport, seq: 1000, flags: [.ack, .psh], payload: payload))
        case .udp: return .udp(UDPDatagram(sport: sport, dport: dport, payload: payload))
        case .icmp:
            return family == .v4 ? .icmpEchoRequest(id: sport, sequence: 7, payload: payload)
                                 : .icmpv6EchoRequest(id: sport, sequence: 7, payload: payload)
        }
    }

    func dport(_ p: UInt16) -> UInt16? { self == .icmp ? nil : p }
}

/// Builds frames and their expected outputs.
struct FrameSpec {
    var family: IPAddress.Family
    var l4: L4 = .udp
    var src: IPAddress
    var dst: IPAddress
    var sport: UInt16 = 40000
    var dport: UInt16 = 5060
    var vlans: [VLANTag] = []
    var options: [UInt8] = []
    var extensions: [IPv6ExtensionHeader] = []
    var dstMAC: MACAddress = World.saMAC
    var srcMAC: MACAddress = World.cnMAC
    var tos: UInt8 = 0
    var dontFragment = false

    init(_ family: IPAddress.Family, _ l4: L4 = .udp, from: World.Role = .cn, to: World.Role = .tn) {
        self.family = family
        self.l4 = l4
        src = World.ip(family, from)
        dst = World.ip(family, to)
    }

    var datagram: IPDatagram {
        let t = l4.transport(family, sport: sport, dport: dport)
        if family == .v4 {
            return IPDatagram(ipv4: IPv4Header(src: src, dst: dst, tos: tos, identification: 0x1234,
                                               dontFragment: dontFragment, options: options), transport: t)
        }
        return IPDatagram(ipv6: IPv6Header(src: src, dst: dst, trafficClass: tos, extensions: extensions), transport: t)
    }

    var ethernet: EthernetHeader { EthernetHeader(dst: dstMAC, src: srcMAC, vlans: vlans) }
    var frame: Frame { Frame(ethernet: ethernet, datagram: datagram) }
    var bytes: [UInt8] { frame.bytes }
    var l3: Int { 14 + 4 * vlans.count }

    var match: SessionMatch {
        SessionMatch(proto: l4.proto(family), source: src, sourcePort: sport, destination: dst, destinationPort: l4.dport(dport))
    }

    /// The same frame as it leaves after an L2 rewrite.
    func rewritten(to mac: MACAddress) -> [UInt8] {
        var e = ethernet
        e.dst = mac
        e.src = World.saMAC
        return Frame(ethernet: e, datagram: datagram).bytes
    }

    /// The same frame inside the tunnel from the agent to `to`.
    func encapsulated(to: IPAddress, nextHop: MACAddress) -> [UInt8] {
        var e = ethernet
        e.dst = nextHop
        e.src = World.saMAC
        let sa = World.ip(family, .sa)
        let outer = family == .v4 ? datagram.encapsulatedInIPv4(src: sa, dst: to) : datagram.encapsulatedInIPv6(src: sa, dst: to)
        return Frame(ethernet: e, datagram: outer).bytes
    }
}

enum FixtureTable {
    static let vlanSets: [(String, [VLANTag])] = [
        ("untagged", []),
        ("802.1Q", [VLANTag(vid: 100)]),
        ("QinQ", [VLANTag(vid: 200, tpid: EtherType.qinq), VLANTag(vid: 100)]),
    ]

    static func all(redirectIfindex: UInt32) -> [Fixture] {
        actions(redirectIfindex) + defaults() + precedence() + ipv4Options() + fragments() + extensionHeaders()
            + malformed() + notOurs() + ruleOnly() + neighbours() + misc(redirectIfindex) + icmpErrors() + tooBig()
            + switchMode(redirectIfindex)
            + relays() + lockouts()
    }

    /// Every action × family × protocol × VLAN arrangement, for an exact rule.
    static func actions(_ redirect: UInt32) -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            let targetIP = World.ip(family, .target), saIP = World.ip(family, .sa)
            let kinds: [(String, Forwarding)] = [
                ("pass", .pass),
                ("drop", .drop),
                ("l2-tx", .l2(to: World.targetMAC, from: World.saMAC)),
                ("l2-redirect", .l2(to: World.targetMAC, from: World.saMAC, ifindex: redirect)),
                ("encap-tx", .encap(to: targetIP, from: saIP, nextHop: World.routerMAC, sourceMAC: World.saMAC)),
            ]
            for l4 in L4.allCases {
                for (vname, vlans) in vlanSets {
                    for (aname, fwd) in kinds {
                        var s = FrameSpec(family, l4)
                        s.vlans = vlans
                        var f = Fixture(name: "\(family.rawValue) \(l4) \(vname) exact rule -> \(aname)",
                                        frame: s.bytes, takeovers: [World.takeover(family)],
                                        rules: [SessionRule(match: s.match, forward: fwd)],
                                        verdict: Fixture.TX, reason: .ruleHit)
                        switch fwd.action {
                        case .pass: f.verdict = Fixture.PASS; f.output = s.bytes
                        case .drop: f.verdict = Fixture.DROP
                        case .l2:
                            f.verdict = fwd.ifindex == 0 ? Fixture.TX : Fixture.REDIRECT
                            f.output = s.rewritten(to: World.targetMAC)
                        case .encap:
                            f.output = s.encapsulated(to: targetIP, nextHop: World.routerMAC)
                            if family == .v6 { f.outerIPv6At = s.l3 }
                        case .relay:
                            break // not among these kinds: relays() has its own table
                        }
                        out.append(f)
                    }
                }
            }
        }
        return out
    }

    /// A taken-over address with a rule for another session: the TN gets it.
    static func defaults() -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            for l4 in L4.allCases {
                for (vname, vlans) in vlanSets {
                    var s = FrameSpec(family, l4)
                    s.vlans = vlans
                    var other = s
                    other.sport = 40001
                    out.append(Fixture(name: "\(family.rawValue) \(l4) \(vname) other session -> TN (default)",
                                       frame: other.bytes, takeovers: [World.takeover(family)],
                                       rules: [SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC))],
                                       verdict: Fixture.TX, output: other.rewritten(to: World.tnMAC), reason: .defaultHit))
                }
            }
            // The default may also tunnel to the TN's temporary address.
            let s = FrameSpec(family, .udp)
            let temp = World.ip(family, .temp)
            var t = World.takeover(family)
            t.defaultForward = .encap(to: temp, from: World.ip(family, .sa), nextHop: World.tnMAC, sourceMAC: World.saMAC)
            out.append(Fixture(name: "\(family.rawValue) default encap to the temporary address", frame: s.bytes,
                               takeovers: [t], verdict: Fixture.TX, output: s.encapsulated(to: temp, nextHop: World.tnMAC),
                               reason: .defaultHit, outerIPv6At: family == .v6 ? s.l3 : nil))
        }
        return out
    }

    /// Most specific wins: each kind gets its own next-hop MAC.
    static func precedence() -> [Fixture] {
        var out: [Fixture] = []
        let macs: [MatchKind: MACAddress] = [
            .exact: MACAddress("02:00:00:00:01:00")!, .anySourcePort: MACAddress("02:00:00:00:01:01")!,
            .anySource: MACAddress("02:00:00:00:01:02")!, .anyPeer: MACAddress("02:00:00:00:01:03")!,
        ]
        for family in [IPAddress.Family.v4, .v6] {
            for l4 in [L4.tcp, .udp] {
                let base = FrameSpec(family, l4)
                func rule(_ k: MatchKind) -> SessionRule {
                    var m = base.match
                    switch k {
                    case .exact: break
                    case .anySourcePort: m.sourcePort = nil
                    case .anySource: m.sourcePort = nil; m.source = nil
                    case .anyPeer: m.sourcePort = nil; m.source = nil; m.destinationPort = nil
                    }
                    return SessionRule(match: m, forward: .l2(to: macs[k]!, from: World.saMAC))
                }
                let all = MatchKind.allCases.map(rule)
                var otherPort = base; otherPort.sport = 41000
                var otherSrc = base; otherSrc.src = World.ip(family, .cn2)
                var otherDport = base; otherDport.dport = 5061
                var otherProto = base; otherProto.l4 = l4 == .tcp ? .udp : .tcp
                let cases: [(String, FrameSpec, [SessionRule], MatchKind?)] = [
                    ("all kinds, exact packet", base, all, .exact),
                    ("all kinds, other source port", otherPort, all, .anySourcePort),
                    ("all kinds, other correspondent", otherSrc, all, .anySource),
                    ("all kinds, other destination port", otherDport, all, .anyPeer),
                    ("all kinds, other protocol", otherProto, all, nil),
                    ("any-src and any-peer only, exact packet", base, [rule(.anySource), rule(.anyPeer)], .anySource),
                    ("any-peer only", otherSrc, [rule(.anyPeer)], .anyPeer),
                    ("exact only, other source port", otherPort, [rule(.exact)], nil),
                ]
                for (name, spec, rules, kind) in cases {
                    let mac = kind.map { macs[$0]! } ?? World.tnMAC
                    out.append(Fixture(name: "\(family.rawValue) \(l4) precedence: \(name)", frame: spec.bytes,
                                       takeovers: [World.takeover(family)], rules: rules, verdict: Fixture.TX,
                                       output: spec.rewritten(to: mac), reason: kind == nil ? .defaultHit : .ruleHit))
                }
            }
        }
        return out
    }

    static func ipv4Options() -> [Fixture] {
        var out: [Fixture] = []
        let optionSets: [(String, [UInt8])] = [
            ("NOP+EOL", [1, 1, 1, 0]),
            ("router alert", [0x94, 4, 0, 0]),
            ("record route", [7, 11, 4] + [UInt8](repeating: 0, count: 8) + [0]),
            ("40 bytes", [UInt8](repeating: 1, count: 39) + [0]),
        ]
        for l4 in [L4.tcp, .udp, .icmp] {
            for (name, opts) in optionSets {
                var s = FrameSpec(.v4, l4)
                s.options = opts
                out.append(Fixture(name: "v4 \(l4) options \(name) -> target", frame: s.bytes, takeovers: [World.takeover(.v4)],
                                   rules: [SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC))],
                                   verdict: Fixture.TX, output: s.rewritten(to: World.targetMAC), reason: .ruleHit))
            }
        }
        return out
    }

    /// Anchored sessions (docs/dataplane.md, "Relay"): both legs of a relay through the anchor
    /// (the agent's own address, no takeover), both families, UDP and TCP, untagged and
    /// tagged; a UDP datagram without a checksum; fragments; and what cannot be relayed. The
    /// expected frames are built whole by BatonPacket (checksums computed afresh), so the
    /// program's incremental updates are checked against full sums.
    static func relays() -> [Fixture] {
        var out: [Fixture] = []
        let payload = Array("rtp media, 20 ms".utf8)
        for family in [IPAddress.Family.v4, .v6] {
            let anchor = World.ip(family, .sa), remote = World.ip(family, .cn), device = World.ip(family, .target)
            func datagram(_ l4: L4, _ src: IPAddress, _ dst: IPAddress, _ sport: UInt16, _ dport: UInt16, ttl: UInt8 = 64,
                          checksum: Bool = true, payload: [UInt8] = payload, id: UInt16 = 0x1234) -> IPDatagram {
                let t: Transport = l4 == .udp
                    ? .udp(UDPDatagram(sport: sport, dport: dport, payload: payload, checksum: checksum))
                    : l4.transport(family, sport: sport, dport: dport, payload: payload)
                return family == .v4
                    ? IPDatagram(ipv4: IPv4Header(src: src, dst: dst, ttl: ttl, identification: id), transport: t)
                    : IPDatagram(ipv6: IPv6Header(src: src, dst: dst, hopLimit: ttl), transport: t)
            }
            struct Leg {
                var name: String, from: IPAddress, fromMAC: MACAddress, fromPort: UInt16, anchorPort: UInt16
                var rewrite: Forwarding.Rewrite, hop: MACAddress
            }
            let legs = [
                Leg(name: "remote -> device", from: remote, fromMAC: World.cnMAC, fromPort: 40000, anchorPort: 5004,
                    rewrite: .init(source: anchor, sourcePort: 30000, destination: device, destinationPort: 6000), hop: World.targetMAC),
                Leg(name: "device -> remote", from: device, fromMAC: World.targetMAC, fromPort: 6000, anchorPort: 30000,
                    rewrite: .init(source: anchor, sourcePort: 5004, destination: remote, destinationPort: 40000), hop: World.cnMAC),
            ]
            func rule(_ leg: Leg, _ l4: L4) -> SessionRule {
                SessionRule(match: SessionMatch(proto: l4.proto(family), source: leg.from, sourcePort: leg.fromPort,
                                                destination: anchor, destinationPort: l4.dport(leg.anchorPort)),
                            forward: .relay(leg.rewrite, nextHop: leg.hop, sourceMAC: World.saMAC))
            }
            func frame(_ leg: Leg, _ d: IPDatagram, vlans: [VLANTag] = []) -> [UInt8] {
                Frame(ethernet: EthernetHeader(dst: World.saMAC, src: leg.fromMAC, vlans: vlans), datagram: d).bytes
            }
            func relayed(_ leg: Leg, _ d: IPDatagram, vlans: [VLANTag] = []) -> [UInt8] {
                Frame(ethernet: EthernetHeader(dst: leg.hop, src: World.saMAC, vlans: vlans), datagram: d).bytes
            }
            let w = legs[0].rewrite
            for leg in legs {
                let r = leg.rewrite
                for l4 in [L4.udp, .tcp] {
                    for (vname, vlans) in vlanSets {
                        out.append(Fixture(name: "\(family.rawValue) \(l4) \(vname) relay \(leg.name)",
                                           frame: frame(leg, datagram(l4, leg.from, anchor, leg.fromPort, leg.anchorPort), vlans: vlans),
                                           takeovers: [], rules: [rule(leg, l4)], verdict: Fixture.TX,
                                           output: relayed(leg, datagram(l4, r.source, r.destination, r.sourcePort, r.destinationPort, ttl: 63), vlans: vlans),
                                           reason: .ruleHit))
                    }
                }
            }
            let leg = legs[0]
            let name = "\(family.rawValue) relay"
            // The last hop a packet may take, and one past it.
            out.append(Fixture(name: "\(name): TTL 2 leaves with 1", frame: frame(leg, datagram(.udp, remote, anchor, 40000, 5004, ttl: 2)),
                               takeovers: [], rules: [rule(leg, .udp)], verdict: Fixture.TX,
                               output: relayed(leg, datagram(.udp, anchor, device, w.sourcePort, w.destinationPort, ttl: 1)), reason: .ruleHit))
            out.append(Fixture(name: "\(name): TTL 1 is dropped", frame: frame(leg, datagram(.udp, remote, anchor, 40000, 5004, ttl: 1)),
                               takeovers: [], rules: [rule(leg, .udp)], verdict: Fixture.DROP, reason: .relayDropped))
            if family == .v4 {
                out.append(Fixture(name: "\(name): UDP without a checksum stays without",
                                   frame: frame(leg, datagram(.udp, remote, anchor, 40000, 5004, checksum: false)),
                                   takeovers: [], rules: [rule(leg, .udp)], verdict: Fixture.TX,
                                   output: relayed(leg, datagram(.udp, anchor, device, w.sourcePort, w.destinationPort, ttl: 63, checksum: false)),
                                   reason: .ruleHit))
            }
            // An ICMP error about a relayed datagram (the device's port unreachable for what the
            // anchor sent it) takes the session it quotes, the device's leg: not relayed, since
            // its quote would need the rewrite undone too. Dropped, counted.
            let sentToDevice = datagram(.udp, anchor, device, w.sourcePort, w.destinationPort, ttl: 63)
            let unreachable = ICMPMessage(type: family == .v4 ? 3 : 1, code: family == .v4 ? 3 : 4,
                                          body: [0, 0, 0, 0] + sentToDevice.bytes.prefix((family == .v4 ? 20 : 40) + 8))
            let report = family == .v4 ? IPDatagram(ipv4: IPv4Header(src: device, dst: anchor), transport: .icmp(unreachable))
                                       : IPDatagram(ipv6: IPv6Header(src: device, dst: anchor), transport: .icmpv6(unreachable))
            out.append(Fixture(name: "\(name): an ICMP error quoting a relayed datagram drops", frame: frame(legs[1], report),
                               takeovers: [], rules: [rule(legs[1], .udp)], verdict: Fixture.DROP, reason: .relayDropped))
            // A possible source route: the UDP checksum covers the route's last address, not
            // the header's destination, so an update from the header would be wrong. IPv4 with
            // options (an LSRR here; options are not read) and IPv6 with a routing header drop;
            // IPv6 with a destination-options header is relayed as it is.
            let udp = Transport.udp(UDPDatagram(sport: 40000, dport: 5004, payload: payload))
            let routed = family == .v4
                ? IPDatagram(ipv4: IPv4Header(src: remote, dst: anchor, options: [0x83, 7, 4] + device.wireBytes), transport: udp)
                : IPDatagram(ipv6: IPv6Header(src: remote, dst: anchor, extensions: [.routing(type: 4, segmentsLeft: 1, addresses: [device])]),
                             transport: udp)
            out.append(Fixture(name: "\(name): a source route (\(family == .v4 ? "IPv4 options" : "routing header")) drops",
                               frame: frame(leg, routed), takeovers: [], rules: [rule(leg, .udp)], verdict: Fixture.DROP, reason: .relayDropped))
            if family == .v6 {
                let options: [IPv6ExtensionHeader] = [.destinationOptions(options: [], length: 16)]
                let withOptions = IPDatagram(ipv6: IPv6Header(src: remote, dst: anchor, extensions: options), transport: udp)
                let want = IPDatagram(ipv6: IPv6Header(src: anchor, dst: device, hopLimit: 63, extensions: options),
                                      transport: .udp(UDPDatagram(sport: w.sourcePort, dport: w.destinationPort, payload: payload)))
                out.append(Fixture(name: "\(name): behind a destination-options header", frame: frame(leg, withOptions), takeovers: [],
                                   rules: [rule(leg, .udp)], verdict: Fixture.TX, output: relayed(leg, want), reason: .ruleHit))
            }
            // Another port of the anchor: not a session, the anchor's own stack.
            out.append(Fixture(name: "\(name): another port of the anchor passes", frame: frame(leg, datagram(.udp, remote, anchor, 40000, 5060)),
                               takeovers: [], rules: [rule(leg, .udp)], verdict: Fixture.PASS, reason: .notTakenOver))
            // A relay whose next hop is the agent itself would loop.
            let looping = SessionRule(match: rule(leg, .udp).match, forward: .relay(w, nextHop: World.saMAC, sourceMAC: World.saMAC))
            out.append(Fixture(name: "\(name): to the agent's own MAC drops", frame: frame(leg, datagram(.udp, remote, anchor, 40000, 5004)),
                               takeovers: [], rules: [looping], verdict: Fixture.DROP, reason: .loopDropped))
            // Fragments: the first is rewritten whole (its UDP checksum covers the datagram),
            // the later ones get the addresses and follow the first.
            for l4 in [L4.udp, .tcp] {
                let big = [UInt8](repeating: 0x5a, count: 600)
                let parts = datagram(l4, remote, anchor, 40000, 5004, payload: big, id: 0x4545).fragments(sizes: [256, 256], identification: 0x4545)
                let want = datagram(l4, anchor, device, w.sourcePort, w.destinationPort, ttl: 63, payload: big, id: 0x4545)
                    .fragments(sizes: [256, 256], identification: 0x4545)
                    .map { relayed(leg, $0) }
                let frames = parts.map { frame(leg, $0) }
                out.append(Fixture(name: "\(name) \(l4) fragments: the first", frame: frames[0], takeovers: [], rules: [rule(leg, l4)],
                                   verdict: Fixture.TX, output: want[0], reason: .ruleHit))
                out.append(Fixture(name: "\(name) \(l4) fragments: the last follows", frame: frames[2], takeovers: [], rules: [rule(leg, l4)],
                                   verdict: Fixture.TX, output: want[2], reason: .ruleHit, before: [frames[0], frames[1]]))
            }
        }
        return out
    }

    /// Lockouts: a drop rule with an end. Before it, dropped (counted on the rule); after it,
    /// as if the rule were not there: the takeover's default, or the stack. (The ends are 1
    /// and UInt64.max on the kernel's monotonic clock: long over, and never.)
    static func lockouts() -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            for l4 in [L4.udp, .tcp] {
                let s = FrameSpec(family, l4)
                let name = "\(family.rawValue) \(l4) lockout"
                out.append(Fixture(name: "\(name) in force drops", frame: s.bytes, takeovers: [World.takeover(family)],
                                   rules: [SessionRule(match: s.match, forward: .drop(until: .max))],
                                   verdict: Fixture.DROP, reason: .ruleHit))
                out.append(Fixture(name: "\(name) over: the takeover's default", frame: s.bytes, takeovers: [World.takeover(family)],
                                   rules: [SessionRule(match: s.match, forward: .drop(until: 1))],
                                   verdict: Fixture.TX, output: s.rewritten(to: World.tnMAC), reason: .defaultHit))
                // An anchor's lockout (no takeover): over, the anchor's stack has the packet.
                var toAnchor = FrameSpec(family, l4, to: .sa)
                toAnchor.dport = 30000
                out.append(Fixture(name: "\(name) at an anchor, over: passed", frame: toAnchor.bytes, takeovers: [],
                                   rules: [SessionRule(match: toAnchor.match, forward: .drop(until: 1))],
                                   verdict: Fixture.PASS, output: toAnchor.bytes, reason: .notTakenOver))
                out.append(Fixture(name: "\(name) at an anchor, in force: dropped", frame: toAnchor.bytes, takeovers: [],
                                   rules: [SessionRule(match: toAnchor.match, forward: .drop(until: .max))],
                                   verdict: Fixture.DROP, reason: .ruleHit))
            }
        }
        return out
    }

    static func fragments() -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            for l4 in [L4.udp, .tcp] {
                var s = FrameSpec(family, l4)
                let big = FrameSpec(family, l4)
                let payload = [UInt8](repeating: 0xab, count: 600)
                let t = l4.transport(family, sport: s.sport, dport: s.dport, payload: payload)
                let whole = family == .v4
                    ? IPDatagram(ipv4: IPv4Header(src: big.src, dst: big.dst, identification: 0x4242), transport: t)
                    : IPDatagram(ipv6: IPv6Header(src: big.src, dst: big.dst), transport: t)
                let parts = whole.fragments(sizes: [256, 256], identification: 0x4242)
                let frames = parts.map { Frame(ethernet: s.ethernet, datagram: $0).bytes }
                let outFrames = parts.map { p -> [UInt8] in
                    var e = s.ethernet; e.dst = World.targetMAC; e.src = World.saMAC
                    return Frame(ethernet: e, datagram: p).bytes
                }
                let rule = SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC))
                let name = "\(family.rawValue) \(l4) fragments"
                out.append(Fixture(name: "\(name): first fragment by its ports", frame: frames[0], takeovers: [World.takeover(family)],
                                   rules: [rule], verdict: Fixture.TX, output: outFrames[0], reason: .ruleHit))
                out.append(Fixture(name: "\(name): middle fragment follows the first", frame: frames[1], takeovers: [World.takeover(family)],
                                   rules: [rule], verdict: Fixture.TX, output: outFrames[1], reason: .ruleHit, before: [frames[0]]))
                out.append(Fixture(name: "\(name): last fragment follows the first", frame: frames[2], takeovers: [World.takeover(family)],
                                   rules: [rule], verdict: Fixture.TX, output: outFrames[2], reason: .ruleHit, before: [frames[0], frames[1]]))
                out.append(Fixture(name: "\(name): later fragment without its first is dropped", frame: frames[1],
                                   takeovers: [World.takeover(family)], rules: [rule], verdict: Fixture.DROP, reason: .fragmentUnknown))
                // A default-path datagram: its later fragments go to the TN too.
                s.sport = 40001
                let t2 = l4.transport(family, sport: s.sport, dport: s.dport, payload: payload)
                let whole2 = family == .v4
                    ? IPDatagram(ipv4: IPv4Header(src: s.src, dst: s.dst, identification: 0x4343), transport: t2)
                    : IPDatagram(ipv6: IPv6Header(src: s.src, dst: s.dst), transport: t2)
                let p2 = whole2.fragments(sizes: [256], identification: 0x4343)
                var e = s.ethernet; e.dst = World.tnMAC; e.src = World.saMAC
                out.append(Fixture(name: "\(name): later fragment of a TN session follows to the TN",
                                   frame: Frame(ethernet: s.ethernet, datagram: p2[1]).bytes, takeovers: [World.takeover(family)],
                                   rules: [rule], verdict: Fixture.TX, output: Frame(ethernet: e, datagram: p2[1]).bytes,
                                   reason: .defaultHit, before: [Frame(ethernet: s.ethernet, datagram: p2[0]).bytes]))
                // A first fragment too short for its L4 header names no session.
                let tiny = whole.fragments(sizes: [8], identification: 0x4444)
                if l4 == .tcp {
                    out.append(Fixture(name: "\(name): tiny first fragment is dropped",
                                       frame: Frame(ethernet: s.ethernet, datagram: tiny[0]).bytes,
                                       takeovers: [World.takeover(family)], rules: [rule], verdict: Fixture.DROP, reason: .malformedDropped))
                }
            }
        }
        return out
    }

    static func extensionHeaders() -> [Fixture] {
        let chains: [(String, [IPv6ExtensionHeader])] = [
            ("hop-by-hop", [.hopByHop()]),
            ("routing", [.routing(segmentsLeft: 0, addresses: [IPAddress("2001:db8::77")!])]),
            ("destination options", [.destinationOptions(length: 16)]),
            ("AH", [.authentication()]),
            ("atomic fragment", [.fragment(offset: 0, more: false, identification: 9)]),
            ("hop-by-hop, dstopts, routing", [.hopByHop(), .destinationOptions(), .routing(segmentsLeft: 0, addresses: [])]),
            ("six headers", [.hopByHop(), .destinationOptions(), .routing(segmentsLeft: 0, addresses: []),
                             .authentication(), .destinationOptions(), .destinationOptions()]),
        ]
        var out: [Fixture] = []
        for l4 in [L4.tcp, .udp, .icmp] {
            for (name, chain) in chains {
                var s = FrameSpec(.v6, l4)
                s.extensions = chain
                out.append(Fixture(name: "v6 \(l4) extension headers: \(name) -> target", frame: s.bytes,
                                   takeovers: [World.takeover(.v6)],
                                   rules: [SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC))],
                                   verdict: Fixture.TX, output: s.rewritten(to: World.targetMAC), reason: .ruleHit))
            }
        }
        var s = FrameSpec(.v6, .udp)
        s.extensions = [IPv6ExtensionHeader](repeating: .destinationOptions(), count: 7)
        out.append(Fixture(name: "v6 seven extension headers: dropped, never guessed", frame: s.bytes,
                           takeovers: [World.takeover(.v6)],
                           rules: [SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC))],
                           verdict: Fixture.DROP, reason: .malformedDropped))
        return out
    }

    static func malformed() -> [Fixture] {
        var out: [Fixture] = []
        func add(_ name: String, _ family: IPAddress.Family, _ bytes: [UInt8], _ verdict: UInt32, _ reason: StatReason) {
            let s = FrameSpec(family, .udp)
            out.append(Fixture(name: "malformed: \(name)", frame: bytes, takeovers: [World.takeover(family)],
                               rules: [SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC))],
                               verdict: verdict, output: verdict == Fixture.PASS ? bytes : nil, reason: reason))
        }
        let v4 = FrameSpec(.v4, .udp), v6 = FrameSpec(.v6, .udp)
        let tcp4 = FrameSpec(.v4, .tcp)
        func v4With(_ edit: (inout IPv4Header) -> Void, _ spec: FrameSpec = FrameSpec(.v4, .udp)) -> [UInt8] {
            guard case .ipv4(var h) = spec.frame.network else { return [] }
            edit(&h)
            return Frame(ethernet: spec.ethernet, network: .ipv4(h), transport: spec.datagram.transport).bytes
        }
        func v6With(_ edit: (inout IPv6Header) -> Void) -> [UInt8] {
            guard case .ipv6(var h) = v6.frame.network else { return [] }
            edit(&h)
            return Frame(ethernet: v6.ethernet, network: .ipv6(h), transport: v6.datagram.transport).bytes
        }
        // (Frames under 14 bytes never reach XDP: test runs refuse them, NICs drop runts.)
        add("Ethernet header only", .v4, Array(v4.bytes.prefix(14)), Fixture.PASS, .malformedPassed)
        add("VLAN tag cut short", .v4, Array(FrameSpec.tagged(.v4).bytes.prefix(16)), Fixture.PASS, .malformedPassed)
        add("IPv4 header cut short", .v4, Array(v4.bytes.prefix(30)), Fixture.PASS, .malformedPassed)
        add("IPv4 version 5", .v4, v4With { $0.version = 5 }, Fixture.PASS, .malformedPassed)
        add("IPv4 IHL 4", .v4, v4With { $0.ihlOverride = 4 }, Fixture.PASS, .malformedPassed)
        add("IPv4 total length beyond the frame", .v4, v4With { $0.totalLengthOverride = 400 }, Fixture.DROP, .malformedDropped)
        add("IPv4 total length below the header", .v4, v4With { $0.totalLengthOverride = 16 }, Fixture.DROP, .malformedDropped)
        add("IPv4 total length cuts the UDP header", .v4, v4With { $0.totalLengthOverride = 24 }, Fixture.DROP, .malformedDropped)
        add("IPv4 IHL beyond the datagram", .v4, v4With { $0.ihlOverride = 15 }, Fixture.DROP, .malformedDropped)
        add("TCP data offset 4", .v4, {
            var s = tcp4
            s.l4 = .tcp
            guard case .ipv4(let h) = s.frame.network else { return [] }
            return Frame(ethernet: s.ethernet, network: .ipv4(h),
                         transport: .tcp(TCPSegment(sport: s.sport, dport: s.dport, dataOffsetOverride: 4))).bytes
        }(), Fixture.DROP, .malformedDropped)
        add("TCP header cut by the frame end", .v4, Array(tcp4.bytes.prefix(14 + 20 + 12)), Fixture.DROP, .malformedDropped)
        add("IPv6 header cut short", .v6, Array(v6.bytes.prefix(40)), Fixture.PASS, .malformedPassed)
        add("IPv6 version 4 in an IPv6 EtherType", .v6, v6With { $0.version = 4 }, Fixture.PASS, .malformedPassed)
        add("IPv6 payload length 0", .v6, v6With { $0.payloadLengthOverride = 0 }, Fixture.DROP, .malformedDropped)
        add("IPv6 payload length beyond the frame", .v6, v6With { $0.payloadLengthOverride = 600 }, Fixture.DROP, .malformedDropped)
        add("IPv6 payload length cuts the UDP header", .v6, v6With { $0.payloadLengthOverride = 4 }, Fixture.DROP, .malformedDropped)
        add("IPv6 hop-by-hop longer than the datagram", .v6, v6With { $0.extensions = [.hopByHop(length: 64)]; $0.payloadLengthOverride = 40 },
            Fixture.DROP, .malformedDropped)
        return out
    }

    static func notOurs() -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            for l4 in L4.allCases {
                let s = FrameSpec(family, l4, to: .other)
                out.append(Fixture(name: "\(family.rawValue) \(l4) to an address not taken over -> stack", frame: s.bytes,
                                   takeovers: [World.takeover(family)], verdict: Fixture.PASS, output: s.bytes, reason: .notTakenOver))
            }
            let s = FrameSpec(family, .udp)
            out.append(Fixture(name: "\(family.rawValue) nothing taken over -> stack", frame: s.bytes, takeovers: [],
                               verdict: Fixture.PASS, output: s.bytes, reason: .notTakenOver))
        }
        // An IPv6 packet to ::ffff:192.0.2.2 must not hit the IPv4 takeover.
        var m = FrameSpec(.v6, .udp)
        m.dst = IPAddress.v6(World.ip(.v4, .tn).bytes16)
        out.append(Fixture(name: "v6 to an IPv4-mapped address -> stack", frame: m.bytes, takeovers: [World.takeover(.v4)],
                           verdict: Fixture.PASS, output: m.bytes, reason: .notTakenOver))
        let lldp = Frame(ethernet: EthernetHeader(dst: MACAddress("01:80:c2:00:00:0e")!, src: World.cnMAC),
                         network: .raw(etherType: 0x88cc, bytes: [UInt8](repeating: 0, count: 46))).bytes
        out.append(Fixture(name: "LLDP -> stack", frame: lldp, takeovers: [World.takeover(.v4)],
                           verdict: Fixture.PASS, output: lldp, reason: .notIP))
        var three = FrameSpec(.v4, .udp)
        three.vlans = [VLANTag(vid: 1), VLANTag(vid: 2), VLANTag(vid: 3)]
        out.append(Fixture(name: "three VLAN tags -> stack", frame: three.bytes, takeovers: [World.takeover(.v4)],
                           verdict: Fixture.PASS, output: three.bytes, reason: .notIP))
        return out
    }

    /// Rules act without a takeover (make-before-break writes them first);
    /// everything else for such an address stays the stack's.
    static func ruleOnly() -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            let s = FrameSpec(family, .udp)
            let rule = SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC))
            out.append(Fixture(name: "\(family.rawValue) rule before its takeover steers its session", frame: s.bytes,
                               takeovers: [], rules: [rule], verdict: Fixture.TX, output: s.rewritten(to: World.targetMAC),
                               reason: .ruleHit))
            var other = s
            other.sport = 40001
            out.append(Fixture(name: "\(family.rawValue) other session to a rule-only address -> stack", frame: other.bytes,
                               takeovers: [], rules: [rule], verdict: Fixture.PASS, output: other.bytes, reason: .notTakenOver))
            let whole = IPDatagram(s.datagram.header, L4.udp.transport(family, sport: s.sport, dport: s.dport,
                                                                        payload: [UInt8](repeating: 1, count: 300)))
            let later = Frame(ethernet: s.ethernet, datagram: whole.fragments(sizes: [128], identification: 77)[1]).bytes
            out.append(Fixture(name: "\(family.rawValue) unknown later fragment to a rule-only address -> stack", frame: later,
                               takeovers: [], rules: [rule], verdict: Fixture.PASS, output: later, reason: .notTakenOver))
            let cut = Array(s.bytes.dropLast(4))
            out.append(Fixture(name: "\(family.rawValue) truncated datagram to a rule-only address -> stack", frame: cut,
                               takeovers: [], rules: [rule], verdict: Fixture.PASS, output: cut, reason: .notTakenOver))
        }
        return out
    }

    static func neighbours() -> [Fixture] {
        var out: [Fixture] = []
        let tn4 = World.ip(.v4, .tn), cn4 = World.ip(.v4, .cn)
        for (vname, vlans) in vlanSets.prefix(2) {
            let req = Frame.arpRequest(senderMAC: World.cnMAC, senderIP: cn4, targetIP: tn4, vlans: vlans)
            let reply = Frame.arpReply(senderMAC: World.saMAC, senderIP: tn4, targetMAC: World.cnMAC, targetIP: cn4, vlans: vlans)
            out.append(Fixture(name: "ARP \(vname) who-has taken-over address -> answered", frame: req.bytes,
                               takeovers: [World.takeover(.v4)], verdict: Fixture.TX, output: reply.bytes, reason: .arpReply))
            let padded = req.padded()
            out.append(Fixture(name: "ARP \(vname) padded request -> answered, padding kept", frame: padded.bytes,
                               takeovers: [World.takeover(.v4)], verdict: Fixture.TX,
                               output: reply.bytes + [UInt8](repeating: 0, count: padded.bytes.count - reply.bytes.count),
                               reason: .arpReply))
        }
        let other = Frame.arpRequest(senderMAC: World.cnMAC, senderIP: cn4, targetIP: World.ip(.v4, .other))
        out.append(Fixture(name: "ARP who-has another address -> stack", frame: other.bytes, takeovers: [World.takeover(.v4)],
                           verdict: Fixture.PASS, output: other.bytes, reason: .notTakenOver))
        let garp = Frame.gratuitousARP(mac: World.tnMAC, ip: tn4)
        out.append(Fixture(name: "gratuitous ARP for the taken-over address -> stack", frame: garp.bytes,
                           takeovers: [World.takeover(.v4)], verdict: Fixture.PASS, output: garp.bytes, reason: .notTakenOver))
        let rep = Frame.arpReply(senderMAC: World.cnMAC, senderIP: cn4, targetMAC: World.saMAC, targetIP: tn4)
        out.append(Fixture(name: "ARP reply -> stack", frame: rep.bytes, takeovers: [World.takeover(.v4)],
                           verdict: Fixture.PASS, output: rep.bytes, reason: .notTakenOver))
        let req = Frame.arpRequest(senderMAC: World.cnMAC, senderIP: cn4, targetIP: tn4)
        out.append(Fixture(name: "ARP for a takeover that does not answer -> stack", frame: req.bytes,
                           takeovers: [World.takeover(.v4, answer: false)], verdict: Fixture.PASS, output: req.bytes, reason: .notTakenOver))
        out.append(Fixture(name: "ARP cut short -> stack", frame: Array(req.bytes.prefix(30)), takeovers: [World.takeover(.v4)],
                           verdict: Fixture.PASS, output: Array(req.bytes.prefix(30)), reason: .malformedPassed))

        let tn6 = World.ip(.v6, .tn), cn6 = World.ip(.v6, .cn)
        func na(to mac: MACAddress, _ dst: IPAddress, solicited: Bool, router: Bool = false, vlans: [VLANTag] = []) -> [UInt8] {
            Frame.neighborAdvertisement(sourceMAC: World.saMAC, source: tn6, destinationMAC: mac, destination: dst, target: tn6,
                                        router: router, solicited: solicited, override: true, vlans: vlans).bytes
        }
        for (vname, vlans) in vlanSets.prefix(2) {
            let ns = Frame.neighborSolicitation(sourceMAC: World.cnMAC, source: cn6, target: tn6, vlans: vlans)
            out.append(Fixture(name: "NS \(vname) to the solicited-node group -> NA", frame: ns.bytes,
                               takeovers: [World.takeover(.v6)], verdict: Fixture.TX,
                               output: na(to: World.cnMAC, cn6, solicited: true, vlans: vlans), reason: .neighborAdvert))
        }
        let uni = Frame.neighborSolicitation(sourceMAC: World.cnMAC, source: cn6, target: tn6, to: .unicast(World.saMAC))
        out.append(Fixture(name: "NS unicast (NUD probe) -> NA", frame: uni.bytes, takeovers: [World.takeover(.v6)],
                           verdict: Fixture.TX, output: na(to: World.cnMAC, cn6, solicited: true), reason: .neighborAdvert))
        let noOpt = Frame.neighborSolicitation(sourceMAC: World.cnMAC, source: cn6, target: tn6, includeSourceLinkLayer: false)
        out.append(Fixture(name: "NS without source link-layer option -> NA (frame grows)", frame: noOpt.bytes,
                           takeovers: [World.takeover(.v6)], verdict: Fixture.TX,
                           output: na(to: World.cnMAC, cn6, solicited: true), reason: .neighborAdvert))
        let dad = Frame.neighborSolicitation(sourceMAC: World.cnMAC, source: IPAddress("::")!, target: tn6)
        out.append(Fixture(name: "NS from :: (DAD) -> NA to all nodes", frame: dad.bytes, takeovers: [World.takeover(.v6)],
                           verdict: Fixture.TX, output: na(to: MACAddress("33:33:00:00:00:01")!, .allNodes, solicited: false),
                           reason: .neighborAdvert))
        let r = Frame.neighborSolicitation(sourceMAC: World.cnMAC, source: cn6, target: tn6)
        out.append(Fixture(name: "NS for a router's address -> NA with R", frame: r.bytes, takeovers: [World.takeover(.v6, router: true)],
                           verdict: Fixture.TX, output: na(to: World.cnMAC, cn6, solicited: true, router: true), reason: .neighborAdvert))
        let otherNS = Frame.neighborSolicitation(sourceMAC: World.cnMAC, source: cn6, target: World.ip(.v6, .other))
        out.append(Fixture(name: "NS for another address -> stack", frame: otherNS.bytes, takeovers: [World.takeover(.v6)],
                           verdict: Fixture.PASS, output: otherNS.bytes, reason: .notTakenOver))
        guard case .ipv6(var h) = r.network else { return out }
        h.hopLimit = 64
        let hop64 = Frame(ethernet: r.ethernet, network: .ipv6(h), transport: r.transport).bytes
        out.append(Fixture(name: "NS with hop limit 64 is not answered -> stack", frame: hop64, takeovers: [World.takeover(.v6)],
                           verdict: Fixture.PASS, output: hop64, reason: .notTakenOver))
        out.append(Fixture(name: "NS for a takeover that does not answer -> stack", frame: r.bytes,
                           takeovers: [World.takeover(.v6, answer: false)], verdict: Fixture.PASS, output: r.bytes, reason: .notTakenOver))
        return out
    }

    static func misc(_ redirect: UInt32) -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            // Ethernet padding stays behind the datagram; the tunnel covers only the datagram.
            let s = FrameSpec(family, .udp)
            let target = World.ip(family, .target)
            let padded = s.frame.padded(to: 90).bytes
            let pad = [UInt8](repeating: 0, count: padded.count - s.bytes.count)
            out.append(Fixture(name: "\(family.rawValue) padded frame encapsulated, padding after the datagram",
                               frame: padded, takeovers: [World.takeover(family)],
                               rules: [SessionRule(match: s.match, forward: .encap(to: target, from: World.ip(family, .sa),
                                                                                   nextHop: World.routerMAC, sourceMAC: World.saMAC))],
                               verdict: Fixture.TX, output: s.encapsulated(to: target, nextHop: World.routerMAC) + pad,
                               reason: .ruleHit, outerIPv6At: family == .v6 ? s.l3 : nil))
            // TOS / traffic class and DF are carried to the outer header.
            var t = FrameSpec(family, .tcp)
            t.tos = 0xb8
            t.dontFragment = true
            out.append(Fixture(name: "\(family.rawValue) DSCP EF and DF copied to the outer header", frame: t.bytes,
                               takeovers: [World.takeover(family)],
                               rules: [SessionRule(match: t.match, forward: .encap(to: target, from: World.ip(family, .sa),
                                                                                   nextHop: World.routerMAC, sourceMAC: World.saMAC))],
                               verdict: Fixture.TX, output: t.encapsulated(to: target, nextHop: World.routerMAC),
                               reason: .ruleHit, outerIPv6At: family == .v6 ? t.l3 : nil))
            // Echo replies carry the identifier too.
            var e = FrameSpec(family, .icmp)
            e.sport = 777
            let reply: Transport = family == .v4 ? .icmpEchoReply(id: 777, sequence: 1) : .icmpv6EchoReply(id: 777, sequence: 1)
            let frame = Frame(ethernet: e.ethernet, datagram: IPDatagram(e.datagram.header, reply))
            var oe = e.ethernet; oe.dst = World.targetMAC; oe.src = World.saMAC
            out.append(Fixture(name: "\(family.rawValue) echo reply matched by identifier", frame: frame.bytes,
                               takeovers: [World.takeover(family)],
                               rules: [SessionRule(match: e.match, forward: .l2(to: World.targetMAC, from: World.saMAC))],
                               verdict: Fixture.TX, output: Frame(ethernet: oe, datagram: IPDatagram(e.datagram.header, reply)).bytes,
                               reason: .ruleHit))
            // Loops: a tunnelled packet for a taken-over address is not tunnelled again (in
            // either tunnel protocol), and nothing goes out to the agent's own MAC.
            for proto: UInt8 in [4, 41] {
                let inner = FrameSpec(proto == 4 ? .v4 : .v6, .udp).datagram.bytes
                let tunnelled = Frame(ethernet: s.ethernet, datagram: IPDatagram(s.datagram.header, .raw(protocol: proto, bytes: inner)))
                out.append(Fixture(name: "\(family.rawValue) protocol \(proto) for a taken-over address: dropped, not tunnelled again",
                                   frame: tunnelled.bytes, takeovers: [World.takeover(family)], verdict: Fixture.DROP,
                                   reason: .loopDropped))
            }
            var own = World.takeover(family)
            own.defaultForward = .l2(to: World.saMAC, from: World.saMAC)
            out.append(Fixture(name: "\(family.rawValue) default forward to the agent's own MAC: dropped", frame: s.bytes,
                               takeovers: [own], verdict: Fixture.DROP, reason: .loopDropped))
            out.append(Fixture(name: "\(family.rawValue) rule tunnelling through the agent's own MAC: dropped", frame: s.bytes,
                               takeovers: [World.takeover(family)],
                               rules: [SessionRule(match: s.match, forward: .encap(to: target, from: World.ip(family, .sa),
                                                                                   nextHop: World.saMAC, sourceMAC: World.saMAC))],
                               verdict: Fixture.DROP, reason: .loopDropped))
        }
        return out
    }
}

extension FrameSpec {
    static func tagged(_ family: IPAddress.Family) -> FrameSpec {
        var s = FrameSpec(family, .udp)
        s.vlans = [VLANTag(vid: 100)]
        return s
    }
}

extension FixtureTable {
    /// ICMP errors (issue 12 item 8) follow the session of the datagram they quote: a router
    /// or the correspondent reporting on what the transferred session sent reaches the target,
    /// not the TN. A quote of another source, or one that is cut short, keeps the takeover's
    /// default.
    static func icmpErrors() -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            for l4 in [L4.tcp, .udp] {
                // The session: cn:40000 → tn:5060, transferred to the target.
                let session = FrameSpec(family, l4)
                let rule = SessionRule(match: session.match, forward: .l2(to: World.targetMAC, from: World.saMAC))
                // What the session sent back (tn:5060 → cn:40000), as the error quotes it:
                // its IP header and the first 8 bytes after it.
                func quote(from: World.Role) -> [UInt8] {
                    var sent = FrameSpec(family, l4, from: from, to: .cn)
                    sent.sport = 5060
                    sent.dport = 40000
                    let bytes = sent.datagram.bytes
                    return Array(bytes.prefix((family == .v4 ? 20 : 40) + 8))
                }
                let kinds: [(String, UInt8, UInt8)] = family == .v4
                    ? [("port unreachable", 3, 3), ("fragmentation needed", 3, 4), ("time exceeded", 11, 0)]
                    : [("port unreachable", 1, 4), ("packet too big", 2, 0), ("time exceeded", 3, 0)]
                for (name, type, code) in kinds {
                    let report = FrameSpec(family, .udp, from: .cn2, to: .tn)
                    func frame(_ quoted: [UInt8]) -> Frame {
                        let m = ICMPMessage(type: type, code: code, body: [0, 0, 5, 0xdc] + quoted)
                        return Frame(ethernet: report.ethernet,
                                     datagram: IPDatagram(report.datagram.header, family == .v4 ? .icmp(m) : .icmpv6(m)))
                    }
                    let ours = frame(quote(from: .tn))
                    var toTarget = ours
                    toTarget.ethernet.dst = World.targetMAC
                    toTarget.ethernet.src = World.saMAC
                    out.append(Fixture(name: "\(family.rawValue) ICMP \(name) quoting a transferred \(l4.rawValue) session: to the target",
                                       frame: ours.bytes, takeovers: [World.takeover(family)], rules: [rule],
                                       verdict: Fixture.TX, output: toTarget.bytes, reason: .ruleHit))
                    out.append(Fixture(name: "\(family.rawValue) ICMP \(name) quoting another source: the takeover's default",
                                       frame: frame(quote(from: .other)).bytes, takeovers: [World.takeover(family)], rules: [rule],
                                       verdict: Fixture.TX, output: nil, reason: .defaultHit))
                    // A fragmented error keeps its own flow (its later fragments quote nothing
                    // and must find the first): both go the takeover's default way.
                    if l4 == .udp && type == kinds[0].1 {
                        let long = ICMPMessage(type: type, code: code, body: [0, 0, 5, 0xdc] + quote(from: .tn) + [UInt8](repeating: 0x33, count: 600))
                        let whole = IPDatagram(report.datagram.header, family == .v4 ? .icmp(long) : .icmpv6(long))
                        let frames = whole.fragments(sizes: [256, 256], identification: 0x7777)
                            .map { Frame(ethernet: report.ethernet, datagram: $0).bytes }
                        out.append(Fixture(name: "\(family.rawValue) ICMP \(name), fragmented: the first keeps its own flow",
                                           frame: frames[0], takeovers: [World.takeover(family)], rules: [rule],
                                           verdict: Fixture.TX, output: nil, reason: .defaultHit))
                        out.append(Fixture(name: "\(family.rawValue) ICMP \(name), fragmented: the last follows the first",
                                           frame: frames[2], takeovers: [World.takeover(family)], rules: [rule],
                                           verdict: Fixture.TX, output: nil, reason: .defaultHit, before: [frames[0], frames[1]]))
                    }
                    out.append(Fixture(name: "\(family.rawValue) ICMP \(name) with its quote cut short: the takeover's default",
                                       frame: frame(Array(quote(from: .tn).prefix(family == .v4 ? 22 : 42))).bytes,
                                       takeovers: [World.takeover(family)], rules: [rule],
                                       verdict: Fixture.TX, output: nil, reason: .defaultHit))
                }
            }
        }
        return out
    }
}

extension FixtureTable {
    /// Issue 12 item 8: a datagram that would not fit the tunnel's MTU with the outer header
    /// is answered, as a router would, with ICMP Fragmentation Needed (IPv4, DF set) or
    /// Packet Too Big (IPv6) from the agent's tunnel address, quoting its first 68 / 96
    /// bytes; without DF it is dropped. One that fits exactly is encapsulated.
    static func tooBig() -> [Fixture] {
        var out: [Fixture] = []
        let mtu: UInt16 = 1500
        for family in [IPAddress.Family.v4, .v6] {
            let cn = World.ip(family, .cn), tn = World.ip(family, .tn), sa = World.ip(family, .sa)
            let target = World.ip(family, .target)
            let overhead = family == .v4 ? 20 : 40
            for (vname, vlans) in vlanSets {
                func datagram(size: Int, df: Bool = true) -> IPDatagram {
                    let payload = [UInt8](repeating: 0x5a, count: size - overhead - 8)
                    let udp = Transport.udp(UDPDatagram(sport: 40000, dport: 5060, payload: payload))
                    return family == .v4 ? IPDatagram(ipv4: IPv4Header(src: cn, dst: tn, dontFragment: df), transport: udp)
                                         : IPDatagram(ipv6: IPv6Header(src: cn, dst: tn), transport: udp)
                }
                let eth = EthernetHeader(dst: World.saMAC, src: World.cnMAC, vlans: vlans)
                let match = SessionMatch(proto: .udp, source: cn, sourcePort: 40000, destination: tn, destinationPort: 5060)
                let rule = SessionRule(match: match, forward: .encap(to: target, from: sa, nextHop: World.routerMAC,
                                                                     sourceMAC: World.saMAC, mtu: mtu))
                let big = datagram(size: Int(mtu) - overhead + 1)
                let quote = Array(big.bytes.prefix(family == .v4 ? 68 : 96))
                let answer: IPDatagram
                if family == .v4 {
                    let m = ICMPMessage(type: 3, code: 4, body: [0, 0, UInt8((mtu - 20) >> 8), UInt8((mtu - 20) & 0xff)] + quote)
                    answer = IPDatagram(ipv4: IPv4Header(src: sa, dst: cn, tos: 0xc0), transport: .icmp(m))
                } else {
                    let m = ICMPMessage(type: 2, code: 0, body: [0, 0, UInt8((mtu - 40) >> 8), UInt8((mtu - 40) & 0xff)] + quote)
                    answer = IPDatagram(ipv6: IPv6Header(src: sa, dst: cn), transport: .icmpv6(m))
                }
                let back = Frame(ethernet: EthernetHeader(dst: World.cnMAC, src: World.saMAC, vlans: vlans), datagram: answer)
                out.append(Fixture(name: "\(family.rawValue) \(vname) one byte over the tunnel MTU: \(family == .v4 ? "fragmentation needed" : "packet too big") to the sender",
                                   frame: Frame(ethernet: eth, datagram: big).bytes, takeovers: [World.takeover(family)], rules: [rule],
                                   verdict: Fixture.TX, output: back.bytes, reason: .tooBig))
                let fits = datagram(size: Int(mtu) - overhead)
                var tunnelled = EthernetHeader(dst: World.routerMAC, src: World.saMAC, vlans: vlans)
                tunnelled.vlans = vlans
                let outer = family == .v4 ? fits.encapsulatedInIPv4(src: sa, dst: target) : fits.encapsulatedInIPv6(src: sa, dst: target)
                out.append(Fixture(name: "\(family.rawValue) \(vname) exactly the tunnel MTU once encapsulated: tunnelled",
                                   frame: Frame(ethernet: eth, datagram: fits).bytes, takeovers: [World.takeover(family)], rules: [rule],
                                   verdict: Fixture.TX, output: Frame(ethernet: tunnelled, datagram: outer).bytes, reason: .ruleHit,
                                   outerIPv6At: family == .v6 ? 14 + 4 * vlans.count : nil))
                if family == .v4 {
                    out.append(Fixture(name: "v4 \(vname) over the tunnel MTU without DF: dropped (XDP cannot fragment)",
                                       frame: Frame(ethernet: eth, datagram: datagram(size: Int(mtu), df: false)).bytes,
                                       takeovers: [World.takeover(family)], rules: [rule], verdict: Fixture.DROP, reason: .tooBig))
                }
            }
        }
        return out
    }
}

extension FixtureTable {
    /// Switch mode (daemon.md, "Switch mode"): on a bridge port, with no takeover at all, a
    /// transferred session's rule redirects it to the target's port; the TN's other sessions,
    /// and ARP for its address, pass to the bridge untouched (nobody answers at the switch).
    static func switchMode(_ redirectIfindex: UInt32) -> [Fixture] {
        var out: [Fixture] = []
        for family in [IPAddress.Family.v4, .v6] {
            for l4 in [L4.udp, .tcp] {
                let s = FrameSpec(family, l4)
                let rule = SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC, ifindex: redirectIfindex))
                out.append(Fixture(name: "switch \(family.rawValue) \(l4): the session redirected to the target's port", frame: s.bytes,
                                   takeovers: [], rules: [rule], verdict: Fixture.REDIRECT, output: s.rewritten(to: World.targetMAC),
                                   reason: .ruleHit))
                var other = s
                other.sport = 40001
                out.append(Fixture(name: "switch \(family.rawValue) \(l4): another session of the TN to the bridge", frame: other.bytes,
                                   takeovers: [], rules: [rule], verdict: Fixture.PASS, output: other.bytes, reason: .notTakenOver))
            }
        }
        let s = FrameSpec(.v4, .udp)
        let rule = SessionRule(match: s.match, forward: .l2(to: World.targetMAC, from: World.saMAC, ifindex: redirectIfindex))
        let arp = Frame.arpRequest(senderMAC: World.cnMAC, senderIP: World.ip(.v4, .cn), targetIP: World.ip(.v4, .tn))
        out.append(Fixture(name: "switch: ARP for the TN's address passes (no takeover, no answer)", frame: arp.bytes,
                           takeovers: [], rules: [rule], verdict: Fixture.PASS, output: arp.bytes, reason: .notTakenOver))
        return out
    }
}

