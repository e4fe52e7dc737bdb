import BatonBPF
import BatonModel
import CBatonABI
import CBatonObjects
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The steering data plane: the baton_steer program and its maps, loaded
/// from the embedded object or adopted from bpffs, with typed operations on
/// takeovers, session rules and counters. (Attaching is XDPLink's, in BatonBPF.)
///
/// Pinned layout under `root` (default /sys/fs/bpf/baton):
///   maps/<map name>   every map, so state survives the process
///   progs/<program>   baton_steer, baton_clock
///   links/<ifname>    one XDP link per attached interface
///
/// Reads (lookups, counters, `clock()`) are safe from any thread, and so are writes of
/// different rules: the agent's transfer table and its anchored sessions write at once. What
/// they share is locked, each under its own lock held only for the read-modify-write: the
/// counter slots' in-process bitmap (`SlotAllocator`), the destination filter's words, and
/// baton_config (match kinds, the flow cache's generation). Two writers of the same rule are
/// the callers' to order.
public final class DataPlane: @unchecked Sendable {
    public struct Options: Sendable {
        /// Where to pin; nil keeps everything private to this process (tests).
        public var pinRoot: String?
        /// Rules in all, IPv4 and IPv6 together (one counter slot each);
        /// each family's map is sized to hold all of them.
        public var maxRules: Int
        public var maxTakeovers: Int

        public init(pinRoot: String? = DataPlane.defaultRoot, maxRules: Int = Int(BATON_MAX_RULES),
                    maxTakeovers: Int = Int(BATON_MAX_TAKEOVERS)) {
            self.pinRoot = pinRoot
            self.maxRules = maxRules
            self.maxTakeovers = maxTakeovers
        }
    }

    public static let defaultRoot = DefaultPaths.pinRoot

    /// baton_steer's object: the maps and programs the data plane uses.
    public static let spec = CollectionSpec(
        name: "baton_steer",
        maps: ["baton_takeovers", "baton_rules4", "baton_rules6", "baton_counters", "baton_fragments",
               "baton_devices", "baton_config", "baton_stats", "baton_slots", "baton_filter", "baton_flow_cache", "baton_rtp"],
        programs: ["baton_steer", "baton_clock"],
        image: { UnsafeRawBufferPointer(start: baton_steer_object(), count: Int(baton_steer_object_size())) })

    /// The maps, programs and links, pinned at `pinRoot` or private to this process.
    public let collection: PinnedCollection
    public var pinRoot: String? { collection.directory }
    public let steerProgram: BPFProgram
    public let clockProgram: BPFProgram

    let takeoverMap: TypedMap<baton_takeover_key, baton_takeover>
    let rules4: TypedMap<baton_rule4_key, baton_rule>
    let rules6: TypedMap<baton_rule6_key, baton_rule>
    let counterMap: TypedMap<UInt32, baton_counter>
    let fragmentMap: TypedMap<baton_frag_key, baton_frag_ports>
    let deviceMap: TypedMap<UInt32, UInt32>
    let configMap: TypedMap<UInt32, baton_config>
    let statMap: TypedMap<UInt32, baton_stat>
    let filterMap: TypedMap<UInt32, UInt64>
    let rtpMap: TypedMap<baton_rtp_key, baton_rtp>
    let slots: SlotAllocator
    /// The filter's words and baton_config: read-modify-written by every rule change.
    private let filterLock = Mutex(())
    private let configLock = Mutex(())
    /// CONFIG_HZ as `clock()` measured it: fixed while the kernel runs.
    private let tickRate = Mutex<UInt64?>(nil)

    /// Maps by name, for status and debugging.
    public var maps: [String: BPFMap] { collection.maps }

    // MARK: opening

    /// Adopts the data plane pinned at `root` if there is one, else loads
    /// the embedded object and pins it there.
    public static func open(root: String = defaultRoot, options: Options = Options()) throws -> DataPlane {
        if isPinned(root: root) { return try adopt(root: root) }
        var o = options
        o.pinRoot = root
        return try load(o)
    }

