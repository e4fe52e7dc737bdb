import BatonBPF
import BatonDataPlane
import BatonModel
import BatonPacket
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// 100k random and mutated frames through the kernel program and through the
/// reference model: verdict, output frame and statistics must agree on
/// every one. The seed is fixed so a failure reproduces; BATON_SEED overrides it.
@Suite(.serialized, .enabled(if: KernelRig.supported, "needs root and XDP"))
struct RandomizedTests {
    static let count = 100_000

    @Test func kernelAgreesWithTheReferenceModel() throws {
        let seed = UInt64(ProcessInfoLite.environment("BATON_SEED") ?? "") ?? 0xBA70_2026
        var g = SeededGenerator(seed: seed)
        let rig = try KernelRig()
        defer { rig.teardown() }
        var stats = [UInt32: Int]()
        var disagreements = 0
        try rig.run { dp in
            var model = ReferenceModel()
            let world = RandomWorld(redirect: rig.redirectIfindex)
            for t in world.takeovers { try dp.setTakeover(t); model.addTakeover(t) }
            for r in world.rules { try dp.setRule(r); try model.addRule(r) }
            for e in world.rtpStreams { try dp.addRTPStream(e); model.addRTPStream(e) }
            for i in 0..<Self.count {
                if i % 1000 == 0 {
                    // Keep the fragment cache far from LRU eviction, which the model does not copy.
                    try dp.clearFragments()
                    model.fragments.removeAll()
                }
                var frame = world.frame(using: &g)
                if Bool.random(using: &g) { frame = FrameMutator.mutate(frame, using: &g) }
                guard frame.count >= 14 else { continue }
                let want = model.expect(frame)
                let got = try dp.runCounting(frame, expectedHit: want.hit)
                stats[got.verdict, default: 0] += 1
                var same = got.verdict == want.verdict && got.reasons == want.reasons
                if same, let out = want.output, got.verdict != Fixture.DROP {
                    same = sameFrame(got.output, out, maskFlowLabelAt: world.outerIPv6Offset(of: got.output))
                }
                if !same {
                    disagreements += 1
                    if disagreements <= 10 {
                        Issue.record("seed \(seed) packet \(i): kernel \(got.verdict) \(got.reasons), model \(want)\n  frame \(hex(frame))\n  out   \(hex(got.output))\n  want  \(want.output.map(hex) ?? "-")")
                    }
                }
            }
            // RTP continuity was exercised, and the two kept the same state.
            var rewritten: UInt64 = 0
            for e in world.rtpStreams {
                let kernel = try dp.rtpStream(e), mine = model.rtpStreams[.init(address: e.address.bytes16, port: e.port)]
                #expect(kernel?.packets == mine?.packets && kernel?.rebases == mine?.rebases && kernel?.lastSequence == mine?.lastSeq,
                        "stream \(e): kernel \(String(describing: kernel)), model \(String(describing: mine))")
                rewritten += kernel?.packets ?? 0
            }
            #expect(rewritten > 100, "RTP packets rewritten: \(rewritten)")
        }
        #expect(disagreements == 0, "\(disagreements) of \(Self.count) packets disagree (seed \(seed))")
        // The generator must exercise every verdict, or the agreement means little.
        for v in [Fixture.PASS, Fixture.DROP, Fixture.TX, Fixture.REDIRECT] {
            #expect((stats[v] ?? 0) > 1000, "verdict \(v) seen \(stats[v] ?? 0) times")
        }
    }
}

/// A small world where random frames often hit: two takeovers per family,
/// rules of every kind and action, few addresses, ports and fragment ids.
struct RandomWorld {
    var takeovers: [Takeover] = []
    var rules: [SessionRule] = []
    /// The anchors (address and port toward the remote) of relays with RTP continuity.
    var rtpStreams: [Endpoint] {
        Array(Set(rules.compactMap { r in r.forward.rewrite.flatMap { $0.rtp ? Endpoint(address: $0.source, port: $0.sourcePort) : nil } }))
    }
    let sources: [[IPAddress]]
    let destinations: [[IPAddress]]
    let ports: [UInt16] = [53, 80, 443, 5060, 40000, 40001]

