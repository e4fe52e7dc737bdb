import BatonAPI
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation

/// Part 4: whole transfers between batond daemons in a lab, one after another, while a
/// 20 kpps sequence-numbered call runs: the time from `transfer start` to the call's first
/// packet at the target, and the gap the call sees at wake-up. Baselines from the same run:
/// a UDP round trip TN → agent → TN (what one protocol exchange costs at least), and the
/// call's ordinary jitter (p99 time between two of its packets).
struct HandoverResult {
    /// How the run was made: the call's rate and the handovers' spacing.
    var config: HandoverConfig
    var transfers: Int
    var rate: Int
    /// Starts the agent refused (back to back: the previous transfer still lingering).
    var refused = 0
    /// ms, one per transfer.
    var firstPacket: [Double]
    /// ms: the call's last packet at the target → its first back at the TN, per transfer.
    var wakeUpGap: [Double]
    /// ms: median UDP round trip TN ↔ agent.
    var roundTrip: Double?
    /// ms: the 99th percentile of the time between two consecutive packets of the call over
    /// the whole run: the call's ordinary jitter, which the wake-up gap is compared with.
    var spacing: Double?
    var lost: Int
    var reordered: Int
    var sent: Int
    var failures: [String]
    /// Where the first losses fell: "seq 812: after tn +0.4 ms of cycle 3's start", for diagnosis.
    var lossNotes: [String] = []
    /// The TN's milestones (ms after its start), the target's ("target …", ms after the offer
    /// arrived) and the agent's ("agent …", ms after it opened the registration) per
    /// transfer, by name: where the time goes.
    var milestones: [String: [Double]] = [:]
}

func percentile(_ xs: [Double], _ p: Double) -> Double? {
    guard !xs.isEmpty else { return nil }
    let s = xs.sorted()
    let rank = Int((p / 100 * Double(s.count - 1)).rounded())
    return s[min(s.count - 1, max(0, rank))]
}

/// One part-4 run: the call's rate, and what happens between two transfers.
struct HandoverConfig {
    var name: String
    var rate: Int
    /// The agent's --linger.
    var linger: Double
    /// Time from one end to the next start.
    var gap: Double

    /// Lingers cut short and a pause after each end: each transfer starts on a settled path.
    static func spaced(rate: Int) -> HandoverConfig { HandoverConfig(name: "spaced", rate: rate, linger: 0.05, gap: 0.15) }
    /// The agent's default linger and the next start 0.3 s after an end (issue 12 item 13).
    static let backToBack = HandoverConfig(name: "back-to-back", rate: 20_000, linger: 0.5, gap: 0.3)
}

