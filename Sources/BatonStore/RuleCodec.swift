import BatonModel

/// A transfer's session rules as one compact blob. The store never reads or
/// changes a single rule: rules are written once with their transfer and
/// read back all together (a transfer's, or every active one's for
/// reconcile), so one row per transfer beats one per rule by far, and
/// decoding bytes by hand beats JSON by two orders of magnitude.
///
/// Layout: a version byte (3; 1 and 2 are still read), a flags byte (1: a clock stamp follows: this boot's ID, 16
/// bytes, and its Unix time at monotonic 0, BE64; written when a rule has `expires`), then
/// per rule
///   match:   proto, flags (1 dst v6, 2 has src, 4 src v6, 8 has sport, 16 has dport,
///            32 same dst as the rule before, 64 same forward as the rule before),
///            [sport BE16], [dport BE16], [dst (4|16)], [src (4|16)]
///   forward (unless 64): action (0 pass, 1 drop, 2 l2, 3 encap, 4 relay),
///            flags (1 has outer src, 2 outer src v6, 4 has outer dst, 8 outer dst v6, 16 has mtu,
///            32 has rewrite, 64 rewrite v6, 128 has expires),
///            dst MAC (6), src MAC (6), ifindex BE32, [outer src (4|16)], [outer dst (4|16)], [mtu BE16],
///            [rewrite: src (4|16), dst (4|16), sport BE16, dport BE16, flags (1 rtp; not in 1 and 2)],
///            [expires BE64]
/// `expires` is CLOCK_MONOTONIC, as the data plane reads it: read back as it is in the boot
/// that wrote it (so a restart finds the very value the map holds), and in a later boot moved
/// onto the new monotonic clock through the stamp's wall time, a time gone by becoming 1 (an
/// ended lockout stays ended). Version 1 (no flags byte, no stamp) is read too.
/// A transfer's rules share their destination and mostly their forwarding,
/// so a typical rule is 6 bytes (v4) to 24 (v6). Addresses keep their case
/// (.v4 or .v6), so a rule reads back equal.
enum RuleCodec {
    static let version: UInt8 = 3
    /// Encodings this reads: 1 has no flags byte and no clock stamp; 1 and 2 no rewrite flags.
    static func readable(_ v: UInt8) -> Bool { (1...3).contains(v) }

    /// How a blob's monotonic times map onto this boot's.
    struct ClockStamp: Equatable {
        var bootID: [UInt8]
        var bootWall: UInt64
        static let current = ClockStamp(bootID: BootClock.bootID, bootWall: BootClock.bootWallNanoseconds)

        /// `expires` written under this stamp, on this boot's monotonic clock.
        func here(_ expires: UInt64) -> UInt64 {
            // The same boot: the same monotonic clock, whatever the wall clock did meanwhile
            // (an unreadable boot ID, all zeros, proves nothing: then the whole stamp must match).
            if self == .current || bootID == Self.current.bootID && bootID.contains(where: { $0 != 0 }) { return expires }
            let wall = bootWall &+ expires
            return wall > Self.current.bootWall ? wall - Self.current.bootWall : 1
        }
    }

