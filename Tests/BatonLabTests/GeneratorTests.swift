import BatonBPF
import BatonLab
import BatonNet
import Glibc
import Testing

/// baton_gen, the benchmark's many-flows generator, through BPF_PROG_TEST_RUN: each frame
/// gets the next flow of the cycle, with a right IPv4 header checksum and no UDP checksum.
@Suite(.serialized, .enabled(if: geteuid() == 0, "needs root"))
struct GeneratorTests {
    /// A 60-byte UDP/IPv4 frame, 198.18.0.1:40000 -> 198.19.0.10:5004, written out by hand.
    static let template: [UInt8] = {
        var f: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]
        f += [0x45, 0, 0, 46, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 19, 0, 10]
        f += [0x9c, 0x40, 0x13, 0x8c, 0, 26, 0x12, 0x34]
        f += [UInt8](repeating: 0xab, count: 18)
        return f
    }()

    static func headerSumIsRight(_ f: [UInt8]) -> Bool {
        var sum: UInt32 = 0
        for i in stride(from: 14, to: 34, by: 2) { sum += UInt32(f[i]) << 8 | UInt32(f[i + 1]) }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return sum == 0xffff
    }

    @Test func framesCycleThroughTheFlows() throws {
        let tools = try ToolPrograms.shared()
        try tools.genFlows.update(0, 50_002)
        var seen: [(address: [UInt8], port: UInt16)] = []
        // The cycle position is per CPU: pinned, every run takes the next one.
        let saved = setCurrentThreadCPUs([0])
        defer { if let saved { _ = setCurrentThreadCPUs(saved) } }
        for _ in 0..<4 {
            let run = try tools.gen.testRun(Self.template)
            #expect(run.retval == 3, "XDP_TX")
            let f = run.output
            seen.append((Array(f[26..<30]), UInt16(f[34]) << 8 | UInt16(f[35])))
            #expect(Self.headerSumIsRight(f), "IPv4 header checksum")
            #expect(f[40] == 0 && f[41] == 0, "no UDP checksum")
            #expect(Array(f[30..<34]) == [198, 19, 0, 10] && f[36] == 0x13 && f[37] == 0x8c, "destination untouched")
        }
        // Consecutive flows of the fillers' numbering: 100.64.0.0 + i / 50000, port 10000 + i % 50000.
        let first = Int(seen[0].port) - 10_000 + 50_000 * Int(seen[0].address[3])
        for (k, s) in seen.enumerated() {
            let i = (first + k) % 50_002
            #expect(s.address == [100, 64, 0, UInt8(i / 50_000)] && s.port == UInt16(10_000 + i % 50_000), "frame \(k): \(s)")
        }
    }

    /// baton_floor: the MAC swap, and each frame counted in one slot chosen by its flow, among
    /// the span set; the same flow always in the same slot.
    @Test func floorCountsEachFrameInItsFlowsSlot() throws {
        let tools = try ToolPrograms(floorSlots: 16)
        #expect(tools.floorState.map.maxEntries == 16)
        try tools.setFloorSpan(3) // rounded up to 4 slots
        var frame = Self.template
        var slotOf: [UInt16: UInt32] = [:]
        for round in 0..<2 {
            for port in UInt16(10_000)..<10_040 {
                frame[34] = UInt8(port >> 8)
                frame[35] = UInt8(port & 0xff)
                let before = try (0..<16).map { try tools.floorState.lookup($0)!.x }
                let run = try tools.floor.testRun(frame)
                #expect(run.retval == 3, "XDP_TX")
                #expect(Array(run.output[0..<6]) == Array(frame[6..<12]) && Array(run.output[6..<12]) == Array(frame[0..<6]),
                        "MACs swapped")
                #expect(Array(run.output[12...]) == Array(frame[12...]), "the rest untouched")
                let after = try (0..<16).map { try tools.floorState.lookup($0)!.x }
                let moved = (0..<16).filter { after[$0] != before[$0] }
                #expect(moved.count == 1 && moved.allSatisfy { $0 < 4 && after[$0] == before[$0] + 1 }, "port \(port): \(moved)")
                if let slot = moved.first.map(UInt32.init) {
                    if round == 0 { slotOf[port] = slot } else { #expect(slotOf[port] == slot, "port \(port) kept its slot") }
                }
            }
        }
        // 40 flows over 4 slots: a hash that spreads them, not one slot for all.
        #expect(Set(slotOf.values).count == 4)
        for slot in UInt32(0)..<16 {
            let s = try tools.floorState.lookup(slot)!
            #expect(s.y == 60 * s.x, "slot \(slot): every frame's 60 bytes counted")
        }
        // A span beyond the array stops at its end: all 16 slots in use, none past them.
        try tools.setFloorSpan(100)
        var used = Set<UInt32>()
        for port in UInt16(20_000)..<20_200 {
            frame[34] = UInt8(port >> 8)
            frame[35] = UInt8(port & 0xff)
            let before = try (0..<16).map { try tools.floorState.lookup($0)!.x }
            #expect(try tools.floor.testRun(frame).retval == 3)
            let after = try (0..<16).map { try tools.floorState.lookup($0)!.x }
            used.formUnion((0..<16).filter { after[$0] != before[$0] }.map(UInt32.init))
        }
        #expect(used == Set(0..<16))
        // The array's size is rounded up to a power of two.
        #expect(try ToolPrograms(floorSlots: 10).floorState.map.maxEntries == 16)
    }
}