    public static func isPinned(root: String) -> Bool {
        PinnedCollection.isPinned(spec, in: root)
    }

    /// Loads the embedded steer object. With a pin root, maps already pinned
    /// there are reused (libbpf checks they are compatible) and the rest are
    /// created and pinned; programs are pinned too.
    public static func load(_ options: Options = Options()) throws -> DataPlane {
        guard options.maxRules > 0, options.maxTakeovers > 0 else {
            throw DataPlaneError.invalid("map sizes must be positive")
        }
        let collection = try PinnedCollection.load(spec, pinnedIn: options.pinRoot) { object in
            let counters = options.maxRules + options.maxTakeovers
            try object.setMaxEntries("baton_rules4", options.maxRules)
            try object.setMaxEntries("baton_rules6", options.maxRules)
            try object.setMaxEntries("baton_takeovers", options.maxTakeovers)
            try object.setMaxEntries("baton_counters", counters)
            try object.setMaxEntries("baton_slots", (counters + 63) / 64)
        }
        return try DataPlane(collection)
    }

    /// Opens the maps and programs pinned at `root`, as a restarted daemon does.
    public static func adopt(root: String = defaultRoot) throws -> DataPlane {
        try PinnedCollection.requireBPFFS(root)
        guard isPinned(root: root) else {
            throw DataPlaneError.notLoaded("no data plane is pinned at \(root)")
        }
        return try DataPlane(PinnedCollection.adopt(spec, in: root))
    }

    private init(_ c: PinnedCollection) throws {
        collection = c
        steerProgram = try c.program("baton_steer")
        clockProgram = try c.program("baton_clock")
        takeoverMap = try c.map("baton_takeovers")
        rules4 = try c.map("baton_rules4")
        rules6 = try c.map("baton_rules6")
        counterMap = try c.map("baton_counters")
        fragmentMap = try c.map("baton_fragments")
        deviceMap = try c.map("baton_devices")
        configMap = try c.map("baton_config")
        statMap = try c.map("baton_stats")
        filterMap = try c.map("baton_filter")
        rtpMap = try c.map("baton_rtp")
        slots = try SlotAllocator(bitmap: c.map("baton_slots"), capacity: c.rawMap("baton_counters").maxEntries)
    }

    /// Removes every pin under `root` (detaching its XDP links). Maps and
    /// programs live on only while someone still holds them.
    public static func unload(root: String = defaultRoot) throws {
        try PinnedCollection.unload(directory: root)
    }

    // MARK: takeovers

    public struct TakeoverEntry: Sendable, Codable {
        public var takeover: Takeover
        public var counter: Counter
    }

    /// Adds a takeover, or replaces one in place (one atomic map update, so
    /// its packets never see a gap); a replaced takeover keeps its counter.
    public func setTakeover(_ t: Takeover) throws {
        try validated(t.validate)
        try ensureDevice(t.defaultForward)
        try markFilter([t.address])
        let key = takeoverKey(t.address)
        if let old = try takeoverMap.lookup(key) {
            try takeoverMap.update(key, t.abi(counter: old.counter), flags: .exist)
            return
        }
        // A full table is the kernel's E2BIG below: counting the keys first costs a walk of
        // the whole map per takeover.
        let slot = try slots.allocate()
        do {
            try zeroCounter(slot)
            try takeoverMap.update(key, t.abi(counter: slot), flags: .noExist)
        } catch {
            try? slots.release(slot)
            if let e = error as? BPFError, e.errno == E2BIG {
                throw DataPlaneError.full("takeover table is full (\(takeoverMap.map.maxEntries) addresses)")
            }
            throw error
        }
    }

    @discardableResult
    public func removeTakeover(_ address: IPAddress) throws -> Bool {
        let key = takeoverKey(address)
        guard let old = try takeoverMap.lookup(key) else { return false }
        try takeoverMap.delete(key)
        try releaseSlot(old.counter, retiringInto: .defaultHit)
        return true
    }

    public func takeover(_ address: IPAddress) throws -> TakeoverEntry? {
        guard let t = try takeoverMap.lookup(takeoverKey(address)) else { return nil }
        return TakeoverEntry(takeover: Takeover(address: address, abi: t), counter: try counter(t.counter))
    }