    init(redirect: UInt32) {
        sources = [[World.ip(.v4, .cn), World.ip(.v4, .cn2), IPAddress("198.51.100.7")!],
                   [World.ip(.v6, .cn), World.ip(.v6, .cn2), IPAddress("2001:db8:1::7")!]]
        // Taken over (two), rules without a takeover, nothing at all.
        destinations = [[World.ip(.v4, .tn), IPAddress("192.0.2.5")!, IPAddress("192.0.2.6")!, World.ip(.v4, .other)],
                        [World.ip(.v6, .tn), IPAddress("2001:db8::5")!, IPAddress("2001:db8::6")!, World.ip(.v6, .other)]]
        var mac: UInt8 = 0x10
        func nextMAC() -> MACAddress { mac += 1; return MACAddress(bytes: [2, 0, 0, 0, 7, mac])! }
        for (fi, family) in [IPAddress.Family.v4, .v6].enumerated() {
            let sa = World.ip(family, .sa)
            takeovers.append(World.takeover(family))
            takeovers.append(Takeover(address: destinations[fi][1],
                                      defaultForward: .encap(to: World.ip(family, .temp), from: sa, nextHop: World.tnMAC, sourceMAC: World.saMAC),
                                      agentMAC: World.saMAC, router: true))
            let actions: [Forwarding] = [
                .l2(to: nextMAC(), from: World.saMAC),
                .l2(to: nextMAC(), from: World.saMAC, ifindex: redirect),
                .encap(to: World.ip(family, .target), from: sa, nextHop: nextMAC(), sourceMAC: World.saMAC),
                .pass, .drop,
                .relay(.init(source: sa, sourcePort: 30000, destination: World.ip(family, .target), destinationPort: 6000),
                       nextHop: nextMAC(), sourceMAC: World.saMAC),
                // RTP continuity (its stream in baton_rtp: rtpStreams).
                .relay(.init(source: sa, sourcePort: 30002, destination: World.ip(family, .cn), destinationPort: 40000, rtp: true),
                       nextHop: nextMAC(), sourceMAC: World.saMAC),
                .drop(until: .max), .drop(until: 1),
            ]
            var ai = 0
            for dst in destinations[fi].prefix(3) {
                for proto in [IPProtocol.tcp, .udp, family == .v4 ? .icmp : .icmpv6] {
                    let icmp = proto == .icmp || proto == .icmpv6
                    let matches = [
                        SessionMatch(proto: proto, source: sources[fi][0], sourcePort: ports[4], destination: dst, destinationPort: icmp ? nil : ports[3]),
                        SessionMatch(proto: proto, source: sources[fi][1], sourcePort: nil, destination: dst, destinationPort: icmp ? nil : ports[3]),
                        SessionMatch(proto: proto, source: nil, sourcePort: nil, destination: dst, destinationPort: icmp ? nil : ports[1]),
                        SessionMatch(proto: proto, source: nil, sourcePort: nil, destination: dst, destinationPort: nil),
                    ]
                    // Leave some combinations without an any-peer rule so defaults happen.
                    for (mi, m) in matches.enumerated() where !(mi == 3 && proto == .tcp) {
                        // A relay rewrites ports: the control plane refuses it for ICMP.
                        let a = actions[ai % actions.count]
                        rules.append(SessionRule(match: m, forward: icmp && a.action == .relay ? .drop : a))
                        ai += 1
                    }
                }
            }
        }
    }

