import BatonAPI
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation
import Logging
import Synchronization

/// The agent's transfers, and the only owner of their lock. Its methods are the transfers'
/// state transitions (admit, a known transfer's message, begin the end, the TN's confirmation,
/// clear, roll back) and the questions asked of them; each takes the lock once, and nothing it
/// calls takes it again. Under the lock it writes the store and the maps, in the order that
/// keeps a restart safe: the store first when something is added, last when it is removed
/// (write-ahead; see `AgentRecovery`).
final class TransferTable: Sendable {
    struct Tables {
        var live: [TransferID: AgentTransfer] = [:]
        /// The transfer taking over each original address (one at most).
        var takenOver: [IPAddress: TransferID] = [:]
        /// Ended and failed transfers, newest last, kept so that `transfer list` shows them and
        /// their replays are recognised.
        var finished: [AgentTransfer] = []
        /// Active transfers the sweep has yet to look at in this round.
        var sweepQueue: [TransferID] = []

        mutating func track(_ t: AgentTransfer) {
            live[t.id] = t
            takenOver[t.register.original] = t.id
        }

        mutating func untrack(_ t: AgentTransfer) {
            live[t.id] = nil
            if takenOver[t.register.original] == t.id { takenOver[t.register.original] = nil }
        }

        /// A live transfer, or a finished one (its late messages are still recognised).
        func known(_ id: TransferID) -> AgentTransfer? {
            live[id] ?? finished.last(where: { $0.id == id })
        }
    }

    private let tables = Mutex(Tables())
    let store: Store
    let dataPlane: DataPlane
    let messenger: Messenger
    let metrics: DaemonMetrics
    let rejections: Rejections
    let logger: Logger
    /// How long forwarding goes on after the TN confirmed the wake-up (seconds).
    let linger: Double
    /// How long a wake-up may go unconfirmed before the takeover is cleared (seconds).
    let maxWaking: Double
    /// Ended transfers kept in memory and in the store.
    let keepEnded: Int

    /// Switch mode (`AgentMode.switch`): no takeovers in the maps, and `registered` tells the
    /// TN to keep its address on the wire.
    let inline: Bool
    var registered: Registered { Registered(inline: inline ? true : nil) }

    init(store: Store, dataPlane: DataPlane, messenger: Messenger, metrics: DaemonMetrics, rejections: Rejections,
         logger: Logger, linger: Double, maxWaking: Double, keepEnded: Int, inline: Bool = false) {
        self.inline = inline
        self.store = store
        self.dataPlane = dataPlane
        self.messenger = messenger
        self.metrics = metrics
        self.rejections = rejections
        self.logger = logger
        self.linger = linger
        self.maxWaking = maxWaking
        self.keepEnded = keepEnded
    }

    // MARK: - Questions

    /// Reads the tables under the lock (status, lists, metrics). `body` must not block long.
    func read<T>(_ body: (borrowing Tables) throws -> T) rethrows -> T {
        try tables.withLock { try body($0) }
    }

    // MARK: - Recovery

    /// A stored transfer taken up again at start-up (before anything is served).
    func restore(_ t: AgentTransfer) {
        tables.withLock { if t.isFinished { $0.finished.append(t) } else { $0.track(t) } }
    }

    // MARK: - Messages of known transfers

    /// A known (or recently finished) transfer's message: `.some(answer)` (nil: nothing to
    /// send back), or nil if the transfer is unknown.
    func receiveKnown(_ envelope: Envelope, from source: String) -> Answer?? {
        tables.withLock { receiveKnown(envelope, from: source, &$0) }
    }

    private func receiveKnown(_ envelope: Envelope, from source: String, _ tables: inout Tables) -> Answer?? {
        guard let known = tables.known(envelope.transfer) else { return nil }
        do {
            // No store write here: a message that changes the state is stored by that change;
            // replays after a restart meet the restored channel's refuseStampedBefore.
            let message = try known.channel.open(envelope)
            return .some(handle(message, for: known, from: source, &tables))
        } catch {
            rejections.record(error, from: source)
        }
        return .some(nil)
    }