    static func encode(_ rules: [SessionRule]) -> [UInt8] {
        let stamped = rules.contains { $0.forward.expires != nil }
        var out: [UInt8] = [version, stamped ? 1 : 0]
        if stamped {
            out += ClockStamp.current.bootID
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: ClockStamp.current.bootWall >> UInt64(shift))) }
        }
        out.reserveCapacity(1 + rules.count * 32)
        var last: SessionRule?
        for r in rules {
            defer { last = r }
            let m = r.match
            let sameDestination = last?.match.destination == m.destination, sameForward = last?.forward == r.forward
            var flags: UInt8 = m.destination.family == .v6 ? 1 : 0
            if sameDestination { flags |= 32 }
            if sameForward { flags |= 64 }
            if let s = m.source { flags |= 2 | (s.family == .v6 ? 4 : 0) }
            if m.sourcePort != nil { flags |= 8 }
            if m.destinationPort != nil { flags |= 16 }
            out.append(m.proto.rawValue)
            out.append(flags)
            if let p = m.sourcePort { out.append(UInt8(p >> 8)); out.append(UInt8(p & 0xff)) }
            if let p = m.destinationPort { out.append(UInt8(p >> 8)); out.append(UInt8(p & 0xff)) }
            if !sameDestination { out += m.destination.wireBytes }
            if let s = m.source { out += s.wireBytes }
            if !sameForward { encodeForward(r.forward, into: &out) }
        }
        return out
    }

    private static func encodeForward(_ f: Forwarding, into out: inout [UInt8]) {
        out.append(actionCode(f.action))
        var ff: UInt8 = 0
        if let s = f.outerSource { ff |= 1 | (s.family == .v6 ? 2 : 0) }
        if let d = f.outerDestination { ff |= 4 | (d.family == .v6 ? 8 : 0) }
        if f.mtu != nil { ff |= 16 }
        if let w = f.rewrite { ff |= 32 | (w.source.family == .v6 ? 64 : 0) }
        if f.expires != nil { ff |= 128 }
        out.append(ff)
        out += f.destinationMAC.bytes
        out += f.sourceMAC.bytes
        for shift in [24, 16, 8, 0] as [UInt32] { out.append(UInt8(truncatingIfNeeded: f.ifindex >> shift)) }
        if let s = f.outerSource { out += s.wireBytes }
        if let d = f.outerDestination { out += d.wireBytes }
        if let m = f.mtu { out.append(UInt8(m >> 8)); out.append(UInt8(m & 0xff)) }
        if let w = f.rewrite {
            out += w.source.wireBytes
            out += w.destination.wireBytes
            for p in [w.sourcePort, w.destinationPort] { out.append(UInt8(p >> 8)); out.append(UInt8(p & 0xff)) }
            out.append(w.rtp ? 1 : 0)
        }
        if let e = f.expires { for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: e >> UInt64(shift))) } }
    }

    /// A takeover in the same manner (JSON of it was a sixth of a registration's cost):
    ///   version, flags (1 address v6, 2 has agent MAC, 4 router, 8 has temporary,
    ///   16 temporary v6), address (4|16), [agent MAC (6)], [temporary (4|16)], forward
    static func encode(_ t: Takeover) -> [UInt8] {
        var flags: UInt8 = t.address.family == .v6 ? 1 : 0
        if t.agentMAC != nil { flags |= 2 }
        if t.router { flags |= 4 }
        if let temp = t.temporaryAddress { flags |= 8 | (temp.family == .v6 ? 16 : 0) }
        var out: [UInt8] = [version, flags]
        out.reserveCapacity(64)
        out += t.address.wireBytes
        if let mac = t.agentMAC { out += mac.bytes }
        if let temp = t.temporaryAddress { out += temp.wireBytes }
        encodeForward(t.defaultForward, into: &out)
        return out
    }

    static func decodeTakeover(_ bytes: UnsafeRawBufferPointer) throws(StoreError) -> Takeover {
        var r = Reader(bytes)
        let v = try r.byte()
        guard readable(v) else { throw StoreError(.io, "takeover stored in an unknown encoding \(v)") }
        let flags = try r.byte()
        let address = IPAddress(wire: try r.raw(flags & 1 != 0 ? 16 : 4))!
        let mac: MACAddress? = flags & 2 != 0 ? MACAddress(bytes: try r.raw(6))! : nil
        let temporary: IPAddress? = flags & 8 != 0 ? IPAddress(wire: try r.raw(flags & 16 != 0 ? 16 : 4))! : nil
        let forward = try decodeForward(&r, stamp: nil, version: v)
        guard r.atEnd else { throw StoreError(.io, "stored takeover has trailing bytes") }
        var t = Takeover(address: address, defaultForward: forward, agentMAC: mac, router: flags & 4 != 0)
        t.temporaryAddress = temporary
        return t
    }

    /// Appends the rules in `bytes` to `out`. A destination or forwarding
    /// repeated from the rule before is shared, not rebuilt.
    static func decode(_ bytes: UnsafeRawBufferPointer, into out: inout [SessionRule]) throws(StoreError) {
        var r = Reader(bytes)
        let v = try r.byte()
        guard readable(v) else { throw StoreError(.io, "rules stored in an unknown encoding \(v)") }
        var stamp: ClockStamp?
        if v >= 2, try r.byte() & 1 != 0 {
            stamp = ClockStamp(bootID: Array(try r.raw(16)), bootWall: try r.u64())
        }
        var lastDestination: IPAddress?, lastForward: Forwarding?
        while !r.atEnd {
            guard let proto = IPProtocol(rawValue: try r.byte()) else { throw StoreError(.io, "stored rule with an unknown protocol") }
            let flags = try r.byte()
            let sport: UInt16? = flags & 8 != 0 ? try r.u16() : nil
            let dport: UInt16? = flags & 16 != 0 ? try r.u16() : nil
            let destination: IPAddress
            if flags & 32 != 0 {
                guard let last = lastDestination else { throw StoreError(.io, "stored rules are corrupt") }
                destination = last
            } else {
                destination = IPAddress(wire: try r.raw(flags & 1 != 0 ? 16 : 4))!
                lastDestination = destination
            }
            let source: IPAddress? = flags & 2 != 0 ? IPAddress(wire: try r.raw(flags & 4 != 0 ? 16 : 4))! : nil
            let forward: Forwarding
            if flags & 64 != 0 {
                guard let last = lastForward else { throw StoreError(.io, "stored rules are corrupt") }
                forward = last
            } else {
                forward = try decodeForward(&r, stamp: stamp, version: v)
                lastForward = forward
            }
            out.append(SessionRule(match: SessionMatch(proto: proto, source: source, sourcePort: sport,
                                                       destination: destination, destinationPort: dport),
                                   forward: forward))
        }
    }

    private static func decodeForward(_ r: inout Reader, stamp: ClockStamp?, version: UInt8) throws(StoreError) -> Forwarding {
        let code = try r.byte(), flags = try r.byte()
        guard let action = action(code) else { throw StoreError(.io, "stored rule with an unknown action \(code)") }
        let dmac = MACAddress(bytes: try r.raw(6))!, smac = MACAddress(bytes: try r.raw(6))!
        let ifindex = UInt32(try r.u16()) << 16 | UInt32(try r.u16())
        let outerSource: IPAddress? = flags & 1 != 0 ? IPAddress(wire: try r.raw(flags & 2 != 0 ? 16 : 4))! : nil
        let outerDestination: IPAddress? = flags & 4 != 0 ? IPAddress(wire: try r.raw(flags & 8 != 0 ? 16 : 4))! : nil
        let mtu: UInt16? = flags & 16 != 0 ? try r.u16() : nil
        var rewrite: Forwarding.Rewrite?
        if flags & 32 != 0 {
            let size = flags & 64 != 0 ? 16 : 4
            let source = IPAddress(wire: try r.raw(size))!, destination = IPAddress(wire: try r.raw(size))!
            let sport = try r.u16(), dport = try r.u16()
            let rflags = version >= 3 ? try r.byte() : 0
            rewrite = Forwarding.Rewrite(source: source, sourcePort: sport, destination: destination, destinationPort: dport,
                                         rtp: rflags & 1 != 0)
        }
        var expires: UInt64?
        if flags & 128 != 0 {
            let e = try r.u64()
            expires = stamp?.here(e) ?? e
        }
        return Forwarding(action: action, destinationMAC: dmac, sourceMAC: smac, ifindex: ifindex,
                          outerSource: outerSource, outerDestination: outerDestination, mtu: mtu, rewrite: rewrite, expires: expires)
    }

    private static func actionCode(_ a: Forwarding.Action) -> UInt8 {
        switch a {
        case .pass: 0
        case .drop: 1
        case .l2: 2
        case .encap: 3
        case .relay: 4
        }
    }

    private static func action(_ code: UInt8) -> Forwarding.Action? {
        switch code {
        case 0: .pass
        case 1: .drop
        case 2: .l2
        case 3: .encap
        case 4: .relay
        default: nil
        }
    }

    /// Bounds-checked reading: a truncated blob is an error, not a crash.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0
        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        var atEnd: Bool { offset >= bytes.count }

        mutating func raw(_ n: Int) throws(StoreError) -> UnsafeRawBufferPointer {
            guard offset + n <= bytes.count else { throw StoreError(.io, "stored rules or takeover are truncated") }
            defer { offset += n }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
        }

        mutating func byte() throws(StoreError) -> UInt8 { try raw(1)[0] }

        mutating func u16() throws(StoreError) -> UInt16 {
            let b = try raw(2)
            return UInt16(b[0]) << 8 | UInt16(b[1])
        }

        mutating func u64() throws(StoreError) -> UInt64 {
            var v: UInt64 = 0
            for _ in 0..<4 { v = v << 16 | UInt64(try u16()) }
            return v
        }
    }
}
