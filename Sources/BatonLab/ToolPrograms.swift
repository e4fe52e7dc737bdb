import BatonBPF
import CBatonObjects
import Synchronization

/// The small XDP programs of bpf/tools.bpf.c (`shared()`: one copy for the harness;
/// the benchmark loads its own, with the floor's array sized):
/// baton_pass for veth ports that must deliver XDP_TX'd frames, and the
/// benchmark's baton_macswap, baton_tx (live-frames generator), baton_gen (the same, cycling
/// through many flows), baton_floor (the MAC swap plus 16 bytes of per-flow state: the
/// many-flows floor) and baton_count (counts what comes back, then drops it).
public final class ToolPrograms: Sendable {
    public let pass: BPFProgram
    public let macswap: BPFProgram
    public let tx: BPFProgram
    public let count: BPFProgram
    /// The generator for many flows, and its flow count (key 0).
    public let gen: BPFProgram
    public let genFlows: TypedMap<UInt32, UInt64>
    /// baton_count's per-CPU counter (key 0).
    public let counter: TypedMap<UInt32, UInt64>
    /// The MAC swap plus one read-modify-write of a 16-byte slot picked by a hash of the
    /// frame's flow, among the first ones `setFloorSpan(_:)` allows (see bpf/tools.bpf.c).
    public let floor: BPFProgram
    public let floorSlots: Int
    /// baton_floor's slots: packets and bytes each.
    public let floorState: TypedMap<UInt32, SIMD2<UInt64>>

    /// `floorSlots`: baton_floor's array, in 16-byte slots, rounded up to a power of
    /// two (1: the programs that need none allocate nothing).
    public init(floorSlots: Int = 1) throws {
        let floorSlots = Self.powerOfTwo(atLeast: floorSlots)
        let object = try BPFObject(bytes: UnsafeRawBufferPointer(start: baton_tools_object(), count: Int(baton_tools_object_size())),
                                   name: "baton_tools")
        try object.setMaxEntries("baton_tool_floor", floorSlots)
        try object.load()
        self.floorSlots = floorSlots
        pass = try object.loadedProgram("baton_pass")
        macswap = try object.loadedProgram("baton_macswap")
        tx = try object.loadedProgram("baton_tx")
        count = try object.loadedProgram("baton_count")
        gen = try object.loadedProgram("baton_gen")
        genFlows = try TypedMap(object.loadedMap("baton_tool_gen"))
        counter = try TypedMap(object.loadedMap("baton_tool_count"))
        floor = try object.loadedProgram("baton_floor")
        floorState = try TypedMap(object.loadedMap("baton_tool_floor"))
    }

    /// Makes baton_floor use the first `n` slots, rounded up to a power of two and
    /// capped at `floorSlots`: a table as large as `n` flows need.
    public func setFloorSpan(_ n: Int) throws {
        try genFlows.update(1, UInt64(min(Self.powerOfTwo(atLeast: n), floorSlots) - 1))
    }

    /// The least power of two ≥ n (1 for n ≤ 1).
    static func powerOfTwo(atLeast n: Int) -> Int {
        n <= 1 ? 1 : 1 << (Int.bitWidth - (n - 1).leadingZeroBitCount)
    }

    private static let cached = Mutex<ToolPrograms?>(nil)

    /// One loaded copy for the whole process.
    public static func shared() throws -> ToolPrograms {
        try cached.withLock { cached in
            if let c = cached { return c }
            let t = try ToolPrograms()
            cached = t
            return t
        }
    }

    /// Packets baton_count has counted, summed over CPUs.
    public func counted() throws -> UInt64 {
        (try counter.lookupPerCPU(0) ?? []).reduce(0, +)
    }
}
