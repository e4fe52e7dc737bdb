#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, so of a
/// lockout's end (`Forwarding.expires`), and of every duration measured here.
public func monotonicNanoseconds() -> UInt64 { BootClock.now(CLOCK_MONOTONIC) }

/// Conversions between CLOCK_MONOTONIC and the wall clock, for times that
/// outlive a boot (a lockout's end kept in the store): the monotonic clock
/// starts again at each boot, the wall clock does not.
public enum BootClock {
    static func now(_ clock: clockid_t) -> UInt64 {
        var t = timespec()
        clock_gettime(clock, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Unix time less monotonic time, read once per process: conversions with one
    /// offset round-trip exactly, and a new boot (or process) reads it again.
    public static let bootWallNanoseconds: UInt64 = {
        let m = now(CLOCK_MONOTONIC), w = now(CLOCK_REALTIME)
        return w - min(w, m)
    }()

    /// This boot's ID (/proc/sys/kernel/random/boot_id, 16 bytes; zeros if unreadable): a
    /// monotonic time kept with it is exact as long as the ID is the same.
    public static let bootID: [UInt8] = {
        guard let f = fopen("/proc/sys/kernel/random/boot_id", "r") else { return [UInt8](repeating: 0, count: 16) }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), f) != nil else { return [UInt8](repeating: 0, count: 16) }
        let hex = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).filter(\.isHexDigit)
        guard hex.count == 32 else { return [UInt8](repeating: 0, count: 16) }
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }()

    /// Unix time now in seconds on this process's scale: the monotonic clock plus the offset
    /// read at start, so that a time computed from it converts back to the monotonic instant
    /// exactly, whatever the wall clock was stepped by since (a lockout's end).
    public static func wallSeconds() -> Double {
        Double(wallNanoseconds(ofMonotonic: now(CLOCK_MONOTONIC))) / 1e9
    }

    /// Unix time in nanoseconds of the monotonic instant `monotonic`.
    public static func wallNanoseconds(ofMonotonic monotonic: UInt64) -> UInt64 {
        let (sum, overflow) = bootWallNanoseconds.addingReportingOverflow(monotonic)
        return overflow ? .max : sum
    }

    /// The monotonic instant of Unix time `wall` in nanoseconds; 1 (long past,
    /// never 0, which means "no end") for a time before this boot.
    public static func monotonicNanoseconds(ofWall wall: UInt64) -> UInt64 {
        wall > bootWallNanoseconds ? wall - bootWallNanoseconds : 1
    }
}
