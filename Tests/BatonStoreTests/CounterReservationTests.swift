@testable import BatonProtocol
@testable import BatonStore
import Foundation
import Testing

/// Send counters across restarts (docs/protocol.md, "Key schedule"): each run starts above the
/// reservation the last run stored, even when the wall clock has stepped back, so no counter
/// is ever sealed twice under one key.
@Suite struct CounterReservationTests {
    /// One daemon start: the count raised past the stored reservation, the next one stored.
    func begin(_ store: Store, _ counters: CounterSource) throws {
        let reservation = try #require(counters.beginRun(after: try store.counterReservation()))
        try store.setCounterReservation(reservation)
    }

    @Test func aRestartWithTheClockSteppedBackCountsAboveTheLastRun() throws {
        let scratch = Scratch()
        var sent: [UInt64] = []
        do {
            let store = try scratch.open()
            #expect(try store.counterReservation() == 0)
            let counters = CounterSource(start: 1_000_000)   // the clock at the first start
            try begin(store, counters)
            for _ in 0..<1000 { sent.append(try #require(counters.next())) }
            try store.close()
        }
        // Restarted with the clock an hour behind, and restored channels use the same keys.
        let store = try scratch.open()
        let counters = CounterSource(start: 1_000_000 - 3_600_000_000_000 % 1_000_000)
        try begin(store, counters)
        let next = try #require(counters.next())
        #expect(next > sent.max()!, "a counter of the last run comes again")
        #expect(next >= 1_000_000 + CounterSource.reservation)
        #expect(try store.counterReservation() == next + CounterSource.reservation)
    }

    @Test func theCountOnlyRises() {
        let counters = CounterSource(start: 10)
        counters.advance(toAtLeast: 5)
        #expect(counters.peek == 10)
        counters.advance(toAtLeast: 50)
        #expect(counters.next() == 50 && counters.next() == 51)
        #expect(CounterSource(start: .max - 1).beginRun(after: 0) == nil, "the space is used up")
    }
}
