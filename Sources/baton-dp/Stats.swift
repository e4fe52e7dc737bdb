import ArgumentParser
import BatonCLI
import BatonDataPlane

struct Stats: ParsableCommand, HasGlobals {
    static let configuration = CommandConfiguration(
        commandName: MapVerb.stats.rawValue,
        abstract: MapVerb.stats.abstract,
        discussion: "One row per reason the steering program counts a packet under, summed over CPUs since it was loaded.")

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    @OptionGroup var output: OutputOptions

    struct Row: Encodable {
        var reason: String
        var packets: UInt64
        var bytes: UInt64
        var meaning: String
    }

    func run() throws {
        try perform(globals) { ctx in
            let dp = try ctx.loaded()
            let stats = try dp.stats()
            let rows = StatReason.allCases.map { r in
                Row(reason: r.description, packets: stats[r]?.packets ?? 0, bytes: stats[r]?.bytes ?? 0, meaning: r.meaning)
            }
            if output.json {
                try JSON.print(rows)
            } else {
                var t = Table(["REASON", "PACKETS", "BYTES", "MEANING"], numeric: [1, 2])
                for r in rows { t.add([r.reason, "\(r.packets)", Format.bytes(r.bytes), r.meaning]) }
                t.print()
            }
        }
    }
}
