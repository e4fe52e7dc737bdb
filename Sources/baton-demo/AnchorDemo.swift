import BatonAPI
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Synchronization

// The anchored-session scenario (`baton-demo --scenario anchor`): the remote party (cn) talks
// to the agent's anchor address and port; the session is relayed in XDP to device 1 (tn),
// moved to device 2 (target) with device 1 locked out, and moved back. The remote's stream
// (sequence-numbered, at --rate) must arrive whole at whichever device holds the session;
// the devices' RTP (50 packets/s, each device its own SSRC and numbers) must reach the remote
// as one stream from one address and port (RTP continuity).

/// The media a device sends back: RTP, 20 ms packets, from whichever device holds the session.
final class DeviceMedia: @unchecked Sendable {
    private struct State {
        var device = 0
        var running = true
        var next: [(seq: UInt16, ts: UInt32)] = [(65000, 0), (12000, 5_000_000)]
    }
    private final class Box: Sendable { let state = Mutex(State()) }
    private let box = Box()
    private var thread: Thread?
    static let ssrcs: [UInt32] = [0x1111_1111, 0x2222_2222]

    init(sockets: [UDPSocket], to relay: SocketAddress) {
        let box = box
        let t = Thread {
            while true {
                let (d, seq, ts, running) = box.state.withLock { s -> (Int, UInt16, UInt32, Bool) in
                    let n = s.next[s.device]
                    s.next[s.device] = (n.seq &+ 1, n.ts &+ 160)
                    return (s.device, n.seq, n.ts, s.running)
                }
                guard running else { return }
                var p: [UInt8] = [0x80, 0, UInt8(seq >> 8), UInt8(seq & 0xff)]
                for v in [ts, Self.ssrcs[d]] { p += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
                try? sockets[d].send(p + [UInt8](repeating: 0xd5, count: 160), to: relay)
                usleep(20_000)
            }
        }
        thread = t
        t.start()
    }

    /// From now on device `d` talks (its own numbers and clock go on where they were, as a
    /// real device's would have).
    func switchTo(_ d: Int) { box.state.withLock { $0.device = d } }

    func stop() {
        box.state.withLock { $0.running = false }
        while thread?.isFinished == false { usleep(5_000) }
    }
}

/// What the remote hears: each packet's source and RTP header.
final class RemoteEar: @unchecked Sendable {
    struct Heard { var source: SocketAddress; var seq: UInt16; var ts: UInt32; var ssrc: UInt32 }
    private final class Box: Sendable {
        let heard = Mutex<[Heard]>([])
        let listening = Mutex(true)
    }
    private let box = Box()
    private var thread: Thread?

    init(_ socket: UDPSocket) {
        let box = box
        let t = Thread {
            while box.listening.withLock({ $0 }) {
                guard let d = try? socket.receive(timeout: .milliseconds(50)), d.payload.count >= 12 else { continue }
                let p = d.payload
                func u32(_ i: Int) -> UInt32 { p[i..<i + 4].reduce(0) { $0 << 8 | UInt32($1) } }
                box.heard.withLock { $0.append(Heard(source: d.source, seq: UInt16(p[2]) << 8 | UInt16(p[3]), ts: u32(4), ssrc: u32(8))) }
            }
        }
        thread = t
        t.start()
    }

    var count: Int { box.heard.withLock { $0.count } }

