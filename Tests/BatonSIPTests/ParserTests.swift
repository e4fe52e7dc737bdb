import BatonModel
import Testing
@testable import BatonSIP

/// A message from CRLF-joined lines (the wire form the parser reads).
func wire(_ lines: [String], body: String = "") -> [UInt8] {
    Array((lines.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8)
}

let inviteLines = [
    "INVITE sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@example.com>",
    "From: \"Alice A.\" <sip:alice@example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@192.0.2.1>",
]

@Suite struct ParserTests {
    @Test func aPlainInviteParsesTyped() throws {
        let m = try SIPParser.parse(datagram: wire(inviteLines + ["Content-Type: application/sdp", "Content-Length: 4"], body: "v=0\n"))
        #expect(m.method == "INVITE")
        #expect(m.requestURI?.sipURI?.user == "bob")
        #expect(m.from?.displayName == "Alice A.")
        #expect(m.from?.tag == "1928301774")
        #expect(m.to?.tag == nil)
        #expect(m.cseq == CSeq(number: 314159, method: "INVITE"))
        #expect(m.vias.first?.branch == "z9hG4bK776asdhds")
        #expect(m.vias.first?.port == 5060)
        #expect(m.body == Array("v=0\n".utf8))
    }

    @Test func bodyIsCutToContentLengthAndAShortBodyRefused() throws {
        let m = try SIPParser.parse(datagram: wire(inviteLines + ["Content-Length: 2"], body: "v=0\n"))
        #expect(m.body == Array("v=".utf8))
        let e = #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: wire(inviteLines + ["Content-Length: 9"], body: "v=0\n")) }
        #expect(e?.status == 400)
        #expect(e?.answer?.status == 400)
    }

    @Test func compactFormsAndFoldingRead() throws {
        var lines = inviteLines.filter { !$0.hasPrefix("Via") && !$0.hasPrefix("Call-ID") && !$0.hasPrefix("To") }
        lines += ["v: SIP/2.0/UDP", "  client.example.com;branch=z9hG4bK1", "i: x@y", "t: <sip:bob@example.com>", "l: 0"]
        let m = try SIPParser.parse(datagram: wire(lines))
        #expect(m.callID == "x@y")
        #expect(m.vias.first?.host == .name("client.example.com"))
        #expect(m.to?.uri.sipURI?.user == "bob")
    }

    @Test(arguments: [
        ("Via", "missing via"),
        ("CSeq", "missing cseq"),
        ("Call-ID", "missing call-id"),
    ])
    func missingRequiredHeaderIs400(_ name: String, _ why: String) {
        let lines = inviteLines.filter { !$0.hasPrefix(name + ":") }
        let e = #expect(throws: SIPParseError.self, "\(why)") { try SIPParser.parse(datagram: wire(lines)) }
        #expect(e?.status == 400)
    }

    @Test(arguments: [
        "INVITE  sip:bob@example.com SIP/2.0",             // two spaces
        "INVITE sip:bob@example.com SIP/2.0 ",             // trailing space
        "INVITE <sip:bob@example.com> SIP/2.0",           // URI in brackets
        "INVITE sip:bob@exa mple.com SIP/2.0",            // space in the URI
        "INV:ITE sip:bob@example.com SIP/2.0",            // method not a token
        "INVITE sip:bob@example.com:99999 SIP/2.0",       // port out of range
        "INVITE sip:bob@example.com SIP/2.x",             // bad version
        "INVITE sip:bob@example.com?Route=x SIP/2.0",     // headers in the Request-URI
    ])
    func badRequestLinesAre400(_ line: String) {
        let e = #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: wire([line] + inviteLines.dropFirst())) }
        #expect(e?.status == 400)
    }

    @Test func anotherVersionIs505() {
        let e = #expect(throws: SIPParseError.self) {
            try SIPParser.parse(datagram: wire(["INVITE sip:bob@example.com SIP/7.0"] + inviteLines.dropFirst()))
        }
        #expect(e?.status == 505)
    }

    @Test(arguments: [
        "CSeq: 314159 ACK",                      // method mismatch
        "CSeq: 2147483648 INVITE",               // ≥ 2^31
        "CSeq: INVITE",
        "Max-Forwards: 256",
        "Expires: 4294967296",
        "To: \"Bob <sip:bob@example.com>",       // unbalanced quote
        "Call-ID: a b",
        "Contact: *",                            // * outside REGISTER
        "Replaces: abc;to-tag=1",                // no from-tag
    ])
    func badFieldsAre400(_ field: String) {
        let name = String(field.prefix { $0 != ":" })
        let lines = inviteLines.filter { !$0.hasPrefix(name + ":") } + [field]
        let e = #expect(throws: SIPParseError.self, "\(field)") { try SIPParser.parse(datagram: wire(lines)) }
        #expect(e?.status == 400)
    }

    @Test func singleHeadersMayNotRepeat() {
        let e = #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: wire(inviteLines + ["Call-ID: other@x"])) }
        #expect(e?.status == 400)
    }

    @Test func bareLineFeedsAndNulsRefused() {
        let lf = Array(inviteLines.joined(separator: "\n").utf8) + Array("\r\n\r\n".utf8)
        #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: lf) }
        var nul = wire(inviteLines)
        nul[10] = 0
        #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: nul) }
    }

    @Test func responsesParseAndRoundTrip() throws {
        let lines = ["SIP/2.0 180 Ringing"] + inviteLines.dropFirst().filter { !$0.hasPrefix("Max-Forwards") }
        let m = try SIPParser.parse(datagram: wire(lines))
        #expect(m.status == 180)
        let again = try SIPParser.parse(datagram: m.bytes)
        #expect(again.status == 180)
        #expect(again.headers.values("via") == m.headers.values("via"))
        let empty = try SIPParser.parse(datagram: wire(["SIP/2.0 100 "] + lines.dropFirst()))
        #expect(empty.startLine == .response(status: 100, reason: ""))
        #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: wire(["SIP/2.0 1000 Big"] + lines.dropFirst())) }
        #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: wire(["SIP/2.0 099 Small"] + lines.dropFirst())) }
    }

    @Test func responseBuiltFromARequestCopiesTheDialogFields() throws {
        let m = try SIPParser.parse(datagram: wire(inviteLines))
        let r = m.response(200, "OK", toTag: "abc")
        let parsed = try SIPParser.parse(datagram: r.bytes)
        #expect(parsed.to?.tag == "abc")
        #expect(parsed.callID == m.callID)
        #expect(parsed.cseq == m.cseq)
        #expect(parsed.headers.values("via") == m.headers.values("via"))
    }

    @Test func oversizeIs413() {
        let big = wire(inviteLines, body: String(repeating: "x", count: 70_000))
        let e = #expect(throws: SIPParseError.self) { try SIPParser.parse(datagram: big) }
        #expect(e?.status == 413)
    }

    /// Random mutations of valid messages: the parser answers or refuses, never crashes, and
    /// what it accepts it can write out and read back the same.
    @Test func randomMutationsNeverCrash() {
        var rng = SplitMix(seed: 0x5eed_5150)
        let seeds = [wire(inviteLines + ["Content-Length: 0"]),
                     wire(["SIP/2.0 200 OK"] + inviteLines.dropFirst().map { $0.hasPrefix("To") ? $0 + ";tag=x" : $0 }),
                     wire(["REGISTER sip:example.com SIP/2.0"] + inviteLines.dropFirst().map { $0.replacingOccurrences(of: "INVITE", with: "REGISTER") }
                          + ["Supported: gruu", "Expires: 3600"])]
        let alphabet = Array(" \t\r\n:;,<>\"\\@%=/[]?&0123456789abcSIP".utf8) + [0, 0x7f, 0xff, 0xc3]
        var accepted = 0
        for i in 0..<20_000 {
            var m = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = Int(rng.next() % UInt64(m.count))
                switch rng.next() % 4 {
                case 0: m[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                case 1: m.remove(at: at)
                case 2: m.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                default: m.insert(contentsOf: m[at..<min(m.count, at + Int(rng.next() % 16))], at: at)
                }
            }
            if let parsed = try? SIPParser.parse(datagram: m) {
                accepted += 1
                let again = try? SIPParser.parse(datagram: parsed.bytes)
                #expect(again?.startLine == parsed.startLine, "re-parse of \(String(decoding: m, as: UTF8.self))")
                #expect(again?.body == parsed.body)
            }
        }
        #expect(accepted > 100)   // mutations that leave the message valid still parse
    }
}

/// A small deterministic generator: the mutation test is the same every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
