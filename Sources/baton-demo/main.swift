// baton-demo: a live call moved from one device to another and back, in network namespaces.
//
// A correspondent (cn) calls the transferring node (tn): a sequence-numbered UDP call at
// 20 kpps and a TCP stream. batond runs on the session agent (sa), the TN and the target.
// The TN transfers the call to the target (`transfer start`): the agent takes the TN's
// address over and steers the call to the target and everything else to the TN's temporary
// address. Later the transfer ends: the agent wakes the TN up and the TN takes its address
// back. Per-host counters are shown as it runs, a summary at the end, and a timeline picture
// is written (SVG).
//
// Usage: baton-demo [--layout l2|l3] [--family 4|6] [--rate PPS] [--output FILE.svg]

import BatonAPI
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation

func fail(_ message: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("baton-demo: \(message)\n".utf8))
    exit(status)
}

struct Settings {
    var layout = LabLayout.l2
    var family = IPAddress.Family.v4
    var rate = 20_000
    var output = "baton-demo-timeline.svg"

    init(_ arguments: [String]) {
        var i = 0
        func value() -> String {
            i += 1
            guard i < arguments.count else { fail("\(arguments[i - 1]) needs a value", status: 64) }
            return arguments[i]
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--layout":
                guard let l = LabLayout(rawValue: value()) else { fail("--layout: expected l2 or l3", status: 64) }
                layout = l
            case "--family":
                switch value() {
                case "4": family = .v4
                case "6": family = .v6
                default: fail("--family: expected 4 or 6", status: 64)
                }
            case "--rate":
                guard let r = Int(value()), (100...200_000).contains(r) else { fail("--rate: expected 100-200000 packets/s", status: 64) }
                rate = r
            case "--output":
                output = value()
            case "-h", "--help":
                print("usage: baton-demo [--layout l2|l3] [--family 4|6] [--rate PPS] [--output FILE.svg]")
                exit(0)
            default:
                fail("unknown argument '\(arguments[i])' (see --help)", status: 64)
            }
            i += 1
        }
    }
}

let settings = Settings(Array(CommandLine.arguments.dropFirst()))
guard geteuid() == 0 else { fail("must run as root (network namespaces and XDP)", status: 77) }
guard let batond = LabDaemons.findBatond() else { fail("batond not found next to baton-demo: run `make demo`") }

func seconds(_ ns: UInt64, from start: UInt64) -> Double { Double(ns &- start) / 1e9 }

/// What to undo if the demo is interrupted (Ctrl-C): the daemons and the lab's namespaces.
final class Interrupted: @unchecked Sendable {
    static let shared = Interrupted()
    private let lock = NSLock()
    private var undo: [() -> Void] = []
    private var sources: [DispatchSourceSignal] = []

    func push(_ action: @escaping () -> Void) { lock.withLock { undo.append(action) } }
    func pop() { lock.withLock { _ = undo.popLast() } }

    func install() {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in
                FileHandle.standardError.write(Data("baton-demo: interrupted; removing the daemons and the lab\n".utf8))
                for action in lock.withLock({ undo.reversed() }) { action() }
                exit(128 + sig)
            }
            source.resume()
            sources.append(source)
        }
    }
}

struct DemoFailure: Error, CustomStringConvertible { let description: String }

