import BatonModel

/// What a SIP header or URI could not be read as; the parser answers 400 with it.
public struct SIPSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A host of a SIP URI or Via: a domain name (lowercased) or an address.
public enum SIPHost: Hashable, Sendable, CustomStringConvertible {
    case name(String)
    case address(IPAddress)

    /// hostname / IPv4address / IPv6reference (RFC 3261 25.1).
    public init(parsing s: Substring) throws(SIPSyntaxError) {
        if s.hasPrefix("[") {
            // An IPv4-mapped reference ([::ffff:192.0.2.10], RFC 5118 4.9) names the IPv4 host.
            guard s.hasSuffix("]"), let a = IPAddress(String(s.dropFirst().dropLast())), s.contains(":") else {
                throw SIPSyntaxError("bad IPv6 reference \(s)")
            }
            self = .address(a)
            return
        }
        let labels = s.split(separator: ".", omittingEmptySubsequences: false)
        if labels.count == 4, labels.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(Grammar.isDigit) }) {
            guard let a = IPAddress(String(s)), a.family == .v4 else { throw SIPSyntaxError("bad IPv4 address \(s)") }
            self = .address(a)
            return
        }
        // A trailing dot is allowed; no other label may be empty.
        let named = labels.last == "" ? labels.dropLast() : labels[...]
        guard !named.isEmpty, s.utf8.count <= 255 else { throw SIPSyntaxError("bad host \(s)") }
        for (i, l) in named.enumerated() {
            let b = Array(l.utf8)
            guard let first = b.first, let last = b.last,
                  b.allSatisfy({ Grammar.isAlnum($0) || $0 == UInt8(ascii: "-") }),
                  first != UInt8(ascii: "-"), last != UInt8(ascii: "-") else { throw SIPSyntaxError("bad host \(s)") }
            // toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
            if i == named.count - 1 && Grammar.isDigit(first) { throw SIPSyntaxError("bad host \(s): the top label starts with a digit") }
        }
        self = .name(s.lowercased())
    }

    public var description: String {
        switch self {
        case .name(let n): return n
        case .address(let a): return a.family == .v6 ? "[\(a)]" : "\(a)"
        }
    }
}

/// A URI parameter or header parameter: `name[=value]`, name lowercased.
public struct SIPParameter: Hashable, Sendable {
    public var name: String
    public var value: String?
    public init(_ name: String, _ value: String? = nil) { self.name = name.lowercased(); self.value = value }
}

extension Array where Element == SIPParameter {
    /// The value of `name` ("" for a parameter without one), nil when absent.
    public subscript(parameter name: String) -> String? {
        let n = name.lowercased()
        guard let p = first(where: { $0.name == n }) else { return nil }
        return p.value ?? ""
    }
}

/// A sip: or sips: URI (RFC 3261 19.1), its user, password and parameters unescaped.
public struct SIPURI: Hashable, Sendable, CustomStringConvertible {
    public enum Scheme: String, Sendable { case sip, sips }
    public var scheme: Scheme
    public var user: String?
    public var password: String?
    public var host: SIPHost
    public var port: UInt16?
    public var parameters: [SIPParameter]
    public var headers: [SIPParameter]

    public init(scheme: Scheme = .sip, user: String?, host: SIPHost, port: UInt16? = nil, parameters: [SIPParameter] = []) {
        self.scheme = scheme
        self.user = user
        self.password = nil
        self.host = host
        self.port = port
        self.parameters = parameters
        self.headers = []
    }

