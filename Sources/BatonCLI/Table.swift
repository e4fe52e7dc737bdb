/// A text table: a header row and left-aligned columns, numbers right-aligned.
public struct Table {
    public var headers: [String]
    public var rows: [[String]] = []
    /// Columns aligned to the right (numbers).
    public var numeric: Set<Int> = []

    public init(_ headers: [String], numeric: Set<Int> = []) {
        self.headers = headers
        self.numeric = numeric
    }

    public mutating func add(_ row: [String]) { rows.append(row) }

    public func render() -> String {
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

    public func print() { Swift.print(render()) }
}
