import CLibbpf
#if canImport(Glibc)
import Glibc
#endif

/// A BPF map by file descriptor: from a loaded object or from a pin. Its
/// shape comes from the kernel (bpf_obj_get_info_by_fd), so typed views can
/// check their Swift layouts against it.
public final class BPFMap: @unchecked Sendable {
    public let descriptor: BPFDescriptor
    public let name: String
    public let id: UInt32
    public let type: UInt32
    public let keySize: Int
    public let valueSize: Int
    public let maxEntries: Int

    public var fd: Int32 { descriptor.fd }

    public init(_ descriptor: BPFDescriptor) throws {
        let info = try descriptor.info(bpf_map_info(), "map")
        self.descriptor = descriptor
        name = BPFDescriptor.name(info.name)
        id = info.id
        type = info.type
        keySize = Int(info.key_size)
        valueSize = Int(info.value_size)
        maxEntries = Int(info.max_entries)
    }

    /// Opens the map pinned at `path`.
    public static func pinned(at path: String) throws -> BPFMap {
        try BPFMap(BPFDescriptor.pinned(at: path))
    }

    public var isPerCPU: Bool {
        [BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH]
            .map(\.rawValue).contains(type)
    }

    /// Bytes one lookup returns: per-CPU maps give one 8-byte-aligned value per possible CPU.
    public var lookupSize: Int {
        isPerCPU ? ((valueSize + 7) & ~7) * possibleCPUs() : valueSize
    }

    public func pin(at path: String) throws { try descriptor.pin(at: path) }

    // MARK: raw byte access; the typed view below is what callers use.

    func lookupRaw(_ key: UnsafeRawPointer, into value: UnsafeMutableRawPointer) throws -> Bool {
        if bpf_map_lookup_elem(fd, key, value) == 0 { return true }
        let e = Glibc.errno
        if e == ENOENT { return false }
        throw BPFError("lookup in \(name)", errno: e)
    }

    func updateRaw(_ key: UnsafeRawPointer, _ value: UnsafeRawPointer, flags: UpdateFlags) throws {
        if bpf_map_update_elem(fd, key, value, flags.rawValue) == 0 { return }
        let e = Glibc.errno
        switch e {
        case E2BIG: throw BPFError("update \(name): map is full (\(maxEntries) entries)", errno: e)
        case EEXIST: throw BPFError("update \(name): entry exists", errno: e)
        case ENOENT: throw BPFError("update \(name): no such entry", errno: e)
        default: throw BPFError("update \(name)", errno: e)
        }
    }

    func deleteRaw(_ key: UnsafeRawPointer) throws -> Bool {
        if bpf_map_delete_elem(fd, key) == 0 { return true }
        let e = Glibc.errno
        if e == ENOENT { return false }
        throw BPFError("delete from \(name)", errno: e)
    }

    func nextKeyRaw(_ key: UnsafeRawPointer?, into next: UnsafeMutableRawPointer) throws -> Bool {
        if bpf_map_get_next_key(fd, key, next) == 0 { return true }
        let e = Glibc.errno
        if e == ENOENT { return false }
        throw BPFError("iterate \(name)", errno: e)
    }

    public struct UpdateFlags: Sendable {
        public let rawValue: UInt64
        public static let any = UpdateFlags(rawValue: UInt64(BPF_ANY))
        public static let noExist = UpdateFlags(rawValue: UInt64(BPF_NOEXIST))
        public static let exist = UpdateFlags(rawValue: UInt64(BPF_EXIST))
    }
}

/// A typed view of a map: `Key` and `Value` are C structs from the shared ABI
/// header (or integers), checked against the kernel's sizes when created.
public struct TypedMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: @unchecked Sendable {
    public let map: BPFMap

    public init(_ map: BPFMap) throws {
        guard MemoryLayout<Key>.size == map.keySize else {
            throw BPFError("map \(map.name): key is \(map.keySize) bytes in the kernel, \(MemoryLayout<Key>.size) in \(Key.self)", errno: EINVAL)
        }
        guard MemoryLayout<Value>.size == map.valueSize else {
            throw BPFError("map \(map.name): value is \(map.valueSize) bytes in the kernel, \(MemoryLayout<Value>.size) in \(Value.self)", errno: EINVAL)
        }
        self.map = map
    }

