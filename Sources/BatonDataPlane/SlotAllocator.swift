import BatonBPF
import Synchronization

/// Hands out counter slots (indexes into baton_counters). The bitmap lives
/// in the pinned baton_slots map, so a restarted process continues where the
/// last one stopped; it is read once and written back a word at a time. Allocations and
/// releases from several threads take its lock (the reconcile at start runs alone).
final class SlotAllocator: @unchecked Sendable {
    private let lock = Mutex(())
    private let bitmap: TypedMap<UInt32, UInt64>
    private let capacity: Int
    var words: [UInt64]
    private var hint = 0

    init(bitmap: TypedMap<UInt32, UInt64>, capacity: Int) throws {
        self.bitmap = bitmap
        self.capacity = capacity
        words = [UInt64](repeating: 0, count: bitmap.map.maxEntries)
        for (k, v) in try bitmap.entries() where Int(k) < words.count { words[Int(k)] = v }
    }

    func allocate() throws -> UInt32 {
        try allocate(count: 1)[0]
    }

    func allocate(count: Int) throws -> [UInt32] {
        try lock.withLock { _ in try allocateLocked(count: count) }
    }

    private func allocateLocked(count: Int) throws -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(count)
        var dirty = Set<Int>()
        var w = hint
        var scanned = 0
        while out.count < count && scanned <= words.count {
            if w >= words.count { w = 0 }
            while words[w] != ~0 && out.count < count {
                let bit = (~words[w]).trailingZeroBitCount
                let slot = w * 64 + bit
                if slot >= capacity { break }
                words[w] |= 1 << UInt64(bit)
                dirty.insert(w)
                out.append(UInt32(slot))
            }
            if out.count < count { w += 1; scanned += 1 }
        }
        hint = w
        guard out.count == count else {
            for s in out { words[Int(s) / 64] &= ~(1 << UInt64(s % 64)) }
            throw DataPlaneError.full("no free counter slots (\(capacity) in use)")
        }
        try flush(dirty)
        return out
    }

    func release(_ slot: UInt32) throws { try release([slot]) }

    func release(_ slots: [UInt32]) throws {
        try lock.withLock { _ in try releaseLocked(slots) }
    }

    private func releaseLocked(_ slots: [UInt32]) throws {
        var dirty = Set<Int>()
        for s in slots where Int(s) < capacity {
            words[Int(s) / 64] &= ~(1 << UInt64(s % 64))
            dirty.insert(Int(s) / 64)
        }
        try flush(dirty)
    }

    func reset() throws {
        try lock.withLock { _ in
            let dirty = Set(words.indices.filter { words[$0] != 0 })
            for i in dirty { words[i] = 0 }
            try flush(dirty)
        }
    }

    func flush(_ dirty: Set<Int>) throws {
        let idx = dirty.sorted()
        if idx.count > 64 {
            try bitmap.updateBatch(idx.map { UInt32($0) }, idx.map { words[$0] })
        } else {
            for i in idx { try bitmap.update(UInt32(i), words[i]) }
        }
    }
}
