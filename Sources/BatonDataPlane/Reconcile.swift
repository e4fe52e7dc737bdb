import BatonBPF
import BatonModel
import CBatonABI
#if canImport(Glibc)
import Glibc
#endif

extension DataPlane {
    /// What `reconcile` found and did, for the daemon's start-up log.
    public struct Reconciliation: Sendable, Equatable {
        /// Entries already as wanted: not written, their counters go on.
        public var rulesKept = 0, takeoversKept = 0
        /// Wanted but missing: written with a fresh counter.
        public var rulesRestored = 0, takeoversRestored = 0
        /// Present with another forwarding (or a broken counter slot): rewritten in place.
        public var rulesRewritten = 0, takeoversRewritten = 0
        /// Present but wanted by nobody: removed, their counts retired into the statistics.
        public var rulesRemoved = 0, takeoversRemoved = 0
        /// Counter slots marked in use by no entry (a process killed between
        /// allocating and writing) freed, plus slots in use but unmarked adopted.
        public var slotsRepaired = 0
        /// Up to `listLimit` of each, for the log.
        public var removedRules: [SessionMatch] = [], restoredRules: [SessionMatch] = [], removedTakeovers: [IPAddress] = []

        public static let listLimit = 100

        public init() {}

        /// True when the maps already held exactly what was wanted.
        public var changedNothing: Bool {
            rulesRestored + rulesRewritten + rulesRemoved + takeoversRestored + takeoversRewritten + takeoversRemoved
                + slotsRepaired == 0
        }
    }

