import BatonModel
import Testing

/// An anchored session's rules as docs/anchors.md draws them, and what validation refuses.
@Suite struct AnchorModelTests {
    static let anchor = Endpoint(address: IPAddress("10.0.0.1")!, port: 30000)
    static let remote = Endpoint(address: IPAddress("192.0.2.7")!, port: 40000)
    static let dev1 = Endpoint(address: IPAddress("10.0.0.3")!, port: 6000)
    static let dev2 = Endpoint(address: IPAddress("10.0.0.4")!, port: 6002)
    static let mac = MACAddress("02:00:00:00:00:01")!, hop = MACAddress("02:00:00:00:00:02")!

    static func session() -> AnchoredSession {
        AnchoredSession(id: "0123456789abcdef", proto: .udp, anchor: anchor, relayPort: 30001, remote: remote, device: dev1,
                        idleTimeout: 60, created: 0)
    }

    @Test func twoRulesThatUndoEachOther() throws {
        let a = Self.session()
        try a.validate()
        let rules = a.rules(hop: { _ in Self.hop }, sourceMAC: Self.mac)
        #expect(rules.count == 2)
        // remote → anchor:30000 leaves as anchor:30001 → device.
        #expect(rules[0].match == SessionMatch(proto: .udp, source: Self.remote.address, sourcePort: 40000,
                                               destination: Self.anchor.address, destinationPort: 30000))
        #expect(rules[0].forward.rewrite == .init(source: Self.anchor.address, sourcePort: 30001, destination: Self.dev1.address, destinationPort: 6000))
        // device → anchor:30001 leaves as anchor:30000 → remote.
        #expect(rules[1].match == SessionMatch(proto: .udp, source: Self.dev1.address, sourcePort: 6000,
                                               destination: Self.anchor.address, destinationPort: 30001))
        #expect(rules[1].forward.rewrite == .init(source: Self.anchor.address, sourcePort: 30000, destination: Self.remote.address, destinationPort: 40000))
        for r in rules { try r.validate() }
    }

    @Test func aMovedSessionKeepsTheOldDevicesReturnOrLocksItOut() throws {
        var a = Self.session()
        a.device = Self.dev2
        a.retired = [.init(device: Self.dev1, until: 1e12, lockedOut: false)]
        var rules = a.rules(hop: { _ in Self.hop }, sourceMAC: Self.mac)
        #expect(rules.map(\.match) == [a.forwardMatch, a.reverseMatch(Self.dev2), a.reverseMatch(Self.dev1)])
        #expect(rules[2].forward == rules[1].forward, "the old device's late packets still go to the remote")
        a.retired[0].lockedOut = true
        rules = a.rules(hop: { _ in Self.hop }, sourceMAC: Self.mac)
        #expect(rules[2].forward.action == .drop && (rules[2].forward.expires ?? 0) > monotonicNanoseconds())
    }

    @Test func validationRefusesWhatCannotBeRelayed() {
        func refused(_ change: (inout AnchoredSession) -> Void) -> String? {
            var a = Self.session()
            change(&a)
            do { try a.validate(); return nil } catch { return error.description }
        }
        #expect(refused { $0.proto = .icmp }?.contains("udp or tcp") == true)
        #expect(refused { $0.device = Endpoint(address: IPAddress("fd00::3")!, port: 6000) }?.contains("family") == true)
        #expect(refused { $0.relayPort = 30000 }?.contains("relay port") == true)
        #expect(refused { $0.device = Self.remote }?.contains("same endpoint") == true)
        #expect(refused { $0.device = Endpoint(address: Self.anchor.address, port: 6000) }?.contains("anchor's own") == true)
        #expect(refused { $0.remote.port = 0 }?.contains("port") == true)
        #expect(refused { $0.id = "ABC" }?.contains("16 lowercase hex") == true)
        #expect(refused { $0.idleTimeout = .nan }?.contains("idle timeout") == true)
        #expect(refused { _ in } == nil)
    }
}
