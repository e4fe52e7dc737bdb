import BatonAPI
import BatonProtocol
import BatonStore

extension Store {
    /// Starts this run's send counters above the last run's reservation and stores the new
    /// one before anything is sealed (docs/protocol.md, "Key schedule": counters).
    func beginCounterRun(_ counters: CounterSource = .shared) throws {
        guard let reservation = counters.beginRun(after: try counterReservation()) else {
            throw ControlError("the send counters are used up: start with a new --state-dir")
        }
        try setCounterReservation(reservation)
    }
}
