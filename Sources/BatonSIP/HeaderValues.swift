import BatonModel

/// `*( SEMI generic-param )` of a header value (RFC 3261 25.1): names are tokens, values
/// tokens, hosts or quoted strings (kept with their quotes: `unquoted` reads them).
enum HeaderParameters {
    static func parse(_ s: Substring) throws(SIPSyntaxError) -> [SIPParameter] {
        guard let parts = Grammar.split(s, on: ";") else { throw SIPSyntaxError("unbalanced quotes or brackets in \(s)") }
        var out: [SIPParameter] = []
        for raw in parts {
            let p = Grammar.trim(raw)
            let name: Substring, value: Substring?
            if let eq = p.firstIndex(of: "=") {
                name = Grammar.trim(p[..<eq])
                value = Grammar.trim(p[p.index(after: eq)...])
            } else {
                name = p
                value = nil
            }
            guard Grammar.isToken(name.utf8) else { throw SIPSyntaxError("bad parameter name '\(name)'") }
            if let v = value {
                if v.hasPrefix("\"") {
                    guard QuotedString.isValid(v) else { throw SIPSyntaxError("bad quoted parameter value \(v)") }
                } else if v.hasPrefix("[") {
                    guard v.hasSuffix("]"), IPAddress(String(v.dropFirst().dropLast())) != nil else { throw SIPSyntaxError("bad parameter value \(v)") }
                } else if !Grammar.isToken(v.utf8) && IPAddress(String(v)) == nil {
                    // gen-value = token / host / quoted-string: an IPv6 host may stand unbracketed (Via received).
                    throw SIPSyntaxError("bad parameter value '\(v)'")
                }
            }
            let n = name.lowercased()
            if out.contains(where: { $0.name == n }) { throw SIPSyntaxError("parameter \(n) twice") }
            out.append(SIPParameter(n, value.map(String.init)))
        }
        return out
    }

    static func format(_ ps: [SIPParameter]) -> String {
        ps.map { ";" + $0.name + ($0.value.map { "=" + $0 } ?? "") }.joined()
    }
}

/// quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE.
public enum QuotedString {
    static func isValid(_ s: Substring) -> Bool {
        let b = Array(s.utf8)
        guard b.count >= 2, b.first == Grammar.dquote, b.last == Grammar.dquote else { return false }
        var i = 1
        while i < b.count - 1 {
            if b[i] == Grammar.backslash {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                guard i + 1 < b.count - 1, b[i + 1] <= 0x7f, b[i + 1] != Grammar.cr, b[i + 1] != Grammar.lf else { return false }
                i += 2
            } else if b[i] == Grammar.dquote {
                return false
            } else {
                i += 1
            }
        }
        return true
    }

    /// The text of a quoted string, quoted-pairs resolved; the value itself when not quoted.
    public static func unquoted(_ s: String) -> String {
        guard s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") else { return s }
        var out = ""
        var escape = false
        for c in s.dropFirst().dropLast() {
            if escape { out.append(c); escape = false } else if c == "\\" { escape = true } else { out.append(c) }
        }
        return out
    }