    public func takeovers() throws -> [TakeoverEntry] {
        try takeoverMap.entries().map { k, v in
            TakeoverEntry(takeover: Takeover(address: IPAddress(bytes16: abiBytes(k.addr)), abi: v),
                          counter: try counter(v.counter))
        }.sorted { $0.takeover.address < $1.takeover.address }
    }

    // MARK: session rules

    public struct RuleEntry: Sendable, Codable {
        public var rule: SessionRule
        public var kind: MatchKind
        public var counter: Counter
    }

    /// Adds a rule, or replaces the rule with the same match in place.
    public func setRule(_ r: SessionRule) throws {
        try validated(r.validate)
        let kind = try validated(r.match.kind)
        try ensureDevice(r.forward)
        try markFilter([r.match.destination])
        switch r.match.destination.family {
        case .v4: try setRule(r, kind: kind, baton_rule4_key(r.match, kind: kind), in: rules4)
        case .v6: try setRule(r, kind: kind, baton_rule6_key(r.match, kind: kind), in: rules6)
        }
    }

    private func setRule<K: RuleKeyABI & BitwiseCopyable>(_ r: SessionRule, kind: MatchKind, _ key: K,
                                        in map: TypedMap<K, baton_rule>) throws {
        if let old = try map.lookup(key) {
            try map.update(key, baton_rule(counter: old.counter, pad: 0, fwd: r.forward.abi), flags: .exist)
            try ruleSetChanged()
            return
        }
        try enableMatchKind(kind)
        let slot = try slots.allocate()
        do {
            try zeroCounter(slot)
            try map.update(key, baton_rule(counter: slot, pad: 0, fwd: r.forward.abi), flags: .noExist)
            try ruleSetChanged()
        } catch {
            try? slots.release(slot)
            if let e = error as? BPFError, e.errno == E2BIG {
                throw DataPlaneError.full("\(r.match.destination.family.rawValue) rule table is full (\(map.map.maxEntries) rules)")
            }
            throw error
        }
    }

    /// Adds many new rules with batched map updates (bpf_map_update_batch).
    /// Every match must be new: one that exists, or is given twice, fails the
    /// call before anything is written; a kernel failure part way (a full
    /// table) removes what this call wrote. Existing rules are never touched.
    public func addRules(_ rules: [SessionRule]) throws {
        // One pass over the rules for what the batch needs besides its keys. Rules come in
        // runs that share a forward and a destination (a transfer's, a file's): each is
        // validated and hashed once per run, not once per rule. Elements are read in place
        // (`rules[i].field`), not copied whole: a rule's forward holds arrays to retain.
        var kindBits: UInt8 = 0
        var ruleKinds: [MatchKind] = []
        ruleKinds.reserveCapacity(rules.count)
        var indexes: [[Int]] = [[], []]
        var forwards = Set<Forwarding>(), destinations = Set<IPAddress>()
        var lastForward = 0, lastDestination = 0
        for i in rules.indices {
            let kind = try validated(rules[i].match.validatedKind)
            try validated { () throws(ModelError) in try SessionRule.check(rules[i].forward.action, for: rules[i].match.proto) }
            kindBits |= 1 << kind.rawValue
            ruleKinds.append(kind)
            let family = rules[i].match.destination.family
            indexes[family == .v4 ? 0 : 1].append(i)
            let sameForward = i > 0 && rules[i].forward == rules[lastForward].forward
            if !sameForward || family != rules[lastForward].match.destination.family {
                try validated { () throws(ModelError) in try rules[i].forward.validate(for: family) }
                if !sameForward { forwards.insert(rules[i].forward) }
                lastForward = i
            }
            if i == 0 || rules[i].match.destination != rules[lastDestination].match.destination {
                destinations.insert(rules[i].match.destination)
                lastDestination = i
            }
        }
        let kinds = MatchKind.allCases.filter { kindBits & (1 << $0.rawValue) != 0 }
        let v4 = try RuleBatch(rules, indexes[0], ruleKinds, map: rules4)
        let v6 = try RuleBatch(rules, indexes[1], ruleKinds, map: rules6)
        for fwd in forwards { try ensureDevice(fwd) }
        try markFilter(destinations)
        let ids = try slots.allocate(count: rules.count)
        for k in kinds { try enableMatchKind(k) }
        do {
            try v4.write(slots: ids[0..<v4.count])
            do {
                try v6.write(slots: ids[v4.count...])
            } catch {
                v4.undo(v4.count)
                throw error
            }
            try ruleSetChanged()
        } catch let e as BatchError {
            // Rules written and undone may have been cached meanwhile.
            try? ruleSetChanged()
            try? slots.release(ids)
            if e.error.errno == E2BIG {
                throw DataPlaneError.full("rule table is full (\(ruleCapacity) rules per family); nothing was added")
            }
            throw e.error
        }
    }

