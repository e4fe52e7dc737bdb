import BatonBPF
import BatonDataPlane
import BatonModel
#if canImport(Glibc)
import Glibc
#endif

/// baton_rule_key (baton_abi.h) as plain bytes: 40. The bench does not import
/// the ABI module; TypedMap checks these sizes against the kernel's, so an
/// ABI change makes the raw baseline fail loudly (reported as null), never
/// silently write something else.
struct RawRuleKey: BitwiseCopyable {
    var w: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

/// baton_rule as plain bytes: 60.
struct RawRule: BitwiseCopyable {
    var w: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
            UInt32, UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

extension RawRuleKey {
    /// The same bytes DataPlane writes for an exact rule: src[16], dst[16]
    /// (IPv4-mapped), sport and dport in network order, proto, match kind 0, pad.
    init(_ m: SessionMatch) {
        self.init()
        withUnsafeMutableBytes(of: &self) { raw in
            raw.copyBytes(from: (m.source ?? .v4(0)).bytes16)
            UnsafeMutableRawBufferPointer(rebasing: raw[16..<32]).copyBytes(from: m.destination.bytes16)
            raw.storeBytes(of: (m.sourcePort ?? 0).bigEndian, toByteOffset: 32, as: UInt16.self)
            raw.storeBytes(of: (m.destinationPort ?? 0).bigEndian, toByteOffset: 34, as: UInt16.self)
            raw[36] = m.proto.rawValue
            raw[37] = 0 // BATON_MATCH_EXACT
        }
    }
}

extension RawRule {
    /// An L2 forwarding (dst MAC, src MAC, ifindex 0, action 2) and a counter slot.
    init(l2 to: MACAddress, from: MACAddress, counter: UInt32) {
        self.init()
        withUnsafeMutableBytes(of: &self) { raw in
            raw.copyBytes(from: to.bytes)
            UnsafeMutableRawBufferPointer(rebasing: raw[6..<12]).copyBytes(from: from.bytes)
            raw[16] = 2 // BATON_ACTION_L2
            raw.storeBytes(of: counter, toByteOffset: 52, as: UInt32.self)
        }
    }
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
    let rawKeys = rules.map { RawRuleKey($0.match) }
    let rawValues = (0..<rules.count).map { RawRule(l2: World.targetMAC, from: World.agentMAC, counter: UInt32($0)) }
    var last: DataPlane?
    for round in 1...o.insertRounds {
        // A: raw update_batch into the rule map of a fresh, empty data plane.
        if result.rawUnavailable == nil {
            do {
                let scratch = try DataPlane.load(.init(pinRoot: nil, maxRules: o.capacity))
                let map = try TypedMap<RawRuleKey, RawRule>(scratch.maps["baton_rules"]!)
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
