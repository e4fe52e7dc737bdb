import BatonModel
import Foundation
import Testing

// The domain types the data plane, the protocol, the store and the API share.

@Suite("BatonModel session rules, forwarding, takeovers")
struct DomainTests {
    static let v4 = IPAddress("10.0.0.2")!, cn = IPAddress("192.0.2.7")!, v6 = IPAddress("fd00::2")!
    static let mac = MACAddress("02:00:00:00:00:03")!, agentMAC = MACAddress("02:00:00:00:00:01")!

    @Test("a match's kind follows from which fields it leaves out")
    func matchKinds() throws {
        #expect(try SessionMatch(proto: .udp, source: Self.cn, sourcePort: 40000, destination: Self.v4, destinationPort: 5004).kind() == .exact)
        #expect(try SessionMatch(proto: .udp, source: Self.cn, sourcePort: nil, destination: Self.v4, destinationPort: 5004).kind() == .anySourcePort)
        #expect(try SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: Self.v4, destinationPort: 5004).kind() == .anySource)
        #expect(try SessionMatch(proto: .tcp, source: nil, sourcePort: nil, destination: Self.v4, destinationPort: nil).kind() == .anyPeer)
        // ICMP echo: the identifier stands in the source port, no destination port.
        #expect(try SessionMatch(proto: .icmp, source: Self.cn, sourcePort: 9, destination: Self.v4, destinationPort: nil).kind() == .exact)
    }

    @Test("invalid values throw ModelError with a message that names the problem")
    func validation() throws {
        func message(_ body: () throws(ModelError) -> Void) -> String? {
            do { try body(); return nil } catch { return error.description }
        }
        let sourcePortOnly = SessionMatch(proto: .udp, source: nil, sourcePort: 5, destination: Self.v4, destinationPort: 1)
        #expect(message(sourcePortOnly.validate)?.contains("unsupported wildcard") == true)
        let mixed = SessionMatch(proto: .udp, source: Self.v6, sourcePort: nil, destination: Self.v4, destinationPort: 1)
        #expect(message(mixed.validate)?.contains("different families") == true)
        let icmp6 = SessionMatch(proto: .icmp, source: nil, sourcePort: nil, destination: Self.v6, destinationPort: nil)
        #expect(message(icmp6.validate)?.contains("use icmpv6") == true)
        let noMAC = Forwarding(action: .l2)
        #expect(message { () throws(ModelError) in try noMAC.validate(for: .v4) }?.contains("unicast") == true)
        let tunnel = Forwarding.encap(to: Self.v6, from: Self.v6, nextHop: Self.mac, sourceMAC: Self.agentMAC)
        #expect(message { () throws(ModelError) in try tunnel.validate(for: .v4) }?.contains("tunnel addresses (got fd00::2 -> fd00::2)") == true)
        // A tunnel MTU below what every link of the family carries (a rule written by hand).
        let tinyMTU = Forwarding.encap(to: Self.v6, from: Self.v6, nextHop: Self.mac, sourceMAC: Self.agentMAC, mtu: 1319)
        #expect(message { () throws(ModelError) in try tinyMTU.validate(for: .v6) }?.contains("mtu 1319 is below 1320") == true)
        let okMTU = Forwarding.encap(to: Self.v6, from: Self.v6, nextHop: Self.mac, sourceMAC: Self.agentMAC, mtu: 1320)
        #expect(message { () throws(ModelError) in try okMTU.validate(for: .v6) } == nil)
        // Relays: a rewrite of the rule's family, unicast addresses, ports 1-65535; never a
        // takeover's default.
        let rewrite = Forwarding.Rewrite(source: Self.v4, sourcePort: 30000, destination: IPAddress("10.0.0.9")!, destinationPort: 6000)
        let relay = Forwarding.relay(rewrite, nextHop: Self.mac, sourceMAC: Self.agentMAC)
        let echoRelay = SessionRule(match: SessionMatch(proto: .icmp, source: nil, sourcePort: nil, destination: Self.v4, destinationPort: nil),
                                    forward: relay)
        #expect(message(echoRelay.validate)?.contains("relay rewrites udp and tcp only, not icmp") == true)
        #expect(message { () throws(ModelError) in try relay.validate(for: .v4) } == nil)
        #expect(message { () throws(ModelError) in try relay.validate(for: .v6) }?.contains("traffic needs") == true)
        #expect(message { () throws(ModelError) in try Forwarding(action: .relay, destinationMAC: Self.mac, sourceMAC: Self.agentMAC).validate(for: .v4) }?
            .contains("relay needs the rewrite") == true)
        var portZero = rewrite
        portZero.destinationPort = 0
        #expect(message { () throws(ModelError) in try Forwarding.relay(portZero, nextHop: Self.mac, sourceMAC: Self.agentMAC).validate(for: .v4) }?
            .contains("ports must be 1-65535") == true)
        var toMulticast = rewrite
        toMulticast.destination = IPAddress("224.0.0.5")!
        #expect(message { () throws(ModelError) in try Forwarding.relay(toMulticast, nextHop: Self.mac, sourceMAC: Self.agentMAC).validate(for: .v4) }?
            .contains("must be a unicast address") == true)
        #expect(message(Takeover(address: Self.v4, defaultForward: relay).validate)?.contains("cannot relay") == true)
        let decoded = try JSONDecoder().decode(Forwarding.self, from: JSONEncoder().encode(relay))
        #expect(decoded == relay)
        // Lockouts: only a drop expires, and not as a takeover's default.
        #expect(message { () throws(ModelError) in try Forwarding.drop(until: 5).validate(for: .v4) } == nil)
        var expiringL2 = Forwarding.l2(to: Self.mac, from: Self.agentMAC)
        expiringL2.expires = 5
        #expect(message { () throws(ModelError) in try expiringL2.validate(for: .v4) }?.contains("only a drop expires") == true)
        #expect(message { () throws(ModelError) in try Forwarding.drop(until: 0).validate(for: .v4) }?.contains("after boot") == true)
        #expect(message(Takeover(address: Self.v4, defaultForward: .drop(until: 5)).validate)?.contains("does not expire") == true)
        let multicast = Takeover(address: IPAddress("224.0.0.1")!, defaultForward: .pass)
        #expect(message(multicast.validate)?.contains("not a unicast address") == true)
        let sameTemporary = Takeover(address: Self.v4, defaultForward: .pass, temporaryAddress: Self.v4)
        #expect(message(sameTemporary.validate)?.contains("temporary address") == true)
        let good = SessionRule(match: SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: Self.v4, destinationPort: 5004),
                               forward: .l2(to: Self.mac, from: Self.agentMAC))
        #expect(message(good.validate) == nil)
    }

    @Test("an encap takeover's temporary address is its tunnel destination")
    func takeoverTemporary() {
        let t = Takeover(address: Self.v4, defaultForward: .encap(to: IPAddress("10.0.1.9")!, from: IPAddress("10.0.0.1")!,
                                                                 nextHop: Self.mac, sourceMAC: Self.agentMAC))
        #expect(t.temporaryAddress == IPAddress("10.0.1.9"))
    }
}

