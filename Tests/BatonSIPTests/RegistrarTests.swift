import Testing
@testable import BatonSIP

func register(_ aor: String = "alice", contact: String, callID: String = "reg-1", cseq: UInt32 = 1,
              expires: String? = "3600", gruu: Bool = true, extra: [String] = []) throws -> SIPMessage {
    var lines = ["REGISTER sip:example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\(callID)\(cseq)", "Max-Forwards: 70",
                 "To: <sip:\(aor)@example.com>", "From: <sip:\(aor)@example.com>;tag=r\(cseq)", "Call-ID: \(callID)",
                 "CSeq: \(cseq) REGISTER", "Contact: \(contact)"]
    if let expires { lines.append("Expires: \(expires)") }
    if gruu { lines.append("Supported: gruu, path") }
    return try SIPParser.parse(datagram: wire(lines + extra))
}

let instance1 = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
let instance2 = "urn:uuid:2a61c7a6-7dec-11d0-a765-00a0c91e6bf6"

@Suite struct RegistrarTests {
    var r = Registrations(domains: ["example.com"], minExpires: 60, maxExpires: 7200)

    @Test mutating func gruusAreIssuedAndResolved() throws {
        let out = try r.register(register(contact: "<sip:alice@192.0.2.1>;+sip.instance=\"<\(instance1)>\""), now: 0)
        let b = try #require(out.bindings.first)
        #expect(b.instanceID == instance1)
        let pub = try #require(b.publicGRUU)
        #expect(pub.description == "sip:alice@example.com;gr=\(instance1)")
        let temp = try #require(b.temporaryGRUUs.last)
        #expect(temp.user?.hasPrefix("tgruu.") == true)
        #expect(!temp.description.contains("alice"))      // opaque
        #expect(r.resolve(pub, now: 10) == GRUUOwner(aor: try SIPURI("sip:alice@example.com"), instanceID: instance1))
        #expect(r.resolve(temp, now: 10) == GRUUOwner(aor: try SIPURI("sip:alice@example.com"), instanceID: instance1))
        #expect(r.resolve(try SIPURI("sip:tgruu.deadbeef@example.com;gr"), now: 10) == nil)
        #expect(r.resolve(try SIPURI("sip:alice@example.com;gr=\(instance2)"), now: 10) == nil)

        // The 200 lists the GRUUs; it parses.
        let ok = Registrations.okResponse(to: try register(contact: "<sip:alice@192.0.2.1>"), outcome: out, now: 0, toTag: "t")
        let parsed = try SIPParser.parse(datagram: ok.bytes)
        let contact = try NameAddress(try #require(parsed.headers["contact"]))
        #expect(QuotedString.unquoted(contact.parameters[parameter: "pub-gruu"]!) == pub.description)
        #expect(QuotedString.unquoted(contact.parameters[parameter: "temp-gruu"]!) == temp.description)
        #expect(contact.parameters[parameter: "expires"] == "3600")
    }

    /// The sender of a request by its Contact: a GRUU, or a registered contact with its instance.
    @Test mutating func aSenderIsItsGRUUOrItsRegisteredContactWithItsInstance() throws {
        _ = try r.register(register(contact: "<sip:alice@192.0.2.1:5064;transport=udp>;+sip.instance=\"<\(instance1)>\""), now: 0)
        let alice1 = GRUUOwner(aor: try SIPURI("sip:alice@example.com"), instanceID: instance1)
        func sender(_ contact: String) throws -> GRUUOwner? { r.sender(contact: try NameAddress(contact), now: 10) }
        #expect(try sender("<sip:alice@example.com;gr=\(instance1)>") == alice1)
        #expect(try sender("<sip:alice@192.0.2.1:5064;transport=udp>;+sip.instance=\"<\(instance1)>\"") == alice1)
        // Another instance at that contact, no instance, another contact, an unknown GRUU: nobody.
        #expect(try sender("<sip:alice@192.0.2.1:5064;transport=udp>;+sip.instance=\"<\(instance2)>\"") == nil)
        #expect(try sender("<sip:alice@192.0.2.1:5064;transport=udp>") == nil)
        #expect(try sender("<sip:alice@192.0.2.9:5064;transport=udp>;+sip.instance=\"<\(instance1)>\"") == nil)
        #expect(try sender("<sip:tgruu.deadbeef@example.com;gr>;+sip.instance=\"<\(instance1)>\"") == nil)
        #expect(r.sender(contact: try NameAddress("<sip:alice@192.0.2.1:5064;transport=udp>;+sip.instance=\"<\(instance1)>\""), now: 4000) == nil)
    }

    @Test mutating func bindingsExpireAndTakeTheirGRUUsAlong() throws {
        let out = try r.register(register(contact: "<sip:alice@192.0.2.1>;+sip.instance=\"<\(instance1)>\"", expires: "60"), now: 0)
        let temp = try #require(out.bindings.first?.temporaryGRUUs.last)
        #expect(r.bindings(of: try SIPURI("sip:alice@example.com"), now: 59).count == 1)
        #expect(r.bindings(of: try SIPURI("sip:alice@example.com"), now: 60).isEmpty)
        #expect(r.resolve(temp, now: 61) == nil)
        #expect(r.expire(now: 61) == 1)
        #expect(r.all(now: 61).isEmpty)
    }

    @Test mutating func refreshKeepsTemporaryGRUUsUnderOneCallIDAndDropsThemOnANewOne() throws {
        let c = "<sip:alice@192.0.2.1>;+sip.instance=\"<\(instance1)>\""
        let t1 = try #require(try r.register(register(contact: c, cseq: 1), now: 0).bindings.first?.temporaryGRUUs.last)
        let t2 = try #require(try r.register(register(contact: c, cseq: 2), now: 10).bindings.first?.temporaryGRUUs.last)
        #expect(t1 != t2)
        #expect(r.resolve(t1, now: 11) != nil && r.resolve(t2, now: 11) != nil)
        _ = try r.register(register(contact: c, callID: "reg-2", cseq: 1), now: 20)
        #expect(r.resolve(t1, now: 21) == nil && r.resolve(t2, now: 21) == nil)
        // An old CSeq under the same Call-ID is refused (RFC 3261 10.3 step 7).
        #expect(throws: SIPRefusal(500, "Server Internal Error - CSeq out of order")) {
            try r.register(register(contact: c, callID: "reg-2", cseq: 1), now: 30)
        }
    }

