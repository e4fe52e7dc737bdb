/// Why a message was refused, with the status a server answers it with when the message
/// gave enough to answer (`partial`: the start line and fields read; else drop it).
public struct SIPParseError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let reason: String
    public let partial: SIPMessage?

    public var description: String { "\(status): \(reason)" }

    /// The answer to a refused request (nil for a response, or one too broken to answer:
    /// RFC 3261 says to drop those).
    public var answer: SIPMessage? {
        guard let p = partial, p.isRequest, p.method != "ACK", p.headers["via"] != nil, p.headers["call-id"] != nil,
              p.headers["cseq"] != nil, p.headers["from"] != nil, p.headers["to"] != nil else { return nil }
        return p.response(status, status == 505 ? "Version Not Supported" : "Bad Request - \(reason)")
    }
}

/// A strict parser of SIP messages (RFC 3261 7 and 25): every header that the transaction
/// and dialog layers read is checked here, so the layers above get typed, valid values.
/// What it refuses is answered 400 (505 for another SIP version); RFC 4475's torture
/// messages are its test corpus.
public enum SIPParser {
    /// Limits: a message larger than `maxMessage` bytes or with more fields than `maxFields`
    /// is refused before it is read further.
    public static let maxMessage = 65_535
    public static let maxFields = 256

    /// Headers that may appear once only.
    static let single: Set<String> = ["call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type", "expires"]

    /// One message from a datagram: the body is what follows the blank line, cut to
    /// Content-Length (RFC 3261 18.3); a Content-Length beyond the datagram is refused.
    public static func parse(datagram bytes: [UInt8]) throws(SIPParseError) -> SIPMessage {
        guard bytes.count <= maxMessage else { throw SIPParseError(status: 413, reason: "message too large", partial: nil) }
        var start = 0
        // Keep-alive CRLFs before the start line are ignored (RFC 3261 7.5).
        while start + 1 < bytes.count, bytes[start] == Grammar.cr, bytes[start + 1] == Grammar.lf { start += 2 }
        guard let end = headerEnd(bytes, from: start) else {
            throw SIPParseError(status: 400, reason: "no blank line after the headers", partial: nil)
        }
        var message = try parseHead(bytes[start..<end])
        let body = bytes[(end + 4)...]
        if let cl = message.headers["content-length"] {
            guard let n = Grammar.number(cl.utf8, limit: UInt64(maxMessage)) else {
                throw SIPParseError(status: 400, reason: "bad Content-Length \(cl)", partial: message)
            }
            guard Int(n) <= body.count else {
                throw SIPParseError(status: 400, reason: "Content-Length \(n) beyond the \(body.count) bytes received", partial: message)
            }
            message.body = Array(body.prefix(Int(n)))
        } else {
            message.body = Array(body)
        }
        return message
    }

    /// The index of the CRLF CRLF that ends the header section, or nil.
    static func headerEnd(_ b: [UInt8], from: Int) -> Int? {
        var i = from
        while i + 3 < b.count {
            if b[i] == Grammar.cr && b[i + 1] == Grammar.lf && b[i + 2] == Grammar.cr && b[i + 3] == Grammar.lf { return i }
            i += 1
        }
        return nil
    }

    /// The start line and the header fields (no body).
    static func parseHead(_ head: ArraySlice<UInt8>) throws(SIPParseError) -> SIPMessage {
        // Lines end in CRLF; a lone CR or LF is not a line end, and is refused.
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = head.startIndex, i = head.startIndex
        while i < head.endIndex {
            let c = head[i]
            if c == Grammar.cr {
                guard i + 1 < head.endIndex, head[i + 1] == Grammar.lf else { throw SIPParseError(status: 400, reason: "a CR without LF", partial: nil) }
                lines.append(head[lineStart..<i])
                i += 2
                lineStart = i
            } else if c == Grammar.lf {
                throw SIPParseError(status: 400, reason: "an LF without CR", partial: nil)
            } else {
                i += 1
            }
        }
        lines.append(head[lineStart..<head.endIndex])
        guard let first = lines.first, let firstText = String(validating: first, as: UTF8.self) else {
            throw SIPParseError(status: 400, reason: "start line is not UTF-8", partial: nil)
        }
        let startLine = try parseStartLine(firstText)
        var message = SIPMessage(startLine: startLine, headers: SIPHeaders())

        // Unfold: a line starting with SP or HTAB continues the field before it.
        var raw: [String] = []
        for l in lines.dropFirst() {
            guard let text = String(validating: l, as: UTF8.self) else {
                throw SIPParseError(status: 400, reason: "a header field is not UTF-8", partial: message)
            }
            if let c = l.first, Grammar.isWS(c) {
                guard !raw.isEmpty else { throw SIPParseError(status: 400, reason: "continuation line before any field", partial: message) }
                raw[raw.count - 1] += " " + Grammar.trim(text[...])
            } else {
                raw.append(text)
            }
            if raw.count > maxFields { throw SIPParseError(status: 400, reason: "more than \(maxFields) header fields", partial: message) }
        }
        var headers = SIPHeaders()
        for f in raw {
            guard let colon = f.firstIndex(of: ":") else {
                throw SIPParseError(status: 400, reason: "header line without a colon", partial: message)
            }
            let name = f[..<colon]
            // HCOLON = *( SP / HTAB ) ":" SWS: whitespace only after the name.
            let trimmedName = Grammar.trim(name)
            guard trimmedName.endIndex == name.endIndex || name[trimmedName.endIndex...].allSatisfy({ $0 == " " || $0 == "\t" }),
                  trimmedName.startIndex == name.startIndex, Grammar.isToken(trimmedName.utf8) else {
                throw SIPParseError(status: 400, reason: "bad header name '\(name)'", partial: message)
            }
            headers.add(String(trimmedName), String(Grammar.trim(f[f.index(after: colon)...])))
            message.headers = headers
        }
        try validate(&message)
        return message
    }

