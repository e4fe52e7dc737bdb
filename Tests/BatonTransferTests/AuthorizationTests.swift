import BatonAPI
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import BatonProtocol
import Foundation
import Testing

/// Only enrolled devices register, only for addresses they own, only to enrolled targets a
/// policy allows, and only at their rate; every refusal says why and is counted in the
/// metrics. Nothing refused reaches the maps.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct AuthorizationTests {
    @Test func refusalsAreClearAndCounted() throws {
        var options = LabDaemons.Options()
        options.enrol = false
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let agent = rig.agentControl, tn = rig.tn, target = rig.target, original = rig.original
            let tnKey = try rig.tnControl.status().publicKey, targetKey = try rig.targetControl.status().publicKey
            let session = SessionMatch(proto: .udp, source: rig.cn.ipv4, sourcePort: 40000, destination: original, destinationPort: 5004)
            func start() -> String {
                do {
                    _ = try rig.tnControl.start(TransferRequest(to: "target", sessions: [session], mode: .l2))
                    return "started"
                } catch {
                    return "\(error)"
                }
            }
            func counted(_ reason: String) throws -> Double {
                let line = try agent.metrics().split(separator: "\n")
                    .first { $0.hasPrefix("baton_rejections_total{reason=\"\(reason)\"}") }
                return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            }

            // Not enrolled: refused and counted, and no datagram goes to the addresses the
            // registration merely claims (the TN hears nothing and gives up).
            var answer = start()
            #expect(answer.contains("agent") && !answer.contains("not an enrolled device"), "\(answer)")
            let unenrolled = try counted("unenrolled")
            #expect(unenrolled >= 1, "each retransmission is refused again")

            // Enrolled, but for another address.
            try agent.addDevice(Device(name: "tn", publicKey: tnKey, addresses: ["192.0.2.0/24"]))
            answer = start()
            #expect(answer.contains("does not own \(original)"), "\(answer)")
            #expect(try counted("not-owner") == 1)

            // Owns it, but the target is not enrolled.
            try agent.deleteDevice("tn")
            try agent.addDevice(Device(name: "tn", publicKey: tnKey, addresses: ["\(tn.ipv4)/32"]))
            answer = start()
            #expect(answer.contains("does not own the temporary address"), "\(answer)")
            // With its temporary pool.
            try agent.deleteDevice("tn")
            try agent.addDevice(Device(name: "tn", publicKey: tnKey,
                                       addresses: ["\(tn.ipv4)/32"] + rig.daemons.temporaryPools.map { "\($0)" }))
            answer = start()
            #expect(answer.contains("not an address of any enrolled device"), "\(answer)")
            #expect(try counted("unenrolled-target") == 1)

            // Target enrolled, but no policy allows tn → target.
            try agent.addDevice(Device(name: "target", publicKey: targetKey, addresses: ["\(target.ipv4)/32"]))
            answer = start()
            #expect(answer.contains("no policy allows transfers from tn to target"), "\(answer)")
            #expect(try counted("not-allowed") == 1)
            #expect(try agent.status().takeovers.isEmpty)
            #expect(try DataPlane.adopt(root: rig.daemons.pinRoots[0]).ruleCount() == 0, "nothing refused reached the maps")

            // A policy for another pair does not help; one for this pair does.
            try agent.addPolicy(Policy(from: "target", to: "tn"))
            #expect(start().contains("no policy allows"))
            let policy = try agent.addPolicy(Policy(from: "tn", to: "*"))
            answer = start()
            #expect(answer == "started", "\(answer)")
            let metrics = try agent.metrics()
            #expect(metrics.contains("baton_takeovers_total 1"), "\(metrics)")
            #expect(metrics.contains("baton_registrations_total{result=\"refused\"} \(Int(unenrolled) + 5)"), "\(metrics)")

            // Bad enrolments are refused with clear errors and change nothing.
            #expect { try agent.addDevice(Device(name: "tn", publicKey: tnKey, addresses: ["\(tn.ipv4)/32"])) }
                throws: { ($0 as? ControlError)?.code == .conflict }
            #expect(throws: ControlError.self) { try agent.addDevice(Device(name: "bad name", publicKey: tnKey, addresses: ["10.0.0.1/32"])) }
            #expect(throws: ControlError.self) { try agent.addDevice(Device(name: "x", publicKey: "short", addresses: ["10.0.0.1/32"])) }
            #expect(throws: ControlError.self) { try agent.addDevice(Device(name: "y", publicKey: targetKey, addresses: ["10.0.0.1/33"])) }
            #expect(throws: ControlError.self) { try agent.deletePolicy(policy.id! + 100) }
            #expect(try agent.devices().map(\.name) == ["target", "tn"])
        }
    }

    /// Registrations through the API (sealed as over UDP): a device over its rate is refused
    /// as rate-limited, and counted.
    @Test func rateLimitPerDevice() throws {
        var options = LabDaemons.Options()
        options.enrol = false
        options.agentArguments = ["--rate-limit", "1", "--rate-burst", "2"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = try APIRegistrations(rig)
            let agent = rig.agentControl
            let envelopes = (1...4).map { api.envelope($0) }
            let results = try agent.register(RegistrationBatch(envelopes: envelopes))
            #expect(results.map(\.accepted) == [true, true, false, false], "\(results)")
            #expect(results.allSatisfy { $0.envelope != nil }, "every refusal is sealed for the device: \(results)")
            #expect(try agent.metrics().contains("baton_rejections_total{reason=\"rate-limited\"} 2"))
            #expect(try agent.status().takeovers.count == 2)
            // Malformed envelopes are refused one by one, the batch as a whole answers.
            let bad = try agent.register(RegistrationBatch(envelopes: ["not base64!", Data([1, 2, 3]).base64EncodedString()]))
            #expect(bad.map(\.accepted) == [false, false])
            #expect(throws: ControlError.self) { try agent.register(RegistrationBatch(envelopes: [])) }
        }
    }

    /// A batch is admitted together but judged one by one: a second registration for an
    /// address in the same batch, the same envelope twice and a malformed registration are
    /// refused, the others go ahead; an address already taken over is refused in a later batch.
    @Test func batchJudgedOneByOne() throws {
        var options = LabDaemons.Options()
        options.enrol = false
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = try APIRegistrations(rig)
            let agent = rig.agentControl
            func envelope(_ host: Int, ports: [UInt16] = [5004]) -> String { api.envelope(host, ports: ports) }
            let first = envelope(1)
            let results = try agent.register(RegistrationBatch(envelopes: [first, envelope(1), first, envelope(3, ports: [5004, 5004]), envelope(2)]))
            #expect(results.map(\.accepted) == [true, false, false, false, true], "\(results)")
            #expect(results[1].envelope != nil && results[3].envelope != nil, "refusals are sealed for the device")
            #expect(try agent.status().takeovers == ["198.51.100.1", "198.51.100.2"])
            let later = try agent.register(RegistrationBatch(envelopes: [envelope(1)]))
            #expect(later.map(\.accepted) == [false])
            #expect(try agent.list().filter { $0.state == .active }.count == 2)
            #expect(try agent.metrics().contains("baton_registrations_total{result=\"accepted\"} 2"))
        }
    }
}

