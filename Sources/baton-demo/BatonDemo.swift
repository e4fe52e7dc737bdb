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
// Usage: baton-demo [--scenario transfer|anchor|sip] [--layout l2|l3] [--family 4|6] [--rate PPS] [--output FILE.svg]
//
// `--scenario anchor` shows an anchored session instead (AnchorDemo.swift), `--scenario sip`
// a SIP call moved to the user's other device by INVITE/Replaces (SIPDemo.swift).

import ArgumentParser
import BatonAPI
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation

extension LabLayout: ExpressibleByArgument {}

enum Scenario: String, ExpressibleByArgument, CaseIterable {
    case transfer, anchor, sip
}

@main
struct BatonDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-demo",
        abstract: "A live call moved from one device to another and back, between batond daemons in network namespaces.",
        discussion: """
        Builds a lab (cn, sa, tn, target; with --layout l3 the target sits behind router rt), \
        starts batond on sa, tn and target, and has cn call tn: a sequence-numbered UDP call \
        and a TCP stream. The TN transfers the call to the target and later ends the transfer. \
        Prints what each host receives as it runs, a summary, and writes a timeline (SVG). \
        Everything it built is removed at the end, also on Ctrl-C. Needs root. Exit status: 0 \
        when nothing was lost, 1 otherwise, 64 for a usage error, 77 without root.

        --scenario anchor shows an anchored session instead (docs/anchors.md): cn talks to the \
        agent's anchor address and port, the agent relays in XDP to tn (device 1), the \
        session moves to target (device 2) with tn locked out, and back; the devices' RTP \
        reaches cn as one stream (RTP continuity). --layout and --output do not apply to it.

        --scenario sip (make demo DEMO=sip) shows seed 002 with sipp as every SIP peer: the \
        agent serves example.com, alice registers device 1 (tn) and device 2 (target), carol \
        (cn) calls her, device 1 answers, media flows at 50 packets/s each way through the \
        call's anchor, and device 2 takes the call over with INVITE/Replaces. It prints the \
        server's timeline of the switch and writes the picture to --output. IPv4 only; \
        --layout, --family and --rate do not apply. Needs sipp (sip-tester).
        """)

    @Option(help: ArgumentHelp("transfer: a transfer between daemons; anchor: an anchored session moved between devices; sip: a SIP call moved to the user's other device.",
                               valueName: "transfer|anchor|sip"))
    var scenario: Scenario = .transfer

    @Option(help: ArgumentHelp("l2: the target on the TN's segment (MAC rewrite); l3: behind a router (the agent tunnels).", valueName: "l2|l3"))
    var layout: LabLayout = .l2

    @Option(help: ArgumentHelp("The call's IP version: 4 or 6.", valueName: "4|6"))
    var family: Int = 4

    @Option(help: ArgumentHelp("The call's packets per second, 100-200000.", valueName: "pps"))
    var rate: Int = 20_000

    @Option(help: ArgumentHelp("Where the timeline picture goes.", valueName: "file.svg"))
    var output: String = "baton-demo-timeline.svg"

    func validate() throws {
        guard family == 4 || family == 6 else { throw ValidationError("--family takes 4 or 6, not \(family)") }
        guard (100...200_000).contains(rate) else { throw ValidationError("--rate takes 100-200000 packets/s, not \(rate)") }
    }

    func run() throws {
        guard geteuid() == 0 else { fail("must run as root (network namespaces and XDP)", status: 77) }
        guard let batond = LabDaemons.findBatond() else { fail("batond not found next to baton-demo: run `make demo`") }
        SignalCleanup.shared.install(message: "baton-demo: interrupted; removing the daemons and the lab")
        let settings = Settings(layout: layout, family: family == 4 ? .v4 : .v6, rate: rate, output: output, batond: batond)
        do {
            let ok = switch scenario {
            case .transfer: try demo(settings)
            case .anchor: try anchorDemo(settings)
            case .sip: try sipDemo(settings)
            }
            if !ok { throw ExitCode.failure }
        } catch let e as ExitCode {
            throw e
        } catch {
            fail("\(error)")
        }
    }
}

func fail(_ message: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("baton-demo: \(message)\n".utf8))
    exit(status)
}

struct Settings {
    var layout: LabLayout
    var family: IPAddress.Family
    var rate: Int
    var output: String
    var batond: String
}

func seconds(_ ns: UInt64, from start: UInt64) -> Double { Double(ns &- start) / 1e9 }

struct DemoFailure: Error, CustomStringConvertible { let description: String }

/// Builds, runs and tears everything down; true if nothing was lost. Never exits by itself, so
/// the lab and the daemons are always cleaned up.
func demo(_ settings: Settings) throws -> Bool {
    let family = settings.family
    print("building the lab (\(settings.layout.rawValue)): cn, sa (session agent), tn, target in network namespaces …")
    let lab = try Lab.transfer(settings.layout, correspondents: ["cn"])
    let teardown = SignalCleanup.shared.add(lab)
    defer {
        SignalCleanup.shared.run(teardown)
        print("lab \(lab.prefix) torn down")
    }
    let cn = lab["cn"], sa = lab["sa"], tn = lab["tn"], target = lab["target"]
    let daemons = try LabDaemons.start(lab, batond: settings.batond, options: {
        var o = LabDaemons.Options()
        o.agentArguments = ["--idle-timeout", "60"]
        return o
    }())
    var keepLogs = true
    // (A signal stops them too: LabDaemons registers itself with SignalCleanup.)
    defer { daemons.stop(keepLogs: keepLogs) }
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
