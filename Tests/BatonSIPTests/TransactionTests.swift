import Testing
@testable import BatonSIP

/// RFC 3261 17's timers and states, driven by hand: what is sent, armed, delivered.
@Suite struct TransactionTests {
    func request(_ method: String) throws -> SIPMessage {
        try SIPParser.parse(datagram: wire(["\(method) sip:bob@example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKt1",
                                            "Max-Forwards: 70", "To: <sip:bob@example.com>", "From: <sip:alice@example.com>;tag=a",
                                            "Call-ID: tx@x", "CSeq: 1 \(method)"]))
    }

    func sent(_ a: [TransactionAction]) -> [Int?] { a.compactMap { if case .send(let m) = $0 { return m.status ?? -1 } else { return nil } } }
    func armed(_ a: [TransactionAction]) -> [TransactionTimer: Double] {
        Dictionary(a.compactMap { if case .arm(let t, let d) = $0 { return (t, d) } else { return nil } }, uniquingKeysWith: { $1 })
    }

    @Test func keysMatchRetransmissionsAndTheACK() throws {
        let inv = try request("INVITE")
        var ack = try request("ACK")
        ack.headers.set("CSeq", "1 ACK")
        #expect(ServerTransactionKey(inv) == ServerTransactionKey(ack))
        #expect(ServerTransactionKey(inv) != ServerTransactionKey(try request("BYE")))
        var old = inv
        old.headers.set("Via", "SIP/2.0/UDP 192.0.2.1;branch=1234")         // RFC 2543: no magic cookie
        #expect(ServerTransactionKey(old) == nil)
    }

    @Test func inviteServerFailureRetransmitsUntilACK() throws {
        let (t0, start) = ServerTransaction.start(try request("INVITE"), reliable: false)
        var t = t0
        #expect(sent(start) == [100])
        #expect(start.contains(.deliver(try request("INVITE"))))
        #expect(sent(t.received(try request("INVITE"))) == [100])           // a retransmission: the last response again
        let busy = try request("INVITE").response(486, "Busy Here", toTag: "b")
        let r = t.respond(busy)
        #expect(sent(r) == [486])
        #expect(armed(r) == [.h: 32, .g: 0.5])
        #expect(armed(t.fire(.g)) == [.g: 1])
        #expect(armed(t.fire(.g)) == [.g: 2])
        #expect(armed(t.fire(.g)) == [.g: 4])
        #expect(armed(t.fire(.g)) == [.g: 4])                              // capped at T2
        #expect(sent(t.received(try request("INVITE"))) == [486])
        #expect(armed(t.received(try request("ACK"))) == [.i: 5])
        #expect(t.state == .confirmed)
        #expect(t.fire(.i) == [.terminated])
    }

    @Test func inviteServerWithoutACKTimesOut() throws {
        var (t, _) = ServerTransaction.start(try request("INVITE"), reliable: false)
        _ = t.respond(try request("INVITE").response(603, "Declined", toTag: "b"))
        #expect(t.fire(.h) == [.timeout, .terminated])
        #expect(t.fire(.g).isEmpty)
    }

    @Test func inviteServer2xxIsAcceptedAndTheACKGoesToTheTU() throws {
        var (t, _) = ServerTransaction.start(try request("INVITE"), reliable: false)
        let ok = try request("INVITE").response(200, "OK", toTag: "b")
        #expect(armed(t.respond(ok)) == [.l: 32])
        #expect(t.state == .accepted)
        #expect(t.received(try request("INVITE")).isEmpty)                   // absorbed
        #expect(sent(t.respond(ok)) == [200])                                // the TU's retransmission passes
        let ack = try request("ACK")
        #expect(t.received(ack) == [.deliver(ack)])
        #expect(t.fire(.l) == [.terminated])
    }

    @Test func nonInviteServerOverTCPEndsAtOnce() throws {
        var (t, start) = ServerTransaction.start(try request("OPTIONS"), reliable: true)
        #expect(sent(start).isEmpty)
        #expect(t.respond(try request("OPTIONS").response(200, "OK")).contains(.terminated))
        var (u, _) = ServerTransaction.start(try request("OPTIONS"), reliable: false)
        #expect(armed(u.respond(try request("OPTIONS").response(200, "OK"))) == [.j: 32])
        #expect(sent(u.received(try request("OPTIONS"))) == [200])
        #expect(u.fire(.j) == [.terminated])
    }

    @Test func inviteClientRetransmitsAndACKsAFailure() throws {
        var (t, start) = ClientTransaction.start(try request("INVITE"), reliable: false)
        #expect(armed(start) == [.b: 32, .a: 0.5])
        #expect(armed(t.fire(.a)) == [.a: 1])
        #expect(armed(t.fire(.a)) == [.a: 2])
        let trying = try request("INVITE").response(100, "Trying")
        #expect(t.received(trying) == [.deliver(trying)])
        #expect(t.fire(.a).isEmpty)                                          // no retransmission once proceeding
        let busy = try request("INVITE").response(486, "Busy Here", toTag: "b")
        let r = t.received(busy)
        #expect(sent(r) == [-1])                                             // the ACK
        guard case .send(let ack) = r[0] else { return }
        #expect(ack.method == "ACK" && ack.to?.tag == "b" && ack.cseq == CSeq(number: 1, method: "ACK"))
        #expect(ack.headers["via"] == (try request("INVITE")).headers["via"])
        #expect(sent(t.received(busy)) == [-1])                              // retransmitted 486: ACK again, not delivered
        #expect(t.fire(.d) == [.terminated])
    }

    @Test func inviteClientTimesOutWithoutAnswer() throws {
        var (t, _) = ClientTransaction.start(try request("INVITE"), reliable: false)
        #expect(t.fire(.b) == [.timeout, .terminated])
    }

    @Test func nonInviteClientCapsRetransmissionsAtT2() throws {
        var (t, start) = ClientTransaction.start(try request("BYE"), reliable: false)
        #expect(armed(start) == [.f: 32, .e: 0.5])
        var intervals: [Double] = []
        for _ in 0..<5 { intervals.append(armed(t.fire(.e))[.e]!) }
        #expect(intervals == [1, 2, 4, 4, 4])
        let ok = try request("BYE").response(200, "OK", toTag: "b")
        #expect(armed(t.received(ok)) == [.k: 5])
        #expect(t.received(ok).isEmpty)
        #expect(t.fire(.k) == [.terminated])
    }
}
