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
    static let bootWallNanoseconds: UInt64 = {
        let m = now(CLOCK_MONOTONIC), w = now(CLOCK_REALTIME)
        return w - min(w, m)
    }()

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