    /// Makes the maps hold exactly `rules` and `takeovers`, as a restarted
    /// daemon needs after reading its store: missing entries are written
    /// (batched, like addRules), entries with another forwarding rewritten in
    /// place (keeping their counter slot), entries nobody wants removed
    /// (their counts retired into rule-hit / default-hit, their slots freed),
    /// identical ones left alone (so their counters, and the idle sweep's
    /// view of them, go on). Each map is read once by batch lookup; kept
    /// entries cost no syscall.
    ///
    /// Everything is checked before the first write: an invalid rule or
    /// takeover, a match or address given twice, or more than the maps hold
    /// throws and changes nothing. A kernel failure part way leaves a mix;
    /// calling again converges. No other process may change the maps
    /// meanwhile (the counter-slot bitmap is made to match the entries).
    public func reconcile(rules: [SessionRule], takeovers: [Takeover]) throws -> Reconciliation {
        var report = Reconciliation()

        // 1. Check and key everything before touching a map.
        let count6 = rules.reduce(0) { $0 + ($1.match.destination.family == .v6 ? 1 : 0) }
        var wanted4 = WantedRules<baton_rule4_key>(capacity: rules.count - count6)
        var wanted6 = WantedRules<baton_rule6_key>(capacity: count6)
        var kinds = UInt32(BATON_CONFIG_VALID)
        var destinations = Set<IPAddress>()
        var lastDestination: IPAddress?
        var lastForward: Forwarding?, lastABI = baton_fwd()
        for (i, r) in rules.enumerated() {
            try validated(r.validate)
            let kind = try validated(r.match.kind)
            kinds |= 1 << UInt32(kind.rawValue)
            if r.match.destination != lastDestination {
                destinations.insert(r.match.destination)
                lastDestination = r.match.destination
            }
            if r.forward != lastForward { // rules mostly share a forwarding
                lastForward = r.forward
                lastABI = r.forward.abi
            }
            switch r.match.destination.family {
            case .v4: try wanted4.add(baton_rule4_key(r.match, kind: kind), index: i, lastABI, r)
            case .v6: try wanted6.add(baton_rule6_key(r.match, kind: kind), index: i, lastABI, r)
            }
        }
        var wantedTakeovers: [RawKey<baton_takeover_key>: Takeover] = [:]
        for t in takeovers {
            try validated(t.validate)
            guard wantedTakeovers.updateValue(t, forKey: RawKey(takeoverKey(t.address))) == nil else {
                throw DataPlaneError.invalid("takeover of \(t.address) is given twice; nothing was changed")
            }
            destinations.insert(t.address)
        }
        let slotCapacity = counterMap.map.maxEntries
        guard wanted4.count <= rules4.map.maxEntries, wanted6.count <= rules6.map.maxEntries,
              takeovers.count <= takeoverMap.map.maxEntries, rules.count + takeovers.count <= slotCapacity else {
            throw DataPlaneError.full("\(rules.count) rules (\(wanted4.count) IPv4, \(wanted6.count) IPv6) and \(takeovers.count) takeovers "
                + "do not fit (\(ruleCapacity) rules per family, \(takeoverCapacity) takeovers, \(slotCapacity) counters); nothing was changed")
        }

        // 2. Read each map once and sort its entries: kept, rewritten, stale.
        //    A slot outside the counter map or shared with an entry seen
        //    before is broken: that entry is rewritten with a fresh slot.
        var owned = SlotSet(capacity: slotCapacity)
        var found = [Bool](repeating: false, count: rules.count)
        let plan4 = wanted4.plan(against: try rules4.entries(batchSize: 16384), owned: &owned, found: &found)
        let plan6 = wanted6.plan(against: try rules6.entries(batchSize: 16384), owned: &owned, found: &found)
        var takeoverRewrites: [(baton_takeover_key, baton_takeover)] = []
        var takeoverReslots: [Takeover] = []
        var takeoverRemovals: [(baton_takeover_key, UInt32)] = []
        for (k, old) in try takeoverMap.entries() {
            guard let t = wantedTakeovers.removeValue(forKey: RawKey(k)) else {
                takeoverRemovals.append((k, old.counter))
                continue
            }
            if !owned.claim(old.counter) {
                takeoverReslots.append(t)
            } else {
                let new = t.abi(counter: old.counter)
                if sameBytes(new, old) { report.takeoversKept += 1 } else { takeoverRewrites.append((k, new)) }
            }
        }
        let takeoverRestores = takeovers.filter { wantedTakeovers[RawKey(takeoverKey($0.address))] != nil }

        // 3. Stale entries out first: they free room and slots, and their
        //    packets stop being steered by rules nobody stands behind.
        for (k, _) in plan4.removals { try rules4.delete(k) }
        for (k, _) in plan6.removals { try rules6.delete(k) }
        for (k, _) in takeoverRemovals { try takeoverMap.delete(k) }
        report.rulesRemoved = plan4.removals.count + plan6.removals.count
        report.takeoversRemoved = takeoverRemovals.count
        for (k, _) in plan4.removals.prefix(Reconciliation.listLimit) { if let m = k.sessionMatch { report.removedRules.append(m) } }
        for (k, _) in plan6.removals.prefix(Reconciliation.listLimit - report.removedRules.count) {
            if let m = k.sessionMatch { report.removedRules.append(m) }
        }
        report.removedTakeovers = takeoverRemovals.prefix(Reconciliation.listLimit).map { IPAddress(bytes16: abiBytes($0.0.addr)) }
        if report.rulesRemoved > 0 { try ruleSetChanged() }

        // 4. Counter slots: retire the removed entries' counts, zero every
        //    slot that goes back to the pool (free slots are always zero, so
        //    fresh ones need no write), and make the bitmap say exactly
        //    which slots the remaining entries hold.
        //    Slots: removed rules' (r), removed takeovers' (t), marked in the
        //    bitmap (have), held by what stays (owned). Released: r, t and
        //    have, minus owned (a removed entry may have shared its slot with
        //    one that stays). Repaired: have but not owned, r or t; owned but
        //    not have.
        var ruleFreed = SlotSet(capacity: slotCapacity), takeoverFreed = SlotSet(capacity: slotCapacity)
        for (_, slot) in plan4.removals { _ = ruleFreed.claim(slot) }
        for (_, slot) in plan6.removals { _ = ruleFreed.claim(slot) }
        for (_, slot) in takeoverRemovals { _ = takeoverFreed.claim(slot) }
        var released = SlotSet(capacity: slotCapacity)
        var dirty = Set<Int>()
        for w in owned.words.indices {
            let have = w < slots.words.count ? slots.words[w] : 0, want = owned.words[w]
            let freed = ruleFreed.words[w] | takeoverFreed.words[w]
            released.words[w] = (have | freed) & ~want
            report.slotsRepaired += (have & ~want & ~freed).nonzeroBitCount + (want & ~have).nonzeroBitCount
            if have != want && w < slots.words.count { dirty.insert(w) }
        }
        if released.count > 0 {
            let counts = try counters(of: released)
            try retire(counts, ruleFreed, released, into: .ruleHit)
            try retire(counts, takeoverFreed, released, into: .defaultHit)
            for slot in counts.keys { try zeroCounter(slot) }
        }
        for w in dirty { slots.words[w] = owned.words[w] }
        try slots.flush(dirty)
        var newSlots = try slots.allocate(count: plan4.fresh + plan6.fresh + takeoverReslots.count + takeoverRestores.count)[...]

        // 5. What the new entries need before they are written: filter bits
        //    (so the program looks them up from the first packet), match
        //    kinds, egress devices.
        var filter = [UInt64](repeating: 0, count: filterMap.map.maxEntries)
        for (w, bits) in try filterMap.entries() where Int(w) < filter.count { filter[Int(w)] = bits }
        let before = filter
        let changed = plan4.changed + plan6.changed
        var lastChanged: IPAddress?
        for i in changed where rules[i].match.destination != lastChanged {
            filter.setBit(for: rules[i].match.destination)
            lastChanged = rules[i].match.destination
        }
        for t in takeovers { filter.setBit(for: t.address) }
        try writeFilter(filter, over: before)
        let currentKinds = try configMap.lookup(0)?.match_kinds ?? 0
        let valid = currentKinds & UInt32(BATON_CONFIG_VALID) != 0 ? currentKinds : UInt32(BATON_CONFIG_VALID)
        if valid | kinds != currentKinds { try writeConfig(kinds: valid | kinds) }
        var devices: [UInt32: Forwarding] = [:]
        for i in changed where rules[i].forward.ifindex != 0 { devices[rules[i].forward.ifindex] = rules[i].forward }
        for t in takeovers where t.defaultForward.ifindex != 0 { devices[t.defaultForward.ifindex] = t.defaultForward }
        for f in devices.values { try ensureDevice(f) }

        // 6. Write: rewrites in place, then the rest; rules before
        //    takeovers, as a registration does.
        try plan4.write(into: rules4, slots: &newSlots)
        try plan6.write(into: rules6, slots: &newSlots)
        report.rulesKept = plan4.kept + plan6.kept
        report.rulesRewritten = plan4.rewrites.count + plan6.rewrites.count + plan4.reslots.count + plan6.reslots.count
        report.rulesRestored = plan4.restores.count + plan6.restores.count
        report.restoredRules = (plan4.restores.prefix(Reconciliation.listLimit).map(\.index)
            + plan6.restores.prefix(Reconciliation.listLimit).map(\.index)).sorted().prefix(Reconciliation.listLimit).map { rules[$0].match }
        if report.rulesRewritten + report.rulesRestored > 0 { try ruleSetChanged() }
        for (k, v) in takeoverRewrites { try takeoverMap.update(k, v, flags: .exist) }
        for t in takeoverReslots { try takeoverMap.update(takeoverKey(t.address), t.abi(counter: newSlots.removeFirst())) }
        for t in takeoverRestores {
            try takeoverMap.update(takeoverKey(t.address), t.abi(counter: newSlots.removeFirst()), flags: .noExist)
        }
        report.takeoversRewritten = takeoverRewrites.count + takeoverReslots.count
        report.takeoversRestored = takeoverRestores.count

        // 7. Exactly the kinds and filter bits the wanted entries need: a
        //    stale bit would cost every packet to its addresses a lookup.
        if (valid | kinds) != kinds { try writeConfig(kinds: kinds) }
        var exact = [UInt64](repeating: 0, count: filter.count)
        for a in destinations { exact.setBit(for: a) }
        try writeFilter(exact, over: filter)
        return report
    }

