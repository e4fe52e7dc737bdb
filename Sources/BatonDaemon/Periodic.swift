import Dispatch
import ServiceLifecycle

/// Runs `work` on `queue` every `interval` until the service group shuts down gracefully: the
/// loop of the daemons' periodic services. `work` may block (map lookups, netlink), so it runs
/// on a queue of its own, never on the concurrency pool the API's server runs on.
func runPeriodically(every interval: Duration, on queue: DispatchQueue, _ work: @escaping @Sendable () -> Void) async {
    try? await cancelWhenGracefulShutdown {
        while !Task.isCancelled {
            try await Task.sleep(for: interval)
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                queue.async {
                    work()
                    done.resume()
                }
            }
        }
    }
}