    private func handle(_ message: Message, for t: AgentTransfer, from source: String, _ tables: inout Tables) -> Answer? {
        switch message {
        case .register:
            // A retransmission: the first `registered` was lost (or we restarted before sending it).
            let to = t.register.control.socketAddress
            if t.state == .active {
                return (try? t.channel.seal(.registered(registered))).map { Answer(bytes: $0, accepted: true, to: to) }
            }
            if t.state == .failed {
                let reason = t.reason ?? "the agent rolled this registration back"
                return (try? t.channel.seal(.reject(Reject(reason: reason)))).map { Answer(bytes: $0, accepted: false, to: to) }
            }
        case .end(let end):
            logger.info("transfer \(t.id): the TN asks to end it (\(end.reason))")
            // `closed`: the target's TCP stack saw every session closed (the TN relays it).
            beginEnd(t, reason: end.reason == WakeUp.Reason.closed ? WakeUp.Reason.closed : WakeUp.Reason.requested)
        case .wakeUpAck:
            confirmWakeUp(t)
        default:
            rejections.record("unexpected", from: source, "\(message.type) for transfer \(t.id) in state \(t.state.rawValue)")
        }
        return nil
    }

    /// A registration the agent will not or cannot carry out: nothing of it is left written;
    /// the TN is told why, sealed. Needs no lock.
    func refuse(_ id: TransferID, _ register: Register, _ channel: TransferChannel, _ error: any Error) -> Answer? {
        logger.error("transfer \(id): registration refused: \(error)")
        metrics.registration(accepted: false)
        guard let bytes = try? channel.seal(.reject(Reject(reason: "\(error)"))) else { return nil }
        return Answer(bytes: bytes, accepted: false, to: register.control.socketAddress)
    }

    // MARK: - Admission

    /// Make-before-break, write-ahead: the transfers go into the store, then their rules and
    /// takeovers into the maps (from then on the data plane answers ARP/NDP for the addresses
    /// and steers), then the store marks them active; the caller then tells the TNs and
    /// announces. A crash between any two steps leaves the store knowing at least what the
    /// maps hold. Fills `answers` for the candidates refused (or recognised as retransmissions)
    /// and returns the transfers made active, by candidate index.
    func admit(_ candidates: [Candidate], answers: inout [Answer?]) -> [(index: Int, transfer: AgentTransfer)] {
        var refused: [(Int, Answer?)] = []
        let active = tables.withLock { admit(candidates, refused: &refused, &$0) }
        for (i, answer) in refused { answers[i] = answer }
        return active
    }

    private func admit(_ candidates: [Candidate], refused: inout [(Int, Answer?)],
                       _ tables: inout Tables) -> [(index: Int, transfer: AgentTransfer)] {
        var admitted: [(index: Int, transfer: AgentTransfer)] = []
        var originals = Set<IPAddress>()
        /// The lingering transfer each new one takes over from, by the new one's id.
        var superseded: [TransferID: AgentTransfer] = [:]
        for (i, c) in candidates.enumerated() {
            let t = c.transfer
            // Opened twice meanwhile (a retransmission racing the first): the first one won.
            if tables.known(t.id) != nil {
                refused.append((i, receiveKnown(c.envelope, from: c.source, &tables) ?? nil))
                continue
            }
            if let other = tables.takenOver[t.register.original] {
                // The same device's transfer in its linger (the TN has its address back, the
                // agent still forwards for late packets): the new one takes over from it in
                // place, so that a handover right after the last one loses nothing.
                if let old = tables.live[other], old.state == .lingering, old.device == t.device {
                    superseded[t.id] = old
                } else {
                    refused.append((i, refuse(t.id, t.register, t.channel,
                                              ControlError.conflict("\(t.register.original) is already taken over by transfer \(other) (\(tables.live[other]?.state.rawValue ?? "ending"))"))))
                    continue
                }
            }
            guard originals.insert(t.register.original).inserted else {
                refused.append((i, refuse(t.id, t.register, t.channel,
                                          ControlError.conflict("\(t.register.original) is taken over by another registration of the same batch"))))
                continue
            }
            admitted.append((i, t))
        }
        guard !admitted.isEmpty else { return [] }
        CrashPoint.reached("authorized")

        do {
            try store.insert(admitted.map { candidates[$0.index].stored })
        } catch {
            for (i, t) in admitted { refused.append((i, refuse(t.id, t.register, t.channel, error))) }
            return []
        }
        CrashPoint.reached("stored")
        for (_, t) in admitted { tables.track(t) }
        let failures = writeMaps(admitted.map(\.transfer), superseding: superseded)
        CrashPoint.reached("takeover-written")
        var active: [(index: Int, transfer: AgentTransfer)] = []
        var failed: [AgentTransfer] = []
        for (k, (i, t)) in admitted.enumerated() {
            if let error = failures[k] {
                if let old = superseded[t.id] { tables.takenOver[old.register.original] = old.id }
                fail(t, error, &tables)
                failed.append(t)
                refused.append((i, refuse(t.id, t.register, t.channel, error)))
            } else {
                t.mark("steering")
                t.state = .active
                t.mark("registered")
                active.append((i, t))
            }
        }
        if !failed.isEmpty {
            do { try store.update(failed.map(\.record)) } catch { logger.error("store: recording failed registrations: \(error)") }
        }
        guard !active.isEmpty else { return [] }
        do {
            // Durable before `registered` goes out (one sync per batch).
            try store.update(states: active.map { Store.StateChange(id: "\($0.transfer.id)", state: $0.transfer.state.rawValue,
                                                                     milestones: $0.transfer.milestones) },
                             durable: true)
        } catch {
            // The maps were written but the store does not say so: take them back out, so
            // that no TN is told of a transfer a restart would roll back.
            for (i, t) in active {
                if let old = superseded[t.id] {
                    restore(old, after: t)
                    tables.takenOver[old.register.original] = old.id
                } else {
                    unwrite(t)
                }
                fail(t, error, &tables)
                refused.append((i, refuse(t.id, t.register, t.channel, error)))
            }
            return []
        }
        CrashPoint.reached("active")
        for (_, t) in active {
            if let old = superseded[t.id] { finishSuperseded(old, by: t, &tables) }
        }
        // Once per batch: a counter lookup per registration showed in the profile.
        metrics.registration(accepted: true, count: active.count)
        metrics.takeover(count: active.count)
        for (_, t) in active {
            logger.info("transfer \(t.id): took over \(t.register.original) for \(t.device) (\(t.register.mode.rawValue)), \(t.rules.count) session(s) → target \(t.register.targetAddress), others → TN \(t.register.temporary)")
        }
        return active
    }

