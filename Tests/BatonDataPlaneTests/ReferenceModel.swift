import BatonDataPlane
import BatonModel

/// A model of baton_steer written from docs/dataplane.md, in plain Swift on
/// raw bytes, sharing no code with the program or with BatonPacket's parser.
/// Given the same takeovers, rules and devices it predicts the verdict, the
/// output frame and the statistics reasons of every packet. The fixture table
/// and the randomized test hold the kernel to it.
struct ReferenceModel {
    struct RuleKey: Hashable {
        var src: [UInt8]
        var dst: [UInt8]
        var sport: UInt16
        var dport: UInt16
        var proto: UInt8
        var kind: MatchKind
    }

    struct FragKey: Hashable {
        var src: [UInt8], dst: [UInt8], id: UInt32, proto: UInt8
    }

    /// What the program is expected to do with one frame.
    struct Expectation: Equatable, CustomStringConvertible {
        var verdict: UInt32          // XDP_* as test runs report it
        var output: [UInt8]?         // nil: not checked (drops)
        var reasons: [StatReason]    // statistics slots the packet adds to, in order
        var hit: Hit?                // which counter was charged

        var description: String {
            "verdict \(verdict) reasons \(reasons) hit \(hit.map { "\($0)" } ?? "-")"
        }
    }

    enum Hit: Hashable, CustomStringConvertible {
        case rule(RuleKey)
        case takeover([UInt8])
        var description: String {
            switch self {
            case .rule(let k): return "rule \(k.kind) proto \(k.proto) \(k.sport)->\(k.dport)"
            case .takeover(let a): return "takeover \(IPAddress(bytes16: a))"
            }
        }
    }

    static let XDP_ABORTED: UInt32 = 0, XDP_DROP: UInt32 = 1, XDP_PASS: UInt32 = 2, XDP_TX: UInt32 = 3, XDP_REDIRECT: UInt32 = 4

    var takeovers: [[UInt8]: Takeover] = [:]
    var rules: [RuleKey: Forwarding] = [:]
    var devices: Set<UInt32> = []
    var fragments: [FragKey: (sport: UInt16, dport: UInt16, proto: UInt8)] = [:]
    /// The interface test runs report as ingress (loopback of the namespace).
    var ingressIfindex: UInt32 = 1
    /// RTP continuity's streams (baton_rtp), by the relay's new source address and port.
    struct RTPKey: Hashable { var address: [UInt8]; var port: UInt16 }
    struct RTPState {
        var started = false
        var ssrcOut: UInt32 = 0, ssrcIn: UInt32 = 0
        var seqOff: UInt16 = 0, lastSeq: UInt16 = 0
        var tsOff: UInt32 = 0, lastTs: UInt32 = 0, tsStep: UInt32 = 0
        var rebases: UInt32 = 0, packets: UInt64 = 0
    }
    var rtpStreams: [RTPKey: RTPState] = [:]

    mutating func addRTPStream(_ anchor: Endpoint) {
        rtpStreams[RTPKey(address: anchor.address.bytes16, port: anchor.port)] = RTPState()
    }

    /// The kernel's CLOCK_MONOTONIC as lockouts see it: any time after boot does, for tables
    /// whose lockouts end at 1 (long over) or at UInt64.max (never).
    var now: UInt64 = 2

    private func expired(_ f: Forwarding) -> Bool {
        f.action == .drop && (f.expires.map { $0 != 0 && now >= $0 } ?? false)
    }

    mutating func addTakeover(_ t: Takeover) {
        takeovers[t.address.bytes16] = t
        noteDevice(t.defaultForward)
    }

    mutating func addRule(_ r: SessionRule) throws {
        let m = r.match
        let kind = try m.kind()
        rules[RuleKey(src: m.source?.bytes16 ?? zero16, dst: m.destination.bytes16,
                      sport: m.sourcePort ?? 0, dport: m.destinationPort ?? 0,
                      proto: m.proto.rawValue, kind: kind)] = r.forward
        noteDevice(r.forward)
    }

    private mutating func noteDevice(_ f: Forwarding) {
        if f.sends && f.ifindex != 0 { devices.insert(f.ifindex) }
    }

    // MARK: the model