    /// Rules of a transfer that takes over from another one: a match that exists is
    /// re-pointed in place (one map update, so its packets never see a gap) with a fresh
    /// counter, the old counter retired into rule-hit; the other matches are added as by
    /// `addRules`, first, so that a refusal (a full table) leaves every existing rule as it was.
    public func replaceRules(_ rules: [SessionRule]) throws {
        var existing: [SessionRule] = []
        var new: [SessionRule] = []
        for r in rules {
            try validated(r.validate)
            let kind = try validated(r.match.kind)
            let exists: Bool
            switch r.match.destination.family {
            case .v4: exists = try rules4.lookup(baton_rule4_key(r.match, kind: kind)) != nil
            case .v6: exists = try rules6.lookup(baton_rule6_key(r.match, kind: kind)) != nil
            }
            if exists { existing.append(r) } else { new.append(r) }
        }
        try addRules(new)
        for r in existing {
            try ensureDevice(r.forward)
            let kind = try validated(r.match.kind)
            let slot = try slots.allocate()
            try zeroCounter(slot)
            let old: UInt32?
            do {
                switch r.match.destination.family {
                case .v4: old = try repoint(baton_rule4_key(r.match, kind: kind), r.forward, slot: slot, in: rules4)
                case .v6: old = try repoint(baton_rule6_key(r.match, kind: kind), r.forward, slot: slot, in: rules6)
                }
            } catch {
                try? slots.release(slot)
                throw error
            }
            if let old { try releaseSlot(old, retiringInto: .ruleHit) }
        }
        if !existing.isEmpty { try ruleSetChanged() }
    }

    /// Re-points an existing rule at `forward` with counter `slot`; returns its old counter.
    private func repoint<K: RuleKeyABI & BitwiseCopyable>(_ key: K, _ forward: Forwarding, slot: UInt32,
                                                          in map: TypedMap<K, baton_rule>) throws -> UInt32? {
        let old = try map.lookup(key)?.counter
        try map.update(key, baton_rule(counter: slot, pad: 0, fwd: forward.abi), flags: old == nil ? .any : .exist)
        return old
    }

    /// One family's part of addRules: keys checked up front, written in one
    /// batch, undone on failure.
    private struct RuleBatch<K: RuleKeyABI & BitwiseCopyable> {
        let map: TypedMap<K, baton_rule>
        /// The batch's rules: these indexes of `all`.
        let all: [SessionRule]
        let indexes: [Int]
        let keys: [K]
        var count: Int { keys.count }

        init(_ all: [SessionRule], _ indexes: [Int], _ kinds: [MatchKind], map: TypedMap<K, baton_rule>) throws {
            self.map = map
            self.all = all
            self.indexes = indexes
            var keys: [K] = []
            keys.reserveCapacity(indexes.count)
            var seen = KeySet(capacity: indexes.count)
            // Many rules: read the table once rather than one lookup each.
            var existing: KeySet?
            if indexes.count > 256 {
                let present = try map.keys()
                var set = KeySet(capacity: present.count)
                for k in present { _ = set.insert(KeyBytes(k)) }
                existing = set
            }
            for i in indexes {
                let k = K(all[i].match, kind: kinds[i])
                let bytes = KeyBytes(k)
                guard seen.insert(bytes) else {
                    throw DataPlaneError.invalid("rule \(all[i].match) is given twice; nothing was added")
                }
                let exists = try existing.map { $0.contains(bytes) } ?? (map.lookup(k) != nil)
                if exists { throw DataPlaneError.invalid("rule \(all[i].match) exists; nothing was added") }
                keys.append(k)
            }
            self.keys = keys
        }

