import Crypto
import Foundation

/// HTTP digest authentication as SIP uses it (RFC 3261 22, RFC 7616, RFC 8760): MD5 for
/// older clients, SHA-256 preferred; qop=auth. The server keeps only H(user:realm:password)
/// per algorithm (`StoredCredential`), never the password.
public enum DigestAlgorithm: String, Sendable, CaseIterable, Codable {
    case md5 = "MD5"
    case sha256 = "SHA-256"

    public init?(header: String) {
        switch header.uppercased() {
        case "MD5": self = .md5
        case "SHA-256": self = .sha256
        default: return nil
        }
    }

    /// Lowercase hex of the hash of `s`.
    public func hash(_ s: String) -> String {
        let d = Data(s.utf8)
        switch self {
        case .md5: return Insecure.MD5.hash(data: d).hexString
        case .sha256: return SHA256.hash(data: d).hexString
        }
    }
}

extension Sequence where Element == UInt8 {
    var hexString: String { map { String($0, radix: 16).leftPadded(2) }.joined() }
}

/// What a user's password becomes in the store: HA1 for each algorithm.
public struct StoredCredential: Hashable, Sendable, Codable {
    public var username: String
    public var realm: String
    public var ha1: [DigestAlgorithm: String]

    public init(username: String, realm: String, password: String) {
        self.username = username
        self.realm = realm
        var h: [DigestAlgorithm: String] = [:]
        for a in DigestAlgorithm.allCases { h[a] = a.hash("\(username):\(realm):\(password)") }
        ha1 = h
    }

    /// As stored: HA1 per algorithm, no password.
    public init(username: String, realm: String, ha1: [DigestAlgorithm: String]) {
        self.username = username
        self.realm = realm
        self.ha1 = ha1
    }
}

/// The `Digest` auth-params of an Authorization or Proxy-Authorization header.
public struct DigestCredentials: Hashable, Sendable {
    public var params: [String: String]

    public init(parsing value: String) throws(SIPSyntaxError) {
        let v = Grammar.trim(value[...])
        guard v.count > 6, v.prefix(6).lowercased() == "digest", v.dropFirst(6).first == " " || v.dropFirst(6).first == "\t" else {
            throw SIPSyntaxError("not a Digest credential")
        }
        guard let parts = Grammar.split(v.dropFirst(7), on: ",") else { throw SIPSyntaxError("unbalanced quotes in credentials") }
        var p: [String: String] = [:]
        for part in parts {
            let t = Grammar.trim(part)
            guard let eq = t.firstIndex(of: "=") else { throw SIPSyntaxError("auth-param without a value: \(t)") }
            let name = Grammar.trim(t[..<eq]).lowercased(), raw = Grammar.trim(t[t.index(after: eq)...])
            guard Grammar.isToken(name), !raw.isEmpty, p[name] == nil else { throw SIPSyntaxError("bad auth-param \(t)") }
            if raw.hasPrefix("\"") {
                guard QuotedString.isValid(raw) else { throw SIPSyntaxError("bad quoted auth-param \(t)") }
                p[name] = QuotedString.unquoted(String(raw))
            } else {
                guard Grammar.isToken(raw.utf8) else { throw SIPSyntaxError("bad auth-param \(t)") }
                p[name] = String(raw)
            }
        }
        for required in ["username", "realm", "nonce", "uri", "response"] where p[required] == nil {
            throw SIPSyntaxError("credentials without \(required)")
        }
        params = p
    }

    public var username: String { params["username"]! }
    public var realm: String { params["realm"]! }
    public var nonce: String { params["nonce"]! }
    public var uri: String { params["uri"]! }
    public var response: String { params["response"]! }
    public var algorithm: DigestAlgorithm? { DigestAlgorithm(header: params["algorithm"] ?? "MD5") }

    /// The response a client with HA1 `ha1` sends for `method` (RFC 7616 3.4.1; RFC 2069 without qop).
    public static func response(ha1: String, algorithm: DigestAlgorithm, method: String, uri: String, nonce: String,
                                qop: String?, nc: String?, cnonce: String?) -> String {
        let ha2 = algorithm.hash("\(method):\(uri)")
        if let qop, let nc, let cnonce {
            return algorithm.hash("\(ha1):\(nonce):\(nc):\(cnonce):\(qop):\(ha2)")
        }
        return algorithm.hash("\(ha1):\(nonce):\(ha2)")
    }

    /// An Authorization value for `method` to `uri`, answering `challenge` (clients and tests).
    public static func authorization(username: String, password: String, challenge: DigestChallenge, method: String,
                                     uri: String, cnonce: String, nc: UInt32 = 1) -> String {
        let ha1 = challenge.algorithm.hash("\(username):\(challenge.realm):\(password)")
        let ncText = String(nc, radix: 16).leftPadded(8)
        let r = response(ha1: ha1, algorithm: challenge.algorithm, method: method, uri: uri, nonce: challenge.nonce,
                         qop: "auth", nc: ncText, cnonce: cnonce)
        var s = "Digest username=\(QuotedString.quoted(username)), realm=\(QuotedString.quoted(challenge.realm)), "
        s += "nonce=\(QuotedString.quoted(challenge.nonce)), uri=\(QuotedString.quoted(uri)), response=\"\(r)\", "
        s += "algorithm=\(challenge.algorithm.rawValue), cnonce=\(QuotedString.quoted(cnonce)), qop=auth, nc=\(ncText)"
        if let o = challenge.opaque { s += ", opaque=\(QuotedString.quoted(o))" }
        return s
    }
}