extension AuthorizationTests {
    /// A number out of range in a registration (a sealed, authentic one) is refused where it
    /// enters, with the field and the range in the sealed reject; nothing is taken over.
    @Test func idleTimeoutOutOfRangeOverTheProtocol() throws {
        var options = LabDaemons.Options()
        options.enrol = false
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = try APIRegistrations(rig)
            let agent = rig.agentControl
            for (host, idle) in [(11, 1e308), (12, -1.0), (13, 0.0)] {
                let channel = TransferChannel(transfer: .random(), key: .random(), role: .tn)
                let results = try agent.register(RegistrationBatch(envelopes: [api.envelope(host, idleTimeout: idle, channel: channel)]))
                #expect(results.map(\.accepted) == [false], "\(idle): \(results)")
                let sealed = try #require(results.first?.envelope)
                let answer = try channel.open(Envelope.parse(Array(try #require(Data(base64Encoded: sealed)))))
                guard case .reject(let reject) = answer else { Issue.record("\(idle): answered \(answer.type), not reject"); continue }
                #expect(reject.reason.contains("invalid idleTimeout") && reject.reason.contains("expected 0.1-86400 seconds"),
                        "\(idle): \(reject.reason)")
            }
            #expect(try agent.status().takeovers.isEmpty)
            // In range, the same registration goes ahead.
            #expect(try agent.register(RegistrationBatch(envelopes: [api.envelope(14, idleTimeout: 5)])).map(\.accepted) == [true])
        }
    }

    /// The TN sends its `register` again (the `registered` was lost): the agent answers
    /// `registered` again for the transfer it has, and admits nothing new.
    @Test func retransmittedRegistration() throws {
        var options = LabDaemons.Options()
        options.enrol = false
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = try APIRegistrations(rig)
            let agent = rig.agentControl
            let channel = TransferChannel(transfer: .random(), key: .random(), role: .tn)
            let first = try agent.register(RegistrationBatch(envelopes: [api.envelope(7, channel: channel)]))
            let again = try agent.register(RegistrationBatch(envelopes: [api.envelope(7, channel: channel)]))
            #expect(first.map(\.accepted) == [true] && again.map(\.accepted) == [true], "\(first) \(again)")
            let sealed = try #require(again[0].envelope)
            let bytes = try #require(Data(base64Encoded: sealed))
            let answer = try channel.open(Envelope.parse(Array(bytes)))
            guard case .registered = answer else { Issue.record("answered \(answer.type), not registered"); return }
            #expect(again[0].transfer == "\(channel.transfer)")
            #expect(try agent.list().map(\.id) == ["\(channel.transfer)"], "one transfer, admitted once")
            #expect(try agent.metrics().contains("baton_registrations_total{result=\"accepted\"} 1"))
        }
    }
}