    public static func quoted(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

/// From, To, Contact, Refer-To…: `[display-name] <URI> *(;param)` or `addr-spec *(;param)`.
public struct NameAddress: Hashable, Sendable, CustomStringConvertible {
    public var displayName: String?
    public var uri: SIPAnyURI
    public var parameters: [SIPParameter]

    public init(displayName: String? = nil, uri: SIPAnyURI, parameters: [SIPParameter] = []) {
        self.displayName = displayName
        self.uri = uri
        self.parameters = parameters
    }

    public init(parsing text: Substring) throws(SIPSyntaxError) {
        let s = Grammar.trim(text)
        if let lt = Self.openingBracket(s) {
            let name = Grammar.trim(s[..<lt])
            if name.isEmpty {
                displayName = nil
            } else if name.hasPrefix("\"") {
                guard QuotedString.isValid(name) else { throw SIPSyntaxError("bad display name \(name)") }
                displayName = QuotedString.unquoted(String(name))
            } else {
                // *(token LWS): tokens separated by whitespace.
                guard name.split(whereSeparator: { $0 == " " || $0 == "\t" }).allSatisfy({ Grammar.isToken($0.utf8) }) else {
                    throw SIPSyntaxError("bad display name \(name)")
                }
                displayName = String(name)
            }
            guard let gt = s[lt...].firstIndex(of: ">") else { throw SIPSyntaxError("no closing > in \(s)") }
            let inner = s[s.index(after: lt)..<gt]
            guard !inner.contains(where: { $0 == " " || $0 == "\t" }) else { throw SIPSyntaxError("whitespace inside <\(inner)>") }
            uri = try SIPAnyURI(parsing: inner)
            let after = Grammar.trim(s[s.index(after: gt)...])
            if after.isEmpty {
                parameters = []
            } else {
                guard after.hasPrefix(";") else { throw SIPSyntaxError("text after > in \(s)") }
                parameters = try HeaderParameters.parse(after.dropFirst())
            }
        } else {
            // addr-spec: a URI without ";" parameters of its own or "?" headers; what follows ";" is the header's.
            displayName = nil
            let semi = s.firstIndex(of: ";") ?? s.endIndex
            let u = Grammar.trim(s[..<semi])
            guard !u.contains(where: { $0 == " " || $0 == "\t" || $0 == "?" || $0 == "," || $0 == "\"" }) else {
                throw SIPSyntaxError("bad addr-spec \(s)")
            }
            uri = try SIPAnyURI(parsing: u)
            parameters = semi == s.endIndex ? [] : try HeaderParameters.parse(s[s.index(after: semi)...])
        }
    }

    public init(_ text: String) throws(SIPSyntaxError) { try self.init(parsing: text[...]) }

    /// The "<" that opens a name-addr's URI, outside a quoted display name.
    private static func openingBracket(_ s: Substring) -> Substring.Index? {
        var quoted = false, escape = false
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if escape { escape = false } else if quoted && c == "\\" { escape = true } else if c == "\"" { quoted.toggle() } else if !quoted && c == "<" { return i }
            i = s.index(after: i)
        }
        return nil
    }

    public var tag: String? { parameters[parameter: "tag"] }

    public var description: String {
        var s = ""
        if let displayName { s += QuotedString.quoted(displayName) + " " }
        s += "<\(uri)>" + HeaderParameters.format(parameters)
        return s
    }
}

/// One Via entry: `SIP/2.0/UDP host[:port];branch=…` (RFC 3261 20.42).
public struct Via: Hashable, Sendable, CustomStringConvertible {
    public var transport: String          // uppercased: UDP, TCP, TLS, SCTP, WS…
    public var host: SIPHost
    public var port: UInt16?
    public var parameters: [SIPParameter]

    public init(transport: String, host: SIPHost, port: UInt16?, branch: String) {
        self.transport = transport.uppercased()
        self.host = host
        self.port = port
        self.parameters = [SIPParameter("branch", branch)]
    }

    public init(parsing text: Substring) throws(SIPSyntaxError) {
        let s = Grammar.trim(text)
        // sent-protocol: token SLASH token SLASH token, LWS allowed around the slashes.
        let semi = s.firstIndex(of: ";") ?? s.endIndex
        let head = s[..<semi]
        let slashed = head.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard slashed.count == 3 else { throw SIPSyntaxError("bad Via \(s)") }
        let name = Grammar.trim(slashed[0]), version = Grammar.trim(slashed[1])
        guard name.uppercased() == "SIP", version == "2.0" else { throw SIPSyntaxError("bad Via protocol in \(s)") }
        let tail = Grammar.trim(slashed[2])
        guard let ws = tail.firstIndex(where: { $0 == " " || $0 == "\t" }) else { throw SIPSyntaxError("no sent-by in Via \(s)") }
        let transport = tail[..<ws]
        guard Grammar.isToken(transport.utf8) else { throw SIPSyntaxError("bad Via transport \(transport)") }
        self.transport = transport.uppercased()
        let sentBy = Grammar.trim(tail[ws...])
        var hostText = sentBy
        port = nil
        if sentBy.hasPrefix("[") {
            guard let close = sentBy.firstIndex(of: "]") else { throw SIPSyntaxError("bad Via host \(sentBy)") }
            hostText = sentBy[...close]
            let after = Grammar.trim(sentBy[sentBy.index(after: close)...])
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Grammar.number(Grammar.trim(after.dropFirst()), limit: 65535) else { throw SIPSyntaxError("bad Via port \(sentBy)") }
                port = UInt16(p)
            }
        } else if let c = sentBy.firstIndex(of: ":") {
            hostText = Grammar.trim(sentBy[..<c])
            guard let p = Grammar.number(Grammar.trim(sentBy[sentBy.index(after: c)...]), limit: 65535) else { throw SIPSyntaxError("bad Via port \(sentBy)") }
            port = UInt16(p)
        }
        host = try SIPHost(parsing: hostText)
        parameters = semi == s.endIndex ? [] : try HeaderParameters.parse(s[s.index(after: semi)...])
        if let ttl = parameters[parameter: "ttl"], Grammar.number(ttl[...], limit: 255) == nil { throw SIPSyntaxError("bad Via ttl \(ttl)") }
        // received: an address, IPv6 with or without brackets (RFC 5118 4.5).
        if let r = parameters[parameter: "received"],
           IPAddress(r) == nil && !(r.hasPrefix("[") && r.hasSuffix("]") && IPAddress(String(r.dropFirst().dropLast())) != nil) {
            throw SIPSyntaxError("bad Via received \(r)")
        }
        if let r = parameters[parameter: "rport"], !r.isEmpty, Grammar.number(r[...], limit: 65535) == nil { throw SIPSyntaxError("bad Via rport \(r)") }
    }

