import BatonAPI
import BatonBPF
import BatonDaemon
import BatonLab
import BatonModel
import BatonNet
import BatonPacket
import Foundation
import Synchronization
import Testing

/// Issue 12 item 8, end to end: in L3 the agent tunnels the TN's other traffic to its
/// temporary address, 20 or 40 bytes longer. A full-size TCP segment of a stream that stays
/// with the TN no longer fits the agent's link: the agent answers it, as a router would,
/// with Fragmentation Needed / Packet Too Big, the correspondent's kernel lowers its path
/// MTU, and the stream goes on, every byte in order. (Before, those segments were dropped
/// on the agent's link without a word and the stream stalled for seconds.)
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct MTUTests {
    @Test(arguments: [IPAddress.Family.v4, .v6])
    func fullSizeSegmentsThroughTheTunnelAreAnswered(family: IPAddress.Family) throws {
        try Rig.with(.l3, family: family) { rig in
            let cn = rig.cn, tn = rig.tn, original = rig.original
            let listener = try tn.tcpListener(family, address: original, port: 5007)
            let client = try cn.connectTCP(to: SocketAddress(original, port: 5007))
            let server = try #require(try listener.accept(timeout: .seconds(5)))
            defer { listener.close(); client.close(); server.close() }
            // Watch what reaches the correspondent: the agent's answers.
            let answers = Mutex(0)
            let running = Mutex(true)
            let capture = try PacketSocket(interface: cn.interface, in: cn.namespace)
            let watcher = Thread {
                while running.withLock({ $0 }) {
                    guard let bytes = try? capture.receive(timeout: .milliseconds(50)), let frame = try? ParsedFrame(bytes),
                          let ip = frame.ip, let icmp = ip.icmp else { continue }
                    let tooBig = icmp.isV6 ? icmp.type == 2 : icmp.type == 3 && icmp.code == 4
                    if tooBig, ip.src == rig.sa.address(family) { answers.withLock { $0 += 1 } }
                }
            }
            watcher.start()
            defer { running.withLock { $0 = false }; capture.close() }
            // Large writes: the kernel sends full-size segments.
            let stream = TCPStreamCheck(client: client, server: server, chunk: 16_384, interval: .milliseconds(5))
            Thread.sleep(forTimeInterval: 0.3)

            // Any session moves (L3): from now on the stream is tunnelled to the temporary address.
            let call = try rig.startCall(perSecond: 500, reaching: 20)
            let transfer = try rig.transfer(call, .l3)
            try rig.wait(5, "the agent's Fragmentation Needed / Packet Too Big to reach the correspondent") {
                answers.withLock { $0 } > 0
            }
            Thread.sleep(forTimeInterval: 1)
            let metrics = try rig.agentControl.metrics()
            _ = try rig.agentControl.end(transfer.id)
            let result = stream.stop()
            _ = call.sender.stop(); _ = call.atTN.stop(); _ = call.atTarget.stop()
            print("\(family): stream wrote \(result.written), read \(result.read); \(answers.withLock { $0 }) answers")
            #expect(result.failure == nil, "the stream survives: \(result.failure ?? "")")
            #expect(result.read == result.written && result.written > 0, "every byte arrives, in order")
            let counted = metrics.split(separator: "\n").first { $0.hasPrefix("baton_datapath_packets{reason=\"too-big\"}") }
            #expect(counted.map { !$0.hasSuffix(" 0") } == true, "the agent counts what it answered: \(counted ?? "none")")
        }
    }
}