        func write(slots: ArraySlice<UInt32>) throws {
            guard !keys.isEmpty else { return }
            // The forward's C form once per run of equal forwards.
            var last = -1, abi = baton_fwd()
            let values = zip(indexes, slots).map { i, slot -> baton_rule in
                if last < 0 || all[i].forward != all[last].forward {
                    abi = all[i].forward.abi
                    last = i
                }
                return baton_rule(counter: slot, pad: 0, fwd: abi)
            }
            do {
                try map.updateBatch(keys, values)
            } catch let e as BatchError {
                undo(e.written)
                throw e
            }
        }

        func undo(_ written: Int) {
            for k in keys.prefix(written) { _ = try? map.delete(k) }
        }
    }

    @discardableResult
    public func removeRule(_ m: SessionMatch) throws -> Bool {
        let kind = try validated(m.kind)
        let slot: UInt32?
        switch m.destination.family {
        case .v4: slot = try removeRule(baton_rule4_key(m, kind: kind), from: rules4)
        case .v6: slot = try removeRule(baton_rule6_key(m, kind: kind), from: rules6)
        }
        guard let slot else { return false }
        try ruleSetChanged()
        try releaseSlot(slot, retiringInto: .ruleHit)
        if kind != .exact { try recomputeMatchKinds() }
        return true
    }

    private func removeRule<K: RuleKeyABI & BitwiseCopyable>(_ key: K, from map: TypedMap<K, baton_rule>) throws -> UInt32? {
        guard let old = try map.lookup(key) else { return nil }
        try map.delete(key)
        return old.counter
    }

    public func rule(_ m: SessionMatch) throws -> RuleEntry? {
        let kind = try validated(m.kind)
        switch m.destination.family {
        case .v4: return try rule(baton_rule4_key(m, kind: kind), in: rules4)
        case .v6: return try rule(baton_rule6_key(m, kind: kind), in: rules6)
        }
    }

    private func rule<K: RuleKeyABI & BitwiseCopyable>(_ key: K, in map: TypedMap<K, baton_rule>) throws -> RuleEntry? {
        guard let v = try map.lookup(key) else { return nil }
        return try entry(key, v, withCounter: true)
    }

    private func entry<K: RuleKeyABI & BitwiseCopyable>(_ k: K, _ v: baton_rule, withCounter: Bool) throws -> RuleEntry? {
        guard let match = k.sessionMatch, let kind = k.kind else { return nil }
        return RuleEntry(rule: SessionRule(match: match, forward: Forwarding(abi: v.fwd)), kind: kind,
                         counter: withCounter ? try counter(v.counter) : Counter())
    }

    /// Every rule with its counter, most specific kind first.
    public func rules(withCounters: Bool = true) throws -> [RuleEntry] {
        let all = try rules4.entries().compactMap { try entry($0, $1, withCounter: withCounters) }
            + rules6.entries().compactMap { try entry($0, $1, withCounter: withCounters) }
        return all.sorted { ($0.kind.rawValue, $0.rule.match.description) < ($1.kind.rawValue, $1.rule.match.description) }
    }

    public func ruleCount() throws -> Int { try rules4.keys().count + rules6.keys().count }

    /// The matches of every rule, read in one pass over the tables.
    public func ruleMatches() throws -> Set<SessionMatch> {
        var out = Set<SessionMatch>()
        for k in try rules4.keys() { if let m = k.sessionMatch { out.insert(m) } }
        for k in try rules6.keys() { if let m = k.sessionMatch { out.insert(m) } }
        return out
    }

    /// Destinations and kinds of every rule (for the filter and the kinds in use).
    private func ruleKeys() throws -> [(destination: IPAddress, kind: MatchKind?)] {
        try rules4.keys().map { ($0.destination, $0.kind) } + rules6.keys().map { ($0.destination, $0.kind) }
    }

