import BatonAPI
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import Foundation

// The agent's side of the API: status, transfers, registrations, metrics. Devices and
// policies are in AgentAuthority.swift.

extension Agent: APIHandler {
    public var apiRole: DaemonRole { .agent }

    public func status() throws -> DaemonStatus {
        let addresses = ((try? Netlink().addresses(interface: configuration.interface)) ?? []).map(\.description)
        // Switch mode takes nothing over: its transfers are rules only.
        let inline = configuration.mode == .switch
        let (active, takeovers) = table.read { t in (t.live.count, inline ? [] : t.live.values.map { "\($0.register.original)" }.sorted()) }
        var s = DaemonStatus(role: .agent, publicKey: "\(configuration.identity.publicKey)", interface: configuration.interface,
                             mac: mac, addresses: addresses, port: configuration.port,
                             activeTransfers: active, rejected: rejections.snapshot, heldAddresses: [],
                             temporaryAddresses: [], takeovers: takeovers)
        s.reconcile = reconciliation
        return s
    }

    // The transfers are copied under the table's lock and their counters read after it, so
    // that a list of many rules does not hold up registrations behind its map lookups.

    public func listTransfers() throws -> [TransferInfo] {
        info(table.read { t in (t.finished + t.live.values.sorted { $0.started < $1.started }).map(\.view) })
    }

    public func showTransfer(_ id: String) throws -> TransferInfo {
        let tid = try Self.transferID(id)
        let view = try table.read { t in
            guard let found = t.known(tid) else { throw ControlError.notFound("no transfer \(id)") }
            return found.view
        }
        return info([view])[0]
    }

    public func endTransfer(_ id: String, force: Bool) throws -> TransferInfo {
        info([try table.end(try Self.transferID(id), reason: WakeUp.Reason.operator, force: force, then: \.view)])[0]
    }

    /// Registrations through the API: the same sealed messages as over UDP, answered in the
    /// response instead of by datagram. The batch is opened and checked without the agent's
    /// lock, then admitted at once (see `admit`).
    public func register(_ batch: RegistrationBatch) throws -> RegistrationResults {
        guard !batch.envelopes.isEmpty, batch.envelopes.count <= RegistrationBatch.maximum else {
            throw ControlError.invalid("a batch holds 1 to \(RegistrationBatch.maximum) envelopes, not \(batch.envelopes.count)")
        }
        var results = [RegistrationResult?](repeating: nil, count: batch.envelopes.count)
        var candidates: [(index: Int, candidate: Candidate)] = []
        var admitted: [AgentTransfer] = []
        func settle(_ i: Int, _ transfer: TransferID, _ answer: Answer?) {
            guard let answer else {
                results[i] = RegistrationResult(transfer: "\(transfer)", accepted: false,
                                                error: "not accepted: unauthenticated, unenrolled or replayed (see the agent's log and rejection counters)")
                return
            }
            if let t = answer.admitted { admitted.append(t) }
            results[i] = RegistrationResult(transfer: "\(transfer)", accepted: answer.accepted,
                                            envelope: Data(answer.bytes).base64EncodedString(),
                                            error: answer.accepted ? nil : "refused: the sealed answer says why")
        }
        var context = Admission.Context()
        for (i, text) in batch.envelopes.enumerated() {
            guard let bytes = Data(base64Encoded: text) else {
                rejections.record("malformed", from: "api", "an envelope is not base64")
                results[i] = RegistrationResult(transfer: nil, accepted: false, error: "not base64")
                continue
            }
            let envelope: Envelope
            do {
                envelope = try Envelope.parse(Array(bytes))
            } catch {
                rejections.record(error, from: "api")
                results[i] = RegistrationResult(transfer: nil, accepted: false, error: "\(error)")
                continue
            }
            guard envelope.type == .register else {
                rejections.record("unexpected", from: "api", "\(envelope.type) sent to the registration API")
                results[i] = RegistrationResult(transfer: "\(envelope.transfer)", accepted: false,
                                                error: "only register messages are taken here, not \(envelope.type)")
                continue
            }
            switch admission.open(envelope, from: "api", address: nil, context: &context) {
            case .answered(let answer): settle(i, envelope.transfer, answer)
            case .candidate(let c): candidates.append((i, c))
            }
        }
        for ((i, c), answer) in zip(candidates, admission.admit(candidates.map(\.candidate))) {
            settle(i, c.envelope.transfer, answer)
        }
        // The answers are settled (the response goes out next): announce the addresses.
        if !admitted.isEmpty {
            CrashPoint.reached("registered-sent")
            if configuration.mode == .takeover { announcements.announce(admitted) }
        }
        return RegistrationResults(results: results.map { $0! })
    }

    public func metricsExposition() throws -> String {
        let (byState, live) = table.read { tables -> ([String: Int], [(TransferID, [SessionRule])]) in
            var byState: [String: Int] = [:]
            for t in tables.live.values { byState[t.state.rawValue, default: 0] += 1 }
            return (byState, tables.live.values.map { ($0.id, $0.rules) })
        }
        var samples: [DaemonMetrics.RuleSample] = []
        for (id, rules) in live {
            for rule in rules {
                let c = (try? dataPlane.rule(rule.match))?.counter
                samples.append(.init(transfer: "\(id)", session: "\(rule.match)", packets: c?.packets ?? 0, bytes: c?.bytes ?? 0))
            }
        }
        let legs = anchorLegs()
        return metrics.render(transfersByState: byState, rules: samples, mapRules: try? dataPlane.ruleCount(),
                              mapTakeovers: (try? dataPlane.takeovers())?.count, datapath: (try? dataPlane.stats()) ?? [:],
                              anchors: Set(legs.map(\.anchor)).count, legs: legs, freeRelayPorts: anchors.freePorts)
    }

    static func transferID(_ id: String) throws -> TransferID {
        guard let tid = TransferID(id) else { throw ControlError.invalid("invalid transfer ID '\(id)': expected 16 hex digits") }
        return tid
    }

    /// What the API shows of transfers copied from under the table's lock (`AgentTransfer.view`),
    /// with their sessions' counters, read now without the lock.
    func info(_ views: [AgentTransfer.View]) -> [TransferInfo] {
        let clock = try? dataPlane.clock()
        return views.map { t in
            let live = t.state != .ended && t.state != .failed
            let sessions = t.rules.map { rule -> SessionInfo in
                let counter = live ? (try? dataPlane.rule(rule.match))?.counter : nil
                return SessionInfo(match: rule.match, forward: describe(rule.forward), packets: counter?.packets, bytes: counter?.bytes,
                                   idleSeconds: clock.flatMap { counter?.idleSeconds(at: $0) }, closed: counter?.sawFinOrReset)
            }
            return TransferInfo(id: "\(t.id)", role: .agent, state: TransferState(t.state), original: t.register.original,
                                temporary: t.register.temporary, mode: t.register.mode,
                                target: "\(t.register.targetAddress)", sessions: sessions, reason: t.reason,
                                started: unixTime(t.started), ended: t.ended.map { unixTime($0) }, milestones: t.milestones)
        }
    }

    private func describe(_ f: Forwarding) -> String {
        switch f.action {
        case .l2: return "l2 → \(f.destinationMAC)"
        case .encap: return "encap → \(f.outerDestination.map { "\($0)" } ?? "?") via \(f.destinationMAC)"
        case .relay: return "relay → \(f.rewrite.map { "\($0)" } ?? "?") via \(f.destinationMAC)"
        case .pass: return "pass"
        case .drop: return "drop"
        }
    }
}
