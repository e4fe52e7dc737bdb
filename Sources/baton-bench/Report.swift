import BatonBPF
#if canImport(Glibc)
import Glibc
#endif

/// A JSON value with keys kept in insertion order (the output is for people too).
indirect enum JSON {
    case null, bool(Bool), number(Double), int(Int64), string(String), array([JSON]), object([(String, JSON)])

    static func num(_ x: Double?, _ decimals: Int = 4) -> JSON {
        guard let x, x.isFinite else { return .null }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        return .number((x * scale).rounded() / scale)
    }

    var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .number(let x):
            if x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
            return "\(x)"
        case .string(let s): return JSON.quote(s)
        case .array(let a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.map { JSON.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }

    private static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

/// Goals the issue sets; printed beside the measured ratios, never enforced.
let goalSteeredOverBare = 0.85
let goalSteeredOverKernel = 4.0

struct Report {
    let options: Options
    var insert: InsertResult?
    var testRun: TestRunResult?
    var throughput: ThroughputResult?
    /// Part 4: spaced at 20 kpps, spaced at 100 kpps, back to back at 20 kpps.
    var handover: [HandoverResult] = []
    var controlPlane: ControlPlaneResult?
    var sip: SIPBench?
    var broken: [String] = []
    var elapsed: Double?

    /// Obviously broken setups: nothing counted, checksum errors, the steered
    /// path not hitting its rule. Anything else is a figure, not a failure.
    mutating func checkBroken() {
        guard let t = throughput else { return }
        for p in Path.allCases {
            guard let r = t.paths[p], r.unavailable == nil, !r.windows.isEmpty else { continue }
            if r.counted == 0 {
                broken.append("\(p.rawValue): no frames came back to gen (\(r.generated) generated)")
            }
            if let e = r.counters["Udp.InCsumErrors"], e > 0 {
                broken.append("\(p.rawValue): dut counted \(e) UDP checksum errors (Udp.InCsumErrors)")
            }
            if let e = r.counters["Udp.InErrors-other"], e > 0 {
                broken.append("\(p.rawValue): dut counted \(e) UDP receive errors other than overload drops")
            }
            if let e = r.counters["Ip.InHdrErrors"], e > 0 {
                broken.append("\(p.rawValue): dut counted \(e) IP header errors (TTL ran out? see docs/benchmark.md)")
            }
        }
        if let s = t.paths[.steered], s.unavailable == nil, !s.windows.isEmpty {
            let hits = s.counters["steer.rule-hit"] ?? 0
            if hits == 0 { broken.append("steered: baton_steer counted no rule hits") }
            if hits > 0 && Double(hits) < 0.99 * Double(s.counted) {
                broken.append("steered: \(s.counted) frames came back but only \(hits) rule hits were counted")
            }
        }
    }

    // MARK: table

    func printTable() {
        var u = utsname()
        uname(&u)
        let kernel = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        print("Baton benchmark: kernel \(kernel), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, "
              + "\(options.quick ? "quick" : "full") run" + (elapsed.map { ", \(fmt($0, 0)) s" } ?? ""))
        print("Every ratio is a median of per-round ratios against a baseline measured in the same round.")
        if let t = testRun { printTestRun(t) }
        if let t = throughput { printThroughput(t) }
        if let i = insert { printInsert(i) }
        for h in handover { h.printTable() }
        if let c = controlPlane { c.printTable() }
        if let s = sip { s.printTable() }
        for b in broken { print("BROKEN: \(b)") }
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
    private func levelName(_ l: Int) -> String {
        l >= 1_000_000 && l % 1_000_000 == 0 ? "\(l / 1_000_000)M" : l >= 1000 && l % 1000 == 0 ? "\(l / 1000)k" : "\(l)"
    }

    private func printTestRun(_ t: TestRunResult) {
        print("")
        print("1. Cost per packet through BPF_PROG_TEST_RUN: kernel-reported ns per run, median of \(t.rounds) rounds;")
        print("   (x) = ratio to baton_tx measured the same way in the same round. 60-byte UDP/IPv4 frame.")
        let cols = t.levels.map { levelName($0) + (($0 == 1) ? " rule" : " rules") }
        func cell(_ s: Series?, _ d: Int) -> String {
            guard let s, let m = s.median else { return "n/a" }
            return fmt(m, d) + " (" + (s.medianRatio.map { fmt($0, 2) } ?? "-") + "x)"
        }
        print("   " + pad("repeat = \(t.repeatCount) (one buffer, steady state)", 44) + cols.map { lpad($0, 16) }.joined())
        print("   " + pad("baton_tx: return XDP_TX", 44) + lpad(cell(t.steady["baton_tx"], 1), 16))
        print("   " + pad("baton_macswap: swap MACs, XDP_TX", 44) + lpad(cell(t.steady["baton_macswap"], 1), 16))
        print("   " + pad("baton_steer not taken over (XDP_PASS)", 44) + t.levels.map { lpad(cell(t.steady["pass@\($0)"], 1), 16) }.joined())
        print("   " + pad("baton_steer miss (takeover default, L2)", 44) + t.levels.map { lpad(cell(t.steady["miss@\($0)"], 1), 16) }.joined())
        print("   " + pad("baton_steer L2 hit (exact rule, XDP_TX)", 44) + t.levels.map { lpad(cell(t.steady["l2@\($0)"], 1), 16) }.joined())
        print("   " + pad("repeat = 1, mean of \(t.repeatOneCalls) calls", 44))
        print("   " + pad("baton_tx", 44) + lpad(cell(t.single["baton_tx"], 1), 16))
        print("   " + pad("baton_steer L2 hit", 44) + t.levels.map { lpad(cell(t.single["l2@\($0)"], 1), 16) }.joined())
        print("   " + pad("baton_steer encap hit (IPIP, +20 bytes)", 44) + t.levels.map { lpad(cell(t.single["encap@\($0)"], 1), 16) }.joined())
    }

    private func printThroughput(_ t: ThroughputResult) {
        print("")
        print("2. Throughput over a veth pair, live-frames generator in gen (baton_tx), baton_count on gen's end;")
        print("   Mpps = frames back at gen / window; median of \(t.rounds) rounds of \(fmt(t.window, 1)) s, paths interleaved.")
        print("   dut holds \(t.rules) rules (capacity \(options.capacity)). 60-byte UDP/IPv4 frames, one flow.")
        print("   " + pad("path on dut", 46) + lpad("Mpps", 8) + lpad("offered", 10) + lpad("back", 8) + lpad("steered/x", 11))
        let letters: [Path: String] = [.bare: "(a)", .steered: "(b)", .kernel: "(c)", .relay: "(d)", .anchored: "(e)", .switched: "(f)"]
        for p in Path.allCases {
            guard let r = t.paths[p] else { continue }
            let name = letters[p]! + " " + p.title
            if let why = r.unavailable {
                print("   " + pad(name, 46) + lpad("n/a", 8) + "  " + why)
                continue
            }
            let back = r.generated > 0 ? Double(r.counted) / Double(r.generated) * 100 : 0
            let rel = p == .steered || p == .anchored || p == .switched ? "-" : (t.ratio(against: p).map { fmt($0, 2) + "x" } ?? "n/a")
            print("   " + pad(name, 46) + lpad(r.mpps.map { fmt($0, 3) } ?? "n/a", 8)
                  + lpad(r.offeredMpps.map { fmt($0, 2) } ?? "n/a", 10) + lpad(fmt(back, 1) + "%", 8) + lpad(rel, 11))
        }
        func goal(_ name: String, _ v: Double?, _ g: Double?) -> String {
            let vs = v.map { fmt($0, 2) + "x" } ?? "n/a"
            guard let g else { return "   " + pad(name, 20) + vs }
            let met = v.map { $0 >= g ? "met" : "not met" } ?? "n/a"
            return "   " + pad(name, 20) + pad(vs, 10) + "goal >= \(fmt(g, 2))x: \(met)"
        }
        let perFrame = Path.allCases.compactMap { p in t.mpps(p).map { "\(p.rawValue) \(fmt(1e3 / $0, 0))" } }
        if !perFrame.isEmpty { print("   ns per frame, whole round trip (1000 / Mpps): " + perFrame.joined(separator: ", ")) }
        print(goal("steered / bare", t.ratio(against: .bare), goalSteeredOverBare))
        print(goal("steered / kernel", t.ratio(against: .kernel), goalSteeredOverKernel))
        print(goal("steered / relay", t.ratio(against: .relay), nil))
        print(goal("anchored / bare", t.anchoredRatio(against: .bare), nil))
        print(goal("anchored / relay", t.anchoredRatio(against: .relay), nil))
        print(goal("switched / bare", t.switchedRatio(against: .bare), nil))
        if let a = t.mpps(.anchored) {
            print("   anchored calls at 50 packets/s each way one core relays (1 flow): \(Int(a * 1e6 / 100))")
        }
        print("   dut counters over the measured windows:")
        for p in Path.allCases {
            guard let r = t.paths[p], r.unavailable == nil else { continue }
            let keys = counterKeys(p)
            let text = keys.compactMap { k in r.counters[k].map { "\(k) \($0)" } }.joined(separator: ", ")
            print("     " + pad(p.rawValue, 8) + "not back \(r.generated - min(r.generated, r.counted)); " + text)
        }
        if !t.flows.isEmpty {
            print("   many flows (baton_gen: each frame the next of N filler flows; no UDP checksum, so a relay updates the")
            print("   IPv4 header's only), median Mpps and ratios to bare per round; anchored: the same rules as relays,")
            print("   switched: as switch mode's redirects; calls/core: anchored Mpps x 10^6 / 100 (50 packets/s each way);")
            print("   floor: baton_floor, the MAC swap plus one 16-byte slot per flow in a flat table of N slots rounded up to")
            print("   a power of two (no key, no pointer): the least any per-flow lookup costs; steered/floor: the rest:")
            for f in t.flows {
                let r = f.steeredOverBare
                var line = "     " + pad("\(f.count) flows", 16) + "bare " + lpad(medianOf(f.bare).map { fmt($0, 3) } ?? "n/a", 7)
                    + "  steered " + lpad(medianOf(f.steered).map { fmt($0, 3) } ?? "n/a", 7)
                    + "  steered/bare " + (r.map { fmt($0, 2) + "x" } ?? "n/a")
                    + "  floor " + lpad(medianOf(f.floor).map { fmt($0, 3) } ?? "n/a", 7)
                    + " (" + (f.floorOverBare.map { fmt($0, 2) + "x" } ?? "n/a") + ")"
                    + "  steered/floor " + (f.steeredOverFloor.map { fmt($0, 2) + "x" } ?? "n/a")
                for p in [Path.anchored, .switched] {
                    guard let m = medianOf(f.others[p] ?? []) else { continue }
                    line += "  \(p.rawValue) " + fmt(m, 3) + " (" + (f.ratio(p).map { fmt($0, 2) + "x" } ?? "n/a") + ")"
                }
                if let a = medianOf(f.others[.anchored] ?? []) { line += "  calls/core \(Int(a * 1e6 / 100))" }
                var goal = "goal at 64k flows >= 0.80x: " + (r.map { $0 >= 0.8 ? "met" : "not met" } ?? "n/a")
                if let fl = f.floorOverBare, fl < 0.8 { goal += "; out of reach here, the floor is " + fmt(fl, 2) + "x" }
                print(line + (f.count == 65536 ? "  (\(goal))" : ""))
            }
        }
        for n in t.notes { print("   note: " + n) }
    }

    private func counterKeys(_ p: Path) -> [String] {
        switch p {
        case .bare: return ["Udp.InCsumErrors", "Udp.InErrors-other"]
        case .steered: return ["steer.rule-hit", "steer.default-hit", "Udp.InCsumErrors", "Udp.InErrors-other"]
        case .anchored: return ["steer.rule-hit", "steer.relay-dropped", "Udp.InCsumErrors", "Udp.InErrors-other"]
        case .switched: return ["steer.rule-hit", "steer.redirect-failed", "Udp.InCsumErrors", "Udp.InErrors-other"]
        case .kernel: return ["Ip.ForwDatagrams", "Ip.InHdrErrors", "Ip.InAddrErrors", "Ip.OutDiscards", "Icmp.OutMsgs",
                              "Udp.InCsumErrors", "Udp.InErrors-other"]
        case .relay: return ["Udp.InDatagrams", "Udp.InErrors", "Udp.RcvbufErrors", "Udp.MemErrors", "Udp.InCsumErrors",
                             "Udp.InErrors-other",
                             "relay.relayed", "relay.sendFailures"]
        }
    }

    private func printInsert(_ i: InsertResult) {
        print("")
        print("3. Rule insert: \(i.rules) distinct exact UDP rules into an empty table (capacity \(i.capacity)),")
        print("   median of \(i.rounds) round(s), each into freshly loaded maps.")
        let raw = i.rawPerSecond.map { fmt($0 / 1e6, 2) + " M rules/s (" + fmt(Double(i.rules) / $0, 2) + " s)" }
            ?? "n/a: \(i.rawUnavailable ?? "not measured")"
        print("   " + pad("raw bpf_map_update_batch (TypedMap)", 40) + raw)
        let add = i.addRulesPerSecond.map { fmt($0 / 1e6, 2) + " M rules/s (" + fmt(Double(i.rules) / $0, 2) + " s)" } ?? "n/a"
        print("   " + pad("DataPlane.addRules", 40) + add + (i.ratio.map { ", " + fmt($0, 2) + "x raw" } ?? ""))
    }

    // MARK: JSON

    func json() -> String {
        var top: [(String, JSON)] = [
            ("bench", .string("baton-bench")),
            ("mode", .string(options.quick ? "quick" : "full")),
            ("elapsedSeconds", .num(elapsed, 1)),
        ]
        top.append(("testRun", testRun.map(testRunJSON) ?? .null))
        top.append(("throughput", throughput.map(throughputJSON) ?? .null))
        top.append(("insert", insert.map(insertJSON) ?? .null))
        top.append(("handover", handover.isEmpty ? .null : .array(handover.map { $0.json() })))
        top.append(("controlPlane", controlPlane.map { $0.json() } ?? .null))
        top.append(("sip", sip.map { $0.json() } ?? .null))
        top.append(("broken", .array(broken.map { .string($0) })))
        return JSON.object(top).text
    }

    private func seriesJSON(_ s: Series?) -> JSON {
        .object([("ns", .num(s?.median, 2)), ("ratioToTx", .num(s?.medianRatio, 3))])
    }

    private func testRunJSON(_ t: TestRunResult) -> JSON {
        func byLevel(_ table: [String: Series], _ prefix: String) -> JSON {
            .object(t.levels.map { (String($0), seriesJSON(table["\(prefix)@\($0)"])) })
        }
        return .object([
            ("rounds", .int(Int64(t.rounds))),
            ("levels", .array(t.levels.map { .int(Int64($0)) })),
            ("steady", .object([
                ("repeat", .int(Int64(t.repeatCount))),
                ("baton_tx", seriesJSON(t.steady["baton_tx"])),
                ("baton_macswap", seriesJSON(t.steady["baton_macswap"])),
                ("notTakenOver", byLevel(t.steady, "pass")),
                ("miss", byLevel(t.steady, "miss")),
                ("l2Hit", byLevel(t.steady, "l2")),
            ])),
            ("repeatOne", .object([
                ("calls", .int(Int64(t.repeatOneCalls))),
                ("baton_tx", seriesJSON(t.single["baton_tx"])),
                ("l2Hit", byLevel(t.single, "l2")),
                ("encapHit", byLevel(t.single, "encap")),
            ])),
        ])
    }

    private func throughputJSON(_ t: ThroughputResult) -> JSON {
        var mpps: [(String, JSON)] = []
        var unavailable: [(String, JSON)] = []
        var paths: [(String, JSON)] = []
        for p in Path.allCases {
            guard let r = t.paths[p] else { continue }
            mpps.append((p.rawValue, .num(r.mpps, 4)))
            if let why = r.unavailable { unavailable.append((p.rawValue, .string(why))) }
            paths.append((p.rawValue, .object([
                ("mpps", .num(r.mpps, 4)),
                ("samples", .array(r.windows.map { .num($0.mpps, 4) })),
                ("offeredMpps", .num(r.offeredMpps, 4)),
                ("generated", .int(Int64(r.generated))),
                ("counted", .int(Int64(r.counted))),
                ("notBack", .int(Int64(r.generated) - Int64(min(r.generated, r.counted)))),
                ("counters", .object(r.counters.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
            ])))
        }
        return .object([
            ("rounds", .int(Int64(t.rounds))),
            ("windowSeconds", .num(t.window, 2)),
            ("rules", .int(Int64(t.rules))),
            ("mpps", .object(mpps)),
            ("ratios", .object([
                ("steeredOverBare", .num(t.ratio(against: .bare), 3)),
                ("steeredOverKernel", .num(t.ratio(against: .kernel), 3)),
                ("steeredOverRelay", .num(t.ratio(against: .relay), 3)),
                ("anchoredOverBare", .num(t.anchoredRatio(against: .bare), 3)),
                ("anchoredOverRelay", .num(t.anchoredRatio(against: .relay), 3)),
                ("switchedOverBare", .num(t.switchedRatio(against: .bare), 3)),
            ])),
            ("nsPerFrame", .object(Path.allCases.compactMap { p in t.paths[p].map { (p.rawValue, .num($0.mpps.map { 1e3 / $0 }, 1)) } })),
            ("goals", .object([
                ("steeredOverBare", .number(goalSteeredOverBare)),
                ("steeredOverKernel", .number(goalSteeredOverKernel)),
            ])),
            ("unavailable", .object(unavailable)),
            ("paths", .object(paths)),
            ("flows", .array(t.flows.map { f in
                .object([("count", .int(Int64(f.count))), ("bareMpps", .num(medianOf(f.bare), 4)),
                                ("steeredMpps", .num(medianOf(f.steered), 4)), ("steeredOverBare", .num(f.steeredOverBare, 3)),
                                ("floorMpps", .num(medianOf(f.floor), 4)), ("floorOverBare", .num(f.floorOverBare, 3)),
                                ("steeredOverFloor", .num(f.steeredOverFloor, 3)),
                                ("anchoredMpps", .num(medianOf(f.others[.anchored] ?? []), 4)),
                                ("anchoredOverBare", .num(f.ratio(.anchored), 3)),
                                ("anchoredCallsPerCore", .num(medianOf(f.others[.anchored] ?? []).map { $0 * 1e6 / 100 }, 0)),
                                ("switchedMpps", .num(medianOf(f.others[.switched] ?? []), 4)),
                                ("switchedOverBare", .num(f.ratio(.switched), 3))])
            })),
        ])
    }

    private func insertJSON(_ i: InsertResult) -> JSON {
        .object([
            ("rules", .int(Int64(i.rules))),
            ("capacity", .int(Int64(i.capacity))),
            ("rounds", .int(Int64(i.rounds))),
            ("addRulesPerSecond", .num(i.addRulesPerSecond, 0)),
            ("rawUpdateBatchPerSecond", .num(i.rawPerSecond, 0)),
            ("addRulesOverRaw", .num(i.ratio, 3)),
            ("rawUnavailable", i.rawUnavailable.map { .string($0) } ?? .null),
        ])
    }
}