    /// Counters of `slots` that are not all zero: one lookup each for a
    /// few, one batched pass over the whole map for many.
    private func counters(of slots: SlotSet) throws -> [UInt32: Counter] {
        var out: [UInt32: Counter] = [:]
        if slots.count * 16 < counterMap.map.maxEntries {
            for s in slots.members {
                let c = try counter(s)
                if c != Counter() { out[s] = c }
            }
        } else {
            try counterMap.forEachPerCPU { slot, perCPU in
                guard slots.contains(slot) else { return }
                let c = Counter(perCPU: perCPU)
                if c != Counter() { out[slot] = c }
            }
        }
        return out
    }

    /// Adds what removed entries counted to `reason`'s statistic, as
    /// removeRule / removeTakeover do one at a time.
    private func retire(_ counts: [UInt32: Counter], _ freed: SlotSet, _ released: SlotSet, into reason: StatReason) throws {
        var packets: UInt64 = 0, bytes: UInt64 = 0
        for (s, c) in counts where freed.contains(s) && released.contains(s) {
            packets += c.packets
            bytes += c.bytes
        }
        guard packets > 0 else { return }
        var per = try statMap.lookupPerCPU(UInt32(reason.rawValue)) ?? [baton_stat()]
        per[0].packets += packets
        per[0].bytes += bytes
        try statMap.updatePerCPU(UInt32(reason.rawValue), values: per)
    }

