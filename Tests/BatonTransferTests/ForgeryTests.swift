import BatonAPI
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import BatonPacket
import BatonProtocol
import Foundation
import Synchronization
import Testing

/// Protocol datagrams seen on one host's interface, captured off the wire.
final class Capture: Sendable {
    private let socket: PacketSocket
    private struct State {
        var running = true
        var datagrams: [(source: IPAddress, payload: [UInt8])] = []
    }
    private let state = Mutex(State())
    private let done = DispatchSemaphore(value: 0)

    init(_ host: LabHost, port: UInt16 = 7390) throws {
        socket = try PacketSocket(interface: host.interface, in: host.namespace)
        Thread.detachNewThread { [self] in
            while state.withLock({ $0.running }) {
                guard let bytes = try? socket.receive(timeout: .milliseconds(50)),
                      let frame = try? ParsedFrame(bytes), let ip = frame.ip, let udp = ip.udp, udp.dport == port else { continue }
                state.withLock { $0.datagrams.append((ip.src, Array(ip.payloadBytes))) }
            }
            done.signal()
        }
    }

    /// Stops and returns the captured protocol datagrams of `type`.
    func stop(_ type: MessageType) -> [[UInt8]] {
        state.withLock { $0.running = false }
        done.wait()
        socket.close()
        return state.withLock { s in s.datagrams.map(\.payload).filter { (try? Envelope.parse($0))?.type == type } }
    }
}

