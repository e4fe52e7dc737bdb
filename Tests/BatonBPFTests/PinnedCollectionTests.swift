// BatonBPF against the real kernel: pinned collections (load, adopt, reload, unload), batch
// writes that fail part way, and per-CPU values at the kernel's 8-byte stride. Needs root and
// bpffs at /sys/fs/bpf; each test pins under its own directory and removes it, pass or fail.
import BatonBPF
import CBatonABI
import CBatonObjects
import Glibc
import Testing

/// baton_decap's object: a hash map, a per-CPU array, one program.
let decapSpec = CollectionSpec(
    name: "baton_decap", maps: ["baton_decap_accept", "baton_decap_stats"], programs: ["baton_decap"],
    image: { UnsafeRawBufferPointer(start: baton_decap_object(), count: Int(baton_decap_object_size())) })

/// The harness's tools object, with the per-CPU map of 4-byte values.
let toolsSpec = CollectionSpec(
    name: "baton_tools", maps: ["baton_tool_count", "baton_tool_percpu4"], programs: ["baton_pass", "baton_count"],
    image: { UnsafeRawBufferPointer(start: baton_tools_object(), count: Int(baton_tools_object_size())) })

/// A pin directory of its own under bpffs, removed (links detached) when `body` returns or throws.
func withPinDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let directory = "/sys/fs/bpf/baton-bpftest-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? PinnedCollection.unload(directory: directory) }
    return try body(directory)
}

func key(_ byte: UInt8) -> baton_decap_key {
    var k = baton_decap_key()
    withUnsafeMutableBytes(of: &k.addr) { $0[15] = byte }
    return k
}

@Suite(.serialized, .enabled(if: getuid() == 0 && BPFFS.isBPFFS("/sys/fs/bpf"), "needs root and bpffs"))
struct PinnedCollectionTests {
    @Test func loadPinsEverythingAndAdoptSeesTheSameMaps() throws {
        try withPinDirectory { dir in
            #expect(!PinnedCollection.isPinned(decapSpec, in: dir))
            let loaded = try PinnedCollection.load(decapSpec, pinnedIn: dir)
            #expect(loaded.directory == dir)
            #expect(PinnedCollection.isPinned(decapSpec, in: dir))
            #expect(BPFFS.list(dir) == ["links", "maps", "progs"])
            #expect(BPFFS.list(dir + "/maps") == ["baton_decap_accept", "baton_decap_stats"])
            #expect(BPFFS.list(dir + "/progs") == ["baton_decap"])

            let accept: TypedMap<baton_decap_key, baton_decap> = try loaded.map("baton_decap_accept")
            try accept.update(key(7), baton_decap())

            // Another process's view: the same kernel objects, by their pins.
            let adopted = try PinnedCollection.adopt(decapSpec, in: dir)
            let seen: TypedMap<baton_decap_key, baton_decap> = try adopted.map("baton_decap_accept")
            #expect(try seen.lookup(key(7)) != nil)
            #expect(try adopted.rawMap("baton_decap_accept").id == loaded.rawMap("baton_decap_accept").id)
            #expect(try adopted.program("baton_decap").id == loaded.program("baton_decap").id)

            // open() adopts what is pinned rather than loading again.
            let opened = try PinnedCollection.open(decapSpec, in: dir)
            #expect(try opened.program("baton_decap").id == loaded.program("baton_decap").id)
        }
    }

    @Test func aReloadKeepsThePinnedMapsAndReplacesThePrograms() throws {
        try withPinDirectory { dir in
            let first = try PinnedCollection.load(decapSpec, pinnedIn: dir)
            let accept: TypedMap<baton_decap_key, baton_decap> = try first.map("baton_decap_accept")
            try accept.update(key(1), baton_decap())
            let second = try PinnedCollection.load(decapSpec, pinnedIn: dir)
            #expect(try second.rawMap("baton_decap_accept").id == first.rawMap("baton_decap_accept").id)
            #expect(try second.program("baton_decap").id != first.program("baton_decap").id)
            let again: TypedMap<baton_decap_key, baton_decap> = try second.map("baton_decap_accept")
            #expect(try again.lookup(key(1)) != nil, "entries survive a reload")
            // The pinned program is the new one.
            let adopted = try PinnedCollection.adopt(decapSpec, in: dir)
            #expect(try adopted.program("baton_decap").id == second.program("baton_decap").id)
        }
    }