func runHandover(_ options: Options, _ config: HandoverConfig) throws -> HandoverResult {
    guard let batond = LabDaemons.findBatond() else { throw BrokenSetup("batond not found next to baton-bench (make bench builds it)") }
    // The sender on a CPU of its own (CPU 0, `SequenceSender`'s): the daemons, the receivers
    // and this thread on the others. The daemons and threads started from here inherit it.
    let cpus = possibleCPUs()
    let saved = cpus > 1 ? setCurrentThreadCPUs(Array(1..<cpus)) : nil
    defer { if let saved { _ = setCurrentThreadCPUs(saved) } }
    let lab = try Lab.transfer(.l2, correspondents: ["cn"])
    let teardown = SignalCleanup.shared.add(lab)
    defer { SignalCleanup.shared.run(teardown) }
    var daemonOptions = LabDaemons.Options()
    daemonOptions.agentArguments = ["--idle-timeout", "600", "--linger", "\(config.linger)", "--announce-refresh", "0"]
    daemonOptions.logLevel = "warning"
    let daemons = try LabDaemons.start(lab, batond: batond, options: daemonOptions)
    defer { daemons.stop() }
    let cn = lab["cn"], sa = lab["sa"], tn = lab["tn"], target = lab["target"]
    let original = tn.ipv4
    let rate = config.rate

    // Baseline 1: UDP round trips TN → agent's namespace → TN.
    let echo = try sa.udpSocket(.v4, port: 9999)
    let pinger = try tn.udpSocket(.v4)
    let echoing = Thread {
        while let d = try? echo.receive(timeout: .milliseconds(500)) { try? echo.send(d.payload, to: d.source) }
    }
    echoing.start()
    var trips: [Double] = []
    for _ in 0..<200 {
        let t0 = now()
        try pinger.send([1], to: sa.ipv4, port: 9999)
        if try pinger.receive(timeout: .seconds(1)) != nil { trips.append(Double(now() - t0) / 1e6) }
    }
    pinger.close()

    let atTN = SequenceReceiver(host: "tn", socket: try tn.udpSocket(.v4, port: 5004))
    let atTarget = SequenceReceiver(host: "target", socket: try target.udpSocket(.v4, port: 5004))
    let call = SequenceSender(socket: try cn.udpSocket(.v4, port: 40000), to: SocketAddress(original, port: 5004),
                              flow: 1, perSecond: rate)
    let tnControl = Control(path: daemons.tn.control)
    let agentControl = Control(path: daemons.agent.control)
    let targetControl = Control(path: daemons.target.control)
    let session = SessionMatch(proto: .udp, source: cn.ipv4, sourcePort: 40000, destination: original, destinationPort: 5004)
    var firstPacket: [Double] = []
    var cycles: [(start: UInt64, end: UInt64)] = []
    var failures: [String] = []
    var refused = 0
    var milestones: [String: [Double]] = [:]
    usleep(300_000)
    for i in 0..<options.handovers {
        let started = monotonicNanoseconds()
        let startedAt = Date()
        do {
            let t = try tnControl.start(TransferRequest(to: "target", sessions: [session], mode: .l2))
            var first: Arrival?
            let deadline = Date().addingTimeInterval(3)
            while first == nil, Date() < deadline {
                first = atTarget.first(flow: 1, after: started)
                // Arrival times are the kernel's stamps: polling finer costs the daemons' CPU
                // and gains nothing.
                if first == nil { usleep(1000) }
            }
            if let first { firstPacket.append(Double(first.time - started) / 1e6) } else { failures.append("transfer \(i): no packet at the target") }
            let atTN = try? tnControl.show(t.id)
            for (name, ms) in atTN?.milestones ?? [:] { milestones[name, default: []].append(ms) }
            // The API call's own share: from the bench's start to the TN's (one wall clock).
            if let tnStart = atTN?.started {
                milestones["request reached the TN (bench's timeline)", default: []].append((tnStart - startedAt.timeIntervalSince1970) * 1000)
            }
            // The target's, from the offer's arrival.
            if let shown = try? targetControl.show(t.id) {
                for (name, ms) in shown.milestones ?? [:] { milestones["target " + name, default: []].append(ms) }
            }
            // The agent's, from the registration opened there, put on the TN's timeline too
            // (one machine, one wall clock).
            if let shown = try? agentControl.show(t.id) {
                for (name, ms) in shown.milestones ?? [:] {
                    milestones["agent " + name, default: []].append(ms)
                    if let tnStart = atTN?.started {
                        milestones["agent " + name + " (TN's timeline)", default: []].append((shown.started - tnStart) * 1000 + ms)
                    }
                }
            }

            usleep(20_000)
            let ending = monotonicNanoseconds()
            try tnControl.end(t.id)
            usleep(UInt32(config.gap * 1e6))
            cycles.append((started, ending))
        } catch let e as ControlError where "\(e)".contains("agent refused") {
            refused += 1
            failures.append("transfer \(i): \(e)")
            usleep(UInt32(config.gap * 1e6))
        } catch {
            failures.append("transfer \(i): \(error)")
            usleep(500_000)
        }
        if i % 20 == 19 { Log.info("handover: \(i + 1)/\(options.handovers)") }
    }
    let sent = call.stop()
    let arrivals = atTN.stop() + atTarget.stop()
    echoing.cancel()
    echo.close()

    // The wake-up gap of each cycle: last packet at the target before the next start, first
    // packet at the TN after it.
    let bounds = cycles.map(\.start) + [UInt64.max]
    let targetTimes = arrivals.filter { $0.host == "target" }.map(\.time).sorted()
    let tnTimes = arrivals.filter { $0.host == "tn" }.map(\.time).sorted()
    var gaps: [Double] = []
    for (i, c) in cycles.enumerated() {
        guard let last = targetTimes.last(where: { $0 >= c.start && $0 < bounds[i + 1] }),
              let back = tnTimes.first(where: { $0 > last }) else { continue }
        gaps.append(Double(back - last) / 1e6)
    }
    let all = arrivals.sorted { $0.time < $1.time }
    let spacing = percentile(zip(all.dropFirst(), all).map { Double($0.time - $1.time) / 1e6 }, 99)
    let report = FlowReport(flow: 1, sent: sent, arrivals: arrivals)
    var bySequence: [UInt64: Arrival] = [:]
    for a in arrivals where a.flow == 1 { bySequence[a.sequence] = a }
    var lossNotes: [String] = []
    for n in 1..<UInt64(max(1, sent)) where bySequence[n] == nil && lossNotes.count < 8 {
        guard let before = (1...n).lazy.compactMap({ bySequence[n - $0] }).first else { continue }
        let cycle = cycles.lastIndex { $0.start <= before.time }
        let phase = cycle.map { i -> String in
            let c = cycles[i]
            return before.time < c.end ? String(format: "%.2f ms after start %d", Double(before.time - c.start) / 1e6, i)
                : String(format: "%.2f ms after end %d", Double(before.time - c.end) / 1e6, i)
        } ?? "before the first transfer"
        lossNotes.append("seq \(n) lost; the one before reached \(before.host), \(phase)")
    }
    return HandoverResult(config: config, transfers: options.handovers, rate: rate, refused: refused,
                          firstPacket: firstPacket, wakeUpGap: gaps,
                          roundTrip: medianOf(trips), spacing: spacing, lost: report.lost, reordered: report.reordered,
                          sent: sent, failures: failures, lossNotes: lossNotes, milestones: milestones)
}