    /// Rules in all (IPv4 and IPv6 share the counter slots; each family's
    /// map can hold this many).
    public var ruleCapacity: Int { rules4.map.maxEntries }
    public var takeoverCapacity: Int { takeoverMap.map.maxEntries }

    // MARK: counters, stats, clock

    func counter(_ slot: UInt32) throws -> Counter {
        Counter(perCPU: try counterMap.lookupPerCPU(slot) ?? [])
    }

    func zeroCounter(_ slot: UInt32) throws {
        try counterMap.updatePerCPU(slot, baton_counter())
    }

    /// The statistics as the program writes them (without the hits summed
    /// from counters): what one packet moved, for tests.
    func programStats() throws -> [StatReason: StatValue] {
        var out: [StatReason: StatValue] = [:]
        for r in StatReason.allCases {
            let per = try statMap.lookupPerCPU(UInt32(r.rawValue)) ?? []
            out[r] = StatValue(packets: per.reduce(0) { $0 + $1.packets }, bytes: per.reduce(0) { $0 + $1.bytes })
        }
        return out
    }

    /// Frees a counter slot. Its count moves into `reason`'s statistic, so
    /// rule-hit and default-hit keep counting what removed entries saw.
    private func releaseSlot(_ slot: UInt32, retiringInto reason: StatReason) throws {
        let c = try counter(slot)
        if c.packets > 0 {
            var per = try statMap.lookupPerCPU(UInt32(reason.rawValue)) ?? [baton_stat()]
            per[0].packets += c.packets
            per[0].bytes += c.bytes
            try statMap.updatePerCPU(UInt32(reason.rawValue), values: per)
        }
        try zeroCounter(slot)
        try slots.release(slot)
    }

    /// Packets and bytes by reason. The program counts hits only on the
    /// rule's or takeover's own counter (one write a packet, not two), so
    /// rule-hit and default-hit are summed here from the counters of the
    /// entries there are, plus what removed entries had counted.
    public func stats() throws -> [StatReason: StatValue] {
        var out = try programStats()
        // One pass over the counters, each slot read once and summed into its kind: counting
        // all slots and then the takeovers' again, packets arriving between the two reads
        // made the difference negative (a crash on /metrics under traffic).
        let takeoverSlots = Set(try takeoverMap.entries().map(\.1.counter))
        var rules = StatValue(packets: 0, bytes: 0), takeovers = StatValue(packets: 0, bytes: 0)
        try counterMap.forEachPerCPU { slot, perCPU in
            for c in perCPU {
                if takeoverSlots.contains(slot) {
                    takeovers.packets += c.packets
                    takeovers.bytes += c.bytes
                } else {
                    rules.packets += c.packets
                    rules.bytes += c.bytes
                }
            }
        }
        out[.defaultHit]!.packets += takeovers.packets
        out[.defaultHit]!.bytes += takeovers.bytes
        out[.ruleHit]!.packets += rules.packets
        out[.ruleHit]!.bytes += rules.bytes
        return out
    }