    public func lookup(_ key: Key) throws -> Value? {
        precondition(!map.isPerCPU, "use lookupPerCPU on \(map.name)")
        var k = key
        var v = zeroed(Value.self)
        let found = try map.lookupRaw(&k, into: &v)
        return found ? v : nil
    }

    public func update(_ key: Key, _ value: Value, flags: BPFMap.UpdateFlags = .any) throws {
        precondition(!map.isPerCPU, "use updatePerCPU on \(map.name)")
        var k = key
        var v = value
        try map.updateRaw(&k, &v, flags: flags)
    }

    /// Removes `key`; false when it was not there.
    @discardableResult
    public func delete(_ key: Key) throws -> Bool {
        var k = key
        return try map.deleteRaw(&k)
    }

    /// One value per possible CPU.
    public func lookupPerCPU(_ key: Key) throws -> [Value]? {
        var k = key
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        let n = possibleCPUs()
        var buf = [UInt8](repeating: 0, count: stride * n)
        let found = try buf.withUnsafeMutableBytes { (raw) throws -> Bool in
            try map.lookupRaw(&k, into: raw.baseAddress!)
        }
        guard found else { return nil }
        return buf.withUnsafeBytes { raw in
            (0..<n).map { raw.loadUnaligned(fromByteOffset: $0 * stride, as: Value.self) }
        }
    }