    /// Writes the transfers' rules (one batch; one transfer at a time if the batch is refused,
    /// so that a full table refuses only what does not fit), then their takeovers. Returns the
    /// error of each transfer that is not in the maps; nothing of those is left there.
    private func writeMaps(_ all: [AgentTransfer], superseding superseded: [TransferID: AgentTransfer]) -> [(any Error)?] {
        var failures = [(any Error)?](repeating: nil, count: all.count)
        // One batch for the transfers that start afresh; one that takes over from a lingering
        // one re-points that one's rules in place.
        let fresh = all.indices.filter { superseded[all[$0].id] == nil }
        do {
            try dataPlane.addRules(fresh.flatMap { all[$0].rules })
        } catch let error where fresh.count > 1 {
            logger.warning("\(fresh.count) registrations' rules refused as a batch (\(error)); writing them one transfer at a time")
            for k in fresh {
                do { try dataPlane.addRules(all[k].rules) } catch { failures[k] = error }
            }
        } catch {
            for k in fresh { failures[k] = error }
        }
        for (k, t) in all.enumerated() where superseded[t.id] != nil {
            do {
                try dataPlane.replaceRules(t.rules)
            } catch {
                restore(superseded[t.id]!, after: t)
                failures[k] = error
            }
        }
        CrashPoint.reached("rules-written")
        // Switch mode takes nothing over: the rules are all there is.
        for (k, t) in all.enumerated() where failures[k] == nil && !inline {
            do {
                try dataPlane.setTakeover(t.takeover)
            } catch {
                if let old = superseded[t.id] {
                    restore(old, after: t)
                } else {
                    for rule in t.rules { _ = try? dataPlane.removeRule(rule.match) }
                }
                failures[k] = error
            }
        }
        return failures
    }

    /// A lingering transfer another one of its device took over from: its rules that the new
    /// one does not have go, the takeover and the rest are the new one's already.
    private func finishSuperseded(_ old: AgentTransfer, by new: AgentTransfer, _ tables: inout Tables) {
        let kept = Set(new.rules.map(\.match))
        for rule in old.rules where !kept.contains(rule.match) {
            do { _ = try dataPlane.removeRule(rule.match) } catch { logger.error("transfer \(old.id): removing rule \(rule.match): \(error)") }
        }
        old.state = .ended
        old.reason = WakeUp.Reason.superseded
        old.ended = Date()
        old.mark("superseded")
        persist(old)
        tables.untrack(old)
        tables.finished.append(old)
        metrics.ended(reason: WakeUp.Reason.superseded)
        logger.info("transfer \(old.id): ended in its linger; transfer \(new.id) took over \(old.register.original) from it")
    }

    /// A lingering transfer's entries as they were before `new` failed to take over from it
    /// (best effort: the lingering transfer goes on).
    private func restore(_ old: AgentTransfer, after new: AgentTransfer) {
        let kept = Set(old.rules.map(\.match))
        for rule in new.rules where !kept.contains(rule.match) { _ = try? dataPlane.removeRule(rule.match) }
        for rule in old.rules { try? dataPlane.setRule(rule) }
        if !inline { try? dataPlane.setTakeover(old.takeover) }
    }