    /// Reads jiffies and CLOCK_MONOTONIC together in the kernel. The first
    /// call reads them twice, a few ticks apart, to learn the tick rate (it
    /// takes 3 ticks: up to 30 ms); later calls reuse that rate and take one
    /// sample.
    public func clock() throws -> KernelClock {
        func sample() throws -> (UInt64, UInt64, UInt64) {
            let r = try clockProgram.testRun([UInt8](repeating: 0, count: 64))
            let w = r.output.withUnsafeBytes { raw in (0..<3).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self) } }
            return (w[0], w[1], w[2])
        }
        if let hz = tickRate.withLock({ $0 }) {
            let s = try sample()
            return KernelClock(jiffies: s.0, monotonicNanoseconds: s.1, hz: hz)
        }
        let a = try sample()
        var b = a
        // Coarse time and jiffies advance together, once per tick: wait for
        // a few ticks so the ratio is exact.
        while b.0 < a.0 + 3 {
            usleep(1000)
            b = try sample()
        }
        let nsPerTick = Double(b.2 - a.2) / Double(b.0 - a.0)
        let hz = [100, 250, 300, 1000].min { abs(1e9 / Double($0) - nsPerTick) < abs(1e9 / Double($1) - nsPerTick) }!
        tickRate.withLock { $0 = UInt64(hz) }
        return KernelClock(jiffies: b.0, monotonicNanoseconds: b.1, hz: UInt64(hz))
    }

    // MARK: bookkeeping

    /// A map key's bytes, hashable: for finding duplicates in a batch.
    /// A rule key's bytes as a value (both keys fit in 40 bytes): compared without an
    /// allocation per key, which a million-rule batch felt.
    private struct KeyBytes: Equatable {
        var w: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        init<K: BitwiseCopyable>(_ k: K) {
            precondition(MemoryLayout<K>.size <= 40, "rule keys are at most 40 bytes")
            withUnsafeMutableBytes(of: &w) { out in withUnsafeBytes(of: k) { out.copyMemory(from: $0) } }
        }
        static func == (a: Self, b: Self) -> Bool { a.w == b.w }
        /// A multiply-xorshift mix: keys are ours, not an attacker's, and SipHash (Hasher) was a
        /// quarter of a batch's time.
        var hash: UInt64 {
            var h = w.0 &* 0x9e37_79b9_7f4a_7c15
            h = (h ^ (h >> 29) ^ w.1) &* 0xbf58_476d_1ce4_e5b9
            h = (h ^ (h >> 31) ^ w.2) &* 0x94d0_49bb_1331_11eb
            h = (h ^ (h >> 29) ^ w.3 ^ (w.4 &* 0x9e37_79b9_7f4a_7c15)) &* 0xbf58_476d_1ce4_e5b9
            return h ^ (h >> 32)
        }
    }

    /// A set of rule keys, open addressing with linear probing, sized once for the batch. A
    /// slot is 8 bytes (a 32-bit fingerprint of the key's hash and the key's index in `keys`),
    /// so a million keys probe a 16 MB table rather than one of their own size: each insert is
    /// about one cache miss.
    private struct KeySet {
        private var keys: [KeyBytes] = []
        private var slots: [UInt64]
        private let mask: Int

        init(capacity: Int) {
            var size = 16
            while size < capacity * 2 { size <<= 1 }
            slots = Array(repeating: 0, count: size)
            mask = size - 1
            keys.reserveCapacity(capacity)
        }

        /// False if it was there already.
        mutating func insert(_ k: KeyBytes) -> Bool {
            let h = k.hash
            let fingerprint = (h >> 32) | 1 // never 0: 0 is an empty slot
            var i = Int(truncatingIfNeeded: h) & mask
            while slots[i] != 0 {
                if slots[i] >> 32 == fingerprint, keys[Int(slots[i] & 0xffff_ffff)] == k { return false }
                i = (i + 1) & mask
            }
            slots[i] = fingerprint << 32 | UInt64(keys.count)
            keys.append(k)
            return true
        }

        func contains(_ k: KeyBytes) -> Bool {
            let h = k.hash
            let fingerprint = (h >> 32) | 1
            var i = Int(truncatingIfNeeded: h) & mask
            while slots[i] != 0 {
                if slots[i] >> 32 == fingerprint, keys[Int(slots[i] & 0xffff_ffff)] == k { return true }
                i = (i + 1) & mask
            }
            return false
        }
    }

    /// Sets the filter bits of `addresses` before their entries are written,
    /// so the program looks them up from the first packet.
    private func markFilter(_ addresses: some Collection<IPAddress>) throws {
        var words: [UInt32: UInt64] = [:]
        for a in addresses {
            let bit = a.bytes16.withUnsafeBufferPointer { baton_filter_bit($0.baseAddress!) }
            words[bit / 64, default: 0] |= 1 << UInt64(bit % 64)
        }
        try filterLock.withLock { _ in
            for (w, bits) in words {
                let cur = try filterMap.lookup(w) ?? 0
                if cur | bits != cur { try filterMap.update(w, cur | bits) }
            }
        }
    }

    /// Recomputes the filter from the takeovers and rules there are now:
    /// removals leave their bits set (a shared bit may still be needed); this
    /// clears the stale ones. Each word is written once, whole.
    public func rebuildFilter() throws {
        var words = [UInt64](repeating: 0, count: filterMap.map.maxEntries)
        func mark(_ b16: [UInt8]) {
            let bit = b16.withUnsafeBufferPointer { baton_filter_bit($0.baseAddress!) }
            words[Int(bit / 64)] |= 1 << UInt64(bit % 64)
        }
        try filterLock.withLock { _ in
            for k in try takeoverMap.keys() { mark(abiBytes(k.addr)) }
            for r in try ruleKeys() { mark(r.destination.bytes16) }
            try filterMap.updateBatch(words.indices.map { UInt32($0) }, words)
        }
    }

    /// Redirects need their egress in the device map.
    func ensureDevice(_ f: Forwarding) throws {
        guard f.sends, f.ifindex != 0 else { return }
        if try deviceMap.lookup(f.ifindex) == nil {
            do {
                try deviceMap.update(f.ifindex, f.ifindex)
            } catch let e as BPFError where e.errno == ENODEV {
                throw DataPlaneError.invalid("no interface with ifindex \(f.ifindex) here")
            }
        }
    }

    private func currentKinds() throws -> UInt32 {
        try configMap.lookup(0)?.match_kinds ?? 0
    }

    private func enableMatchKind(_ k: MatchKind) throws {
        try configLock.withLock { _ in
            let cur = try currentKinds()
            let bits = (cur & UInt32(BATON_CONFIG_VALID) != 0 ? cur : UInt32(BATON_CONFIG_VALID)) | (1 << UInt32(k.rawValue))
            if bits != cur { try storeConfig(kinds: bits) }
        }
    }

    /// Writes baton_config, keeping the fields not given.
    func writeConfig(kinds: UInt32? = nil, generation: UInt32? = nil) throws {
        try configLock.withLock { _ in try storeConfig(kinds: kinds, generation: generation) }
    }

    /// `writeConfig` with `configLock` held.
    private func storeConfig(kinds: UInt32? = nil, generation: UInt32? = nil) throws {
        let cur = try configMap.lookup(0) ?? baton_config()
        try configMap.update(0, baton_config(match_kinds: kinds ?? cur.match_kinds, generation: generation ?? cur.generation))
    }

    /// After any rule change: the program's flow cache drops every entry of
    /// the old generation. Called after the map write, so a packet that sees
    /// the new generation also sees the new rules. Never 0 (cache off).
    func ruleSetChanged() throws {
        try configLock.withLock { _ in
            let cur = try configMap.lookup(0)?.generation ?? 0
            try storeConfig(generation: cur == UInt32.max ? 1 : cur + 1)
        }
    }

    /// After removing a wildcard rule: look up only kinds that still have rules.
    private func recomputeMatchKinds() throws {
        try configLock.withLock { _ in
            var bits = UInt32(BATON_CONFIG_VALID)
            for r in try ruleKeys() { if let k = r.kind { bits |= 1 << UInt32(k.rawValue) } }
            try storeConfig(kinds: bits)
        }
    }

    /// Forgets every first fragment seen (later fragments of those datagrams
    /// will be dropped as unknown).
    public func clearFragments() throws {
        for k in try fragmentMap.keys() { try fragmentMap.delete(k) }
    }

    /// Drops every rule, takeover and RTP stream (the maps stay; attachments stay).
    public func flush() throws {
        for k in try rules4.keys() { try rules4.delete(k) }
        for k in try rules6.keys() { try rules6.delete(k) }
        for k in try takeoverMap.keys() { try takeoverMap.delete(k) }
        for k in try rtpMap.keys() { _ = try rtpMap.delete(k) }
        try slots.reset()
        try writeConfig(kinds: UInt32(BATON_CONFIG_VALID))
        try ruleSetChanged()
        try clearFragments()
        try rebuildFilter()
    }
}
