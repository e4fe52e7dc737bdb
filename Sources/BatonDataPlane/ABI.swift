import BatonModel
import CBatonABI

// Conversions between the domain types and the C structs of baton_abi.h.
// Fixed-size C arrays import as tuples; these two helpers are the only
// place that reads or writes them as bytes.

@inline(__always)
func abiStore<T>(_ bytes: [UInt8], into tuple: inout T) {
    withUnsafeMutableBytes(of: &tuple) { raw in
        precondition(raw.count == bytes.count, "ABI field is \(raw.count) bytes, got \(bytes.count)")
        raw.copyBytes(from: bytes)
    }
}

@inline(__always)
func abiBytes<T>(_ tuple: T) -> [UInt8] {
    withUnsafeBytes(of: tuple) { Array($0) }
}

extension Forwarding {
    var abi: baton_fwd {
        var f = baton_fwd()
        abiStore(destinationMAC.bytes, into: &f.dst_mac)
        abiStore(sourceMAC.bytes, into: &f.src_mac)
        f.ifindex = ifindex
        f.action = switch action {
        case .pass: UInt8(BATON_ACTION_PASS)
        case .drop: UInt8(BATON_ACTION_DROP)
        case .l2: UInt8(BATON_ACTION_L2)
        case .encap: UInt8(BATON_ACTION_ENCAP)
        case .relay: UInt8(BATON_ACTION_RELAY)
        }
        if action == .drop { f.expires = expires ?? 0 }
        if action == .relay, let r = rewrite {
            // The relay's new addresses travel in the tunnel's fields.
            abiStore(r.source.bytes16, into: &f.outer_src)
            abiStore(r.destination.bytes16, into: &f.outer_dst)
            f.relay_sport = r.sourcePort.bigEndian
            f.relay_dport = r.destinationPort.bigEndian
            f.flags = r.rtp ? UInt8(BATON_FWD_RTP) : 0
            return f
        }
        if let s = outerSource { abiStore(s.bytes16, into: &f.outer_src) }
        if let d = outerDestination { abiStore(d.bytes16, into: &f.outer_dst) }
        if action == .encap { f.mtu = mtu ?? 0 }
        return f
    }

    init(abi f: baton_fwd) {
        let action: Action = switch Int32(f.action) {
        case BATON_ACTION_PASS: .pass
        case BATON_ACTION_L2: .l2
        case BATON_ACTION_ENCAP: .encap
        case BATON_ACTION_RELAY: .relay
        default: .drop // the data plane drops unknown actions too
        }
        let os = abiBytes(f.outer_src), od = abiBytes(f.outer_dst)
        let dmac = MACAddress(bytes: abiBytes(f.dst_mac)) ?? .zero, smac = MACAddress(bytes: abiBytes(f.src_mac)) ?? .zero
        if action == .relay {
            let source = IPAddress(bytes16: os), destination = IPAddress(bytes16: od)
            self.init(action: .relay, destinationMAC: dmac, sourceMAC: smac, ifindex: f.ifindex,
                      rewrite: Rewrite(source: source, sourcePort: UInt16(bigEndian: f.relay_sport),
                                       destination: destination, destinationPort: UInt16(bigEndian: f.relay_dport),
                                       rtp: f.flags & UInt8(BATON_FWD_RTP) != 0))
            return
        }
        if action == .drop, f.expires != 0 {
            self.init(action: .drop, destinationMAC: dmac, sourceMAC: smac, ifindex: f.ifindex, expires: f.expires)
            return
        }
        self.init(action: action, destinationMAC: dmac, sourceMAC: smac, ifindex: f.ifindex,
                  outerSource: action == .encap ? IPAddress(bytes16: os) : nil,
                  outerDestination: action == .encap ? IPAddress(bytes16: od) : nil,
                  mtu: action == .encap && f.mtu != 0 ? f.mtu : nil)
    }
}