/// The TN enrolled (without the lab's enrolment) as owning 198.51.100.0/24, a documentation
/// prefix: registrations for made-up originals there take over nothing real.
struct APIRegistrations {
    let rig: Rig
    let identity: NodeIdentity
    let agentKey: PublicKey

    init(_ rig: Rig) throws {
        self.rig = rig
        let agent = rig.agentControl
        identity = try NodeIdentity.loadOrCreate(at: "\(rig.daemons.directory)/tn/identity.key")
        agentKey = try #require(PublicKey(try agent.status().publicKey))
        try agent.addDevice(Device(name: "tn", publicKey: "\(identity.publicKey)", addresses: ["198.51.100.0/24"]))
        try agent.addDevice(Device(name: "target", publicKey: try rig.targetControl.status().publicKey,
                                   addresses: ["\(rig.target.ipv4)/32"]))
        try agent.addPolicy(Policy(from: "tn", to: "target"))
    }

    /// A sealed registration, base64, for 198.51.100.`host` (temporary .`100 + host`); sealed
    /// again on the same channel, it is the TN's retransmission.
    func envelope(_ host: Int, ports: [UInt16] = [5004], idleTimeout: Double? = nil,
                  channel: TransferChannel = TransferChannel(transfer: .random(), key: .random(), role: .tn),
                  temporary: IPAddress? = nil, control: IPAddress? = nil, tnMAC: MACAddress? = nil,
                  targetMAC: MACAddress? = nil) -> String {
        let original = IPAddress("198.51.100.\(host)")!
        let temporary = temporary ?? IPAddress("198.51.100.\(100 + host)")!
        let bytes = try! channel.seal(.register(Register(
            original: original, temporary: temporary, tnMAC: tnMAC ?? rig.tn.mac, mode: .l2,
            sessions: ports.map { SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: original, destinationPort: $0) },
            targetMAC: targetMAC ?? rig.target.mac, targetAddress: rig.target.ipv4,
            control: Endpoint(address: control ?? temporary, port: 7390), idleTimeout: idleTimeout)),
            sealingKeyFor: agentKey, identity: identity)
        return Data(bytes).base64EncodedString()
    }
}

