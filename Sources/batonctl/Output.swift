import ArgumentParser
import Foundation

/// `--json` on every command that prints.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON (for scripts) instead of text for people.")
    var json = false
}

/// A text table: a header row and left-aligned columns, numbers right-aligned.
struct Table {
    var headers: [String]
    var rows: [[String]] = []
    /// Columns aligned to the right (numbers).
    var numeric: Set<Int> = []

    init(_ headers: [String], numeric: Set<Int> = []) {
        self.headers = headers
        self.numeric = numeric
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        var widths = headers.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (i, c) in cells.enumerated() {
                let last = i == cells.count - 1
                let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
                if numeric.contains(i) { out += pad + c } else { out += last ? c : c + pad }
                if !last { out += "  " }
            }
            while out.hasSuffix(" ") { out.removeLast() }
            return out
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }

    func print() { Swift.print(render()) }
}

enum Format {
    /// 1536 -> "1.5K"; below 1024 the exact count.
    static func bytes(_ n: UInt64) -> String {
        if n < 1024 { return "\(n)" }
        let units = ["K", "M", "G", "T", "P"]
        var v = Double(n) / 1024
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return (v < 10 ? String(format: "%.1f", v) : String(format: "%.0f", v)) + units[u]
    }

    /// Idle time for people: "-" when nothing was seen, else "3.2s", "4m05s", "2h10m".
    static func idle(_ s: Double?) -> String {
        guard let s else { return "-" }
        if s < 60 { return String(format: "%.1fs", s) }
        let t = Int(s)
        if t < 3600 { return String(format: "%dm%02ds", t / 60, t % 60) }
        if t < 86400 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
        return String(format: "%dd%02dh", t / 86400, (t % 86400) / 3600)
    }

    /// Rounded to milliseconds for JSON.
    static func seconds(_ s: Double?) -> Double? {
        s.map { ($0 * 1000).rounded() / 1000 }
    }

    static func bracket(_ a: some CustomStringConvertible, v6: Bool) -> String { v6 ? "[\(a)]" : "\(a)" }
}

enum JSON {
    static func print<T: Encodable>(_ value: T) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try e.encode(value)
        Swift.print(String(decoding: data, as: UTF8.self))
    }
}