    mutating func expect(_ frame: [UInt8]) -> Expectation {
        let b = Bytes(frame)
        guard b.count >= 14 else { return pass(.malformedPassed) }
        var type = b.u16(12)
        var l3 = 14
        for _ in 0..<2 where type == 0x8100 || type == 0x88a8 {
            guard b.count >= l3 + 4 else { return pass(.malformedPassed) }
            type = b.u16(l3 + 2)
            l3 += 4
        }
        switch type {
        case 0x0800: return ipv4(b, l3)
        case 0x86dd: return ipv6(b, l3)
        case 0x0806: return arp(b, l3)
        default: return pass(.notIP)
        }
    }

    private func pass(_ r: StatReason) -> Expectation { Expectation(verdict: Self.XDP_PASS, output: nil, reasons: [r], hit: nil) }
    private func drop(_ r: StatReason) -> Expectation { Expectation(verdict: Self.XDP_DROP, output: nil, reasons: [r], hit: nil) }

    /// Parse results, as the spec describes them.
    private struct Flow {
        var src: [UInt8] = [], dst: [UInt8] = []
        var sport: UInt16 = 0, dport: UInt16 = 0, proto: UInt8 = 0
        var l3 = 0, l3end = 0
        /// Where the L4 header starts (none for later fragments).
        var l4 = 0
        var v6 = false
        var frag = 0 // 0 none, 1 first, 2 later
        var fragID: UInt32 = 0, fragProto: UInt8 = 0
        var icmpError = false
        /// A source route: IPv4 options (not read), an IPv6 routing header.
        var routed = false
    }

    private mutating func ipv4(_ b: Bytes, _ l3: Int) -> Expectation {
        guard b.count >= l3 + 20, b[l3] >> 4 == 4, b[l3] & 0xf >= 5 else { return pass(.malformedPassed) }
        var f = Flow()
        f.l3 = l3
        f.dst = mapped(b.slice(l3 + 16, 4))
        guard mayMatch(f.dst) else { return pass(.notTakenOver) }
        let hlen = Int(b[l3] & 0xf) * 4
        f.routed = hlen > 20
        let tot = Int(b.u16(l3 + 2))
        guard tot >= hlen, l3 + tot <= b.count else { return malformed(f) }
        f.l3end = l3 + tot
        f.proto = b[l3 + 9]
        f.src = mapped(b.slice(l3 + 12, 4))
        let fragOff = b.u16(l3 + 6)
        f.fragID = UInt32(b.u16(l3 + 4))
        f.fragProto = f.proto
        if fragOff & 0x1fff != 0 {
            f.frag = 2
        } else {
            if fragOff & 0x2000 != 0 { f.frag = 1 }
            guard l4(b, l3 + hlen, &f) else { return malformed(f) }
        }
        return steer(b, f)
    }

    /// Could a takeover or a rule match this destination? (The program's
    /// filter is an optimisation with the same answer: it is not modelled.)
    private func mayMatch(_ dst: [UInt8]) -> Bool {
        takeovers[dst] != nil || rules.keys.contains { $0.dst == dst }
    }

    /// Unreadable after the destination: dropped if taken over, else the stack's.
    private func malformed(_ f: Flow) -> Expectation {
        takeovers[f.dst] != nil ? drop(.malformedDropped) : pass(.notTakenOver)
    }