extension HandoverResult {
    func printTable() {
        print("")
        print("4. Handover, \(config.name): \(transfers) transfers tn → target → tn between batond daemons (L2, IPv4) while a \(rate / 1000) kpps call runs; agent linger \(fmt(config.linger, 2)) s, next start \(fmt(config.gap, 2)) s after an end; the sender on CPU 0, daemons and receivers on the others.")
        func line(_ name: String, _ xs: [Double], _ base: Double?, _ baseName: String) {
            let p50 = percentile(xs, 50), p99 = percentile(xs, 99)
            let r50 = p50.flatMap { v in base.map { v / $0 } }, r99 = p99.flatMap { v in base.map { v / $0 } }
            print("   " + name.padding(toLength: 44, withPad: " ", startingAt: 0)
                  + "p50 " + (p50.map { fmt($0, 2) } ?? "n/a") + " ms (" + (r50.map { fmt($0, 1) } ?? "-") + "x " + baseName + ")"
                  + ", p99 " + (p99.map { fmt($0, 2) } ?? "n/a") + " ms (" + (r99.map { fmt($0, 1) } ?? "-") + "x), n=\(xs.count)")
        }
        print("   baselines in the same run: UDP round trip tn ↔ sa " + (roundTrip.map { fmt($0, 3) } ?? "n/a")
              + " ms (median); call inter-arrival time " + (spacing.map { fmt($0, 3) } ?? "n/a") + " ms (p99)")
        line("transfer start → first packet at the target", firstPacket, roundTrip, "round trip")
        line("wake-up gap (last at target → first at TN)", wakeUpGap, spacing, "p99 inter-arrival")
        print("   call: sent \(sent), lost \(lost), reordered \(reordered); starts refused \(refused)" + (failures.isEmpty ? "" : "; failures: \(failures.prefix(3).joined(separator: "; "))"))
        for note in lossNotes { print("     " + note) }
        let order = milestones.keys.sorted { (percentile(milestones[$0]!, 50) ?? 0) < (percentile(milestones[$1]!, 50) ?? 0) }
        if !order.isEmpty {
            print("   milestones, ms (p50/p99; TN: after its start; target: after the offer arrived; agent: after it opened the registration): " + order.map { name in
                "\(name) " + fmt(percentile(milestones[name]!, 50) ?? 0, 2) + "/" + fmt(percentile(milestones[name]!, 99) ?? 0, 2)
            }.joined(separator: ", "))
        }
    }

    func json() -> JSON {
        .object([
            ("config", .string(config.name)),
            ("transfers", .int(Int64(transfers))),
            ("ratePps", .int(Int64(rate))),
            ("lingerSeconds", .num(config.linger, 3)),
            ("gapSeconds", .num(config.gap, 3)),
            ("refused", .int(Int64(refused))),
            ("firstPacketMs", .object([("p50", .num(percentile(firstPacket, 50), 3)), ("p99", .num(percentile(firstPacket, 99), 3)),
                                       ("n", .int(Int64(firstPacket.count)))])),
            ("wakeUpGapMs", .object([("p50", .num(percentile(wakeUpGap, 50), 3)), ("p99", .num(percentile(wakeUpGap, 99), 3)),
                                     ("n", .int(Int64(wakeUpGap.count)))])),
            ("roundTripMs", .num(roundTrip, 4)),
            ("interArrivalP99Ms", .num(spacing, 4)),
            ("firstPacketOverRoundTrip", .num(percentile(firstPacket, 50).flatMap { v in roundTrip.map { v / $0 } }, 2)),
            ("wakeUpGapOverP99InterArrival", .num(percentile(wakeUpGap, 50).flatMap { v in spacing.map { v / $0 } }, 2)),
            ("sent", .int(Int64(sent))),
            ("lost", .int(Int64(lost))),
            ("reordered", .int(Int64(reordered))),
            ("failures", .array(failures.map { .string($0) })),
            ("milestonesMs", .object(milestones.keys.sorted().map { name in
                (name, .object([("p50", .num(percentile(milestones[name]!, 50), 3)), ("p99", .num(percentile(milestones[name]!, 99), 3))]))
            })),
        ])
    }
}
