import Foundation
import Synchronization

/// Where a process's send counters come from: one increasing count for every channel, so no
/// two messages it seals under one key ever share a nonce (see TransferChannel).
///
/// It starts at the clock (Unix nanoseconds). A daemon with a store also persists a
/// reservation: at start it raises the count past the last run's reservation
/// (`advance(toAtLeast:)`) and reserves the next `reservation` counters before it seals
/// anything, so a restart counts above everything sent before even when the wall clock has
/// stepped back.
public final class CounterSource: Sendable {
    /// The process's source, which every channel uses unless given another.
    public static let shared = CounterSource()

    /// Counters reserved per run (2^40: no run seals that many messages).
    public static let reservation: UInt64 = 1 << 40

    private let value: Atomic<UInt64>

    public init(start: UInt64? = nil) {
        let ns = Date().timeIntervalSince1970 * 1e9
        value = Atomic(start ?? (ns >= 1 && ns < 1.8e19 ? UInt64(ns) : 1))
    }

    /// The next counter, or nil once 2^64 - 1 is reached.
    func next() -> UInt64? {
        var current = value.load(ordering: .relaxed)
        while current < .max {
            let (exchanged, original) = value.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return current }
            current = original
        }
        return nil
    }

    /// The counter `next` would give now.
    public var peek: UInt64 { value.load(ordering: .relaxed) }

    /// Raises the count to at least `floor` (never lowers it).
    public func advance(toAtLeast floor: UInt64) {
        var current = value.load(ordering: .relaxed)
        while current < floor {
            let (exchanged, original) = value.compareExchange(expected: current, desired: floor, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Starts a run: the count goes past `lastReservation` (what the previous run reserved,
    /// 0 if none) and the returned value is the reservation to persist before sealing
    /// anything; nil when the counter space is used up (the state must be started afresh).
    public func beginRun(after lastReservation: UInt64) -> UInt64? {
        advance(toAtLeast: lastReservation)
        let start = peek
        guard start < .max - Self.reservation else { return nil }
        return start + Self.reservation
    }
}