    private mutating func ipv6(_ b: Bytes, _ l3: Int) -> Expectation {
        guard b.count >= l3 + 40, b[l3] >> 4 == 6 else { return pass(.malformedPassed) }
        let plen = Int(b.u16(l3 + 4))
        if b[l3 + 6] == 58, b.count >= l3 + 64, b[l3 + 40] == 135, b[l3 + 41] == 0, b[l3 + 7] == 255, plen >= 24, l3 + 40 + plen <= b.count,
           let t = takeovers[b.slice(l3 + 48, 16)], let agent = t.agentMAC {
            return neighborAdvert(b, l3, t, agent)
        }
        var f = Flow()
        f.l3 = l3
        f.v6 = true
        f.dst = b.slice(l3 + 24, 16)
        if isMapped(f.dst) || !mayMatch(f.dst) { return pass(.notTakenOver) }
        guard plen != 0, l3 + 40 + plen <= b.count else { return malformed(f) }
        f.l3end = l3 + 40 + plen
        f.src = b.slice(l3 + 8, 16)
        var nh = b[l3 + 6]
        var off = l3 + 40
        for _ in 0...6 {
            switch nh {
            case 0, 43, 60, 51:
                guard off + 2 <= b.count else { return malformed(f) }
                let len = nh == 51 ? (Int(b[off + 1]) + 2) * 4 : (Int(b[off + 1]) + 1) * 8
                if nh == 43 { f.routed = true }
                nh = b[off]
                off += len
                guard off <= f.l3end else { return malformed(f) }
            case 44:
                guard off + 8 <= b.count, off + 8 <= f.l3end else { return malformed(f) }
                let fo = b.u16(off + 2)
                nh = b[off]
                f.fragID = b.u32(off + 4)
                f.fragProto = nh
                off += 8
                if fo & 0xfff8 != 0 {
                    f.frag = 2
                    return steer(b, f)
                }
                if fo & 1 != 0 { f.frag = 1 }
            default:
                f.proto = nh
                guard l4(b, off, &f) else { return malformed(f) }
                return steer(b, f)
            }
        }
        return malformed(f)
    }

    /// Ports of the L4 header at `off`; false when it does not fit the datagram.
    private func l4(_ b: Bytes, _ off: Int, _ f: inout Flow) -> Bool {
        f.l4 = off
        switch f.proto {
        case 6:
            guard off + 20 <= f.l3end, b[off + 12] >> 4 >= 5 else { return false }
            f.sport = b.u16(off); f.dport = b.u16(off + 2)
        case 17:
            guard off + 8 <= f.l3end else { return false }
            f.sport = b.u16(off); f.dport = b.u16(off + 2)
        case 1, 58:
            guard off + 8 <= f.l3end else { return false }
            let type = b[off]
            let echo: Set<UInt8> = f.proto == 1 ? [0, 8] : [128, 129]
            let errors: Set<UInt8> = f.proto == 1 ? [3, 11, 12] : [1, 2, 3, 4]
            if echo.contains(type) { f.sport = b.u16(off + 4) }
            // A fragmented error keeps its own flow, so that its later fragments can follow.
            if errors.contains(type), f.frag == 0 { quoted(b, off + 8, &f) }
        default:
            break
        }
        return true
    }

    /// An ICMP error quoting a datagram the destination sent (its header at `off`): the flow
    /// becomes that datagram's session as the correspondent sends it. Anything else about
    /// the quote leaves the flow as it was.
    private func quoted(_ b: Bytes, _ off: Int, _ f: inout Flow) {
        if !f.v6 {
            guard off + 20 <= f.l3end, b[off] >> 4 == 4, b[off] & 0xf >= 5 else { return }
            let ihl = Int(b[off] & 0xf) * 4
            let proto = b[off + 9]
            guard mapped(b.slice(off + 12, 4)) == f.dst, proto == 6 || proto == 17, b.u16(off + 6) & 0x1fff == 0,
                  off + ihl + 4 <= f.l3end else { return }
            f.src = mapped(b.slice(off + 16, 4))
            f.proto = proto
            f.sport = b.u16(off + ihl + 2)
            f.dport = b.u16(off + ihl)
            f.icmpError = true
        } else {
            guard off + 40 <= f.l3end, b[off] >> 4 == 6 else { return }
            let proto = b[off + 6]
            guard b.slice(off + 8, 16) == f.dst, proto == 6 || proto == 17, off + 44 <= f.l3end else { return }
            f.src = b.slice(off + 24, 16)
            f.proto = proto
            f.sport = b.u16(off + 42)
            f.dport = b.u16(off + 40)
            f.icmpError = true
        }
    }

