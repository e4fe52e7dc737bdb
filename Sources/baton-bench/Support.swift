import BatonModel
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds.
func now() -> UInt64 { monotonicNanoseconds() }

/// `x` with `decimals` digits after the point.
func fmt(_ x: Double, _ decimals: Int) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
    var scale = 1
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(x) * Double(scale)).rounded()
    guard scaled < 9e15 else { return "\(x)" }
    let n = Int(scaled)
    var s = String(n / scale)
    if decimals > 0 {
        let frac = String(n % scale)
        s += "." + String(repeating: "0", count: decimals - frac.count) + frac
    }
    return (x < 0 && n != 0 ? "-" : "") + s
}

func seconds(since start: UInt64) -> Double { Double(now() - start) / 1e9 }

func medianOf(_ xs: [Double]) -> Double? {
    guard !xs.isEmpty else { return nil }
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The median of xs[i] / ys[i] over the rounds both have (a zero baseline skipped).
func medianRatio(_ xs: [Double], _ ys: [Double]) -> Double? {
    medianOf(zip(xs, ys).compactMap { x, y in y > 0 ? x / y : nil })
}

func writeStderr(_ s: String) {
    var bytes = Array(s.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}

/// Progress on stderr; stdout carries only the table and the JSON line.
enum Log {
    nonisolated(unsafe) static var verbose = false
    static func info(_ s: String) { write(s) }
    static func detail(_ s: String) { if verbose { write("  " + s) } }
    private static func write(_ s: String) {
        writeStderr("baton-bench: " + s + "\n")
    }
}

/// A setup that cannot be measured (no frames counted, a wrong verdict...):
/// the run stops with exit status 1 and this message.
struct BrokenSetup: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