    @Test mutating func twoDevicesOfOneUser() throws {
        _ = try r.register(register(contact: "<sip:alice@192.0.2.1>;+sip.instance=\"<\(instance1)>\""), now: 0)
        let out = try r.register(register(contact: "<sip:alice@192.0.2.2>;+sip.instance=\"<\(instance2)>\"", callID: "other"), now: 0)
        #expect(out.bindings.count == 2)
        #expect(Set(out.bindings.compactMap(\.instanceID)) == [instance1, instance2])
    }

    @Test mutating func refusals() throws {
        #expect(throws: SIPRefusal(423, "Interval Too Brief", headers: [SIPHeaderField("Min-Expires", "60")])) {
            try r.register(register(contact: "<sip:alice@192.0.2.1>", expires: "30"), now: 0)
        }
        #expect(throws: SIPRefusal.self) { try r.register(register("alice", contact: "*", expires: "10"), now: 0) }
        // "*" beside another contact does not even parse.
        #expect(throws: SIPParseError.self) { try register(contact: "*, <sip:a@b.c>", expires: "0") }
        let foreign = try SIPParser.parse(datagram: wire(["REGISTER sip:other.org SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bKx",
                                                           "Max-Forwards: 70", "To: <sip:a@other.org>", "From: <sip:a@other.org>;tag=1",
                                                           "Call-ID: c", "CSeq: 1 REGISTER"]))
        #expect(throws: SIPRefusal(404, "Not Found")) { try r.register(foreign, now: 0) }
        let e = #expect(throws: SIPRefusal.self) {
            try r.register(register(contact: "<sip:alice@192.0.2.1>", extra: ["Require: gruu, foo"]), now: 0)
        }
        #expect(e?.status == 420)
        #expect(e?.headers == [SIPHeaderField("Unsupported", "foo")])
    }

    @Test mutating func removeAllAndExpiresZero() throws {
        _ = try r.register(register(contact: "<sip:alice@192.0.2.1>;+sip.instance=\"<\(instance1)>\""), now: 0)
        _ = try r.register(register(contact: "<sip:alice@192.0.2.1>;expires=0", cseq: 2), now: 1)
        #expect(r.all(now: 2).isEmpty)
        _ = try r.register(register(contact: "<sip:alice@192.0.2.1>", cseq: 3), now: 3)
        _ = try r.register(register(contact: "*", cseq: 4, expires: "0"), now: 4)
        #expect(r.all(now: 5).isEmpty)
        // Expiry above the maximum is cut to it.
        let out = try r.register(register(contact: "<sip:alice@192.0.2.1>", cseq: 5, expires: "999999"), now: 0)
        #expect(out.bindings.first?.expires == 7200)
    }
}

