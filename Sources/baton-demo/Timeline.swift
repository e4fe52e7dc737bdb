import BatonLab
import Foundation

/// The demo's picture: packets per millisecond (or per `bucketMilliseconds`) at each host, one
/// line per host, with every step marked. Plain SVG, so it needs nothing to draw.
struct Timeline {
    struct Step {
        var time: UInt64
        var label: String
    }

    var start: UInt64
    var end: UInt64
    var arrivals: [Arrival]
    var steps: [Step]
    var title: String
    /// How many milliseconds one point of a line counts (1 at kpps rates; 100 for 50 packets/s).
    var bucketMilliseconds = 1

    func svg() -> String {
        let width = 1100.0, height = 420.0, left = 60.0, right = 20.0, top = 40.0, bottom = 60.0
        let milliseconds = max(1, Int((end - start) / 1_000_000) + 1)
        let buckets = milliseconds / bucketMilliseconds + 1
        var perHost: [String: [Int]] = [:]
        for a in arrivals where a.time >= start && a.time <= end {
            let bucket = Int((a.time - start) / 1_000_000) / bucketMilliseconds
            perHost[a.host, default: [Int](repeating: 0, count: buckets)][bucket] += 1
        }
        let peak = max(1, perHost.values.flatMap { $0 }.max() ?? 1)
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func x(_ ms: Double) -> Double { left + ms / Double(milliseconds) * plotWidth }
        func y(_ count: Int) -> Double { top + plotHeight - Double(count) / Double(peak) * plotHeight }
        let colours = ["tn": "#1f77b4", "target": "#d62728", "cn": "#2ca02c", "device 1": "#1f77b4", "device 2": "#d62728"]
        let unit = bucketMilliseconds == 1 ? "ms" : "\(bucketMilliseconds) ms"
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="20" font-size="15">\(escape(title))</text>
        <line x1="\(left)" y1="\(top + plotHeight)" x2="\(width - right)" y2="\(top + plotHeight)" stroke="black"/>
        <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(top + plotHeight)" stroke="black"/>
        <text x="12" y="\(top + plotHeight / 2)" transform="rotate(-90 12 \(top + plotHeight / 2))" text-anchor="middle">packets per \(unit)</text>
        <text x="\(left + plotWidth / 2)" y="\(height - 12)" text-anchor="middle">time (s)</text>
        <text x="\(left - 6)" y="\(top + 4)" text-anchor="end">\(peak)</text>
        <text x="\(left - 6)" y="\(top + plotHeight + 4)" text-anchor="end">0</text>

        """
        for second in stride(from: 0, through: milliseconds / 1000, by: 1) {
            let px = x(Double(second * 1000))
            out += "<text x=\"\(px)\" y=\"\(top + plotHeight + 16)\" text-anchor=\"middle\">\(second)</text>\n"
        }
        for (index, host) in perHost.keys.sorted().enumerated() {
            let counts = perHost[host]!
            let points = counts.enumerated().map { "\(String(format: "%.1f", x(Double($0.offset * bucketMilliseconds) + Double(bucketMilliseconds - 1) / 2))),\(String(format: "%.1f", y($0.element)))" }
            let colour = colours[host] ?? "#7f7f7f"
            out += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1\" points=\"\(points.joined(separator: " "))\"/>\n"
            out += "<text x=\"\(width - right - 140)\" y=\"\(top + 16 + Double(index) * 16)\" fill=\"\(colour)\">— packets at \(escape(host))</text>\n"
        }
        for (index, step) in steps.enumerated() where step.time >= start && step.time <= end {
            let px = x(Double(step.time - start) / 1e6)
            let ly = top + 12 + Double(index % 4) * 14
            out += "<line x1=\"\(px)\" y1=\"\(top)\" x2=\"\(px)\" y2=\"\(top + plotHeight)\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>\n"
            // Near the right edge a label runs leftwards from its line.
            let anchor = px > width - right - 320 ? "text-anchor=\"end\" x=\"\(px - 3)\"" : "x=\"\(px + 3)\""
            out += "<text \(anchor) y=\"\(ly)\" fill=\"#333\">\(escape(step.label))</text>\n"
        }
        return out + "</svg>\n"
    }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