    /// Writes one value per possible CPU (`values.count` must be that number).
    public func updatePerCPU(_ key: Key, values: [Value]) throws {
        var k = key
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        precondition(values.count == possibleCPUs(), "one value per possible CPU")
        var buf = [UInt8](repeating: 0, count: stride * values.count)
        buf.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: v, toByteOffset: i * stride, as: Value.self) }
        }
        try buf.withUnsafeBytes { (raw) throws in
            try map.updateRaw(&k, raw.baseAddress!, flags: .any)
        }
    }

    /// Every entry of a per-CPU map with its per-CPU values, read in batches.
    public func forEachPerCPU(batchSize: Int = 8192, _ body: (Key, [Value]) throws -> Void) throws {
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        let n = possibleCPUs()
        let done = try lookupBatches(batchSize: batchSize, valueBytes: stride * n) { keys, raw, count in
            for i in 0..<count {
                try body(keys[i], (0..<n).map { raw.loadUnaligned(fromByteOffset: (i * n + $0) * stride, as: Value.self) })
            }
        }
        if !done { throw BPFError("batch lookup in \(map.name): not supported for this map type", errno: EOPNOTSUPP) }
    }

    /// Drives bpf_map_lookup_batch over the whole map, handing each batch's
    /// keys and raw values (`valueBytes` per entry) to `body`. Returns false,
    /// having read nothing, where the kernel has no batch lookup for the map.
    private func lookupBatches(batchSize: Int, valueBytes: Int,
                               _ body: ([Key], UnsafeRawBufferPointer, Int) throws -> Void) throws -> Bool {
        var keys = [Key](repeating: zeroed(Key.self), count: batchSize)
        var values = [UInt8](repeating: 0, count: batchSize * valueBytes)
        var token = zeroed(Key.self), nextToken = zeroed(Key.self)
        var first = true
        while true {
            var count = UInt32(batchSize)
            var opts = bpf_map_batch_opts()
            opts.sz = MemoryLayout<bpf_map_batch_opts>.size
            let rc = keys.withUnsafeMutableBytes { kb in
                values.withUnsafeMutableBytes { vb in
                    first
                        ? bpf_map_lookup_batch(map.fd, nil, &nextToken, kb.baseAddress, vb.baseAddress, &count, &opts)
                        : bpf_map_lookup_batch(map.fd, &token, &nextToken, kb.baseAddress, vb.baseAddress, &count, &opts)
                }
            }
            let e = Glibc.errno
            if rc != 0 && first && (e == EINVAL || e == EOPNOTSUPP || e == ENOTSUPP_) { return false }
            first = false
            token = nextToken
            try values.withUnsafeBytes { try body(keys, $0, Int(count)) }
            if rc == 0 { continue }
            if e == ENOENT { return true }
            throw BPFError("batch lookup in \(map.name)", errno: e)
        }
    }

    /// Writes the same value on every CPU (zeroing a counter, for one).
    public func updatePerCPU(_ key: Key, _ value: Value) throws {
        var k = key
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        let n = possibleCPUs()
        var buf = [UInt8](repeating: 0, count: stride * n)
        buf.withUnsafeMutableBytes { raw in
            for i in 0..<n { raw.storeBytes(of: value, toByteOffset: i * stride, as: Value.self) }
        }
        try buf.withUnsafeBytes { (raw) throws in
            try map.updateRaw(&k, raw.baseAddress!, flags: .any)
        }
    }

    /// Every key, by bpf_map_get_next_key.
    public func keys() throws -> [Key] {
        var out: [Key] = []
        var next = zeroed(Key.self)
        guard try map.nextKeyRaw(nil, into: &next) else { return out }
        out.append(next)
        while true {
            var cur = next
            guard try map.nextKeyRaw(&cur, into: &next) else { break }
            out.append(next)
        }
        return out
    }

    /// Every entry of a (non-per-CPU) map, by batched lookup; falls back to
    /// key iteration where the kernel has no batch support for the map type.
    public func entries(batchSize: Int = 4096) throws -> [(Key, Value)] {
        precondition(!map.isPerCPU, "per-CPU maps: use forEachPerCPU")
        var out: [(Key, Value)] = []
        let batched = try lookupBatches(batchSize: batchSize, valueBytes: map.valueSize) { keys, raw, count in
            for i in 0..<count {
                out.append((keys[i], raw.loadUnaligned(fromByteOffset: i * map.valueSize, as: Value.self)))
            }
        }
        if batched { return out }
        return try keys().compactMap { k in try lookup(k).map { (k, $0) } }
    }

    /// Writes many entries with bpf_map_update_batch, `chunk` at a time.
    /// Returns how many were written (all, unless it throws, when
    /// `BatchError.written` says how many made it before the failure).
    @discardableResult
    /// (The kernel takes no BPF_NOEXIST/BPF_EXIST for batches: every entry
    /// is written as with BPF_ANY.)
    public func updateBatch(_ keys: [Key], _ values: [Value], chunk: Int = 65536) throws -> Int {
        precondition(keys.count == values.count)
        var done = 0
        while done < keys.count {
            let n = min(chunk, keys.count - done)
            var count = UInt32(n)
            var opts = bpf_map_batch_opts()
            opts.sz = MemoryLayout<bpf_map_batch_opts>.size
            let rc = keys.withUnsafeBytes { kb in
                values.withUnsafeBytes { vb in
                    bpf_map_update_batch(map.fd,
                                         kb.baseAddress! + done * MemoryLayout<Key>.stride,
                                         vb.baseAddress! + done * MemoryLayout<Value>.stride,
                                         &count, &opts)
                }
            }
            let e = Glibc.errno
            done += Int(count)
            if rc != 0 {
                let what = e == E2BIG || e == ENOMEM
                    ? "batch update \(map.name): map is full after \(done) entries (\(map.maxEntries) max)"
                    : e == EEXIST ? "batch update \(map.name): entry \(done) exists"
                    : "batch update \(map.name) after \(done) entries"
                throw BatchError(error: BPFError(what, errno: e == ENOMEM ? E2BIG : e), written: done)
            }
        }
        return done
    }
}

/// A batch update that stopped part way: the first `written` entries are in the map.
public struct BatchError: Error, CustomStringConvertible {
    public let error: BPFError
    public let written: Int
    public var description: String { error.description }
}

/// ENOTSUPP (524) is kernel-internal but leaks out of some BPF commands.
let ENOTSUPP_: Int32 = 524

/// A zero-filled value of a C struct type.
@inline(__always)
func zeroed<T: BitwiseCopyable>(_: T.Type) -> T {
    withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { p in
        UnsafeMutableRawPointer(p.baseAddress!).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        return p.baseAddress!.pointee
    }
}