    static func parseStartLine(_ line: String) throws(SIPParseError) -> SIPStartLine {
        // Elements are separated by exactly one SP (RFC 4475 3.1.2.7: lwsstart).
        if line.hasPrefix("SIP/") || line.uppercased().hasPrefix("SIP/") {
            let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2 else { throw SIPParseError(status: 400, reason: "bad status line", partial: nil) }
            try checkVersion(parts[0])
            guard parts[1].utf8.count == 3, let code = Grammar.number(parts[1].utf8, limit: 699), code >= 100 else {
                throw SIPParseError(status: 400, reason: "bad status code \(parts[1])", partial: nil)
            }
            let reason = parts.count == 3 ? String(parts[2]) : ""
            // Reason-Phrase: any text but control characters (HTAB allowed).
            guard !reason.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7f }) else {
                throw SIPParseError(status: 400, reason: "control character in the reason phrase", partial: nil)
            }
            return .response(status: Int(code), reason: reason)
        }
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts.contains(where: \.isEmpty) else {
            throw SIPParseError(status: 400, reason: "request line must be 'Method SP Request-URI SP SIP-Version'", partial: nil)
        }
        guard Grammar.isToken(parts[0].utf8) else { throw SIPParseError(status: 400, reason: "bad method \(parts[0])", partial: nil) }
        try checkVersion(parts[2])
        let uri: SIPAnyURI
        do { uri = try SIPAnyURI(parsing: parts[1]) } catch {
            throw SIPParseError(status: 400, reason: "bad Request-URI: \(error)", partial: nil)
        }
        // Headers have no place in a Request-URI (RFC 3261 19.1.1; RFC 4475 3.1.2.11).
        if let u = uri.sipURI, !u.headers.isEmpty { throw SIPParseError(status: 400, reason: "headers in the Request-URI", partial: nil) }
        return .request(method: String(parts[0]), uri: uri)
    }

    static func checkVersion(_ v: Substring) throws(SIPParseError) {
        let u = v.uppercased()
        guard u.hasPrefix("SIP/"), let dot = u.firstIndex(of: "."),
              Grammar.number(u[u.index(u.startIndex, offsetBy: 4)..<dot], limit: 999) != nil,
              Grammar.number(u[u.index(after: dot)...], limit: 999) != nil else {
            throw SIPParseError(status: 400, reason: "bad SIP version \(v)", partial: nil)
        }
        guard u == "SIP/2.0" else { throw SIPParseError(status: 505, reason: "SIP version \(v) not supported", partial: nil) }
    }

    /// The fields every layer reads, checked: present where required, once where single,
    /// and well-formed.
    static func validate(_ m: inout SIPMessage) throws(SIPParseError) {
        func fail(_ why: String) -> SIPParseError { SIPParseError(status: 400, reason: why, partial: m) }
        let h = m.headers
        for name in single where h.values(name).count > 1 { throw fail("\(name) more than once") }
        for name in ["via", "from", "to", "call-id", "cseq"] where h[name] == nil { throw fail("no \(name)") }
        // No Max-Forwards is read as 70: RFC 2543 clients leave it out (RFC 4475 3.4.1).

        guard let vias = h.list("via"), !vias.isEmpty else { throw fail("bad via") }
        for v in vias {
            do { _ = try Via(parsing: v[...]) } catch { throw fail("via: \(error)") }
        }
        for name in ["from", "to"] {
            do { _ = try NameAddress(h[name]!) } catch { throw fail("\(name): \(error)") }
        }
        guard CallID.isValid(h["call-id"]![...]) else { throw fail("bad call-id") }
        let cseq: CSeq
        do { cseq = try CSeq(parsing: h["cseq"]![...]) } catch { throw fail("\(error)") }
        if let mf = h["max-forwards"], Grammar.number(mf.utf8, limit: 255) == nil { throw fail("bad max-forwards \(mf)") }
        if let e = h["expires"], Grammar.number(e.utf8, limit: UInt64(UInt32.max)) == nil { throw fail("bad expires \(e)") }
        if let ct = h["content-type"], !MediaType.isValid(ct) { throw fail("bad content-type \(ct)") }
        if let contacts = h.list("contact") {
            if contacts == ["*"] {
                guard m.method == "REGISTER" else { throw fail("contact * outside REGISTER") }
            } else {
                for c in contacts {
                    do {
                        let na = try NameAddress(c)
                        if let e = na.parameters[parameter: "expires"], Grammar.number(e.utf8, limit: UInt64(UInt32.max)) == nil {
                            throw SIPSyntaxError("bad contact expires \(e)")
                        }
                    } catch { throw fail("contact: \(error)") }
                }
            }
        } else {
            throw fail("unbalanced quotes in contact")
        }
        if h.values("replaces").count > 0 {
            // The count and use of Replaces is the application's (RFC 3891: 400 there too).
            for r in h.values("replaces") where (try? Replaces(parsing: r[...])) == nil { throw fail("bad replaces \(r)") }
        }
        if case .request(let method, _) = m.startLine, cseq.method != method { throw fail("CSeq method \(cseq.method) is not \(method)") }
    }
}

