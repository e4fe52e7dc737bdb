import BatonBPF
import BatonDataPlane
import BatonLab
import BatonModel

/// One measured configuration: its per-round samples (ns per run) and the
/// per-round ratios against the baseline of the same method and round.
struct Series {
    var samples: [Double] = []
    var ratios: [Double] = []
    var median: Double? { medianOf(samples) }
    var medianRatio: Double? { medianOf(ratios) }
}

struct TestRunResult {
    var levels: [Int]
    var rounds: Int
    var repeatCount: Int
    var repeatOneCalls: Int
    /// Steady state (repeat = R): "baton_tx", "baton_macswap", "pass@N", "miss@N", "l2@N".
    var steady: [String: Series] = [:]
    /// repeat = 1, averaged over many calls: "baton_tx", "l2@N", "encap@N".
    var single: [String: Series] = [:]
}

/// Part 1. `dataPlanes[level]` holds exactly `level` rules, the measured flow's among them.
func runTestRunCost(_ o: Options, tools: ToolPrograms, dataPlanes: [(level: Int, dp: DataPlane)]) throws -> TestRunResult {
    var result = TestRunResult(levels: dataPlanes.map(\.level), rounds: o.testRunRounds,
                               repeatCount: o.testRunRepeat, repeatOneCalls: o.repeatOneCalls)
    let hit = World.flowFrame()
    let miss = World.flowFrame(miss: true)
    let other = World.frame(dstMAC: World.agentMAC, srcMAC: World.cnMAC, src: World.correspondent,
                            dst: World.notTakenOver, sport: World.flowSourcePort, dport: World.flowDestinationPort)
    let l2Rule = SessionRule(match: World.flow, forward: World.l2())
    let encapRule = SessionRule(match: World.flow, forward: World.encap)

    // Every path once, checked: a wrong verdict or output means the numbers
    // would describe some other path.
    for (level, dp) in dataPlanes {
        try dp.setRule(l2Rule)
        try expect(dp.steerProgram.testRun(other), .pass, dstMAC: World.agentMAC, length: other.count, "not taken over@\(level)")
        try expect(dp.steerProgram.testRun(miss), .tx, dstMAC: World.tnMAC, length: miss.count, "miss@\(level)")
        try expect(dp.steerProgram.testRun(hit), .tx, dstMAC: World.targetMAC, length: hit.count, "L2 hit@\(level)")
        try dp.setRule(encapRule)
        let e = try dp.steerProgram.testRun(hit)
        try expect(e, .tx, dstMAC: World.targetMAC, length: hit.count + 20, "encap hit@\(level)")
        guard e.output[14 + 9] == 4, e.output[14 + 20 + 9] == 17 else {
            throw BrokenSetup("encap hit@\(level): output is not IPIP around the UDP packet")
        }
        try dp.setRule(l2Rule)
    }
    try expect(tools.tx.testRun(hit), .tx, dstMAC: World.agentMAC, length: hit.count, "baton_tx")
    try expect(tools.macswap.testRun(hit), .tx, dstMAC: World.cnMAC, length: hit.count, "baton_macswap")

    func steady(_ p: BPFProgram, _ frame: [UInt8]) throws -> Double {
        Double(try p.testRun(frame, repeat: o.testRunRepeat).duration)
    }
    func single(_ p: BPFProgram, _ frame: [UInt8]) throws -> Double {
        var total = 0.0
        for _ in 0..<o.repeatOneCalls { total += Double(try p.testRun(frame, repeat: 1).duration) }
        return total / Double(o.repeatOneCalls)
    }
    func add(_ table: inout [String: Series], _ key: String, _ value: Double, base: Double) {
        table[key, default: Series()].samples.append(value)
        if base > 0 { table[key, default: Series()].ratios.append(value / base) }
    }

    for round in 1...o.testRunRounds {
        // Steady state: programs whose rewrite is idempotent (or harmless) on
        // the kernel's reused buffer.
        let tx = try steady(tools.tx, hit)
        add(&result.steady, "baton_tx", tx, base: tx)
        add(&result.steady, "baton_macswap", try steady(tools.macswap, hit), base: tx)
        for (level, dp) in dataPlanes {
            add(&result.steady, "pass@\(level)", try steady(dp.steerProgram, other), base: tx)
            add(&result.steady, "miss@\(level)", try steady(dp.steerProgram, miss), base: tx)
            add(&result.steady, "l2@\(level)", try steady(dp.steerProgram, hit), base: tx)
        }
        // repeat = 1: encap grows the packet on every run, so each call runs once
        // on a fresh copy; L2 and baton_tx the same way for comparison.
        let tx1 = try single(tools.tx, hit)
        add(&result.single, "baton_tx", tx1, base: tx1)
        for (level, dp) in dataPlanes {
            add(&result.single, "l2@\(level)", try single(dp.steerProgram, hit), base: tx1)
            try dp.setRule(encapRule)
            add(&result.single, "encap@\(level)", try single(dp.steerProgram, hit), base: tx1)
            try dp.setRule(l2Rule)
        }
        Log.detail("test-run round \(round): baton_tx \(fmt(tx, 0)) ns, repeat=1 baton_tx \(fmt(tx1, 1)) ns")
    }
    return result
}

private func expect(_ r: BPFProgram.TestRun, _ verdict: XDPAction, dstMAC: MACAddress, length: Int,
                    _ what: String) throws {
    guard r.retval == verdict.rawValue else {
        throw BrokenSetup("\(what): verdict \(XDPAction(rawValue: r.retval).map(String.init(describing:)) ?? String(r.retval)), expected \(verdict)")
    }
    guard r.output.count == length else {
        throw BrokenSetup("\(what): output is \(r.output.count) bytes, expected \(length)")
    }
    guard Array(r.output.prefix(6)) == dstMAC.bytes else {
        throw BrokenSetup("\(what): output goes to \(MACAddress(bytes: r.output.prefix(6))!), expected \(dstMAC)")
    }
}