    private mutating func steer(_ b: Bytes, _ flow: Flow) -> Expectation {
        var f = flow
        let fk = FragKey(src: f.src, dst: f.dst, id: f.fragID, proto: f.fragProto)
        if f.frag == 2 {
            guard let p = fragments[fk] else {
                return takeovers[f.dst] != nil ? drop(.fragmentUnknown) : pass(.notTakenOver)
            }
            (f.sport, f.dport, f.proto) = (p.sport, p.dport, p.proto)
        }
        let candidates: [RuleKey] = [
            RuleKey(src: f.src, dst: f.dst, sport: f.sport, dport: f.dport, proto: f.proto, kind: .exact),
            RuleKey(src: f.src, dst: f.dst, sport: 0, dport: f.dport, proto: f.proto, kind: .anySourcePort),
            RuleKey(src: zero16, dst: f.dst, sport: 0, dport: f.dport, proto: f.proto, kind: .anySource),
            RuleKey(src: zero16, dst: f.dst, sport: 0, dport: 0, proto: f.proto, kind: .anyPeer),
        ]
        var reasons: [StatReason]
        let fwd: Forwarding
        let hit: Hit
        // The most specific rule decides; a lockout past its time is as if absent (and the
        // next kind is not tried: the takeover's default, or the stack).
        if let k = candidates.first(where: { rules[$0] != nil }), !expired(rules[k]!) {
            fwd = rules[k]!
            hit = .rule(k)
            reasons = [.ruleHit]
        } else if let t = takeovers[f.dst] {
            if f.proto == 4 || f.proto == 41 { return drop(.loopDropped) }
            fwd = t.defaultForward
            hit = .takeover(f.dst)
            reasons = [.defaultHit]
        } else {
            return pass(.notTakenOver)
        }
        // Only a datagram that is ours leaves its first fragment's ports behind.
        if f.frag == 1 { fragments[fk] = (f.sport, f.dport, f.proto) }
        var out = b.all
        switch fwd.action {
        case .pass:
            return Expectation(verdict: Self.XDP_PASS, output: out, reasons: reasons, hit: hit)
        case .drop:
            return Expectation(verdict: Self.XDP_DROP, output: nil, reasons: reasons, hit: hit)
        case .l2, .encap, .relay:
            if fwd.destinationMAC == fwd.sourceMAC {
                reasons.append(.loopDropped)
                return Expectation(verdict: Self.XDP_DROP, output: nil, reasons: reasons, hit: hit)
            }
        }
        switch fwd.action {
        case .pass, .drop, .l2:
            break
        case .relay:
            guard let relayed = relay(out, f, fwd.rewrite) else {
                reasons.append(.relayDropped)
                return Expectation(verdict: Self.XDP_DROP, output: nil, reasons: reasons, hit: hit)
            }
            out = relayed
        case .encap:
            guard let os = fwd.outerSource, let od = fwd.outerDestination,
                  os.family == (f.v6 ? .v6 : .v4), od.family == os.family else {
                reasons.append(.encapFailed)
                return Expectation(verdict: Self.XDP_DROP, output: nil, reasons: reasons, hit: hit)
            }
            if let mtu = fwd.mtu, f.l3end - f.l3 + (f.v6 ? 40 : 20) > Int(mtu) {
                reasons.append(.tooBig)
                // IPv4 without DF (XDP cannot fragment) and ICMP errors: dropped.
                if f.icmpError || (!f.v6 && b[f.l3 + 6] & 0x40 == 0) {
                    return Expectation(verdict: Self.XDP_DROP, output: nil, reasons: reasons, hit: hit)
                }
                return Expectation(verdict: Self.XDP_TX, output: tooBigAnswer(b, f, from: os, mtu: mtu), reasons: reasons, hit: hit)
            }
            out = Array(out[0..<f.l3]) + outerHeader(b, f, os, od) + Array(out[f.l3...])
        }
        out.replaceSubrange(0..<6, with: fwd.destinationMAC.bytes)
        out.replaceSubrange(6..<12, with: fwd.sourceMAC.bytes)
        if fwd.ifindex == 0 || fwd.ifindex == ingressIfindex {
            return Expectation(verdict: Self.XDP_TX, output: out, reasons: reasons, hit: hit)
        }
        guard devices.contains(fwd.ifindex) else {
            reasons.append(.redirectFailed)
            return Expectation(verdict: Self.XDP_DROP, output: nil, reasons: reasons, hit: hit)
        }
        return Expectation(verdict: Self.XDP_REDIRECT, output: out, reasons: reasons, hit: hit)
    }

