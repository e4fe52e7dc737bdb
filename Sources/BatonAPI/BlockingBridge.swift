import Dispatch
import Synchronization

/// Runs async work to completion for a caller that is not async (batonctl, synchronous tests,
/// the lab). The work runs on a serial Dispatch queue of its own, not on the cooperative pool:
/// a caller may itself block a cooperative thread (Swift Testing runs synchronous tests on
/// them), and with as many blocked callers as cores the pool has no thread left for the work.
/// A serial queue gets a thread of its own even then (libdispatch overcommits for it; a
/// concurrent queue would wait for the saturated pool too).
enum BlockingBridge {
    static func run<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let result = ResultBox<T>()
        Task(executorPreference: SerialQueueExecutor()) {
            do { result.set(.success(try await work())) } catch { result.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return try result.get()
    }
}

/// One task's jobs, in order, on a serial Dispatch queue.
final class SerialQueueExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "baton.api.client")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}

/// The result handed from the task to the waiting thread.
private final class ResultBox<T: Sendable>: Sendable {
    private let result = Mutex<Result<T, any Error>?>(nil)
    func set(_ r: Result<T, any Error>) { result.withLock { $0 = r } }
    func get() throws -> T { try result.withLock { $0! }.get() }
}
