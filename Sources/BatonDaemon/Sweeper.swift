import BatonDataPlane
import BatonModel
import BatonProtocol
import Dispatch
import ServiceLifecycle

/// The agent's sweep, as a service of the daemon's service group: every `interval` it ends
/// idle transfers, retransmits due wake-ups and clears transfers whose linger is
/// over. It stops with the group (graceful shutdown).
///
/// Reading counters costs a lookup per rule, so each sweep looks at the active transfers for
/// at most `budget`, going on where the last one stopped: with many rules the idle and close
/// check comes round less often, and the agent stays responsive. The counters are read
/// without the table's lock, a chunk of transfers at a time, so that registrations are not
/// held up behind the lookups. A sweep blocks (map lookups), so it runs on a queue of its own,
/// never on the concurrency pool the API's server runs on.
struct Sweeper: Service {
    static let budget: Duration = .milliseconds(10)
    /// Transfers and rules per chunk: the budget is checked between chunks.
    static let chunk = (transfers: 64, rules: 1024)

    let table: TransferTable
    let dataPlane: DataPlane
    let interval: Duration
    private let queue = DispatchQueue(label: "baton.agent.sweep")

    init(table: TransferTable, dataPlane: DataPlane, interval: Duration) {
        self.table = table
        self.dataPlane = dataPlane
        self.interval = interval
    }

    func run() async throws {
        await runPeriodically(every: interval, on: queue) { sweep() }
    }

    /// One sweep.
    func sweep() {
        let deadline = ContinuousClock.now + Self.budget
        var first = true
        while ContinuousClock.now < deadline {
            // The clock first: a chunk taken from the queue is checked, not skipped.
            guard let clock = try? dataPlane.clock() else { break }
            // A new round starts only at the beginning of a sweep: at most one round each.
            let items = table.nextSweepChunk(mayStartRound: first, transfers: Self.chunk.transfers, rules: Self.chunk.rules)
            first = false
            guard !items.isEmpty else { break }
            table.end(items.compactMap { item in verdict(item, clock: clock).map { (item.id, $0) } })
        }
        table.retransmitAndClear()
    }

    /// Why a transfer should end (its sessions idle), or nil. Reads the counters.
    private func verdict(_ item: TransferTable.SweepItem, clock: KernelClock) -> String? {
        let counters = item.matches.map { (try? dataPlane.rule($0))?.counter ?? Counter() }
        // A FIN or RST seen here is not a verdict: anyone on the path can forge one, and the
        // agent sees one direction only. Closed sessions end through the TN when the target's
        // own TCP stack saw them closed (the `closed` message).
        // A session never seen is idle since the registration (or since this start).
        let since = milliseconds(since: item.since) / 1000
        let idle = counters.allSatisfy { c in min(c.idleSeconds(at: clock) ?? since, since) >= item.idleTimeout }
        return idle ? WakeUp.Reason.idle : nil
    }
}

/// The anchored sessions' sweep (AnchorTable.sweep): retired devices' rules out when their
/// time is up, idle sessions ended.
struct AnchorSweeper: Service {
    let anchors: AnchorTable
    let interval: Duration
    private let queue = DispatchQueue(label: "baton.agent.anchors")

    init(anchors: AnchorTable, interval: Duration) {
        self.anchors = anchors
        self.interval = interval
    }

    func run() async throws {
        await runPeriodically(every: interval, on: queue) { [anchors] in anchors.sweep() }
    }
}
