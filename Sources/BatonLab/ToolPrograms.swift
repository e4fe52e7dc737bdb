import BatonBPF
import CBatonObjects
import Synchronization

/// The small XDP programs of bpf/tools.bpf.c, loaded once per process:
/// baton_pass for veth ports that must deliver XDP_TX'd frames, and the
/// benchmark's baton_macswap, baton_tx (live-frames generator), baton_gen (the same, cycling
/// through many flows) and baton_count (counts what comes back, then drops it).
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

    public init() throws {
        let object = try BPFObject(bytes: UnsafeRawBufferPointer(start: baton_tools_object(), count: Int(baton_tools_object_size())),
                                   name: "baton_tools")
        try object.load()
        pass = try object.loadedProgram("baton_pass")
        macswap = try object.loadedProgram("baton_macswap")
        tx = try object.loadedProgram("baton_tx")
        count = try object.loadedProgram("baton_count")
        gen = try object.loadedProgram("baton_gen")
        genFlows = try TypedMap(object.loadedMap("baton_tool_gen"))
        counter = try TypedMap(object.loadedMap("baton_tool_count"))
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