extension Takeover {
    func abi(counter: UInt32) -> baton_takeover {
        var t = baton_takeover()
        t.fwd = defaultForward.abi
        if let mac = agentMAC {
            abiStore(mac.bytes, into: &t.agent_mac)
            t.flags |= UInt8(BATON_TAKEOVER_ANSWER)
        }
        if router { t.flags |= UInt8(BATON_TAKEOVER_ROUTER) }
        t.counter = counter
        if let temp = temporaryAddress { abiStore(temp.bytes16, into: &t.temporary) }
        return t
    }

    init(address: IPAddress, abi t: baton_takeover) {
        let answers = Int32(t.flags) & BATON_TAKEOVER_ANSWER != 0
        self.init(address: address,
                  defaultForward: Forwarding(abi: t.fwd),
                  agentMAC: answers ? MACAddress(bytes: abiBytes(t.agent_mac)) : nil,
                  router: Int32(t.flags) & BATON_TAKEOVER_ROUTER != 0,
                  temporaryAddress: abiBytes(t.temporary).allSatisfy { $0 == 0 } ? nil : IPAddress(bytes16: abiBytes(t.temporary)))
    }
}

func takeoverKey(_ a: IPAddress) -> baton_takeover_key {
    var k = baton_takeover_key()
    abiStore(a.bytes16, into: &k.addr)
    return k
}

/// A rule map key: IPv4 (16 bytes) or IPv6 (40 bytes). Wildcarded fields
/// are zero and the match kind is part of the key.
protocol RuleKeyABI {
    init(_ m: SessionMatch, kind: MatchKind)
    /// Back to the match; nil for a key no valid rule produces.
    var sessionMatch: SessionMatch? { get }
    var kind: MatchKind? { get }
    var destination: IPAddress { get }
}

extension SessionMatch {
    fileprivate init?(proto p: UInt8, kind k: UInt8, source: IPAddress, sport: UInt16, destination: IPAddress, dport: UInt16) {
        guard let proto = IPProtocol(rawValue: p), let kind = MatchKind(rawValue: k) else { return nil }
        let isICMP = proto == .icmp || proto == .icmpv6
        self.init(proto: proto,
                  source: kind == .exact || kind == .anySourcePort ? source : nil,
                  sourcePort: kind == .exact ? UInt16(bigEndian: sport) : nil,
                  destination: destination,
                  destinationPort: kind == .anyPeer || isICMP ? nil : UInt16(bigEndian: dport))
    }
}

extension baton_rule4_key: RuleKeyABI {
    init(_ m: SessionMatch, kind: MatchKind) {
        self.init()
        if case .v4(let a) = m.source { src = a.bigEndian }
        if case .v4(let a) = m.destination { dst = a.bigEndian }
        sport = (m.sourcePort ?? 0).bigEndian
        dport = (m.destinationPort ?? 0).bigEndian
        proto = m.proto.rawValue
        match = kind.rawValue
    }
    var destination: IPAddress { .v4(UInt32(bigEndian: dst)) }
    var kind: MatchKind? { MatchKind(rawValue: match) }
    var sessionMatch: SessionMatch? {
        SessionMatch(proto: proto, kind: match, source: .v4(UInt32(bigEndian: src)), sport: sport,
                     destination: destination, dport: dport)
    }
}

extension baton_rule6_key: RuleKeyABI {
    init(_ m: SessionMatch, kind: MatchKind) {
        self.init()
        abiStore(m.destination.bytes16, into: &dst)
        if let s = m.source { abiStore(s.bytes16, into: &src) }
        sport = (m.sourcePort ?? 0).bigEndian
        dport = (m.destinationPort ?? 0).bigEndian
        proto = m.proto.rawValue
        match = kind.rawValue
    }
    var destination: IPAddress { IPAddress(bytes16: abiBytes(dst)) }
    var kind: MatchKind? { MatchKind(rawValue: match) }
    var sessionMatch: SessionMatch? {
        SessionMatch(proto: proto, kind: match, source: IPAddress(bytes16: abiBytes(src)), sport: sport,
                     destination: destination, dport: dport)
    }
}