    func stop() -> [Heard] {
        box.listening.withLock { $0 = false }
        while thread?.isFinished == false { usleep(5_000) }
        return box.heard.withLock { $0 }
    }
}

func anchorDemo(_ settings: Settings) throws -> Bool {
    let family = settings.family
    print("building the lab: cn (remote party), sa (session agent, the anchor), tn (device 1), target (device 2) …")
    let lab = try Lab.transfer(.l2, correspondents: ["cn"])
    let teardown = SignalCleanup.shared.add(lab)
    defer {
        SignalCleanup.shared.run(teardown)
        print("lab \(lab.prefix) torn down")
    }
    let daemons = try LabDaemons.start(lab, batond: settings.batond)
    var keepLogs = true
    defer { daemons.stop(keepLogs: keepLogs) }
    let api = Control(path: daemons.agent.control)
    let cn = lab["cn"], devices = [lab["tn"], lab["target"]]
    let endpoints = devices.map { Endpoint(address: $0.address(family), port: 6000) }

    let anchor = try api.createAnchor(AnchorRequest(remote: Endpoint(address: cn.address(family), port: 40000), device: endpoints[0],
                                                    rtpContinuity: true))
    let anchorEndpoint = SocketAddress(anchor.anchor.address, port: anchor.anchor.port)
    print("anchored session \(anchor.id): remote \(anchor.remote) ↔ \(anchor.anchor) | relay port \(anchor.relayPort) ↔ device \(anchor.device)")
    print("the remote sends \(settings.rate) packets/s to \(anchor.anchor); the device sends RTP (50 packets/s) to relay port \(anchor.relayPort)")

    let sockets = try devices.map { try $0.udpSocket(family, port: 6000) }
    let receivers = sockets.enumerated().map { i, s in SequenceReceiver(host: "device \(i + 1)", socket: s) }
    let remoteSocket = try cn.udpSocket(family, port: 40000)
    let ear = RemoteEar(remoteSocket)
    let t0 = monotonicNanoseconds()
    let stream = SequenceSender(socket: remoteSocket, to: anchorEndpoint, flow: 1, perSecond: settings.rate)
    let media = DeviceMedia(sockets: sockets, to: SocketAddress(anchor.anchor.address, port: anchor.relayPort))

    var step = "at device 1"
    print("")
    print("   t(s)  step                 remote sent  at device 1  at device 2  RTP at remote")
    func show() {
        print(String(format: "  %5.2f  %@  %11d  %11d  %11d  %13d", seconds(monotonicNanoseconds(), from: t0),
                     step.padding(toLength: 19, withPad: " ", startingAt: 0), stream.sent, receivers[0].count(flow: 1),
                     receivers[1].count(flow: 1), ear.count))
    }
    func tick(_ n: Int) { for _ in 0..<n { usleep(250_000); show() } }

    tick(6)
    var moved = try api.moveAnchor(anchor.id, AnchorMove(device: endpoints[1], lockout: 2))
    media.switchTo(1)
    step = "moved to device 2"
    print("         moved to \(moved.device) (move \(moved.moves)); device 1 locked out for 2 s")
    tick(6)
    moved = try api.moveAnchor(anchor.id, AnchorMove(device: endpoints[0], grace: 0))
    media.switchTo(0)
    step = "back at device 1"
    print("         moved back to \(moved.device) (move \(moved.moves))")
    tick(6)

    let sent = stream.stop()
    media.stop()
    let arrivals = receivers.flatMap { $0.stop() }
    usleep(100_000)
    let heard = ear.stop()
    let shown = try api.anchor(anchor.id)
    _ = try api.endAnchor(anchor.id)

    let report = FlowReport(flow: 1, sent: sent, arrivals: arrivals)
    let sources = Set(heard.map { "\($0.source)" })
    let ssrcs = Set(heard.map(\.ssrc))
    var gaps = 0
    for (a, b) in zip(heard, heard.dropFirst()) where b.seq != a.seq &+ 1 { gaps += 1 }
    print("")
    print("summary")
    print("  remote → device: sent \(report.sent), received \(report.received) (device 1 \(report.perHost["device 1"] ?? 0), device 2 \(report.perHost["device 2"] ?? 0)), lost \(report.lost), reordered \(report.reordered)")
    print("  device → remote: \(heard.count) RTP packets from \(sources.sorted().joined(separator: ", ")); SSRC \(ssrcs.map { String(format: "%08x", $0) }.sorted().joined(separator: ", ")); \(gaps) sequence gap(s)")
    if let rtp = shown.rtp {
        print("  the anchor rewrote \(rtp.packets) RTP packets, \(rtp.rebases) source change(s); to-device \(shown.toDevice?.packets ?? 0), to-remote \(shown.toRemote?.packets ?? 0) packets")
    }
    let ok = report.lost == 0 && report.reordered == 0 && (report.perHost["device 2"] ?? 0) > 0 && sources.count == 1
        && ssrcs.count == 1 && gaps == 0 && heard.count > 100
    print(ok ? "OK: the session moved device 1 → 2 → 1; the remote saw one address, one RTP stream, nothing lost"
             : "FAILED: see the figures above")
    keepLogs = !ok
    if !ok { print("daemon logs: \(daemons.directory)") }
    return ok
}