/// A forged or replayed registration or wake-up changes nothing: no takeover, no rule, no
/// address moved; the daemon logs and counts the rejection.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct ForgeryTests {
    @Test func forgedAndReplayedRegistrationsAndWakeUpsChangeNothing() throws {
        try Rig.with(.l2, family: .v4) { rig in
            let cn = rig.cn, sa = rig.sa, tn = rig.tn, original = rig.original
            let session = SessionMatch(proto: .udp, source: cn.ipv4, sourcePort: 40000, destination: original, destinationPort: 5004)
            let agentPins = rig.daemons.pinRoots[0]
            func agentMaps() throws -> (takeovers: Int, rules: Int) {
                let dp = try DataPlane.adopt(root: agentPins)
                return (try dp.takeovers().count, try dp.rules(withCounters: false).count)
            }

            // A real transfer, start to end, with its datagrams captured on both ends.
            let atAgent = try Capture(sa), atTN = try Capture(tn)
            let first = try rig.tnControl.start(TransferRequest(to: "target", sessions: [session], mode: .l2))
            #expect(try agentMaps() == (1, 1))
            try rig.agentControl.end(first.id)
            try rig.wait(5, "the first transfer to end") { try rig.agentControl.show(first.id).state == .ended }
            Thread.sleep(forTimeInterval: 0.2)
            let registers = atAgent.stop(.register), wakeUps = atTN.stop(.wakeUp)
            let register = try #require(registers.first, "a register datagram was captured")
            let wakeUp = try #require(wakeUps.first, "a wake-up datagram was captured")
            #expect(try agentMaps() == (0, 0))
            let transfersBefore = try rig.agentControl.list().count

            // Someone in the TN's namespace (or anywhere) sends to the agent.
            let attacker = try tn.udpSocket(.v4)
            defer { attacker.close() }
            let agentEndpoint = SocketAddress(sa.ipv4, port: 7390)
            func rejected(_ control: Control, _ reason: String) throws -> Int { try control.status().rejected[reason] ?? 0 }

            // 1. The captured registration, replayed after its transfer ended.
            let replayedBefore = try rejected(rig.agentControl, "replayed")
            try attacker.send(register, to: agentEndpoint)
            try rig.wait(3, "the agent to reject the replayed registration") { try rejected(rig.agentControl, "replayed") > replayedBefore }

            // 2. The same registration with one byte of its ciphertext changed: its mac1 no
            // longer matches (junk, before any X25519); with a mac1 made anew by someone who
            // knows the agent's public key, the sealed message does not authenticate (forged).
            var tampered = register
            tampered[tampered.count - 40] ^= 0x40
            let junkBefore = try rejected(rig.agentControl, "junk")
            try attacker.send(tampered, to: agentEndpoint)
            try rig.wait(3, "the agent to drop the tampered registration") { try rejected(rig.agentControl, "junk") > junkBefore }
            let agentPublicKey = try #require(PublicKey(try rig.agentControl.status().publicKey))
            let parsed = try Envelope.parse(tampered)
            let remade = parsed.header + parsed.ciphertext + MAC1(recipient: agentPublicKey).compute(header: parsed.header, ciphertext: parsed.ciphertext)
            let forgedBefore = try rejected(rig.agentControl, "forged")
            try attacker.send(remade, to: agentEndpoint)
            try rig.wait(3, "the agent to reject the tampered registration") { try rejected(rig.agentControl, "forged") > forgedBefore }

            // 3. A well-formed registration sealed by a key that is not an enrolled device.
            let stranger = NodeIdentity.generate()
            let agentKey = try #require(PublicKey(try rig.agentControl.status().publicKey))
            let id = TransferID.random()
            let channel = TransferChannel(transfer: id, key: SessionKey.random(), role: .tn)
            let forged = try channel.seal(.register(Register(
                original: original, temporary: tn.primary.ipv4Network.address(at: 99)!,
                tnMAC: tn.mac, mode: .l2, sessions: [session], targetMAC: cn.mac, targetAddress: cn.ipv4,
                control: Endpoint(address: cn.ipv4, port: 7390))), sealingKeyFor: agentKey, identity: stranger)
            let unenrolledBefore = try rejected(rig.agentControl, "unenrolled")
            try attacker.send(forged, to: agentEndpoint)
            try rig.wait(3, "the agent to reject the unenrolled registration") { try rejected(rig.agentControl, "unenrolled") > unenrolledBefore }

            #expect(try agentMaps() == (0, 0), "no takeover and no rule came of it")
            #expect(try rig.agentControl.list().count == transfersBefore)
            #expect(try rig.agentControl.status().takeovers.isEmpty)

            // 4. A second, live transfer; the first one's wake-up replayed to the TN.
            let second = try rig.tnControl.start(TransferRequest(to: "target", sessions: [session], mode: .l2))
            let temporary = try #require(second.temporary)
            let tnEndpoint = SocketAddress(temporary, port: 7390)
            let fromAgentSide = try sa.udpSocket(.v4)
            defer { fromAgentSide.close() }
            let tnReplayed = try rejected(rig.tnControl, "replayed")
            try fromAgentSide.send(wakeUp, to: tnEndpoint)
            try rig.wait(3, "the TN to reject the replayed wake-up") { try rejected(rig.tnControl, "replayed") > tnReplayed }

            // 5. A wake-up for the live transfer, sealed with a key that is not its session key.
            let guess = TransferChannel(transfer: try #require(TransferID(second.id)), key: SessionKey.random(), role: .agent)
            let tnForged = try rejected(rig.tnControl, "forged")
            try fromAgentSide.send(try guess.seal(.wakeUp(WakeUp(reason: WakeUp.Reason.operator))), to: tnEndpoint)
            try rig.wait(3, "the TN to reject the forged wake-up") { try rejected(rig.tnControl, "forged") > tnForged }

            Thread.sleep(forTimeInterval: 0.3)
            #expect(try rig.tnControl.show(second.id).state == .active, "the TN did not reclaim its address")
            #expect(try !tn.addresses(interface: tn.interface, family: .v4).contains { $0.address == original },
                    "the original address stays off the TN's wire")
            #expect(try agentMaps() == (1, 1), "the live transfer's takeover and rule are still there")

            try rig.tnControl.end(second.id)
            try rig.wait(5, "the second transfer to end") { try rig.agentControl.show(second.id).state == .ended }
        }
    }
}