    /// Writes the filter words that differ from `old`.
    private func writeFilter(_ new: [UInt64], over old: [UInt64]) throws {
        let changed = new.indices.filter { new[$0] != old[$0] }
        guard !changed.isEmpty else { return }
        try filterMap.updateBatch(changed.map { UInt32($0) }, changed.map { new[$0] })
    }
}

/// One family's wanted rules by key, with the map value they need;
/// duplicates are refused as they come.
private struct WantedRules<K: RuleKeyABI & BitwiseCopyable> {
    /// Index into reconcile's `rules`, and the forwarding as the map holds it.
    private var byKey: [RawKey<K>: (index: Int, fwd: baton_fwd)]
    private var keys: [K] = [], indexes: [Int] = []
    var count: Int { keys.count }

    init(capacity: Int) {
        byKey = Dictionary(minimumCapacity: capacity)
        keys.reserveCapacity(capacity)
        indexes.reserveCapacity(capacity)
    }

    mutating func add(_ key: K, index: Int, _ fwd: baton_fwd, _ r: SessionRule) throws {
        guard byKey.updateValue((index, fwd), forKey: RawKey(key)) == nil else {
            throw DataPlaneError.invalid("rule \(r.match) is given twice; nothing was changed")
        }
        keys.append(key)
        indexes.append(index)
    }

    /// Sorts the map's entries against the wanted rules; claims the slots
    /// of the entries that stay. `found` is by index into reconcile's rules.
    func plan(against existing: [(K, baton_rule)], owned: inout SlotSet, found: inout [Bool]) -> RulePlan<K> {
        var plan = RulePlan<K>()
        var present = 0
        for (k, old) in existing {
            guard let w = byKey[RawKey(k)] else {
                plan.removals.append((k, old.counter))
                continue
            }
            present += 1
            found[w.index] = true
            if !owned.claim(old.counter) {
                plan.reslots.append((k, w.index, w.fwd))
                plan.changed.append(w.index)
            } else if sameBytes(w.fwd, old.fwd) {
                plan.kept += 1
            } else {
                plan.rewrites.append((k, baton_rule(counter: old.counter, pad: 0, fwd: w.fwd)))
                plan.changed.append(w.index)
            }
        }
        guard present < keys.count else { return plan }
        // The rest are missing.
        plan.restores.reserveCapacity(keys.count - present)
        for (k, i) in zip(keys, indexes) where !found[i] {
            plan.restores.append((k, i, byKey[RawKey(k)]!.fwd))
            plan.changed.append(i)
        }
        return plan
    }
}