@Suite("BatonModel roles and transfer states")
struct TransferVocabularyTests {
    @Test("roles travel by name in JSON, and keep their protocol byte")
    func roles() throws {
        let data = try JSONEncoder().encode([Role.tn, .target, .agent])
        #expect(String(decoding: data, as: UTF8.self) == #"["tn","target","agent"]"#)
        #expect(try JSONDecoder().decode([Role].self, from: data) == [.tn, .target, .agent])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([Role].self, from: Data(#"["TN"]"#.utf8)) }
        #expect(Role.allCases.map(\.rawValue) == [1, 2, 3])
        #expect(Role.tn.description == "TN")
    }

    @Test("each role's states are states the API reports, and together they are all of them")
    func states() {
        let agent = AgentTransferState.allCases.map(TransferState.init)
        let tn = TNTransferState.allCases.map(TransferState.init)
        let target = TargetTransferState.allCases.map(TransferState.init)
        #expect(agent.map(\.rawValue) == AgentTransferState.allCases.map(\.rawValue))
        #expect(tn.map(\.rawValue) == TNTransferState.allCases.map(\.rawValue))
        #expect(target.map(\.rawValue) == TargetTransferState.allCases.map(\.rawValue))
        #expect(Set(agent + tn + target) == Set(TransferState.allCases))
    }
}

/// An address literal that must parse.
func ip(_ s: String) -> IPAddress { IPAddress(s)! }
/// A MAC literal that must parse.
func mac(_ s: String) -> MACAddress { MACAddress(s)! }
let macA = mac("02:00:00:00:00:0a")
