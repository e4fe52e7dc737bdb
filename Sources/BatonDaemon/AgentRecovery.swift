import BatonAPI
import BatonDataPlane
import BatonModel
import BatonProtocol
import BatonStore
import Foundation
import Logging

// A start after a stop, a crash or an upgrade: the store says what the maps should hold, the
// maps (pinned, steering all along) say what they do hold. The store wins.

extension Agent {
    /// Loads the stored transfers into `table`, settles the ones a crash left half-way, and
    /// makes the maps hold exactly the rules and takeovers of the transfers that go on. Called
    /// from init, before anything is served.
    /// `anchorRules`: what the anchored sessions hold (AnchorTable.recover), kept too.
    static func recover(table: TransferTable, store: Store, dataPlane: DataPlane, idleTimeout: Double,
                        anchorRules: [SessionRule] = [], takeovers: Bool = true, logger: Logger) throws -> ReconcileSummary {
        let begin = ContinuousClock.now
        var summary = ReconcileSummary.none
        var wantedRules: [SessionRule] = anchorRules
        var wantedTakeovers: [Takeover] = []
        for r in try store.transfers() {
            guard let t = restore(r, store: store, idleTimeout: idleTimeout, logger: logger) else { continue }
            switch t.state {
            case .stored:
                // The TN was never told: it gives up (and rolls back) on its own, and a
                // retransmission of its registration is refused now (see `handle`).
                t.state = .failed
                t.reason = "the agent restarted before answering the registration"
                t.ended = Date()
                table.persist(t)
                summary.transfersRolledBack += 1
                logger.notice("transfer \(t.id): rolled back (stored, never answered)")
            case .active, .waking:
                // A wake-up in progress is given up `--max-waking` after this start at the latest.
                if t.state == .waking { t.wakingSince = .now }
                // Inline (switch mode), a wake-up removed the rules at its start (the TN never
                // left the wire): they stay out, or the TN's sessions would go to the target again.
                if takeovers || t.state == .active { wantedRules += t.rules }
                if takeovers { wantedTakeovers.append(t.takeover) } // switch mode takes nothing over
                summary.transfersResumed += 1
            case .lingering:
                // The TN has its address back; nothing more to forward.
                t.state = .ended
                t.ended = Date()
                table.persist(t)
                summary.transfersCleared += 1
            case .ended, .failed:
                break
            }
            table.restore(t)
        }
        let r = try dataPlane.reconcile(rules: wantedRules, takeovers: wantedTakeovers)
        summary.rulesKept = r.rulesKept
        summary.rulesRestored = r.rulesRestored
        summary.rulesRewritten = r.rulesRewritten
        summary.rulesRemoved = r.rulesRemoved
        summary.takeoversKept = r.takeoversKept
        summary.takeoversRestored = r.takeoversRestored
        summary.takeoversRewritten = r.takeoversRewritten
        summary.takeoversRemoved = r.takeoversRemoved
        summary.seconds = Double(milliseconds(since: begin)) / 1000
        for m in r.removedRules { logger.warning("reconcile: removed stale rule \(m) (no stored transfer or anchor owns it)") }
        if r.rulesRemoved > r.removedRules.count { logger.warning("reconcile: … and \(r.rulesRemoved - r.removedRules.count) more stale rules") }
        for m in r.restoredRules { logger.warning("reconcile: restored missing rule \(m)") }
        for a in r.removedTakeovers { logger.warning("reconcile: removed stale takeover of \(a)") }
        logger.info("""
            reconcile: \(summary.transfersResumed) transfer(s) resumed, \(summary.transfersRolledBack) rolled back, \
            \(summary.transfersCleared) cleared; rules \(r.rulesKept) kept, \(r.rulesRestored) restored, \
            \(r.rulesRewritten) rewritten, \(r.rulesRemoved) removed; takeovers \(r.takeoversKept) kept, \
            \(r.takeoversRestored) restored, \(r.takeoversRewritten) rewritten, \(r.takeoversRemoved) removed \
            (\(String(format: "%.3f", summary.seconds)) s)
            """)
        return summary
    }

    /// A stored transfer as the agent keeps it; nil (logged, marked failed) if unreadable.
    private static func restore(_ r: Store.TransferRecord, store: Store, idleTimeout: Double, logger: Logger) -> AgentTransfer? {
        guard let id = TransferID(r.id), let key = SessionKey(storedBytes: r.sessionKey),
              var register = Register(stored: r.register),
              let state = AgentTransferState(rawValue: r.state), let rules = try? store.rules(transfer: r.id) else {
            logger.error("store: transfer \(r.id) cannot be read back; its entries are left to the reconcile")
            var failed = r
            failed.state = AgentTransferState.failed.rawValue
            failed.reason = "unreadable in the store"
            try? store.update(failed)
            return nil
        }
        // Stored without its sessions (Register.storedBytes): they are the rules' matches.
        if register.sessions.isEmpty { register.sessions = rules.map(\.match) }
        let channel = TransferChannel(transfer: id, key: key, role: .agent)
        if let h = r.highestTN { channel.restoreHighestAccepted(UInt64(bitPattern: h), from: .tn) }
        channel.refuseStampedBefore(Date())
        let t = AgentTransfer(id: id, channel: channel, register: register, device: r.device, takeover: r.takeover,
                              idleTimeout: register.idleTimeout ?? idleTimeout,
                              started: Date(timeIntervalSince1970: r.started))
        t.state = state
        t.reason = r.reason
        t.ended = r.ended.map { Date(timeIntervalSince1970: $0) }
        t.milestones = r.milestones
        t.rules = rules
        return t
    }
}