    public init(parsing text: Substring) throws(SIPSyntaxError) {
        guard let colon = text.firstIndex(of: ":"), let scheme = Scheme(rawValue: text[..<colon].lowercased()) else {
            throw SIPSyntaxError("not a sip: or sips: URI: \(text)")
        }
        self.scheme = scheme
        var rest = text[text.index(after: colon)...]
        var headers: [SIPParameter] = []
        // Headers start at the first "?" after the userinfo (a user may hold "?"; a header may not hold "@").
        let hostStart = rest.lastIndex(of: "@").map { rest.index(after: $0) } ?? rest.startIndex
        if let q = rest[hostStart...].firstIndex(of: "?") {
            for h in rest[rest.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false) {
                let kv = h.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard kv.count == 2, !kv[0].isEmpty,
                      Grammar.isEscapedRun(kv[0], allowed: Grammar.headerChars),
                      Grammar.isEscapedRun(kv[1], allowed: Grammar.headerChars) else {
                    throw SIPSyntaxError("bad URI header \(h)")
                }
                headers.append(SIPParameter(Grammar.unescape(kv[0]), Grammar.unescape(kv[1])))
            }
            rest = rest[..<q]
        }
        self.headers = headers
        // userinfo: everything up to the last "@" (a user may hold ";" and "?").
        if let at = rest.lastIndex(of: "@") {
            let info = rest[..<at]
            rest = rest[rest.index(after: at)...]
            var userPart = info
            if let c = info.firstIndex(of: ":") {
                let pw = info[info.index(after: c)...]
                guard Grammar.isEscapedRun(pw, allowed: Grammar.passwordChars) else { throw SIPSyntaxError("bad password in \(text)") }
                password = Grammar.unescape(pw)
                userPart = info[..<c]
            } else {
                password = nil
            }
            guard !userPart.isEmpty, Grammar.isEscapedRun(userPart, allowed: Grammar.userChars) else {
                throw SIPSyntaxError("bad user in \(text)")
            }
            user = Grammar.unescape(userPart)
        } else {
            user = nil
            password = nil
        }
        // hostport *(";" uri-parameter)
        let parts = rest.split(separator: ";", omittingEmptySubsequences: false)
        let hostport = parts[0]
        var hostText = hostport
        port = nil
        if hostport.hasPrefix("[") {
            guard let close = hostport.firstIndex(of: "]") else { throw SIPSyntaxError("bad host in \(text)") }
            hostText = hostport[...close]
            let after = hostport[hostport.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Grammar.number(after.dropFirst(), limit: 65535) else { throw SIPSyntaxError("bad port in \(text)") }
                port = UInt16(p)
            }
        } else if let c = hostport.firstIndex(of: ":") {
            hostText = hostport[..<c]
            guard let p = Grammar.number(hostport[hostport.index(after: c)...], limit: 65535) else { throw SIPSyntaxError("bad port in \(text)") }
            port = UInt16(p)
        }
        host = try SIPHost(parsing: hostText)
        var params: [SIPParameter] = []
        for p in parts.dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard !kv[0].isEmpty, Grammar.isEscapedRun(kv[0], allowed: Grammar.paramChars),
                  kv.count == 1 || (!kv[1].isEmpty && Grammar.isEscapedRun(kv[1], allowed: Grammar.paramChars)) else {
                throw SIPSyntaxError("bad URI parameter \(p)")
            }
            let name = Grammar.unescape(kv[0]).lowercased()
            if params.contains(where: { $0.name == name }) { throw SIPSyntaxError("URI parameter \(name) twice") }
            params.append(SIPParameter(name, kv.count == 2 ? Grammar.unescape(kv[1]) : nil))
        }
        parameters = params
    }

    public init(_ text: String) throws(SIPSyntaxError) { try self.init(parsing: text[...]) }

    /// A byte a user part may hold unescaped (RFC 3261 25.1 `user`).
    public static func userCharacter(_ b: UInt8) -> Bool { Grammar.userChars[Int(b)] }

    /// The address-of-record form: scheme, user and host; no port, parameters or headers.
    public var addressOfRecord: SIPURI { SIPURI(scheme: scheme, user: user, host: host) }

    /// RFC 3261 19.1.4: user and password case-sensitive, host case-insensitive, port equal
    /// (absent is not 5060), user/ttl/method/maddr/transport equal when either has them,
    /// other parameters equal when both have them, headers equal.
    public func isEquivalent(to o: SIPURI) -> Bool {
        guard scheme == o.scheme, user == o.user, password == o.password, host == o.host, port == o.port else { return false }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            if parameters[parameter: name]?.lowercased() != o.parameters[parameter: name]?.lowercased() { return false }
        }
        for p in parameters {
            if let v = o.parameters[parameter: p.name], v.lowercased() != (p.value ?? "").lowercased() { return false }
        }
        let h1 = Set(headers.map { "\($0.name)=\($0.value ?? "")" }), h2 = Set(o.headers.map { "\($0.name)=\($0.value ?? "")" })
        return h1 == h2
    }

    public var description: String {
        var s = scheme.rawValue + ":"
        if let user {
            s += Self.escape(user, allowed: Grammar.userChars)
            if let password { s += ":" + Self.escape(password, allowed: Grammar.passwordChars) }
            s += "@"
        }
        s += host.description
        if let port { s += ":\(port)" }
        for p in parameters {
            s += ";" + Self.escape(p.name, allowed: Grammar.paramChars)
            if let v = p.value { s += "=" + Self.escape(v, allowed: Grammar.paramChars) }
        }
        if !headers.isEmpty {
            s += "?" + headers.map { Self.escape($0.name, allowed: Grammar.headerChars) + "=" + Self.escape($0.value ?? "", allowed: Grammar.headerChars) }.joined(separator: "&")
        }
        return s
    }

    static func escape(_ s: String, allowed: [Bool]) -> String {
        var out = ""
        for b in s.utf8 {
            if allowed[Int(b)] { out.unicodeScalars.append(Unicode.Scalar(b)) } else {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// A Request-URI or a name-addr's URI: sip/sips parsed, any other absolute URI kept as text
/// (the application answers 416 for schemes it does not serve).
public enum SIPAnyURI: Hashable, Sendable, CustomStringConvertible {
    case sip(SIPURI)
    case other(scheme: String, text: String)

    public init(parsing s: Substring) throws(SIPSyntaxError) {
        guard let colon = s.firstIndex(of: ":") else { throw SIPSyntaxError("not a URI: \(s)") }
        let scheme = s[..<colon]
        guard let f = scheme.utf8.first, (f | 0x20) >= 0x61 && (f | 0x20) <= 0x7a,
              scheme.utf8.allSatisfy({ Grammar.tokenChars[Int($0)] && $0 != UInt8(ascii: "%") && $0 != UInt8(ascii: "!") }) else {
            throw SIPSyntaxError("bad URI scheme in \(s)")
        }
        switch scheme.lowercased() {
        case "sip", "sips": self = .sip(try SIPURI(parsing: s))
        default:
            let rest = s[s.index(after: colon)...]
            guard !rest.isEmpty, Grammar.isEscapedRun(rest, allowed: Grammar.uricChars) else { throw SIPSyntaxError("bad URI \(s)") }
            self = .other(scheme: scheme.lowercased(), text: String(s))
        }
    }

    public var sipURI: SIPURI? { if case .sip(let u) = self { return u } else { return nil } }

    public var description: String {
        switch self {
        case .sip(let u): return u.description
        case .other(_, let t): return t
        }
    }
}