/// A WWW-Authenticate / Proxy-Authenticate challenge.
public struct DigestChallenge: Hashable, Sendable {
    public var realm: String
    public var nonce: String
    public var algorithm: DigestAlgorithm
    public var opaque: String?
    public var stale: Bool

    public init(realm: String, nonce: String, algorithm: DigestAlgorithm, opaque: String? = nil, stale: Bool = false) {
        self.realm = realm
        self.nonce = nonce
        self.algorithm = algorithm
        self.opaque = opaque
        self.stale = stale
    }

    /// Reads a challenge's value (clients and tests).
    public init(parsing value: String) throws(SIPSyntaxError) {
        // A challenge has the credentials' syntax without their required fields.
        let fake = value + ", username=\"x\", uri=\"x\", response=\"x\""
        let c = try DigestCredentials(parsing: fake)
        guard let alg = c.algorithm else { throw SIPSyntaxError("unknown digest algorithm") }
        self.init(realm: c.realm, nonce: c.nonce, algorithm: alg, opaque: c.params["opaque"],
                  stale: c.params["stale"]?.lowercased() == "true")
    }

    public var headerValue: String {
        var s = "Digest realm=\(QuotedString.quoted(realm)), nonce=\(QuotedString.quoted(nonce)), algorithm=\(algorithm.rawValue), qop=\"auth\""
        if let opaque { s += ", opaque=\(QuotedString.quoted(opaque))" }
        if stale { s += ", stale=true" }
        return s
    }
}

/// The server's side: nonces it can check without storing them (a time stamp and an HMAC
/// over it and the realm), and the check of a credential against a stored HA1.
public struct DigestVerifier: Sendable {
    public enum Outcome: Equatable, Sendable {
        case accepted(username: String)
        /// The nonce is ours but too old: challenge again with stale=true (no new password prompt).
        case stale
        case rejected(String)
    }

    public let realm: String
    public let nonceLifetime: Double
    /// The algorithms challenged with and accepted, most preferred first.
    public let algorithms: [DigestAlgorithm]
    private let key: SymmetricKey

    public init(realm: String, algorithms: [DigestAlgorithm] = [.sha256, .md5], nonceLifetime: Double = 300,
                key: SymmetricKey = SymmetricKey(size: .bits256)) {
        precondition(!algorithms.isEmpty, "digest needs an algorithm")
        self.realm = realm
        self.algorithms = algorithms
        self.nonceLifetime = nonceLifetime
        self.key = key
    }

    /// A fresh nonce: base64url(issue time in ms, 8 bytes | HMAC-SHA256(time | realm), 16 bytes).
    public func nonce(now: Double) -> String {
        var t = UInt64(max(0, now * 1000)).bigEndian
        let stamp = withUnsafeBytes(of: &t) { Data($0) }
        let mac = HMAC<SHA256>.authenticationCode(for: stamp + Data(realm.utf8), using: key)
        return (stamp + Data(mac.prefix(16))).base64URL
    }

    /// Challenges for a 401/407, one per algorithm in `algorithms`' order (RFC 8760 2.4: most
    /// preferred first; a client picks the first it supports, though some take the first).
    public func challenges(now: Double, stale: Bool = false) -> [DigestChallenge] {
        let n = nonce(now: now)
        return algorithms.map { DigestChallenge(realm: realm, nonce: n, algorithm: $0, stale: stale) }
    }

    /// Checks `credentials` sent with `method`: the nonce ours and fresh, the user's HA1
    /// known, the response equal (compared in constant time).
    public func verify(_ c: DigestCredentials, method: String, now: Double, lookup: (String) -> StoredCredential?) -> Outcome {
        guard c.realm == realm else { return .rejected("realm \(c.realm) is not \(realm)") }
        guard let alg = c.algorithm, algorithms.contains(alg) else { return .rejected("unsupported algorithm \(c.params["algorithm"] ?? "MD5")") }
        guard let raw = Data(base64URL: c.nonce), raw.count == 24 else { return .rejected("not our nonce") }
        let stamp = raw.prefix(8)
        let mac = HMAC<SHA256>.authenticationCode(for: stamp + Data(realm.utf8), using: key)
        guard constantTimeEqual(Array(mac.prefix(16)), Array(raw.suffix(16))) else { return .rejected("not our nonce") }
        let issued = Double(stamp.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) / 1000
        if now - issued > nonceLifetime || issued - now > 5 { return .stale }
        let qop = c.params["qop"]
        if let qop, qop.lowercased() != "auth" { return .rejected("unsupported qop \(qop)") }
        if qop != nil, c.params["nc"] == nil || c.params["cnonce"] == nil { return .rejected("qop without nc or cnonce") }
        guard let stored = lookup(c.username), stored.realm == realm, let ha1 = stored.ha1[alg] else { return .rejected("unknown user") }
        let expected = DigestCredentials.response(ha1: ha1, algorithm: alg, method: method, uri: c.uri, nonce: c.nonce,
                                                  qop: qop, nc: c.params["nc"], cnonce: c.params["cnonce"])
        guard constantTimeEqual(Array(expected.utf8), Array(c.response.lowercased().utf8)) else { return .rejected("wrong response") }
        return .accepted(username: c.username)
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var d: UInt8 = 0
    for i in 0..<a.count { d |= a[i] ^ b[i] }
    return d == 0
}

extension Data {
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init?(base64URL s: String) {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        self.init(base64Encoded: t)
    }
}