    /// The relay rewrite as docs/dataplane.md says it: new addresses and ports, TTL / hop limit
    /// one less, checksums updated by RFC 1624's equation 3, HC' = ~(~HC + ~m + m'), written
    /// out here on its own. Updated, not recomputed: a router passes a wrong checksum on as
    /// wrong (the random frames include corrupted ones). The fixture table checks the right
    /// ones against sums computed afresh by BatonPacket.
    /// The RTP header at `off` rewritten onto its stream; the old and new bytes of its
    /// sequence number, timestamp and SSRC (for the checksum), or nil when left alone.
    private mutating func keepOneStream(_ b: inout [UInt8], at off: Int, end: Int, _ r: Forwarding.Rewrite) -> ([UInt8], [UInt8])? {
        guard off + 12 <= end, b[off] >> 6 == 2, !(64...95).contains(b[off + 1] & 0x7f) else { return nil }
        let key = RTPKey(address: r.source.bytes16, port: r.sourcePort)
        guard var s = rtpStreams[key] else { return nil }
        let h = Bytes(b)
        let seqIn = h.u16(off + 2), tsIn = h.u32(off + 4), ssrcIn = h.u32(off + 8)
        if !s.started {
            s.started = true
            s.ssrcOut = ssrcIn; s.ssrcIn = ssrcIn
            s.seqOff = 0; s.tsOff = 0
            s.lastSeq = seqIn &- 1; s.lastTs = tsIn
        } else if ssrcIn != s.ssrcIn {
            s.ssrcIn = ssrcIn
            s.seqOff = s.lastSeq &+ 1 &- seqIn
            s.tsOff = s.lastTs &+ (s.tsStep != 0 ? s.tsStep : 160) &- tsIn
            s.rebases &+= 1
        }
        let seqOut = seqIn &+ s.seqOff, tsOut = tsIn &+ s.tsOff
        if Int16(bitPattern: seqOut &- s.lastSeq) > 0 {
            if seqOut &- s.lastSeq == 1, Int32(bitPattern: tsOut &- s.lastTs) > 0 { s.tsStep = tsOut &- s.lastTs }
            s.lastSeq = seqOut
            s.lastTs = tsOut
        }
        s.packets += 1
        rtpStreams[key] = s
        let old = Array(b[off + 2..<off + 12])
        let new = be16(seqOut) + be32(tsOut) + be32(s.ssrcOut)
        b.replaceSubrange(off + 2..<off + 12, with: new)
        return (old, new)
    }

    private mutating func relay(_ frame: [UInt8], _ f: Flow, _ rewrite: Forwarding.Rewrite?) -> [UInt8]? {
        guard let r = rewrite, !f.icmpError, !f.routed, f.proto == 6 || f.proto == 17 else { return nil }
        guard f.frag == 2 || f.l4 <= 1024 else { return nil } // L4_MAX_OFF
        var b = frame
        let v4 = !f.v6
        guard (r.source.family == .v4) == v4, (r.destination.family == .v4) == v4 else { return nil }
        let ttlAt = f.l3 + (v4 ? 8 : 7)
        guard b[ttlAt] > 1 else { return nil }
        func words(_ x: [UInt8]) -> [UInt16] { stride(from: 0, to: x.count, by: 2).map { UInt16(x[$0]) << 8 | UInt16(x[$0 + 1]) } }
        func updated(_ check: UInt16, from old: [UInt8], to new: [UInt8]) -> UInt16 {
            var sum = UInt32(~check)
            for (m, n) in zip(words(old), words(new)) { sum += UInt32(~m) + UInt32(n) }
            while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
            return ~UInt16(sum)
        }
        func put(_ v: UInt16, at i: Int) { b[i] = UInt8(v >> 8); b[i + 1] = UInt8(v & 0xff) }
        let (srcAt, dstAt, size) = v4 ? (f.l3 + 12, f.l3 + 16, 4) : (f.l3 + 8, f.l3 + 24, 16)
        let oldAddresses = Array(b[srcAt..<srcAt + size]) + Array(b[dstAt..<dstAt + size])
        let newAddresses = r.source.wireBytes + r.destination.wireBytes
        if v4 {
            let oldTTL = [b[ttlAt], b[ttlAt + 1]], newTTL = [b[ttlAt] - 1, b[ttlAt + 1]]
            put(updated(Bytes(b).u16(f.l3 + 10), from: oldAddresses + oldTTL, to: newAddresses + newTTL), at: f.l3 + 10)
        }
        b[ttlAt] -= 1
        b.replaceSubrange(srcAt..<srcAt + size, with: r.source.wireBytes)
        b.replaceSubrange(dstAt..<dstAt + size, with: r.destination.wireBytes)
        guard f.frag != 2 else { return b }
        var oldPorts = Array(b[f.l4..<f.l4 + 4]), newPorts = be16(r.sourcePort) + be16(r.destinationPort)
        b.replaceSubrange(f.l4..<f.l4 + 4, with: newPorts)
        // RTP continuity, as docs/anchors.md says it (bpf/include/rtp.h), written out here on
        // its own: its changed words join the checksum update.
        if r.rtp, f.proto == 17, let (old, new) = keepOneStream(&b, at: f.l4 + 8, end: f.l3end, r) {
            oldPorts += old
            newPorts += new
        }
        let checkAt = f.l4 + (f.proto == 17 ? 6 : 16)
        let old = Bytes(b).u16(checkAt)
        if f.proto == 17 && old == 0 { return b } // none (IPv4), or an invalid 0 (IPv6): left as it came
        var new = updated(old, from: oldAddresses + oldPorts, to: newAddresses + newPorts)
        if f.proto == 17 && new == 0 { new = 0xffff }
        put(new, at: checkAt)
        return b
    }