/// The agent ends a takeover by itself when every transferred session went idle or closed.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct AutomaticEndTests {
    @Test func idleSessionsEndTheTransfer() throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--idle-timeout", "1"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let cn = rig.cn, tn = rig.tn, original = rig.original
            let atTarget = SequenceReceiver(host: "target", socket: try rig.target.udpSocket(.v4, port: 5004))
            let call = SequenceSender(socket: try cn.udpSocket(.v4, port: 40000), to: SocketAddress(original, port: 5004),
                                      flow: 1, perSecond: 1000)
            let transfer = try rig.tnControl.start(TransferRequest(
                to: "target", sessions: [SessionMatch(proto: .udp, source: cn.ipv4, sourcePort: 40000,
                                                      destination: original, destinationPort: 5004)], mode: .l2))
            try rig.wait(3, "the call to reach the target") { atTarget.count(flow: 1) > 100 }
            // Still active while the call runs, past the idle timeout.
            Thread.sleep(forTimeInterval: 1.5)
            #expect(try rig.agentControl.show(transfer.id).state == .active)
            call.stop()
            _ = atTarget.stop()
            try rig.wait(5, "the agent to end the idle transfer") { try rig.agentControl.show(transfer.id).state == .ended }
            #expect(try rig.agentControl.show(transfer.id).reason == "idle")
            #expect(try rig.tnControl.show(transfer.id).state == .ended)
            #expect(try tn.addresses(interface: tn.interface, family: .v4).contains { $0.address == original },
                    "the TN has its address back")
        }
    }

    /// Issue 12 item 6: a TCP session ends the transfer only when the target's own TCP stack
    /// saw it closed both ways. A reset or FIN forged by a third host on the segment (random
    /// sequence numbers, the correspondent's addresses and ports) changes nothing, nor does
    /// the correspondent's own FIN alone (half-closed); once the target closes too, the
    /// transfer ends with reason `closed`.
    @Test func closedSessionsEndTheTransfer() throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--idle-timeout", "60"]
        try Rig.with(.l2, family: .v4, correspondents: ["cn", "cn2"], options: options) { rig in
            let cn = rig.cn, cn2 = rig.lab["cn2"], original = rig.original
            // The session's ports are known before it exists, so it is transferred first and
            // then opened: the target's stack holds its socket.
            let session = SessionMatch(proto: .tcp, source: cn.ipv4, sourcePort: 41006, destination: original, destinationPort: 5006)
            let listener = try rig.target.tcpListener(.v4, port: 5006)
            defer { listener.close() }
            let transfer = try rig.tnControl.start(TransferRequest(to: "target", sessions: [session], mode: .l2))
            let client = try cn.connectTCP(to: SocketAddress(original, port: 5006), from: 41006)
            let server = try #require(try listener.accept(timeout: .seconds(5)))
            defer { client.close(); server.close() }
            func exchange(_ what: String) throws {
                try client.send(Array(what.utf8))
                #expect(try server.receive(timeout: .seconds(3)) == Array(what.utf8), "the session carries data (\(what))")
            }
            try exchange("before")

            // Forged by cn2, sent to the agent (which answers for the original): a reset and a
            // FIN with random sequence numbers, as the correspondent.
            let forger = try PacketSocket(interface: cn2.interface, in: cn2.namespace)
            defer { forger.close() }
            for flags: TCPFlags in [[.rst], [.rst, .ack], [.fin, .ack]] {
                let frame = Frame(ethernet: EthernetHeader(dst: rig.sa.mac, src: cn2.mac),
                                  network: .ipv4(IPv4Header(src: cn.ipv4, dst: original)),
                                  transport: .tcp(TCPSegment(sport: 41006, dport: 5006, seq: .random(in: 0...UInt32.max),
                                                             ack: .random(in: 0...UInt32.max), flags: flags)))
                try forger.send(frame.padded().bytes)
            }
            Thread.sleep(forTimeInterval: 2.5)
            #expect(try rig.agentControl.show(transfer.id).state == .active, "forged packets end nothing")
            try exchange("after the forgeries")

            // The correspondent closes its side: half-closed, not over.
            try client.shutdownWrite()
            Thread.sleep(forTimeInterval: 2.5)
            #expect(try rig.agentControl.show(transfer.id).state == .active, "a FIN one way ends nothing")
            try server.send(Array("still open".utf8))
            #expect(try client.receive(timeout: .seconds(3)) == Array("still open".utf8))

            // The target closes too: both FINs, seen by the target's stack.
            server.close()
            try rig.wait(6, "the transfer to end once the session closed both ways") {
                try rig.agentControl.show(transfer.id).state == .ended
            }
            #expect(try rig.agentControl.show(transfer.id).reason == "closed")
            try rig.wait(3, "the TN to have its address back") { try rig.tnControl.show(transfer.id).state == .ended }
        }
    }
}