/// media-type = m-type SLASH m-subtype *(SEMI m-parameter).
enum MediaType {
    static func isValid(_ s: String) -> Bool {
        let semi = s.firstIndex(of: ";") ?? s.endIndex
        let parts = s[..<semi].split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, Grammar.isToken(Grammar.trim(parts[0]).utf8), Grammar.isToken(Grammar.trim(parts[1]).utf8) else { return false }
        if semi == s.endIndex { return true }
        return (try? HeaderParameters.parse(s[s.index(after: semi)...])) != nil
    }
}

// MARK: - Stream framing

/// What the next bytes of a stream (TCP) hold.
public enum SIPFrame: Equatable, Sendable {
    /// A whole message of this many bytes (keep-alive CRLFs before it included): give them to
    /// `SIPParser.parse(datagram:)`.
    case message(Int)
    /// A keep-alive ping, CRLF CRLF (RFC 5626 4.4.1): answered with one CRLF.
    case ping
    /// A lone CRLF (a pong, or padding between messages): dropped.
    case pong
}

extension SIPParser {
    /// Where the next message of a stream ends (RFC 3261 18.3: on a stream, Content-Length is
    /// required and frames the body). Nil: more bytes are needed. A refusal means the stream's
    /// framing is lost: answer the message when the refusal has an answer, then close.
    public static func frame(stream b: [UInt8]) throws(SIPParseError) -> SIPFrame? {
        var searched = 0
        return try frame(stream: b, searched: &searched)
    }

    /// The same for a reader of a stream: `searched` is how many bytes of `b` hold no header
    /// end (0 for a new message; this call moves it on), so while a header trickles in each byte
    /// is looked at once, not once per read.
    public static func frame(stream b: [UInt8], searched: inout Int) throws(SIPParseError) -> SIPFrame? {
        if b.count >= 2, b[0] == Grammar.cr, b[1] == Grammar.lf {
            if b.count >= 4, b[2] == Grammar.cr, b[3] == Grammar.lf { return .ping }
            if b.count == 2 || (b.count == 3 && b[2] == Grammar.cr) { return nil }
            return .pong
        }
        guard let end = headerEnd(b, from: max(0, min(searched, b.count) - 3)) else {
            searched = b.count
            if b.count > maxMessage { throw SIPParseError(status: 413, reason: "no end of the headers in \(maxMessage) bytes", partial: nil) }
            return nil
        }
        // Content-Length from the raw lines: the rest is checked when the whole message is parsed.
        var length: UInt64?
        var lineStart = 0
        for i in 0...end where i == end || (b[i] == Grammar.cr && b[i + 1] == Grammar.lf) {
            defer { lineStart = i + 2 }
            guard lineStart > 0, let colon = b[lineStart..<i].firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = Grammar.trim(String(decoding: b[lineStart..<colon], as: UTF8.self)[...])
            guard SIPHeaders.canonical(String(name)) == "content-length" else { continue }
            let value = Grammar.trim(String(decoding: b[(colon + 1)..<i], as: UTF8.self)[...])
            guard let n = Grammar.number(value, limit: UInt64(maxMessage)), length == nil || length == n else {
                throw SIPParseError(status: 400, reason: "bad Content-Length on a stream", partial: try? parseHead(b[0..<end]))
            }
            length = n
        }
        guard let length else {
            throw SIPParseError(status: 400, reason: "no Content-Length on a stream", partial: try? parseHead(b[0..<end]))
        }
        let total = end + 4 + Int(length)
        guard total <= maxMessage else { throw SIPParseError(status: 413, reason: "message too large", partial: nil) }
        return b.count >= total ? .message(total) : nil
    }
}