    /// Takes a transfer's entries out of the maps.
    private func unwrite(_ t: AgentTransfer) {
        for rule in t.rules { _ = try? dataPlane.removeRule(rule.match) }
        _ = try? dataPlane.removeTakeover(t.register.original)
    }

    /// A registration rolled back before the TN was told; the caller stores it.
    private func fail(_ t: AgentTransfer, _ error: any Error, _ tables: inout Tables) {
        tables.untrack(t)
        t.state = .failed
        t.reason = "\(error)"
        t.ended = Date()
        tables.finished.append(t)
    }

    // MARK: - Ending

    /// The operator's `transfer end`: starts the wake-up of an active transfer (a waking one
    /// is left as it is). `force` clears it at once instead, without waiting for the TN (an
    /// active one still gets one wake-up, for a TN that is there after all). Returns what
    /// `body` makes of it, under the lock.
    func end<T>(_ id: TransferID, reason: String, force: Bool = false, then body: (AgentTransfer) -> T) throws -> T {
        try tables.withLock { tables in
            guard let t = tables.known(id) else { throw ControlError.notFound("no transfer \(id)") }
            guard t.state == .active || t.state == .waking || (force && t.state == .lingering) else {
                throw ControlError.conflict("transfer \(id) is \(t.state.rawValue): only an active transfer can be ended")
            }
            beginEnd(t, reason: reason)
            if force {
                logger.warning("transfer \(t.id): forced end; clearing the takeover of \(t.register.original) without the TN's confirmation")
                t.reason = WakeUp.Reason.forced
                t.mark("forced")
                clear(t, &tables)
            }
            return body(t)
        }
    }

    /// The sweep's verdicts: each transfer still active begins its end.
    func end(_ verdicts: [(TransferID, String)]) {
        guard !verdicts.isEmpty else { return }
        tables.withLock { tables in
            for (id, reason) in verdicts {
                // It may have ended meanwhile (the TN asked, or an operator did).
                if let t = tables.live[id], t.state == .active { beginEnd(t, reason: reason) }
            }
        }
    }

    /// Starts the wake-up; forwarding goes on until the TN confirms.
    private func beginEnd(_ t: AgentTransfer, reason: String) {
        guard t.state == .active else { return }
        t.state = .waking
        t.reason = reason
        // No more announcements from here on: one sent after the TN's own would point the
        // correspondent back at us just before we let go. ARP/NDP answers go on until the
        // TN confirms, for correspondents that ask meanwhile.
        t.announcement?.cancel()
        t.announcement = nil
        t.mark("wake-up")
        persist(t)
        if inline {
            // Switch mode: the TN never left the wire, so the sessions go back to it the moment
            // the switch stops redirecting them, before the TN (and the target) hear of it.
            for rule in t.rules {
                do { _ = try dataPlane.removeRule(rule.match) } catch { logger.error("transfer \(t.id): removing rule \(rule.match): \(error)") }
            }
            t.mark("rules-removed")
        }
        t.nextWakeUp = .now
        t.wakingSince = .now
        sendWakeUp(t)
        logger.info("transfer \(t.id): ending (\(reason)); waking the TN at \(t.register.control)")
    }

    private func sendWakeUp(_ t: AgentTransfer) {
        do {
            try messenger.send(try t.channel.seal(.wakeUp(WakeUp(reason: t.reason ?? WakeUp.Reason.operator))),
                               to: t.register.control.socketAddress)
        } catch {
            logger.error("transfer \(t.id): sending the wake-up to \(t.register.control) failed: \(error)")
        }
        if t.wakeUpsSent == 0 { metrics.wakeUp() }
        t.wakeUpsSent += 1
        // Every 200 ms, then at most once a second: the address stays forwarded meanwhile.
        t.nextWakeUp = .now + (t.wakeUpsSent < 10 ? .milliseconds(200) : .seconds(1))
    }

    /// The TN has its address back on the wire: stop answering ARP/NDP for it at once (the TN
    /// does now), keep forwarding for `linger`, then clear.
    private func confirmWakeUp(_ t: AgentTransfer) {
        guard t.state == .waking else { return }
        var quiet = t.takeover
        quiet.agentMAC = nil
        do {
            if !inline { try dataPlane.setTakeover(quiet) }
        } catch {
            logger.error("transfer \(t.id): could not stop answering for \(t.register.original): \(error)")
        }
        t.takeover = quiet
        t.state = .lingering
        t.lingerUntil = .now + .milliseconds(Int(linger * 1000))
        t.mark("reclaimed")
        persist(t)
        logger.info("transfer \(t.id): the TN has reclaimed \(t.register.original)")
    }