    /// RFC 1191 Fragmentation Needed / RFC 4443 Packet Too Big for the packet's sender, from
    /// `src`, quoting the first 68 / 96 bytes of its datagram, back the way it came.
    private func tooBigAnswer(_ b: Bytes, _ f: Flow, from src: IPAddress, mtu: UInt16) -> [UInt8] {
        var l2 = b.slice(0, f.l3)
        l2.replaceSubrange(0..<12, with: b.slice(6, 6) + b.slice(0, 6))
        if !f.v6 {
            let quote = b.slice(f.l3, 68)
            var icmp: [UInt8] = [3, 4, 0, 0, 0, 0] + be16(mtu - 20) + quote
            let c = referenceChecksum(icmp)
            icmp[2] = UInt8(c >> 8); icmp[3] = UInt8(c & 0xff)
            var ip: [UInt8] = [0x45, 0xc0] + be16(UInt16(20 + icmp.count)) + [0, 0, 0, 0, 64, 1, 0, 0]
            ip += src.wireBytes + b.slice(f.l3 + 12, 4)
            let h = referenceChecksum(ip)
            ip[10] = UInt8(h >> 8); ip[11] = UInt8(h & 0xff)
            return l2 + ip + icmp
        }
        let quote = b.slice(f.l3, 96)
        let dst = b.slice(f.l3 + 8, 16)
        var icmp: [UInt8] = [2, 0, 0, 0] + be32(UInt32(mtu) - 40) + quote
        let pseudo = src.wireBytes + dst + be32(UInt32(icmp.count)) + [0, 0, 0, 58]
        let c = referenceChecksum(pseudo + icmp)
        icmp[2] = UInt8(c >> 8); icmp[3] = UInt8(c & 0xff)
        return l2 + be32(0x6000_0000) + be16(UInt16(icmp.count)) + [58, 64] + src.wireBytes + dst + icmp
    }

    /// RFC 2003 / RFC 2473 outer header. The IPv6 flow label is the
    /// program's flow hash: tests compare frames with it masked.
    private func outerHeader(_ b: Bytes, _ f: Flow, _ src: IPAddress, _ dst: IPAddress) -> [UInt8] {
        if !f.v6 {
            let innerLen = Int(b.u16(f.l3 + 2))
            var h: [UInt8] = [0x45, b[f.l3 + 1]]
            h += be16(UInt16(innerLen + 20))
            h += [0, 0, b[f.l3 + 6] & 0x40, 0, 64, 4, 0, 0]
            h += src.wireBytes + dst.wireBytes
            let c = referenceChecksum(h)
            h[10] = UInt8(c >> 8); h[11] = UInt8(c & 0xff)
            return h
        }
        let tc = (b.u32(f.l3) >> 20) & 0xff
        var h = be32(0x6000_0000 | tc << 20)
        h += be16(b.u16(f.l3 + 4) + 40)
        h += [41, 64]
        h += src.wireBytes + dst.wireBytes
        return h
    }