@Suite struct ReplacesCheckTests {
    let alice = try! SIPURI("sip:alice@example.com")
    var leg: DialogSummary {
        DialogSummary(callID: "legA@x", localTag: "srv1", remoteTag: "dev1", state: .confirmed,
                      owner: GRUUOwner(aor: alice, instanceID: instance1))
    }

    func invite(_ replaces: [String], method: String = "INVITE", extra: [String] = []) throws -> SIPMessage {
        try SIPParser.parse(datagram: wire(["\(method) sip:bob@example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKr",
                                            "Max-Forwards: 70", "To: <sip:bob@example.com>", "From: <sip:alice@example.com>;tag=dev2",
                                            "Call-ID: new@y", "CSeq: 1 \(method)"] + replaces.map { "Replaces: \($0)" } + extra))
    }

    func decide(_ m: SIPMessage, dialogs: [DialogSummary]? = nil, aor: SIPURI? = nil, gruu: GRUUOwner? = nil) -> Int {
        let ds = dialogs ?? [leg]
        let r = ReplacesCheck.decide(m, dialogs: { id in ds.filter { $0.callID == id } }, authenticatedAOR: aor ?? alice,
                                     senderGRUU: gruu ?? GRUUOwner(aor: alice, instanceID: instance2))
        switch r {
        case .success: return 200
        case .failure(let f): return f.status
        }
    }

    @Test func rfc3891Table() throws {
        let good = "legA@x;to-tag=srv1;from-tag=dev1"
        #expect(decide(try invite([good])) == 200)
        #expect(decide(try invite([good, good])) == 400)
        // Two in one field: the parser answers 400 already.
        let e = #expect(throws: SIPParseError.self) { try invite(["legA@x;to-tag=srv1;from-tag=dev1, other@x;to-tag=a;from-tag=b"]) }
        #expect(e?.status == 400)
        #expect(decide(try invite([good], method: "OPTIONS")) == 400)
        #expect(decide(try invite([good], extra: ["Join: legA@x;to-tag=srv1;from-tag=dev1"])) == 400)
        #expect(decide(try invite(["nobody@x;to-tag=srv1;from-tag=dev1"])) == 481)
        #expect(decide(try invite(["legA@x;to-tag=dev1;from-tag=srv1"])) == 481)      // tags swapped
        var twice = leg
        twice.remoteTag = "dev1"
        #expect(decide(try invite([good]), dialogs: [leg, twice]) == 481)
        var subscribe = leg
        subscribe.createdByInvite = false
        #expect(decide(try invite([good]), dialogs: [subscribe]) == 481)
        var ended = leg
        ended.state = .terminated
        #expect(decide(try invite([good]), dialogs: [ended]) == 603)
        #expect(decide(try invite([good + ";early-only"])) == 486)
        var early = leg
        early.state = .early
        #expect(decide(try invite([good]), dialogs: [early]) == 481)
        early.initiatedHere = true
        #expect(decide(try invite([good + ";early-only"]), dialogs: [early]) == 200)
    }

    @Test func onlyTheSameUsersOtherDevice() throws {
        let m = try invite(["legA@x;to-tag=srv1;from-tag=dev1"])
        let bob = try SIPURI("sip:bob@example.com")
        #expect(decide(m, aor: bob) == 403)                                                      // another user
        #expect(decide(m, gruu: GRUUOwner(aor: bob, instanceID: instance2)) == 403)              // another user's GRUU
        #expect(decide(m, gruu: GRUUOwner(aor: alice, instanceID: instance1)) == 403)            // the same device
        let r = ReplacesCheck.decide(m, dialogs: { _ in [leg] }, authenticatedAOR: alice, senderGRUU: nil)  // unknown GRUU
        #expect((try? r.get()) == nil)
    }
}