    func frame(using g: inout SeededGenerator) -> [UInt8] {
        let fi = Int.random(in: 0...1, using: &g)
        let family: IPAddress.Family = fi == 0 ? .v4 : .v6
        let vlans: [VLANTag] = (0..<[0, 0, 0, 1, 2, 3].randomElement(using: &g)!).map { _ in
            VLANTag(vid: UInt16.random(in: 1...4094, using: &g), tpid: Bool.random(using: &g) ? EtherType.vlan : EtherType.qinq)
        }
        let eth = EthernetHeader(dst: World.saMAC, src: World.cnMAC, vlans: vlans)
        let src = sources[fi].randomElement(using: &g)!
        let dst = destinations[fi].randomElement(using: &g)!
        switch Int.random(in: 0..<20, using: &g) {
        case 0:
            let target = destinations[0].randomElement(using: &g)!
            return (Bool.random(using: &g)
                    ? Frame.arpRequest(senderMAC: World.cnMAC, senderIP: sources[0][0], targetIP: target, vlans: vlans)
                    : Frame.gratuitousARP(mac: World.cnMAC, ip: target, vlans: vlans)).bytes
        case 1:
            let target = destinations[1].randomElement(using: &g)!
            let from = Bool.random(using: &g) ? sources[1][0] : IPAddress("::")!
            return Frame.neighborSolicitation(sourceMAC: World.cnMAC, source: from, target: target,
                                              to: Bool.random(using: &g) ? .solicitedNode : .unicast(World.saMAC),
                                              includeSourceLinkLayer: Bool.random(using: &g), vlans: vlans).bytes
        default:
            break
        }
        let sport = ports.randomElement(using: &g)!, dport = ports.randomElement(using: &g)!
        let payload = [UInt8](repeating: UInt8.random(in: 0...255, using: &g), count: Int.random(in: 0...300, using: &g))
        let transport: Transport
        switch Int.random(in: 0..<5, using: &g) {
        case 0: transport = .tcp(TCPSegment(sport: sport, dport: dport, flags: Bool.random(using: &g) ? [.ack] : [.fin, .ack], payload: payload))
        case 1, 2: transport = .udp(UDPDatagram(sport: sport, dport: dport, payload: payload))
        case 3:
            let echo: UInt8 = family == .v4 ? [8, 0, 3].randomElement(using: &g)! : [128, 129, 1].randomElement(using: &g)!
            let m = ICMPMessage(type: echo, identifier: sport, sequence: 1, payload: payload)
            transport = family == .v4 ? .icmp(m) : .icmpv6(m)
        default: transport = .raw(protocol: [47, 50, 132].randomElement(using: &g)!, bytes: payload)
        }
        let datagram: IPDatagram
        if family == .v4 {
            let opts: [UInt8] = Int.random(in: 0..<4, using: &g) == 0 ? [UInt8](repeating: 1, count: 4 * Int.random(in: 1...10, using: &g)) : []
            datagram = IPDatagram(ipv4: IPv4Header(src: src, dst: dst, identification: UInt16.random(in: 1...3, using: &g), options: opts),
                                  transport: transport)
        } else {
            let pool: [IPv6ExtensionHeader] = [.hopByHop(), .destinationOptions(), .routing(segmentsLeft: 0, addresses: []), .authentication()]
            let n = [0, 0, 0, 1, 2, 6, 7].randomElement(using: &g)!
            datagram = IPDatagram(ipv6: IPv6Header(src: src, dst: dst, extensions: (0..<n).map { _ in pool.randomElement(using: &g)! }),
                                  transport: transport)
        }
        // Sometimes send one fragment of it; ids come from a small pool so later
        // fragments sometimes follow a first fragment seen before.
        if Int.random(in: 0..<6, using: &g) == 0 {
            let parts = datagram.fragments(sizes: [[8, 16, 64, 128].randomElement(using: &g)!], identification: UInt32.random(in: 1...3, using: &g))
            return Frame(ethernet: eth, datagram: parts.randomElement(using: &g)!).bytes
        }
        return Frame(ethernet: eth, datagram: datagram).bytes
    }

    /// Where an outer IPv6 header starts in an encapsulated output, to mask its flow label.
    func outerIPv6Offset(of frame: [UInt8]) -> Int? {
        guard let p = try? ParsedFrame(frame), let ip = p.ip, ip.version == 6, ip.inner != nil else { return nil }
        return p.networkOffset
    }
}

/// getenv without Foundation.
enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }
}
