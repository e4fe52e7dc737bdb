import BatonModel

extension IPDatagram {
    /// Splits this datagram into fragments whose fragmentable parts hold
    /// `sizes` bytes each (multiples of 8 except the last); whatever is left
    /// goes into one more fragment. The whole datagram is built first, so the
    /// first fragment carries the upper-layer header with the checksum over
    /// all of it. IPv4 fragments keep only options with the copy flag after
    /// the first (RFC 791); IPv6 fragments keep the per-fragment headers
    /// (hop-by-hop, routing and what precedes it) and get a fragment header
    /// with `identification` (RFC 8200 §4.5). Sizes too small to hold the L4
    /// header are allowed: tiny fragments are a test case too.
    public func fragments(sizes: [Int], identification: UInt32? = nil) -> [IPDatagram] {
        let whole = bytes
        switch header {
        case .ipv4(let h):
            let data = Array(whole[h.headerLength...])
            let proto = h.protocolOverride ?? transport.protocolNumber
            return chunks(of: data, sizes: sizes).enumerated().map { i, chunk in
                var f = h
                f.fragmentOffset = h.fragmentOffset + UInt16(chunk.offset / 8)
                f.moreFragments = !chunk.last || h.moreFragments
                if i > 0 { f.options = copiedOptions(h.options) }
                if let id = identification { f.identification = UInt16(truncatingIfNeeded: id) }
                f.protocolOverride = nil
                f.totalLengthOverride = nil
                f.checksumOverride = nil
                return IPDatagram(ipv4: f, transport: .raw(protocol: proto, bytes: chunk.bytes))
            }
        case .ipv6(let h):
            let perFragment = Self.perFragment(h)
            let start = fragmentableStart.0
            let firstType = h.extensions.dropFirst(perFragment.count).first?.type ?? transport.protocolNumber
            return chunks(of: Array(whole[start...]), sizes: sizes).map { chunk in
                var f = h
                f.extensions = perFragment + [.fragment(offset: UInt16(chunk.offset / 8), more: !chunk.last,
                                                        identification: identification ?? 0)]
                f.nextHeaderOverride = nil
                f.payloadLengthOverride = nil
                return IPDatagram(ipv6: f, transport: .raw(protocol: firstType, bytes: chunk.bytes))
            }
        }
    }

    /// Fragments of at most `mtu` bytes each, IP headers included.
    public func fragments(mtu: Int, identification: UInt32? = nil) -> [IPDatagram] {
        let (start, fragmentHeader) = fragmentableStart
        let per = (mtu - start - fragmentHeader) / 8 * 8
        precondition(per > 0, "MTU too small for one fragment")
        let total = bytes.count - start
        return fragments(sizes: [Int](repeating: per, count: max(0, (total - 1) / per)), identification: identification)
    }

    /// The headers every IPv6 fragment repeats (RFC 8200 §4.5).
    private static func perFragment(_ h: IPv6Header) -> [IPv6ExtensionHeader] {
        Array(h.extensions[..<((h.extensions.lastIndex(where: \.isPerFragment) ?? -1) + 1)])
    }

    /// Where the fragmentable part starts, and the size of the header added to each fragment.
    private var fragmentableStart: (Int, Int) {
        switch header {
        case .ipv4(let h): return (h.headerLength, 0)
        case .ipv6(let h): return (40 + Self.perFragment(h).reduce(0) { $0 + $1.bytes(nextHeader: 0).count }, 8)
        }
    }
}

private func chunks(of data: [UInt8], sizes: [Int]) -> [(offset: Int, bytes: [UInt8], last: Bool)] {
    var out: [(Int, [UInt8], Bool)] = []
    var at = 0
    for size in sizes where at < data.count {
        let end = min(data.count, at + size)
        precondition(end == data.count || size % 8 == 0, "fragment sizes must be multiples of 8")
        out.append((at, Array(data[at..<end]), end == data.count))
        at = end
    }
    if at < data.count || out.isEmpty {
        out.append((at, Array(data[at...]), true))
    }
    return out
}

/// The options of a non-first IPv4 fragment: those with the copy bit (RFC 791).
private func copiedOptions(_ options: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < options.count {
        let type = options[i]
        if type == 0 { break }                      // end of option list
        if type == 1 { i += 1; continue }           // no-operation, not copied
        guard let len = options.u8(i + 1), len >= 2, i + Int(len) <= options.count else { break }
        if type & 0x80 != 0 { out += options[i..<(i + Int(len))] }
        i += Int(len)
    }
    return out
}

/// Reassembles parsed fragments (any order) of one datagram into the bytes of
/// the original datagram, or nil if they do not form exactly one whole.
/// Independent of the splitter above: it works on received bytes.
public func reassemble(_ fragments: [ParsedDatagram]) -> [UInt8]? {
    struct Piece { let offset: Int; let more: Bool; let data: ArraySlice<UInt8>; let d: ParsedDatagram; let fragmentHeader: ParsedExtensionHeader? }
    var pieces: [Piece] = []
    for d in fragments {
        // The IP header and its lengths must be sound; an L4 header cut short
        // in a tiny first fragment is fine.
        if let issue = d.issue, [.ipv4, .ipv6, .ipv6Extension].contains(issue.layer) { return nil }
        if let v4 = d.ipv4 {
            pieces.append(Piece(offset: Int(v4.fragmentOffset) * 8, more: v4.moreFragments,
                                data: d.bytes[span(d.upperLayerOffset, d.end)], d: d, fragmentHeader: nil))
        } else if let fh = d.ipv6?.extensions.first(where: { $0.fragment != nil }), let f = fh.fragment {
            pieces.append(Piece(offset: Int(f.offset) * 8, more: f.more,
                                data: d.bytes[span(fh.offset + fh.length, d.end)], d: d, fragmentHeader: fh))
        } else {
            return nil
        }
    }
    pieces.sort { $0.offset < $1.offset }
    guard let first = pieces.first, first.offset == 0, let last = pieces.last, !last.more else { return nil }
    var data: [UInt8] = []
    for p in pieces {
        guard p.offset == data.count else { return nil }
        data += p.data
    }
    let d = first.d
    var out: [UInt8]
    if let fh = first.fragmentHeader, let v6 = d.ipv6 {
        guard pieces.allSatisfy({ $0.fragmentHeader?.fragment?.identification == fh.fragment?.identification }) else { return nil }
        out = Array(d.bytes[d.offset..<fh.offset])
        // The header before the fragment header now names what followed it.
        let previous = v6.extensions.last(where: { $0.offset < fh.offset })
        out[previous.map { $0.offset - d.offset } ?? 6] = fh.nextHeader
        out.set16(UInt16(truncatingIfNeeded: out.count - 40 + data.count), at: 4)
    } else if let v4 = d.ipv4 {
        guard pieces.allSatisfy({ $0.d.ipv4?.identification == v4.identification }) else { return nil }
        out = Array(d.bytes[d.offset..<d.upperLayerOffset])
        out.set16(UInt16(truncatingIfNeeded: out.count + data.count), at: 2)
        out.set16(UInt16(out[6] & 0xc0) << 8, at: 6)          // keep reserved/DF, clear MF and offset
        out.set16(0, at: 10)
        out.set16(internetChecksum(out), at: 10)
    } else {
        return nil
    }
    return out + data
}
