import BatonAPI
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation

// A node restarted mid-transfer (crash, upgrade, SIGKILL) finishes what it had started. The
// kernel kept the addresses (the original held on lo, the temporary on the interface); the
// store gives back the session keys and what was moved where, so that the TN still answers
// the agent's wake-up and the target still answers the release.

extension Node {
    /// What the TN stores of a transfer it started.
    struct OutgoingBody: Codable {
        var request: TransferRequest
        var original: IPAddress
        var prefixLength: Int
        var mode: TransferMode
        var target: String
        var temporary: IPAddress?
        var temporaryAdded: Bool
        var accepted: Bool
        var reason: String?
        var milestones: [String: Double]
        var settled: Bool
    }

    /// What the target stores of a transfer offered to it.
    struct IncomingBody: Codable {
        var offer: Offer
    }

    /// Writes the transfer to the store (if any). Lock held. A failed write is logged: the
    /// transfer goes on, only a restart would not know it.
    func persist(_ t: Outgoing) {
        guard let store else { return }
        let body = OutgoingBody(request: t.request, original: t.original.address, prefixLength: t.original.prefixLength,
                                mode: t.mode, target: t.target.name, temporary: t.temporary, temporaryAdded: t.temporaryAdded,
                                accepted: t.accepted, reason: t.reason, milestones: t.milestones, settled: t.settled)
        save(store, t.id, role: "tn", state: t.state.rawValue, channel: t.channel, body: body, started: t.started, ended: t.ended)
    }

    /// Lock held.
    func persist(_ t: Incoming) {
        guard let store else { return }
        save(store, t.id, role: "target", state: t.state.rawValue, channel: t.channel, body: IncomingBody(offer: t.offer),
             started: t.started, ended: t.ended)
    }

    private func save(_ store: Store, _ id: TransferID, role: String, state: String, channel: TransferChannel,
                      body: some Encodable, started: Date, ended: Date?) {
        var highest: [String: Int64] = [:]
        for r in Role.allCases { if let h = channel.highestAccepted(from: r) { highest["\(r)"] = Int64(bitPattern: h) } }
        do {
            try store.save(Store.NodeTransferRecord(
                id: "\(id)", role: role, state: state, sessionKey: Data(channel.storedKey.storedBytes),
                highest: highest, body: try JSONEncoder().encode(body), started: started.timeIntervalSince1970,
                ended: ended?.timeIntervalSince1970))
            if ended != nil { try store.pruneNodeTransfers(keep: configuration.keepEnded) }
        } catch {
            logger.error("transfer \(id): writing to the store failed: \(error)")
        }
    }

    /// Loads the stored transfers and settles each: an active one resumes (the original held
    /// again, decapsulation again for L3); one caught half-way through its start is rolled
    /// back as a failed start is; an ended one whose clean-up did not happen is cleaned up.
    /// Called from init.
    func recover() throws {
        guard let store else { return }
        var resumed = 0, rolledBack = 0
        for r in try store.nodeTransfers() {
            // Each role's states are its own: a target's row has a target state, a TN's a TN state.
            let targetState = r.role == "target" ? TargetTransferState(rawValue: r.state) : nil
            let tnState = r.role == "target" ? nil : TNTransferState(rawValue: r.state)
            guard let id = TransferID(r.id), let key = SessionKey(storedBytes: r.sessionKey), targetState != nil || tnState != nil
            else {
                logger.error("store: node transfer \(r.id) cannot be read back; left alone")
                continue
            }
            let channel = TransferChannel(transfer: id, key: key, role: r.role == "tn" ? .tn : .target)
            for role in Role.allCases {
                if let h = r.highest["\(role)"] { channel.restoreHighestAccepted(UInt64(bitPattern: h), from: role) }
            }
            channel.refuseStampedBefore(Date())
            let started = Date(timeIntervalSince1970: r.started)
            let ended = r.ended.map { Date(timeIntervalSince1970: $0) }
            if let state = targetState {
                guard let body = try? JSONDecoder().decode(IncomingBody.self, from: r.body) else {
                    logger.error("store: node transfer \(r.id) has an unreadable body; left alone")
                    continue
                }
                let t = Incoming(id: id, channel: channel, offer: body.offer, started: started)
                t.state = state
                t.ended = ended
                tables.withLock { $0.incoming[id] = t }
                if state == .accepted {
                    resumeAccepted(t)
                    resumed += 1
                }
                continue
            }
            guard let state = tnState, let body = try? JSONDecoder().decode(OutgoingBody.self, from: r.body) else {
                logger.error("store: node transfer \(r.id) has an unreadable body; left alone")
                continue
            }
            // A target no longer configured is still named: nothing is sent to it but the release.
            let target = configuration.peers.first { $0.name == body.target }
                ?? Peer(name: body.target, addresses: [body.original], port: configuration.port, key: configuration.identity.publicKey)
            let t = Outgoing(id: id, channel: channel, request: body.request,
                             original: OriginalAddress(address: body.original, prefixLength: body.prefixLength),
                             mode: body.mode, target: target, started: started)
            t.temporary = body.temporary
            t.temporaryAdded = body.temporaryAdded
            t.accepted = body.accepted
            t.reason = body.reason
            t.milestones = body.milestones
            t.settled = body.settled
            t.state = state
            t.ended = ended
            tables.withLock { $0.outgoing[id] = t }
            switch state {
            case .active, .ending:
                resumeOutgoing(t)
                resumed += 1
            case .negotiating, .registering:
                // Died half-way through the start: undo it as a failed start is undone (the
                // agent is asked to end if the registration may have gone out).
                tables.withLock { _ in
                    t.state = .failed
                    t.reason = "the node restarted during the start"
                    t.ended = Date()
                    persist(t)
                }
                if let agent = configuration.agent { rollBack(t, wasRegistering: state == .registering, agent: agent) }
                rolledBack += 1
            case .ended, .failed:
                if !t.settled { settle(t) }
            }
        }
        if resumed + rolledBack > 0 {
            logger.notice("store: \(resumed) transfer(s) resumed, \(rolledBack) interrupted start(s) rolled back")
        }
    }

    /// The TN side of a resumed transfer: the original is off the wire and held locally.
    private func resumeOutgoing(_ t: Outgoing) {
        let original = t.original.address
        do {
            try addresses.hold(original)
            if t.mode == .l3, let agent = configuration.agent?.address(original.family) { try acceptTunnelled(original, from: agent) }
            if try addresses.onInterface(original) != nil {
                logger.warning("transfer \(t.id): \(original) is on \(configuration.interface) again; the agent's wake-up will settle it")
            }
            tables.withLock { _ in if t.state == .ending { t.state = .active } }
            logger.info("transfer \(t.id): resumed (\(original) with the agent, answers at \(t.temporary.map { "\($0)" } ?? "?"))")
        } catch {
            logger.error("transfer \(t.id): resuming failed: \(error)")
        }
    }

    /// The target side of a resumed transfer: the original held, tunnels decapsulated.
    private func resumeAccepted(_ t: Incoming) {
        do {
            try addresses.hold(t.offer.original)
            if t.offer.mode == .l3 { try acceptTunnelled(t.offer.original, from: t.offer.agent) }
            logger.info("transfer \(t.id): resumed holding \(t.offer.original)")
        } catch {
            logger.error("transfer \(t.id): resuming failed: \(error)")
        }
    }
}