    /// Retransmits due wake-ups, gives up on wake-ups unconfirmed for `maxWaking`, and clears
    /// transfers whose linger is over.
    func retransmitAndClear() {
        tables.withLock { tables in
            let now = ContinuousClock.now
            for t in Array(tables.live.values) {
                switch t.state {
                case .waking where now - (t.wakingSince ?? now) >= .milliseconds(Int(maxWaking * 1000)):
                    // The TN is gone or cut off: answering for its address forever would hold a
                    // takeover slot and keep its correspondents pointed here.
                    logger.warning("transfer \(t.id): the TN at \(t.register.control) did not confirm the wake-up in \(t.wakeUpsSent) tries over \(maxWaking) s; clearing the takeover of \(t.register.original)")
                    t.reason = WakeUp.Reason.unanswered
                    t.mark("given-up")
                    clear(t, &tables)
                case .waking where now >= t.nextWakeUp:
                    sendWakeUp(t)
                case .lingering where now >= t.lingerUntil!:
                    clear(t, &tables)
                default:
                    break
                }
            }
        }
    }

    /// The store first: a crash after it leaves map entries that the next start removes as
    /// stale, never a stored transfer without its entries.
    private func clear(_ t: AgentTransfer, _ tables: inout Tables) {
        t.state = .ended
        t.ended = Date()
        t.mark("cleared")
        persist(t)
        for rule in t.rules {
            do { _ = try dataPlane.removeRule(rule.match) } catch { logger.error("transfer \(t.id): removing rule \(rule.match): \(error)") }
        }
        do { _ = try dataPlane.removeTakeover(t.register.original) } catch { logger.error("transfer \(t.id): removing takeover: \(error)") }
        tables.untrack(t)
        tables.finished.append(t)
        metrics.ended(reason: t.reason ?? "")
        if tables.finished.count > keepEnded {
            tables.finished.removeFirst(tables.finished.count - keepEnded)
            try? store.prune(keep: keepEnded)
        }
        logger.info("transfer \(t.id): ended (\(t.reason ?? "")), entries cleared")
    }

    // MARK: - Sweeping

    /// What the idle and close check needs of a transfer, copied out from under the lock.
    struct SweepItem: Sendable {
        let id: TransferID
        let matches: [SessionMatch]
        let since: ContinuousClock.Instant
        let idleTimeout: Double
    }

    /// The next active transfers to check (at most `transfers`, or `rules` rules), starting a
    /// new round when the last one is done if `mayStartRound`; empty when there is nothing to
    /// check.
    func nextSweepChunk(mayStartRound: Bool, transfers: Int, rules: Int) -> [SweepItem] {
        tables.withLock { tables in
            if tables.sweepQueue.isEmpty, mayStartRound {
                tables.sweepQueue = tables.live.values.filter { $0.state == .active }.map(\.id)
            }
            var chunk: [SweepItem] = []
            var count = 0
            while chunk.count < transfers, count < rules, let id = tables.sweepQueue.popLast() {
                if let t = tables.live[id], t.state == .active {
                    chunk.append(SweepItem(id: id, matches: t.rules.map(\.match), since: t.since, idleTimeout: t.idleTimeout))
                    count += t.rules.count
                }
            }
            return chunk
        }
    }

    // MARK: - Announcements

    /// Of `ts`, the transfers that are active and not announced yet.
    func dueForAnnouncement(_ ts: [AgentTransfer]) -> [AgentTransfer] {
        tables.withLock { _ in ts.filter { $0.state == .active && $0.announcement == nil } }
    }

    /// Records the announcements started; one whose transfer ended meanwhile (or was announced
    /// by another caller) is cancelled at once.
    func announced(_ started: [(AgentTransfer, Announcement?)]) {
        tables.withLock { _ in
            for (t, a) in started {
                guard t.state == .active, t.announcement == nil else { a?.cancel(); continue }
                t.announcement = a
                t.mark("announced")
            }
        }
    }

    /// Stops every announcement (the daemon stops; steering goes on without it).
    func cancelAnnouncements() {
        tables.withLock { tables in for t in tables.live.values { t.announcement?.cancel() } }
    }

    // MARK: - Store

    /// A failed write is logged: the maps are right, and the next change or the next start's
    /// reconcile puts the store right.
    func persist(_ t: AgentTransfer) {
        do { try store.update(t.record) } catch { logger.error("transfer \(t.id): writing to the store failed: \(error)") }
    }
}
