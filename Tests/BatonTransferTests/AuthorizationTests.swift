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
                    _ = try rig.tnControl.start(TransferRequest(to: "target", sessions: [session]))
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

            // Not enrolled: the TN hears why.
            var answer = start()
            #expect(answer.contains("not an enrolled device"), "\(answer)")
            #expect(try counted("unenrolled") == 1)

            // Enrolled, but for another address.
            try agent.addDevice(Device(name: "tn", publicKey: tnKey, addresses: ["192.0.2.0/24"]))
            answer = start()
            #expect(answer.contains("does not own \(original)"), "\(answer)")
            #expect(try counted("not-owner") == 1)

            // Owns it, but the target is not enrolled.
            try agent.deleteDevice("tn")
            try agent.addDevice(Device(name: "tn", publicKey: tnKey, addresses: ["\(tn.ipv4)/32"]))
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
            #expect(metrics.contains("baton_registrations_total{result=\"refused\"} 5"), "\(metrics)")

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
            let agent = rig.agentControl
            let identity = try NodeIdentity.loadOrCreate(at: "\(rig.daemons.directory)/tn/identity.key")
            let agentKey = try #require(PublicKey(try agent.status().publicKey))
            // Made-up originals in a documentation prefix the device owns: nothing real is taken over.
            try agent.addDevice(Device(name: "tn", publicKey: "\(identity.publicKey)", addresses: ["198.51.100.0/24"]))
            try agent.addDevice(Device(name: "target", publicKey: try rig.targetControl.status().publicKey,
                                       addresses: ["\(rig.target.ipv4)/32"]))
            try agent.addPolicy(Policy(from: "tn", to: "target"))
            let envelopes = (1...4).map { i -> String in
                let original = IPAddress("198.51.100.\(i)")!
                let channel = TransferChannel(transfer: .random(), key: .random(), role: .tn)
                let bytes = try! channel.seal(.register(Register(
                    original: original, temporary: IPAddress("198.51.100.\(100 + i)")!, tnMAC: rig.tn.mac, mode: .l2,
                    sessions: [SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: original, destinationPort: 5004)],
                    targetMAC: rig.target.mac, targetAddress: rig.target.ipv4,
                    control: Endpoint(address: IPAddress("198.51.100.\(100 + i)")!, port: 7390))),
                    sealingKeyFor: agentKey, identity: identity)
                return Data(bytes).base64EncodedString()
            }
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
}