/// What reconcile does to one family's rule map.
private struct RulePlan<K: BitwiseCopyable> {
    var kept = 0
    /// Present with another forwarding: new value, same slot.
    var rewrites: [(K, baton_rule)] = []
    /// Missing: written with a fresh slot.
    var restores: [(key: K, index: Int, fwd: baton_fwd)] = []
    /// Present, but their slot was broken: overwritten with a fresh slot.
    var reslots: [(key: K, index: Int, fwd: baton_fwd)] = []
    var removals: [(K, UInt32)] = []
    /// Indexes of the rules whose destination bit and device must be ready before the write.
    var changed: [Int] = []

    var fresh: Int { restores.count + reslots.count }

    /// Rewrites in place, then the rest with slots taken from `slots`,
    /// one batch each (the batch update replaces existing keys).
    func write(into map: TypedMap<K, baton_rule>, slots: inout ArraySlice<UInt32>) throws {
        do {
            if !rewrites.isEmpty { try map.updateBatch(rewrites.map(\.0), rewrites.map(\.1)) }
            let all = restores + reslots
            guard !all.isEmpty else { return }
            let ids = slots.prefix(all.count)
            slots.removeFirst(all.count)
            try map.updateBatch(all.map(\.key), zip(all, ids).map { w, slot in baton_rule(counter: slot, pad: 0, fwd: w.fwd) })
        } catch let e as BatchError {
            if e.error.errno == E2BIG {
                throw DataPlaneError.full("\(map.map.name) is full (\(map.map.maxEntries) rules)")
            }
            throw e.error
        }
    }
}

/// A BPF key as a dictionary key: hashed and compared by its bytes (the ABI
/// structs have explicit padding, always zero).
struct RawKey<K: BitwiseCopyable>: Hashable {
    let key: K
    init(_ key: K) { self.key = key }

    static func == (a: RawKey, b: RawKey) -> Bool { sameBytes(a.key, b.key) }

    func hash(into h: inout Hasher) {
        withUnsafeBytes(of: key) { raw in
            // Word by word: much faster than combine(bytes:) for these sizes.
            var i = 0
            while i + 8 <= raw.count {
                h.combine(raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                i += 8
            }
            while i < raw.count {
                h.combine(raw[i])
                i += 1
            }
        }
    }
}

@inline(__always)
func sameBytes<T: BitwiseCopyable>(_ a: T, _ b: T) -> Bool {
    withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

/// Which counter slots entries hold, to find double use and leaks.
struct SlotSet {
    var words: [UInt64]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        words = [UInt64](repeating: 0, count: (capacity + 63) / 64)
    }

    var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    var members: [UInt32] {
        var out: [UInt32] = []
        for (w, word) in words.enumerated() {
            var bits = word
            while bits != 0 {
                out.append(UInt32(w * 64 + bits.trailingZeroBitCount))
                bits &= bits - 1
            }
        }
        return out
    }

    func contains(_ slot: UInt32) -> Bool {
        Int(slot) < capacity && words[Int(slot) / 64] & (1 << UInt64(slot % 64)) != 0
    }

    /// Takes `slot` for one entry; false when it is out of range or already taken.
    mutating func claim(_ slot: UInt32) -> Bool {
        let s = Int(slot)
        guard s < capacity else { return false }
        let bit: UInt64 = 1 << UInt64(s % 64)
        if words[s / 64] & bit != 0 { return false }
        words[s / 64] |= bit
        return true
    }
}

extension [UInt64] {
    /// Sets `a`'s bit in a baton_filter image.
    mutating func setBit(for a: IPAddress) {
        let bit = a.bytes16.withUnsafeBufferPointer { baton_filter_bit($0.baseAddress!) }
        self[Int(bit / 64)] |= 1 << UInt64(bit % 64)
    }
}
