import BatonModel

/// A session description (RFC 8866) read just far enough to anchor its media: the
/// connection addresses and each media line's port, everything else kept as written.
/// The B2BUA rewrites each leg's SDP so media flows through the anchor.
public struct SessionDescription: Hashable, Sendable {
    /// One `type=value` line.
    public struct Line: Hashable, Sendable {
        public var type: Character
        public var value: String
    }

    public var lines: [Line]

    public init(parsing bytes: [UInt8]) throws(SIPSyntaxError) {
        var out: [Line] = []
        // Lines end in CRLF or LF (RFC 8866 5); split on bytes: "\r\n" is one Character.
        for rawBytes in bytes.split(separator: Grammar.lf, omittingEmptySubsequences: false) {
            let lineBytes = rawBytes.last == Grammar.cr ? rawBytes.dropLast() : rawBytes
            if lineBytes.isEmpty { continue }
            guard let l = String(validating: lineBytes, as: UTF8.self)?[...] else { throw SIPSyntaxError("SDP is not UTF-8") }
            guard l.count >= 2, let t = l.first, t.isASCII, t.isLowercase, l.dropFirst().first == "=" else {
                throw SIPSyntaxError("bad SDP line \(l)")
            }
            out.append(Line(type: t, value: String(l.dropFirst(2))))
        }
        guard out.first?.type == "v", out.first?.value == "0" else { throw SIPSyntaxError("SDP does not start with v=0") }
        guard out.contains(where: { $0.type == "o" }) else { throw SIPSyntaxError("SDP without o=") }
        lines = out
        // Every media line must be readable and have a connection address.
        for i in media.indices {
            guard mediaPort(i) != nil else { throw SIPSyntaxError("bad SDP media line \(lines[media[i]].value)") }
            guard connection(ofMedia: i) != nil else { throw SIPSyntaxError("SDP media \(i) without a connection address") }
        }
    }

    public var bytes: [UInt8] { Array(lines.map { "\($0.type)=\($0.value)\r\n" }.joined().utf8) }

    /// Indices into `lines` of the m= lines.
    public var media: [Int] { lines.indices.filter { lines[$0].type == "m" } }

    private func mediaRange(_ i: Int) -> Range<Int> {
        let m = media
        return m[i]..<(i + 1 < m.count ? m[i + 1] : lines.count)
    }

    /// "audio", "video"…
    public func mediaType(_ i: Int) -> String { String(lines[media[i]].value.split(separator: " ").first ?? "") }

    /// The media's port (0: the stream is refused/disabled).
    public func mediaPort(_ i: Int) -> UInt16? {
        let f = lines[media[i]].value.split(separator: " ")
        guard f.count >= 4, let p = UInt16(f[1].split(separator: "/")[0]) else { return nil }
        return p
    }

    /// The media's connection address: its own c= or the session's.
    public func connection(ofMedia i: Int) -> IPAddress? {
        let own = mediaRange(i).first { lines[$0].type == "c" }
        let session = lines[..<media[0]].firstIndex { $0.type == "c" }
        guard let at = own ?? session else { return nil }
        return Self.address(lines[at].value)
    }

    /// `IN IP4 192.0.2.1` → the address (nil for anything else: FQDNs, multicast TTLs).
    static func address(_ c: String) -> IPAddress? {
        let f = c.split(separator: " ")
        guard f.count == 3, f[0] == "IN", let a = IPAddress(String(f[2])) else { return nil }
        switch (f[1], a.family) {
        case ("IP4", .v4), ("IP6", .v6): return a
        default: return nil
        }
    }

    /// Where the media's RTP goes (address, port).
    public func rtpEndpoint(_ i: Int) -> Endpoint? {
        guard let a = connection(ofMedia: i), let p = mediaPort(i) else { return nil }
        return Endpoint(address: a, port: p)
    }

    /// The media's RTCP: `a=rtcp:` (RFC 3605) or the RTP port + 1.
    public func rtcpEndpoint(_ i: Int) -> Endpoint? {
        guard let rtp = rtpEndpoint(i) else { return nil }
        if let l = mediaRange(i).first(where: { lines[$0].type == "a" && lines[$0].value.hasPrefix("rtcp:") }) {
            let f = lines[l].value.dropFirst(5).split(separator: " ")
            guard let p = f.first.flatMap({ UInt16($0) }) else { return nil }
            let a = f.count >= 4 ? IPAddress(String(f[3])) ?? rtp.address : rtp.address
            return Endpoint(address: a, port: p)
        }
        return Endpoint(address: rtp.address, port: rtp.port &+ 1)
    }

    /// The same description with media `i` at `rtp` (and its RTCP at `rtcp`): its own c=
    /// line set, its port changed, `a=rtcp` written when RTCP is not RTP + 1. The origin's
    /// version goes up, as RFC 3264 8 asks of a changed offer.
    public func anchoring(media i: Int, rtp: Endpoint, rtcp: Endpoint?) -> SessionDescription {
        var d = self
        let r = mediaRange(i)
        var f = d.lines[r.lowerBound].value.split(separator: " ").map(String.init)
        f[1] = "\(rtp.port)"
        var block = [Line(type: "m", value: f.joined(separator: " "))]
        let c = Line(type: "c", value: "IN \(rtp.address.family == .v4 ? "IP4" : "IP6") \(rtp.address)")
        var wroteC = false
        for l in d.lines[(r.lowerBound + 1)..<r.upperBound] {
            if l.type == "c" { block.append(c); wroteC = true; continue }
            if l.type == "a" && l.value.hasPrefix("rtcp:") { continue }
            if !wroteC && l.type != "i" { block.append(c); wroteC = true }
            block.append(l)
        }
        if !wroteC { block.append(c) }
        if let rtcp, rtcp != Endpoint(address: rtp.address, port: rtp.port &+ 1) {
            block.append(Line(type: "a", value: "rtcp:\(rtcp.port) IN \(rtcp.address.family == .v4 ? "IP4" : "IP6") \(rtcp.address)"))
        }
        d.lines.replaceSubrange(r, with: block)
        d.bumpVersion()
        return d
    }

    /// The session-level c= line set to `address` (media lines keep their own).
    public func withSessionConnection(_ address: IPAddress) -> SessionDescription {
        var d = self
        let c = Line(type: "c", value: "IN \(address.family == .v4 ? "IP4" : "IP6") \(address)")
        if let at = d.lines[..<(d.media.first ?? d.lines.count)].firstIndex(where: { $0.type == "c" }) {
            d.lines[at] = c
        }
        return d
    }

    mutating func bumpVersion() {
        guard let o = lines.firstIndex(where: { $0.type == "o" }) else { return }
        var f = lines[o].value.split(separator: " ").map(String.init)
        if f.count == 6, let v = UInt64(f[2]) { f[2] = "\(v &+ 1)"; lines[o].value = f.joined(separator: " ") }
    }
}
