import BatonBPF
import BatonDataPlane
import BatonModel
import CBatonABI
#if canImport(Glibc)
import Glibc
#endif

/// The raw baseline writes the ABI's own structs (baton_abi.h), exactly the
/// bytes DataPlane writes for an exact IPv4 rule with an L2 action.
func rawRuleKey(_ m: SessionMatch) -> baton_rule4_key {
    var k = baton_rule4_key()
    if case .v4(let a) = m.source { k.src = a.bigEndian }
    if case .v4(let a) = m.destination { k.dst = a.bigEndian }
    k.sport = (m.sourcePort ?? 0).bigEndian
    k.dport = (m.destinationPort ?? 0).bigEndian
    k.proto = m.proto.rawValue
    k.match = UInt8(BATON_MATCH_EXACT)
    return k
}

func rawRule(l2 to: MACAddress, from: MACAddress, counter: UInt32) -> baton_rule {
    var r = baton_rule()
    r.counter = counter
    withUnsafeMutableBytes(of: &r.fwd.dst_mac) { $0.copyBytes(from: to.bytes) }
    withUnsafeMutableBytes(of: &r.fwd.src_mac) { $0.copyBytes(from: from.bytes) }
    r.fwd.action = UInt8(BATON_ACTION_L2)
    return r
}

struct InsertResult {
    var rules: Int
    var capacity: Int
    var rounds: Int
    /// Medians, rules per second.
    var addRulesPerSecond: Double?
    var rawPerSecond: Double?
    var addRulesSeconds: [Double] = []
    var rawSeconds: [Double] = []
    var rawUnavailable: String?
    /// Median of the per-round ratios addRules rate / raw rate.
    var ratio: Double? {
        guard rawSeconds.count == addRulesSeconds.count else { return nil }
        return medianOf(zip(rawSeconds, addRulesSeconds).map { $0 / $1 })
    }
}

/// Part 3: 1M rules into an empty data plane with DataPlane.addRules, and the
/// same keys with raw bpf_map_update_batch into an empty, identical map.
/// Each round loads fresh data planes (raw, then addRules), so both always
/// start empty. Returns the last addRules data plane, full, for the other parts.
func runInsert(_ o: Options, rules: [SessionRule]) throws -> (InsertResult, DataPlane) {
    var result = InsertResult(rules: rules.count, capacity: o.capacity, rounds: o.insertRounds)
    // The raw baseline's keys and values, built outside the timed section
    // (as the caller of addRules builds its SessionRules outside it).
    let rawKeys = rules.map { rawRuleKey($0.match) }
    let rawValues = (0..<rules.count).map { rawRule(l2: World.targetMAC, from: World.agentMAC, counter: UInt32($0)) }
    var last: DataPlane?
    for round in 1...o.insertRounds {
        // A: raw update_batch into the rule map of a fresh, empty data plane.
        if result.rawUnavailable == nil {
            do {
                let scratch = try DataPlane.load(.init(pinRoot: nil, maxRules: o.capacity))
                let map = try TypedMap<baton_rule4_key, baton_rule>(scratch.maps["baton_rules4"]!)
                let t0 = now()
                let n = try map.updateBatch(rawKeys, rawValues)
                let s = seconds(since: t0)
                guard n == rawKeys.count else { throw BrokenSetup("raw update_batch wrote \(n) of \(rawKeys.count) rules") }
                result.rawSeconds.append(s)
                Log.detail("insert round \(round): raw update_batch \(rules.count) in \(fmt(s, 3)) s")
            } catch let e as BrokenSetup {
                throw e
            } catch {
                result.rawUnavailable = "raw update_batch failed: \(error)"
                Log.info("insert: \(result.rawUnavailable!)")
            }
        }
        // B: DataPlane.addRules into a fresh, empty data plane.
        last = nil // free the previous round's maps first
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: o.capacity))
        let t0 = now()
        try dp.addRules(rules)
        let s = seconds(since: t0)
        result.addRulesSeconds.append(s)
        Log.detail("insert round \(round): DataPlane.addRules \(rules.count) in \(fmt(s, 3)) s")
        last = dp
    }
    let n = Double(rules.count)
    result.addRulesPerSecond = medianOf(result.addRulesSeconds.map { n / $0 })
    result.rawPerSecond = medianOf(result.rawSeconds.map { n / $0 })
    guard let dp = last, try dp.rule(World.flow) != nil else {
        throw BrokenSetup("after addRules the measured flow's rule is missing")
    }
    return (result, dp)
}
