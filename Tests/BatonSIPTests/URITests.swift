import BatonModel
import Testing
@testable import BatonSIP

@Suite struct URITests {
    @Test func fullURIReadsAndWritesBack() throws {
        let u = try SIPURI("sips:al%69ce:secret@Atlanta.COM:5061;transport=TCP;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent")
        #expect(u.scheme == .sips)
        #expect(u.user == "alice")
        #expect(u.password == "secret")
        #expect(u.host == .name("atlanta.com"))
        #expect(u.port == 5061)
        #expect(u.parameters[parameter: "transport"] == "TCP")
        #expect(u.parameters[parameter: "lr"] == "")
        #expect(u.headers[parameter: "subject"] == "project x")
        #expect(try SIPURI(u.description) == u)
    }

    @Test func addressesAndIPv6References() throws {
        #expect(try SIPURI("sip:bob@192.0.2.4").host == .address(IPAddress("192.0.2.4")!))
        #expect(try SIPURI("sip:[2001:db8::10]:5070").host == .address(IPAddress("2001:db8::10")!))
        #expect(try SIPURI("sip:[2001:db8::10]:5070").port == 5070)
        for bad in ["sip:[2001:db8::10", "sip:bob@[192.0.2.4]", "sip:bob@300.1.1.1", "sip:bob@-x.com", "sip:bob@x.9com",
                    "sip:bob@", "sip:@host", "sip:bob@host:", "sip:bob@host;a=b;a=c", "sip:b%zzob@host", "sip:bob@ho st",
                    "http://x", "sip:bob@host?x"] {
            #expect(throws: SIPSyntaxError.self, "\(bad)") { try SIPURI(bad) }
        }
    }

    /// RFC 3261 19.1.4's examples.
    @Test func comparisonFollowsRFC3261() throws {
        func eq(_ a: String, _ b: String) throws -> Bool { try SIPURI(a).isEquivalent(to: SIPURI(b)) }
        #expect(try eq("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"))
        #expect(try eq("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"))
        #expect(try eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"))
        #expect(try eq("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                       "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"))
        #expect(try !eq("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"))
        #expect(try !eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"))
        #expect(try !eq("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"))
        #expect(try !eq("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"))
        #expect(try !eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"))
    }

    @Test func otherSchemesAreKeptForTheApplication() throws {
        #expect(try SIPAnyURI(parsing: "tel:+1-201-555-0123") == .other(scheme: "tel", text: "tel:+1-201-555-0123"))
        #expect(throws: SIPSyntaxError.self) { try SIPAnyURI(parsing: "9tel:x") }
        #expect(throws: SIPSyntaxError.self) { try SIPAnyURI(parsing: "tel:") }
    }

    @Test func nameAddressForms() throws {
        let a = try NameAddress("\"A \\\"quoted\\\" name\" <sip:a@x.org;lr>;tag=88;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"")
        #expect(a.displayName == "A \"quoted\" name")
        #expect(a.uri.sipURI?.parameters[parameter: "lr"] == "")
        #expect(a.tag == "88")
        #expect(Registrations.instanceID(a.parameters[parameter: "+sip.instance"]!) == "urn:uuid:00000000-0000-1000-8000-000a95a0e128")
        // addr-spec: what follows ";" is the header's, not the URI's.
        let b = try NameAddress("sip:b@y.org;tag=5")
        #expect(b.tag == "5")
        #expect(b.uri.sipURI?.parameters.isEmpty == true)
        #expect(try NameAddress("Bob Smith <sip:b@y.org>").displayName == "Bob Smith")
        for bad in ["\"open <sip:a@x>", "<sip:a@x", "Bob <sip:a@x> junk", "<sip:a@x>;=5", "sip:a@x?h=1", "<sip:a @x>"] {
            #expect(throws: SIPSyntaxError.self, "\(bad)") { try NameAddress(bad) }
        }
    }

    @Test func viaForms() throws {
        let v = try Via(parsing: "SIP / 2.0 / UDP [2001:db8::9]:5062 ; branch = z9hG4bK1 ;rport;received=192.0.2.9")
        #expect(v.transport == "UDP")
        #expect(v.host == .address(IPAddress("2001:db8::9")!))
        #expect(v.port == 5062)
        #expect(v.branch == "z9hG4bK1")
        #expect(v.parameters[parameter: "rport"] == "")
        for bad in ["SIP/2.0/UDP", "SIP/3.0/UDP host", "SIP/2.0/UDP host:0x1", "SIP/2.0/UDP host;received=nothost",
                    "SIP/2.0/UDP host;ttl=300", "SIP/2.0 UDP host"] {
            #expect(throws: SIPSyntaxError.self, "\(bad)") { try Via(parsing: bad[...]) }
        }
    }

    @Test func replacesForms() throws {
        let r = try Replaces(parsing: "98732@sip.example.com ; from-tag = r33th4x0r ;to-tag=ff87ff;early-only")
        #expect(r == Replaces(callID: "98732@sip.example.com", toTag: "ff87ff", fromTag: "r33th4x0r", earlyOnly: true))
        for bad in ["x@y;to-tag=a", "x@y;from-tag=a", "x y;to-tag=a;from-tag=b", "x@y;to-tag=a;from-tag=b;early-only=1", ";to-tag=a;from-tag=b"] {
            #expect(throws: SIPSyntaxError.self, "\(bad)") { try Replaces(parsing: bad[...]) }
        }
    }
}