    @Test func unloadRemovesEverythingAndAdoptThenFails() throws {
        try withPinDirectory { dir in
            _ = try PinnedCollection.load(decapSpec, pinnedIn: dir)
            try PinnedCollection.unload(directory: dir)
            #expect(!BPFFS.exists(dir))
            #expect(!PinnedCollection.isPinned(decapSpec, in: dir))
            let error = #expect(throws: BPFError.self) { try PinnedCollection.adopt(decapSpec, in: dir) }
            #expect(error?.errno == ENOENT)
            try PinnedCollection.unload(directory: dir) // idempotent
        }
    }

    @Test func namesAndTypesAreCheckedAtOpen() throws {
        let wrong = CollectionSpec(name: "baton_decap", maps: ["baton_decap_accept", "no_such_map"], programs: ["baton_decap"],
                                   image: decapSpec.image)
        let missing = #expect(throws: BPFError.self) { try PinnedCollection.load(wrong, pinnedIn: nil) }
        #expect(missing?.description.contains("no map no_such_map") == true, "\(String(describing: missing))")

        let c = try PinnedCollection.load(decapSpec, pinnedIn: nil)
        #expect(c.directory == nil && c.linkPath("eth0") == nil)
        #expect(throws: BPFError.self) { try c.program("baton_steer") }
        // A key type of the wrong size is refused when the handle is made, not at first use.
        let badKey = #expect(throws: BPFError.self) { let _: TypedMap<UInt32, baton_decap> = try c.map("baton_decap_accept") }
        #expect(badKey?.errno == EINVAL)
    }

    @Test func notOnBPFFSIsAClearError() throws {
        let error = #expect(throws: BPFError.self) { try PinnedCollection.load(decapSpec, pinnedIn: "/tmp/baton-not-bpffs") }
        #expect(error?.description.contains("is not on a BPF filesystem") == true)
        #expect(!BPFFS.exists("/tmp/baton-not-bpffs"))
    }
}

@Suite(.serialized, .enabled(if: getuid() == 0, "needs root"))
struct MapTests {
    /// A hash map filled past its size by one batch: the error says how many entries made it,
    /// and exactly those are in the map.
    @Test func aBatchThatOverflowsReportsHowFarItGot() throws {
        let c = try PinnedCollection.load(decapSpec, pinnedIn: nil) { object in
            try object.setMaxEntries("baton_decap_accept", 8)
        }
        let accept: TypedMap<baton_decap_key, baton_decap> = try c.map("baton_decap_accept")
        let keys = (1...12).map { key(UInt8($0)) }
        let error = #expect(throws: BatchError.self) {
            try accept.updateBatch(keys, Array(repeating: baton_decap(), count: keys.count), chunk: 5)
        }
        #expect(error?.written == 8, "\(String(describing: error))")
        #expect(error?.error.errno == E2BIG)
        #expect(error?.description.contains("map is full after 8 entries") == true)
        #expect(try accept.keys().count == 8)
        for k in keys.prefix(8) { #expect(try accept.lookup(k) != nil) }
        for k in keys.suffix(4) { #expect(try accept.lookup(k) == nil) }
    }

    /// Per-CPU values sit at 8-byte strides in the kernel's buffer, whatever their size: with
    /// 4-byte values, each CPU's value comes back as written (a 4-byte stride would mix them).
    @Test func perCPUValuesUseTheEightByteStride() throws {
        let c = try PinnedCollection.load(toolsSpec, pinnedIn: nil)
        let map: TypedMap<UInt32, UInt32> = try c.map("baton_tool_percpu4")
        let cpus = possibleCPUs()
        let written = (0..<cpus).map { UInt32(0x1000_0000 + $0 * 0x101) }
        try map.updatePerCPU(2, values: written)
        #expect(try map.lookupPerCPU(2) == written)
        try map.updatePerCPU(3, 0xabcd)
        #expect(try map.lookupPerCPU(3) == Array(repeating: 0xabcd, count: cpus))
        var seen: [UInt32: [UInt32]] = [:]
        try map.forEachPerCPU { k, values in seen[k] = values }
        #expect(seen[2] == written && seen[3] == Array(repeating: 0xabcd, count: cpus) && seen.count == 4)
    }
}
