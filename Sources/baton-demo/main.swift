// baton-demo: the data plane steering live traffic between network namespaces.
//
// A correspondent (cn) runs two sequence-numbered UDP flows to the TN's
// address: a "call" and a "stream". The session agent (sa) has taken that
// address over: its XDP program answers ARP for it and forwards everything
// to the TN. Half-way, a session rule moves the call to the target; later it
// is removed and the call returns to the TN. Per-host counters are shown as
// it runs and a summary at the end: nothing may be lost or reordered.

import BatonBPF
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation



guard geteuid() == 0 else {
    FileHandle.standardError.write(Data("baton-demo: must run as root (network namespaces and XDP)\n".utf8))
    exit(77)
}

/// Receives one host's datagrams and tracks each flow's sequence numbers.
final class Receiver: @unchecked Sendable {
    struct Flow { var received = 0, reordered = 0, last = -1 }
    let name: String
    private let socket: UDPSocket
    private let lock = NSLock()
    private var flows: [String: Flow] = [:]
    private var running = true
    private let done = DispatchSemaphore(value: 0)

    init(_ name: String, _ socket: UDPSocket) {
        self.name = name
        self.socket = socket
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                guard let d = try? socket.receive(timeout: .milliseconds(100)) else { continue }
                let text = String(decoding: d.payload, as: UTF8.self).split(separator: " ")
                guard text.count == 2, let seq = Int(text[1]) else { continue }
                lock.withLock {
                    var f = flows[String(text[0]), default: Flow()]
                    f.received += 1
                    if seq < f.last { f.reordered += 1 }
                    f.last = max(f.last, seq)
                    flows[String(text[0])] = f
                }
            }
            done.signal()
        }
    }

    func count(_ flow: String) -> Int { lock.withLock { flows[flow]?.received ?? 0 } }
    func flow(_ flow: String) -> Flow { lock.withLock { flows[flow] ?? Flow() } }
    func stop() { lock.withLock { running = false }; done.wait(); socket.close() }
}

/// Sends "<flow> <seq>" at a fixed rate until stopped.
final class Sender: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private(set) var sent = 0
    private let done = DispatchSemaphore(value: 0)

    init(flow: String, socket: UDPSocket, to address: IPAddress, port: UInt16, perSecond: Int) {
        Thread.detachNewThread { [self] in
            let start = DispatchTime.now().uptimeNanoseconds
            var seq = 0
            while lock.withLock({ running }) {
                let due = start + UInt64(seq) * 1_000_000_000 / UInt64(perSecond)
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now { usleep(UInt32(min(1000, (due - now) / 1000))); continue }
                if (try? socket.send(Array("\(flow) \(seq)".utf8), to: address, port: port)) != nil {
                    seq += 1
                    lock.withLock { sent = seq }
                }
            }
            socket.close()
            done.signal()
        }
    }

    var count: Int { lock.withLock { sent } }
    func stop() { lock.withLock { running = false }; done.wait() }
}

func run() throws {
    print("building hosts in network namespaces: cn, sa (session agent), tn, target …")
    try Lab.with(.segment(hosts: ["cn", "sa", "tn", "target"])) { lab in
        let cn = lab["cn"], sa = lab["sa"], tn = lab["tn"], target = lab["target"]
        var b = cn.ipv4.wireBytes
        b[3] = 100
        let original = IPAddress(wire: b)!
        // TN and target both hold the address without answering ARP for it.
        try tn.addNonARPAddress(original)
        try target.addNonARPAddress(original)

        let dp = try sa.run { try DataPlane.load(.init(pinRoot: nil, maxRules: 1024, maxTakeovers: 16)) }
        try dp.setTakeover(Takeover(address: original, defaultForward: .l2(to: tn.mac, from: sa.mac), agentMAC: sa.mac))
        let link = try sa.run { try XDPLink.attach(dp.steerProgram, ifindex: UInt32(sa.ifindex), mode: .native) }
        defer { try? link.detach() }
        print("sa: baton_steer attached to eth0 (native XDP); \(original) taken over, default -> tn \(tn.mac)")

        let atTN = Receiver("tn", try tn.udpSocket(.v4, port: 5060))
        let atTarget = Receiver("target", try target.udpSocket(.v4, port: 5060))
        let call = Sender(flow: "call", socket: try cn.udpSocket(.v4, port: 40000), to: original, port: 5060, perSecond: 2000)
        let stream = Sender(flow: "stream", socket: try cn.udpSocket(.v4, port: 40001), to: original, port: 5060, perSecond: 1000)

        let callRule = SessionMatch(proto: .udp, source: cn.ipv4, sourcePort: 40000,
                                    destination: original, destinationPort: 5060)
        print("")
        print("  t(s)  step                        sent call/stream   tn call/stream   target call")
        var step = "both flows -> tn"
        func show(_ t: Double) {
            let label = step.padding(toLength: 26, withPad: " ", startingAt: 0)
            print(String(format: "  %4.1f  ", t) + label + String(format: "  %6d / %-6d    %6d / %-6d   %6d",
                         call.count, stream.count, atTN.count("call"), atTN.count("stream"), atTarget.count("call")))
        }
        let t0 = Date()
        for tick in 1...9 {
            usleep(500_000)
            if tick == 3 {
                try dp.setRule(SessionRule(match: callRule, forward: .l2(to: target.mac, from: sa.mac)))
                step = "rule: call -> target"
            }
            if tick == 7 {
                try dp.removeRule(callRule)
                step = "rule removed: call -> tn"
            }
            show(Date().timeIntervalSince(t0))
        }
        call.stop()
        stream.stop()
        usleep(300_000)
        atTN.stop()
        atTarget.stop()

        let stats = try dp.stats()
        let tnCall = atTN.flow("call"), tgCall = atTarget.flow("call"), tnStream = atTN.flow("stream")
        let callReceived = tnCall.received + tgCall.received
        print("")
        print("summary")
        print("  call:   sent \(call.count), received \(callReceived) (tn \(tnCall.received), target \(tgCall.received)), lost \(call.count - callReceived), reordered \(tnCall.reordered + tgCall.reordered)")
        print("  stream: sent \(stream.count), received \(tnStream.received), lost \(stream.count - tnStream.received), reordered \(tnStream.reordered)")
        print("  sa data plane: rule hits \(stats[.ruleHit]!.packets), default hits \(stats[.defaultHit]!.packets), ARP replies \(stats[.arpReply]!.packets)")
        let lost = call.count - callReceived + stream.count - tnStream.received
        print(lost == 0 && tgCall.received > 0 ? "OK: the call moved to the target and back, nothing lost" : "FAILED: see the counts above")
        if lost != 0 || tgCall.received == 0 { exit(1) }
    }
    print("namespaces removed")
}

do {
    try run()
} catch {
    FileHandle.standardError.write(Data("baton-demo: \(error)\n".utf8))
    exit(1)
}