    private func arp(_ b: Bytes, _ l3: Int) -> Expectation {
        guard b.count >= l3 + 28 else { return pass(.malformedPassed) }
        guard b.u16(l3) == 1, b.u16(l3 + 2) == 0x0800, b[l3 + 4] == 6, b[l3 + 5] == 4, b.u16(l3 + 6) == 1 else {
            return pass(.notTakenOver)
        }
        let sha = b.slice(l3 + 8, 6), spa = b.slice(l3 + 14, 4), tpa = b.slice(l3 + 24, 4)
        guard spa != tpa, let t = takeovers[mapped(tpa)], let agent = t.agentMAC else { return pass(.notTakenOver) }
        var out = b.all
        out.replaceSubrange(0..<6, with: sha)
        out.replaceSubrange(6..<12, with: agent.bytes)
        out.replaceSubrange((l3 + 6)..<(l3 + 8), with: [0, 2])
        out.replaceSubrange((l3 + 8)..<(l3 + 14), with: agent.bytes)
        out.replaceSubrange((l3 + 14)..<(l3 + 18), with: tpa)
        out.replaceSubrange((l3 + 18)..<(l3 + 24), with: sha)
        out.replaceSubrange((l3 + 24)..<(l3 + 28), with: spa)
        return Expectation(verdict: Self.XDP_TX, output: out, reasons: [.arpReply], hit: nil)
    }

    private func neighborAdvert(_ b: Bytes, _ l3: Int, _ t: Takeover, _ agent: MACAddress) -> Expectation {
        let peer = b.slice(l3 + 8, 16)
        let target = b.slice(l3 + 48, 16)
        let dad = peer.allSatisfy { $0 == 0 }
        let dst: [UInt8] = dad ? [0xff, 0x02] + [UInt8](repeating: 0, count: 13) + [1] : peer
        var out = Array(b.all[0..<l3])
        out.replaceSubrange(0..<6, with: dad ? [0x33, 0x33, 0, 0, 0, 1] : b.slice(6, 6))
        out.replaceSubrange(6..<12, with: agent.bytes)
        var flags: UInt32 = 0x2000_0000
        if !dad { flags |= 0x4000_0000 }
        if t.router { flags |= 0x8000_0000 }
        var icmp: [UInt8] = [136, 0, 0, 0] + be32(flags) + target + [2, 1] + agent.bytes
        let pseudo = target + dst + be32(32) + [0, 0, 0, 58]
        let c = referenceChecksum(pseudo + icmp)
        icmp[2] = UInt8(c >> 8); icmp[3] = UInt8(c & 0xff)
        out += be32(0x6000_0000) + be16(32) + [58, 255] + target + dst + icmp
        return Expectation(verdict: Self.XDP_TX, output: out, reasons: [.neighborAdvert], hit: nil)
    }
}

// MARK: small byte helpers, private to the model

let zero16 = [UInt8](repeating: 0, count: 16)

func mapped(_ v4: [UInt8]) -> [UInt8] { [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + v4 }
func isMapped(_ a: [UInt8]) -> Bool { a[0..<10].allSatisfy { $0 == 0 } && a[10] == 0xff && a[11] == 0xff }
func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

/// RFC 1071, written out again on purpose: the model shares no code.
func referenceChecksum(_ data: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var i = 0
    while i + 1 < data.count { sum += UInt32(data[i]) << 8 | UInt32(data[i + 1]); i += 2 }
    if i < data.count { sum += UInt32(data[i]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

struct Bytes {
    let all: [UInt8]
    init(_ a: [UInt8]) { all = a }
    var count: Int { all.count }
    subscript(_ i: Int) -> UInt8 { all[i] }
    func u16(_ i: Int) -> UInt16 { UInt16(all[i]) << 8 | UInt16(all[i + 1]) }
    func u32(_ i: Int) -> UInt32 { UInt32(u16(i)) << 16 | UInt32(u16(i + 2)) }
    func slice(_ i: Int, _ n: Int) -> [UInt8] { Array(all[i..<(i + n)]) }
}
