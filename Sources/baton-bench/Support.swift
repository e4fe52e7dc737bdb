import BatonLab
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds.
func now() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

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

/// Labs to tear down on the way out, also on SIGINT/SIGTERM.
final class Cleanup: @unchecked Sendable {
    static let shared = Cleanup()
    private var lock = pthread_mutex_t()
    private var labs: [Lab] = []
    private var sources: [DispatchSourceSignal] = []

    private init() { pthread_mutex_init(&lock, nil) }

    func add(_ lab: Lab) {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        labs.append(lab)
    }

    /// Tears down `lab` now (and forgets it).
    func remove(_ lab: Lab) {
        pthread_mutex_lock(&lock)
        labs.removeAll { $0.prefix == lab.prefix }
        pthread_mutex_unlock(&lock)
        do { try lab.teardown() } catch { Log.info("warning: tearing down lab \(lab.prefix): \(error)") }
    }

    func all() {
        pthread_mutex_lock(&lock)
        let l = labs
        labs = []
        pthread_mutex_unlock(&lock)
        for lab in l { try? lab.teardown() }
    }

    /// On SIGINT/SIGTERM/SIGHUP: delete the namespaces, then exit. XDP links,
    /// programs and maps belong to this process (nothing is pinned) and go
    /// with it.
    func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler {
                Log.info("signal \(sig): removing the lab namespaces and exiting")
                Cleanup.shared.all()
                exit(128 + sig)
            }
            src.resume()
            sources.append(src)
        }
    }
}
