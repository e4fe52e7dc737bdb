import Testing
@testable import BatonSIP

@Suite struct DigestTests {
    /// RFC 7616 3.9.1: the same request answered with MD5 and with SHA-256.
    @Test(arguments: [(DigestAlgorithm.md5, "8ca523f5e9506fed4657c9700eebdbec"),
                      (.sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")])
    func rfc7616Vectors(_ alg: DigestAlgorithm, _ expected: String) {
        let stored = StoredCredential(username: "Mufasa", realm: "http-auth@example.org", password: "Circle of Life")
        let r = DigestCredentials.response(ha1: stored.ha1[alg]!, algorithm: alg, method: "GET", uri: "/dir/index.html",
                                           nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop: "auth", nc: "00000001",
                                           cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
        #expect(r == expected)
    }

    let verifier = DigestVerifier(realm: "example.com", nonceLifetime: 30)
    let alice = StoredCredential(username: "alice", realm: "example.com", password: "wonderland")

    func lookup(_ u: String) -> StoredCredential? { u == "alice" ? alice : nil }

    @Test(arguments: DigestAlgorithm.allCases)
    func aClientAnswerIsAccepted(_ alg: DigestAlgorithm) throws {
        let challenge = try #require(verifier.challenges(now: 1000).first { $0.algorithm == alg })
        let header = DigestCredentials.authorization(username: "alice", password: "wonderland", challenge: challenge,
                                                     method: "REGISTER", uri: "sip:example.com", cnonce: "c1")
        let c = try DigestCredentials(parsing: header)
        #expect(verifier.verify(c, method: "REGISTER", now: 1010, lookup: lookup) == .accepted(username: "alice"))
        // Another method, a wrong password, a stale nonce, a forged nonce, another realm.
        #expect(verifier.verify(c, method: "INVITE", now: 1010, lookup: lookup) == .rejected("wrong response"))
        let wrong = try DigestCredentials(parsing: DigestCredentials.authorization(
            username: "alice", password: "x", challenge: challenge, method: "REGISTER", uri: "sip:example.com", cnonce: "c1"))
        #expect(verifier.verify(wrong, method: "REGISTER", now: 1010, lookup: lookup) == .rejected("wrong response"))
        #expect(verifier.verify(c, method: "REGISTER", now: 1031, lookup: lookup) == .stale)
        let other = DigestVerifier(realm: "example.com")
        #expect(other.verify(c, method: "REGISTER", now: 1010, lookup: lookup) == .rejected("not our nonce"))
        let mallory = try DigestCredentials(parsing: DigestCredentials.authorization(
            username: "mallory", password: "wonderland", challenge: challenge, method: "REGISTER", uri: "sip:example.com", cnonce: "c1"))
        #expect(verifier.verify(mallory, method: "REGISTER", now: 1010, lookup: lookup) == .rejected("unknown user"))
    }

    @Test func challengeHeaderRoundTrips() throws {
        let c = verifier.challenges(now: 5, stale: true)[0]
        #expect(try DigestChallenge(parsing: c.headerValue) == c)
        #expect(c.headerValue.hasPrefix("Digest realm=\"example.com\""))
    }

    @Test(arguments: ["Basic dXNlcjpwYXNz", "Digest", "Digest username=\"a\"", "Digest username=\"a, realm=\"b\"",
                      "Digest username=\"a\", username=\"b\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"",
                      "Digest username=a b, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""])
    func malformedCredentialsRefused(_ text: String) {
        #expect(throws: SIPSyntaxError.self) { try DigestCredentials(parsing: text) }
    }

    @Test func unknownAlgorithmAndQopRejected() throws {
        let n = verifier.nonce(now: 1)
        let c = try DigestCredentials(parsing: "Digest username=\"alice\", realm=\"example.com\", nonce=\"\(n)\", uri=\"sip:x\", response=\"00\", algorithm=SHA-512-256")
        #expect(verifier.verify(c, method: "REGISTER", now: 2, lookup: lookup) == .rejected("unsupported algorithm SHA-512-256"))
        let q = try DigestCredentials(parsing: "Digest username=\"alice\", realm=\"example.com\", nonce=\"\(n)\", uri=\"sip:x\", response=\"00\", qop=auth-int, nc=00000001, cnonce=\"x\"")
        #expect(verifier.verify(q, method: "REGISTER", now: 2, lookup: lookup) == .rejected("unsupported qop auth-int"))
    }
}
