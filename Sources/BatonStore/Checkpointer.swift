import Foundation
import GRDB

/// Copies the WAL back into the database file on a connection and a thread of its own.
///
/// SQLite otherwise runs the checkpoint inside whichever commit takes the WAL past
/// `wal_autocheckpoint` pages, and with synchronous=NORMAL the checkpoint is where the
/// fsyncs are: the agent commits registrations under its lock, so every thread waited for
/// the disk. A PASSIVE checkpoint runs beside the writer (it takes no write lock and never
/// waits); the store's own autocheckpoint stays as a backstop (`Store.autocheckpointPages`).
// Unchecked: the timer is set up in init and only cancelled after (DispatchSource is thread-safe).
final class Checkpointer: @unchecked Sendable {
    private let connection: DatabaseQueue
    private let queue = DispatchQueue(label: "batond.store.checkpoint")
    private let timer: DispatchSourceTimer

    init(path: String, every interval: Duration) throws {
        var config = Configuration()
        config.label = "batond.store.checkpoint"
        connection = try DatabaseQueue(path: path, configuration: config)
        timer = DispatchSource.makeTimerSource(queue: queue)
        let nanoseconds = Int(interval.components.seconds) * 1_000_000_000 + Int(interval.components.attoseconds / 1_000_000_000)
        timer.schedule(deadline: .now() + .nanoseconds(nanoseconds), repeating: .nanoseconds(nanoseconds))
        timer.setEventHandler { [connection] in
            // Busy (another checkpoint under way) or an I/O error: the next tick tries again,
            // and the writer's autocheckpoint still bounds the WAL.
            _ = try? connection.writeWithoutTransaction { try $0.checkpoint(.passive) }
        }
        timer.resume()
    }

    /// Stops the timer, waits for a checkpoint in progress, and closes the connection (a
    /// checkpoint on a closed connection would hand SQLite a null handle).
    func close() throws {
        timer.cancel()
        queue.sync {}
        try connection.close()
    }

    deinit { timer.cancel() }
}
