import Foundation
import Testing
@testable import BatonSIP

/// RFC 4475's and RFC 5118's torture messages (Corpus/, index.json) through the parser.
/// What the parser must do with each, where the RFCs leave a choice, is written here once,
/// with why.
@Suite struct CorpusTests {
    struct Entry: Decodable, Sendable, CustomTestStringConvertible {
        var file: String
        var section: String
        var valid: Bool
        var expected: Int?
        var kind: String
        var testDescription: String { "\(file) (\(section))" }
    }

    static let entries: [Entry] = {
        let url = Bundle.module.url(forResource: "Corpus", withExtension: nil)!.appendingPathComponent("index.json")
        return try! JSONDecoder().decode([Entry].self, from: Data(contentsOf: url))
    }()

    /// What the parser does: accept, or refuse with a status.
    enum Outcome: Equatable { case parses, refused(Int) }

    /// Where the outcome is not simply "valid parses, invalid is refused with the RFC's code".
    static let decided: [String: (Outcome, String)] = [
        // Application-layer answers (501, 416, 420, 415, 401, 483, 406, 200): the parser accepts.
        "mismatch02.sip": (.refused(400), "CSeq method differs from the request's: 400, which RFC 4475 allows beside 501"),
        "ncl.sip": (.refused(400), "negative Content-Length"),
        "scalarlg.sip": (.refused(400), "a response with a CSeq past 2^31: dropped (answer is nil for responses)"),
        "bigcode.sip": (.refused(400), "status code past 699: dropped"),
        "lwsstart.sip": (.refused(400), "strict: one SP between request-line elements"),
        "trws.sip": (.refused(400), "strict: no space after the version"),
        "baddate.sip": (.parses, "Date is not read: no reason to refuse the call"),
        "insuf.sip": (.refused(400), "no Call-ID, From, To"),
        "multi01.sip": (.refused(400), "Call-ID, To, From, CSeq twice"),
        "mcl01.sip": (.refused(400), "two Content-Length fields"),
        "ipv6-in-sdp.sip": (.refused(400), "the RFC's Content-Length (268) exceeds the 251-byte body: over UDP that is a truncated message"),
        "ipv6-bug-abnf-3-colons.sip": (.refused(400), "'2001:db8:::192.0.2.1' is no address by RFC 4291: refused, never guessed"),
    ]

    static func expectedOutcome(_ e: Entry) -> Outcome {
        if let d = decided[e.file] { return d.0 }
        if e.valid { return .parses }
        return .refused(e.expected ?? 400)
    }

    @Test(arguments: entries)
    func tortureMessage(_ e: Entry) throws {
        let url = Bundle.module.url(forResource: "Corpus", withExtension: nil)!.appendingPathComponent(e.file)
        let bytes = [UInt8](try Data(contentsOf: url))
        let outcome: Outcome
        do {
            _ = try SIPParser.parse(datagram: bytes)
            outcome = .parses
        } catch {
            outcome = .refused(error.status)
            // A refused response is never answered; a request is answered only when it gave
            // the fields an answer needs.
            if e.kind == "response" { #expect(error.answer == nil) }
            if let a = error.answer { #expect(a.status == error.status) }
        }
        #expect(outcome == Self.expectedOutcome(e), "\(e.file): \(Self.decided[e.file]?.1 ?? "")")
    }

    /// Details RFC 4475 asks of the messages that parse.
    @Test func parsedDetails() throws {
        func load(_ f: String) throws -> SIPMessage {
            let url = Bundle.module.url(forResource: "Corpus", withExtension: nil)!.appendingPathComponent(f)
            return try SIPParser.parse(datagram: [UInt8](Data(contentsOf: url)))
        }
        let ws = try load("wsinv.sip")
        #expect(ws.vias.count == 3)
        #expect(ws.from?.displayName == "J Rosenberg \\\"")
        #expect(ws.from?.tag == "98asjd8")
        #expect(ws.to?.tag == "1918181833n")
        #expect(ws.cseq == CSeq(number: 9, method: "INVITE"))
        let esc = try load("esc01.sip")
        #expect(esc.requestURI?.sipURI?.user == "sips:user@example.com")
        let semi = try load("semiuri.sip")
        #expect(semi.requestURI?.sipURI?.user == "user;par=u@example.net")
        let dbl = try load("dblreq.sip")
        #expect(dbl.method == "REGISTER" && dbl.body.isEmpty)
        let unk = try load("unkscm.sip")
        if case .other(let scheme, _) = unk.requestURI { #expect(scheme == "nobodyknowsthisscheme") } else { Issue.record("unkscm: \(String(describing: unk.requestURI))") }
        let port = try load("port-unambiguous.sip")
        #expect(port.requestURI?.sipURI?.port == 5070)
        let amb = try load("port-ambiguous.sip")
        #expect(amb.requestURI?.sipURI?.port == nil)
        let cp1 = try load("cparam01.sip"), cp2 = try load("cparam02.sip")
        #expect(try NameAddress(cp1.headers["contact"]!).parameters[parameter: "unknownparam"] == "")
        #expect(try NameAddress(cp2.headers["contact"]!).uri.sipURI?.parameters[parameter: "unknownparam"] == "")
        let zero = try load("zeromf.sip")
        #expect(zero.headers["max-forwards"] == "0")
    }
}