extension AuthorizationTests {
    /// The replay chain of issue 12 item 2: replays of an admitted `register` take no
    /// rate-limit token (the device's next registration goes ahead); a refused registration
    /// replayed once the address is free is still refused; one sealed before the agent's
    /// restart is refused after it. Every replay is counted as `replayed`.
    @Test func replaysNeitherDrainTheBucketNorComeBackLater() throws {
        var options = LabDaemons.Options()
        options.enrol = false
        // Four tokens and next to no refill: every token taken shows.
        options.agentArguments = ["--rate-limit", "0.001", "--rate-burst", "4", "--max-waking", "1"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = try APIRegistrations(rig)
            let agent = rig.agentControl
            func register(_ envelopes: [String]) throws -> [Bool] {
                try agent.register(RegistrationBatch(envelopes: envelopes)).map(\.accepted)
            }
            let first = api.envelope(1)
            #expect(try register([first]) == [true])
            let firstID = try #require(try agent.list().first?.id)
            // Captured and replayed: refused, and no token taken.
            #expect(try register(Array(repeating: first, count: 6)) == Array(repeating: false, count: 6))
            #expect(try register([api.envelope(2)]) == [true], "the replays drained the device's bucket")
            // A registration refused (its address is taken over), then the address freed.
            let refused = api.envelope(1)
            #expect(try register([refused]) == [false])
            try agent.end(firstID)
            #expect(try rig.wait(10, "the agent to give up waking the made-up TN") { try agent.status().takeovers == ["198.51.100.2"] })
            #expect(try register([refused]) == [false], "a refused registration replayed later took over the freed address")
            #expect(try agent.status().takeovers == ["198.51.100.2"])
            // Sealed before a restart, sent after it: refused; sealed after it: admitted.
            let old = api.envelope(3)
            rig.daemons.agent.stop()
            try rig.daemons.agent.restart()
            #expect(try register([old]) == [false])
            #expect(try register([api.envelope(3)]) == [true])
            #expect(try agent.status().rejected["replayed"] == 1, "the replay after the restart is counted")
        }
    }
}

extension AuthorizationTests {
    /// Issue 12 item 4: every address and MAC the agent will send to is checked, not only the
    /// original: the temporary and control addresses must be the TN device's, the target MAC
    /// the one the agent's neighbour table has for the target, and no MAC the agent's own.
    @Test func registrationsCheckedFieldByField() throws {
        var options = LabDaemons.Options()
        options.enrol = false
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = try APIRegistrations(rig)
            let agent = rig.agentControl
            let agentMAC = try agent.status().mac
            func refusal(_ envelope: String) throws -> String {
                let r = try #require(try agent.register(RegistrationBatch(envelopes: [envelope])).first)
                #expect(!r.accepted)
                return r.error ?? ""
            }
            let outside = IPAddress("203.0.113.9")!
            #expect(try refusal(api.envelope(1, temporary: outside)).contains("refused"))
            #expect(try refusal(api.envelope(2, control: outside)).contains("refused"))
            #expect(try refusal(api.envelope(3, targetMAC: MACAddress("02:00:5e:00:53:01")!)).contains("refused"))
            #expect(try refusal(api.envelope(4, targetMAC: agentMAC)).contains("refused"))
            #expect(try refusal(api.envelope(5, tnMAC: agentMAC)).contains("refused"))
            #expect(try agent.status().takeovers.isEmpty, "a refused registration took over an address")
            #expect(try agent.status().rejected["not-owner"] == 2, "the temporary and control addresses are the TN's")
            let log = rig.daemons.agent.logText()
            #expect(log.contains("does not own the temporary address 203.0.113.9"))
            #expect(log.contains("does not own the control address 203.0.113.9"))
            #expect(log.contains("the target MAC 02:00:5e:00:53:01 is not \(rig.target.ipv4)'s"))
            #expect(log.contains("MAC \(agentMAC) is the agent's own"))
            // Everything in order: admitted.
            #expect(try agent.register(RegistrationBatch(envelopes: [api.envelope(6)])).map(\.accepted) == [true])
        }
    }
}