    public var branch: String? { parameters[parameter: "branch"] }

    public var description: String {
        "SIP/2.0/\(transport) \(host)" + (port.map { ":\($0)" } ?? "") + HeaderParameters.format(parameters)
    }
}

/// CSeq: a sequence number below 2^31 and the method (RFC 3261 8.1.1.5).
public struct CSeq: Hashable, Sendable, CustomStringConvertible {
    public var number: UInt32
    public var method: String

    public init(number: UInt32, method: String) {
        self.number = number
        self.method = method
    }

    public init(parsing text: Substring) throws(SIPSyntaxError) {
        let parts = Grammar.trim(text).split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 2, let n = Grammar.number(parts[0], limit: UInt64(Int32.max)), Grammar.isToken(parts[1].utf8) else {
            throw SIPSyntaxError("bad CSeq \(text)")
        }
        number = UInt32(n)
        method = String(parts[1])
    }

    public var description: String { "\(number) \(method)" }
}

/// Replaces (RFC 3891): `call-id *(;to-tag=… / ;from-tag=… / ;early-only / ;generic)`.
public struct Replaces: Hashable, Sendable, CustomStringConvertible {
    public var callID: String
    public var toTag: String
    public var fromTag: String
    public var earlyOnly: Bool

    public init(callID: String, toTag: String, fromTag: String, earlyOnly: Bool = false) {
        self.callID = callID
        self.toTag = toTag
        self.fromTag = fromTag
        self.earlyOnly = earlyOnly
    }

    public init(parsing text: Substring) throws(SIPSyntaxError) {
        let s = Grammar.trim(text)
        let semi = s.firstIndex(of: ";") ?? s.endIndex
        let id = Grammar.trim(s[..<semi])
        guard CallID.isValid(id) else { throw SIPSyntaxError("bad Call-ID in Replaces \(s)") }
        let ps = semi == s.endIndex ? [] : try HeaderParameters.parse(s[s.index(after: semi)...])
        guard let to = ps[parameter: "to-tag"], !to.isEmpty, let from = ps[parameter: "from-tag"], !from.isEmpty else {
            throw SIPSyntaxError("Replaces without to-tag and from-tag: \(s)")
        }
        if let e = ps.first(where: { $0.name == "early-only" }), e.value != nil { throw SIPSyntaxError("early-only takes no value") }
        callID = String(id)
        toTag = to
        fromTag = from
        earlyOnly = ps.contains { $0.name == "early-only" }
    }

    public var description: String {
        "\(callID);to-tag=\(toTag);from-tag=\(fromTag)" + (earlyOnly ? ";early-only" : "")
    }
}

/// callid = word [ "@" word ].
public enum CallID {
    public static func isValid(_ s: Substring) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        return (1...2).contains(parts.count) && parts.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy { Grammar.wordChars[Int($0)] } }
    }
}
