import Foundation

public enum Format {
    /// 1536 -> "1.5K"; below 1024 the exact count.
    public static func bytes(_ n: UInt64) -> String {
        if n < 1024 { return "\(n)" }
        let units = ["K", "M", "G", "T", "P"]
        var v = Double(n) / 1024
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return (v < 10 ? String(format: "%.1f", v) : String(format: "%.0f", v)) + units[u]
    }

    /// Idle time for people: "-" when nothing was seen, else "3.2s", "4m05s", "2h10m".
    public static func idle(_ s: Double?) -> String {
        guard let s else { return "-" }
        if s < 60 { return String(format: "%.1fs", s) }
        let t = Int(s)
        if t < 3600 { return String(format: "%dm%02ds", t / 60, t % 60) }
        if t < 86400 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
        return String(format: "%dd%02dh", t / 86400, (t % 86400) / 3600)
    }

    /// Rounded to milliseconds for JSON.
    public static func seconds(_ s: Double?) -> Double? {
        s.map { ($0 * 1000).rounded() / 1000 }
    }

    public static func bracket(_ a: some CustomStringConvertible, v6: Bool) -> String { v6 ? "[\(a)]" : "\(a)" }
}