/// Builds, runs and tears everything down; true if nothing was lost. Never exits by itself, so
/// the lab and the daemons are always cleaned up.
func run() throws -> Bool {
    let family = settings.family
    print("building the lab (\(settings.layout.rawValue)): cn, sa (session agent), tn, target in network namespaces …")
    let lab = try Lab.transfer(settings.layout, correspondents: ["cn"])
    Interrupted.shared.push { try? lab.teardown() }
    defer {
        Interrupted.shared.pop()
        try? lab.teardown()
        print("lab \(lab.prefix) torn down")
    }
    let cn = lab["cn"], sa = lab["sa"], tn = lab["tn"], target = lab["target"]
    let daemons = try LabDaemons.start(lab, batond: batond, options: {
        var o = LabDaemons.Options()
        o.agentArguments = ["--idle-timeout", "60"]
        return o
    }())
    var keepLogs = true
    Interrupted.shared.push { daemons.stop() }
    defer {
        Interrupted.shared.pop()
        daemons.stop(keepLogs: keepLogs)
    }
    let original = tn.address(family)
    print("batond running: agent on sa (\(sa.mac)), nodes on tn (\(tn.mac)) and target (\(target.mac))")
    print("the TN's address \(original); the call: udp \(cn.address(family)):40000 → \(original):5004 at \(settings.rate) packets/s")

    let atTN = SequenceReceiver(host: "tn", socket: try tn.udpSocket(family, port: 5004))
    let atTarget = SequenceReceiver(host: "target", socket: try target.udpSocket(family, port: 5004))
    let listener = try tn.tcpListener(family, address: original, port: 5005)
    let client = try cn.connectTCP(to: SocketAddress(original, port: 5005))
    guard let server = try listener.accept(timeout: .seconds(5)) else { throw DemoFailure(description: "the TCP stream did not connect") }
    let t0 = monotonicNanoseconds()
    let call = SequenceSender(socket: try cn.udpSocket(family, port: 40000), to: SocketAddress(original, port: 5004),
                              flow: 1, perSecond: settings.rate)
    let stream = TCPStreamCheck(client: client, server: server)
    var steps: [Timeline.Step] = [Timeline.Step(time: t0, label: "call starts")]

    let tnControl = Control(path: daemons.tn.control), agentControl = Control(path: daemons.agent.control)
    var step = "call → tn"
    print("")
    print("   t(s)  step                 call sent   at tn   at target   tcp bytes")
    func show() {
        print(String(format: "  %5.2f  %@  %9d  %6d  %10d  %10d", seconds(monotonicNanoseconds(), from: t0),
                     step.padding(toLength: 19, withPad: " ", startingAt: 0), call.sent, atTN.count(flow: 1),
                     atTarget.count(flow: 1), stream.bytesRead))
    }
    func tick(_ n: Int) { for _ in 0..<n { usleep(250_000); show() } }

    tick(6)
    let startedAt = monotonicNanoseconds()
    steps.append(.init(time: startedAt, label: "transfer start"))
    let transfer = try tnControl.start(TransferRequest(
        to: "target",
        sessions: [SessionMatch(proto: .udp, source: cn.address(family), sourcePort: 40000, destination: original, destinationPort: 5004)],
        mode: settings.layout.transferMode))
    steps.append(.init(time: monotonicNanoseconds(), label: "registered"))
    step = "call → target"
    print("         transfer \(transfer.id) active: temporary address \(transfer.temporary.map { "\($0)" } ?? "?"), milestones (ms) \(transfer.milestones.sorted { $0.value < $1.value }.map { "\($0.key) \(String(format: "%.1f", $0.value))" }.joined(separator: ", "))")
    tick(4)
    let shown = try agentControl.show(transfer.id)
    print("         agent: state \(shown.state), milestones (ms after the registration arrived) \(shown.milestones.sorted { $0.value < $1.value }.map { "\($0.key) \(String(format: "%.1f", $0.value))" }.joined(separator: ", "))")
    for s in shown.sessions {
        print("         agent: \(s.match) \(s.forward ?? ""): \(s.packets ?? 0) packets, \(s.bytes ?? 0) bytes")
    }
    tick(4)
    let endAt = monotonicNanoseconds()
    steps.append(.init(time: endAt, label: "transfer end (wake-up)"))
    _ = try tnControl.end(transfer.id)
    step = "call → tn again"
    steps.append(.init(time: monotonicNanoseconds(), label: "TN reclaimed"))
    tick(6)

    let sent = call.stop()
    let tcp = stream.stop()
    let arrivals = atTN.stop() + atTarget.stop()
    let stopped = monotonicNanoseconds()
    listener.close()
    client.close()
    server.close()
    let report = FlowReport(flow: 1, sent: sent, arrivals: arrivals)
    let firstAtTarget = arrivals.filter { $0.host == "target" && $0.flow == 1 }.map(\.time).min()
    if let f = firstAtTarget { steps.append(.init(time: f, label: "first packet at target")) }
    let backAtTN = arrivals.filter { $0.host == "tn" && $0.flow == 1 && $0.time > endAt }.map(\.time).min()
    let lastAtTarget = arrivals.filter { $0.host == "target" && $0.flow == 1 }.map(\.time).max()

    print("")
    print("summary")
    print("  call: sent \(report.sent), received \(report.received) (tn \(report.perHost["tn"] ?? 0), target \(report.perHost["target"] ?? 0)), lost \(report.lost), reordered \(report.reordered), duplicates \(report.duplicates)")
    print(String(format: "  largest gap between two packets of the call: %.2f ms", report.largestGapMilliseconds))
    if let f = firstAtTarget {
        print(String(format: "  transfer start → first packet at the target: %.2f ms", Double(f - startedAt) / 1e6))
    }
    if let back = backAtTN, let last = lastAtTarget {
        print(String(format: "  wake-up: last packet at the target → first back at the TN: %.2f ms", (Double(back) - Double(last)) / 1e6))
    }
    print("  tcp stream to the TN (not transferred): wrote \(tcp.written) bytes, read \(tcp.read), \(tcp.failure.map { "FAILED: \($0)" } ?? "byte-exact, no reset")")

    let picture = Timeline(start: t0, end: stopped, arrivals: arrivals.filter { $0.flow == 1 }, steps: steps,
                           title: "baton-demo: a \(settings.rate / 1000) kpps call moved tn → target → tn (\(settings.layout.rawValue), IPv\(family == .v4 ? 4 : 6))")
    try picture.svg().write(toFile: settings.output, atomically: true, encoding: .utf8)
    print("  timeline: \(settings.output)")

    let ok = report.lost == 0 && report.reordered == 0 && (report.perHost["target"] ?? 0) > 0 && tcp.failure == nil && tcp.read == tcp.written
    print(ok ? "OK: the call moved to the target and back, nothing lost" : "FAILED: see the figures above")
    keepLogs = !ok
    if !ok { print("daemon logs: \(daemons.directory)") }
    return ok
}

Interrupted.shared.install()
do {
    if try !run() { exit(1) }
} catch {
    fail("\(error)")
}
