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
        let (active, takeovers) = table.read { t in (t.live.count, t.live.values.map { "\($0.register.original)" }.sorted()) }
        var s = DaemonStatus(role: .agent, publicKey: "\(configuration.identity.publicKey)", interface: configuration.interface,
                             mac: mac, addresses: addresses, port: configuration.port,
                             activeTransfers: active, rejected: rejections.snapshot, heldAddresses: [],
                             temporaryAddresses: [], takeovers: takeovers)
        s.reconcile = reconciliation
        return s
    }

    public func listTransfers() throws -> [TransferInfo] {
        table.read { t in (t.finished + t.live.values.sorted { $0.started < $1.started }).map(info) }
    }

    public func showTransfer(_ id: String) throws -> TransferInfo {
        let tid = try Self.transferID(id)
        return try table.read { t in
            guard let found = t.known(tid) else { throw ControlError.notFound("no transfer \(id)") }
            return info(found)
        }
    }

    public func endTransfer(_ id: String, force: Bool) throws -> TransferInfo {
        try table.end(try Self.transferID(id), reason: WakeUp.Reason.operator, force: force, then: info)
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
            announcements.announce(admitted)
        }
        return RegistrationResults(results: results.map { $0! })
    }

    public func metricsExposition() throws -> String {
        let (byState, samples) = table.read { tables -> ([String: Int], [DaemonMetrics.RuleSample]) in
            var byState: [String: Int] = [:]
            for t in tables.live.values { byState[t.state.rawValue, default: 0] += 1 }
            var samples: [DaemonMetrics.RuleSample] = []
            for t in tables.live.values {
                for rule in t.rules {
                    let c = (try? dataPlane.rule(rule.match))?.counter
                    samples.append(.init(transfer: "\(t.id)", session: "\(rule.match)", packets: c?.packets ?? 0, bytes: c?.bytes ?? 0))
                }
            }
            return (byState, samples)
        }
        return metrics.render(transfersByState: byState, rules: samples, mapRules: try? dataPlane.ruleCount(),
                              mapTakeovers: (try? dataPlane.takeovers())?.count, datapath: (try? dataPlane.stats()) ?? [:])
    }

    static func transferID(_ id: String) throws -> TransferID {
        guard let tid = TransferID(id) else { throw ControlError.invalid("invalid transfer ID '\(id)': expected 16 hex digits") }
        return tid
    }

    /// What the API shows of a transfer. Called under the table's lock (its fields are read
    /// consistently).
    func info(_ t: AgentTransfer) -> TransferInfo {
        let clock = try? dataPlane.clock()
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

    private func describe(_ f: Forwarding) -> String {
        switch f.action {
        case .l2: return "l2 → \(f.destinationMAC)"
        case .encap: return "encap → \(f.outerDestination.map { "\($0)" } ?? "?") via \(f.destinationMAC)"
        case .pass: return "pass"
        case .drop: return "drop"
        }
    }
}
