/// One header field as received: its name as written and its value, unfolded and trimmed.
public struct SIPHeaderField: Hashable, Sendable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
    /// The long form, lowercased: "v" and "VIA" are both "via".
    public var canonicalName: String { SIPHeaders.canonical(name) }
}

/// A message's header fields in order. Names compare case-insensitively, compact forms
/// (RFC 3261 7.3.3 and later extensions) as their long names.
public struct SIPHeaders: Hashable, Sendable, Sequence {
    public private(set) var fields: [SIPHeaderField] = []

    public init(_ fields: [SIPHeaderField] = []) { self.fields = fields }

    static let compact: [String: String] = [
        "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
        "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event", "r": "refer-to",
        "b": "referred-by", "u": "allow-events", "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
        "d": "request-disposition", "y": "identity", "n": "identity-info",
    ]

    static func canonical(_ name: String) -> String {
        let l = name.lowercased()
        return compact[l] ?? l
    }

    public func makeIterator() -> IndexingIterator<[SIPHeaderField]> { fields.makeIterator() }

    /// Every value of the header `name`, in order, one per field line.
    public func values(_ name: String) -> [String] {
        let c = Self.canonical(name)
        return fields.filter { $0.canonicalName == c }.map(\.value)
    }

    public subscript(name: String) -> String? { values(name).first }

    /// Every element of a comma-separated list header (Via, Contact, Supported, Require…),
    /// across its lines; nil when a quote or bracket is left open.
    public func list(_ name: String) -> [String]? {
        var out: [String] = []
        for v in values(name) {
            guard let parts = Grammar.split(v[...], on: ",") else { return nil }
            out += parts.map { String(Grammar.trim($0)) }.filter { !$0.isEmpty }
        }
        return out
    }

    /// Option tags of Supported / Require / Proxy-Require / Unsupported, lowercased.
    public func optionTags(_ name: String) -> Set<String> { Set((list(name) ?? []).map { $0.lowercased() }) }

    public mutating func add(_ name: String, _ value: String) { fields.append(SIPHeaderField(name, value)) }

    /// Replaces every field of `name` with one (appended when there was none).
    public mutating func set(_ name: String, _ value: String) {
        let c = Self.canonical(name)
        let at = fields.firstIndex { $0.canonicalName == c } ?? fields.count
        fields.removeAll { $0.canonicalName == c }
        fields.insert(SIPHeaderField(name, value), at: at)
    }

    public mutating func remove(_ name: String) {
        let c = Self.canonical(name)
        fields.removeAll { $0.canonicalName == c }
    }
}

/// The first line: a request's method and Request-URI or a response's status.
public enum SIPStartLine: Hashable, Sendable {
    case request(method: String, uri: SIPAnyURI)
    case response(status: Int, reason: String)
}

/// A SIP request or response (RFC 3261 7), checked by `SIPParser` or built by the server.
/// The headers every message needs are parsed once and kept typed beside the raw fields.
public struct SIPMessage: Hashable, Sendable {
    public var startLine: SIPStartLine
    public var headers: SIPHeaders
    public var body: [UInt8]

    public init(startLine: SIPStartLine, headers: SIPHeaders, body: [UInt8] = []) {
        self.startLine = startLine
        self.headers = headers
        self.body = body
    }

    public var isRequest: Bool { if case .request = startLine { return true } else { return false } }
    public var method: String? { if case .request(let m, _) = startLine { return m } else { return nil } }
    public var requestURI: SIPAnyURI? { if case .request(_, let u) = startLine { return u } else { return nil } }
    public var status: Int? { if case .response(let s, _) = startLine { return s } else { return nil } }

    public var callID: String? { headers["call-id"] }
    public var cseq: CSeq? { headers["cseq"].flatMap { try? CSeq(parsing: $0[...]) } }
    public var from: NameAddress? { headers["from"].flatMap { try? NameAddress($0) } }
    public var to: NameAddress? { headers["to"].flatMap { try? NameAddress($0) } }
    public var vias: [Via] { (headers.list("via") ?? []).compactMap { try? Via(parsing: $0[...]) } }

    /// The wire form: CRLF lines, Content-Length set to the body's size.
    public var bytes: [UInt8] {
        var s: String
        switch startLine {
        case .request(let m, let u): s = "\(m) \(u) SIP/2.0\r\n"
        case .response(let st, let r): s = "SIP/2.0 \(st) \(r)\r\n"
        }
        for f in headers.fields where f.canonicalName != "content-length" { s += "\(f.name): \(f.value)\r\n" }
        s += "Content-Length: \(body.count)\r\n\r\n"
        return Array(s.utf8) + body
    }

    /// A response to this request (RFC 3261 8.2.6): Via, From, To, Call-ID and CSeq copied,
    /// a To tag added when `toTag` is given and the To has none.
    public func response(_ status: Int, _ reason: String, toTag: String? = nil) -> SIPMessage {
        var h = SIPHeaders()
        for v in headers.values("via") { h.add("Via", v) }
        if let f = headers["from"] { h.add("From", f) }
        if var t = headers["to"] {
            if let toTag, (try? NameAddress(t))?.tag == nil { t += ";tag=\(toTag)" }
            h.add("To", t)
        }
        if let c = headers["call-id"] { h.add("Call-ID", c) }
        if let c = headers["cseq"] { h.add("CSeq", c) }
        return SIPMessage(startLine: .response(status: status, reason: reason), headers: h)
    }
}
