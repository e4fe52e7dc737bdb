import BatonAPI
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation

// How a registration becomes a transfer, one at a time (a datagram) or many at once (a batch
// through the API). Everything that needs no shared state runs without the agent's lock and
// in parallel: opening the sealed key (X25519), authorizing, building and checking the
// transfer, encoding its store record. Under the lock: the conflict check and the writes, a
// batch sharing them (one store transaction per step, one batch of map updates).

extension Agent {
    /// What to send back to the sender of a message.
    struct Answer {
        var bytes: [UInt8]
        var accepted: Bool
        /// Where a datagram answer goes: the registration's control endpoint (the TN sends
        /// from its temporary address, but not necessarily from the protocol port).
        var to: SocketAddress?
        /// The transfer this answer admits: its address is announced once the answer is out.
        var admitted: Transfer?
    }

    /// A new transfer's registration, opened, authorized and checked, to be admitted.
    struct Candidate {
        let envelope: Envelope
        let transfer: Transfer
        /// Its store record, encoded ahead of the lock.
        let stored: Store.PreparedTransfer
        let source: String
    }

    /// An envelope after `open`: answered already (a known transfer's message, a refusal, or
    /// nothing for what is dropped), or a registration to admit.
    enum Opened {
        case answered(Answer?)
        case candidate(Candidate)
    }

    /// What a batch looks up once: the agent's own addresses, its tunnel source and next hops.
    struct AdmissionContext {
        var own: [IPAddress.Family: Set<IPAddress>] = [:]
        var tunnelSource: [IPAddress.Family: IPAddress] = [:]
        var nextHops: [IPAddress: MACAddress] = [:]
    }

    func receive(_ datagram: Datagram) {
        guard let envelope = rejections.envelope(of: datagram) else { return }
        if let answer = receive(envelope, from: "\(datagram.source)") {
            try? messenger.send(answer.bytes, to: answer.to ?? datagram.source)
            if let t = answer.admitted {
                CrashPoint.reached("registered-sent")
                announce([t])
            }
        }
    }

    /// One authenticated message from a TN (over UDP or the API). Returns the answer for its
    /// sender (registrations); other answers go to the transfer's control endpoint.
    func receive(_ envelope: Envelope, from source: String) -> Answer? {
        var context = AdmissionContext()
        switch open(envelope, from: source, context: &context) {
        case .answered(let answer): return answer
        case .candidate(let c): return admit([c])[0]
        }
    }

    /// Opens an envelope: a known transfer's message is handled at once (under the lock); a new
    /// registration is opened, authorized and checked without it. A registration carries a
    /// sealed key, and is opened without looking for a known transfer first: a retransmission
    /// is recognised by `admitLocked`, or here when it cannot be admitted (the first one was).
    func open(_ envelope: Envelope, from source: String, context: inout AdmissionContext) -> Opened {
        if envelope.sealedKey == nil, let handled = lock.withLock({ receiveKnown(envelope, from: source) }) {
            return .answered(handled)
        }
        func known() -> Answer?? { envelope.sealedKey == nil ? nil : lock.withLock { receiveKnown(envelope, from: source) } }
        let sender = envelope.sealedKey?.senderPublicKey
        // Only enrolled senders' static secrets are kept: anyone can send a sealed key.
        let enrolled = sender.map { (try? enrolments.current())?.device(publicKey: "\($0)") != nil } ?? false
        do {
            // Any sender's key opens the channel, so that an unenrolled device hears why it is
            // refused (sealed to it); `authorize` checks the enrolment before anything is written.
            let (channel, message) = try TransferChannel.opening(
                envelope, identity: configuration.identity, role: .agent, trusted: { _ in true },
                staticSecrets: enrolled ? staticSecrets : nil)
            guard case .register(let register) = message else {
                if let handled = known() { return .answered(handled) }
                rejections.record("unexpected", from: source, "\(message.type) for unknown transfer \(envelope.transfer)")
                return .answered(nil)
            }
            do {
                let device = try authorize(register, from: sender!, source: source)
                let t = try transfer(envelope.transfer, register, channel: channel, device: device, context: &context)
                let stored = try Store.PreparedTransfer(record(t), rules: t.rules)
                return .candidate(Candidate(envelope: envelope, transfer: t, stored: stored, source: source))
            } catch {
                if let handled = known() { return .answered(handled) }
                return .answered(refuse(envelope.transfer, register, channel, error))
            }
        } catch {
            if let handled = known() { return .answered(handled) }
            rejections.record(error, from: source)
        }
        return .answered(nil)
    }

    /// A known (or recently finished) transfer's message; nil if the transfer is unknown.
    /// Lock held.
    private func receiveKnown(_ envelope: Envelope, from source: String) -> Answer?? {
        guard let known = transfers[envelope.transfer] ?? finished.last(where: { $0.id == envelope.transfer }) else { return nil }
        do {
            let message = try known.channel.open(envelope)
            persist(known) // the TN's replay high-water mark moved
            return .some(handle(message, for: known, from: source))
        } catch {
            rejections.record(error, from: source)
        }
        return .some(nil)
    }

    /// A registration the agent will not or cannot carry out: nothing of it is left written;
    /// the TN is told why, sealed.
    func refuse(_ id: TransferID, _ register: Register, _ channel: TransferChannel, _ error: any Error) -> Answer? {
        logger.error("transfer \(id): registration refused: \(error)")
        metrics.registration(accepted: false)
        guard let bytes = try? channel.seal(.reject(Reject(reason: "\(error)"))) else { return nil }
        return Answer(bytes: bytes, accepted: false, to: register.control.socketAddress)
    }

    /// Lock held.
    private func handle(_ message: Message, for t: Transfer, from source: String) -> Answer? {
        switch message {
        case .register:
            // A retransmission: the first `registered` was lost (or we restarted before sending it).
            let to = t.register.control.socketAddress
            if t.state == .active {
                return (try? t.channel.seal(.registered(Registered()))).map { Answer(bytes: $0, accepted: true, to: to) }
            }
            if t.state == .failed {
                let reason = t.reason ?? "the agent rolled this registration back"
                return (try? t.channel.seal(.reject(Reject(reason: reason)))).map { Answer(bytes: $0, accepted: false, to: to) }
            }
        case .end(let end):
            logger.info("transfer \(t.id): the TN asks to end it (\(end.reason))")
            beginEnd(t, reason: WakeUp.Reason.requested)
        case .wakeUpAck:
            confirmWakeUp(t)
        default:
            rejections.record("unexpected", from: source, "\(message.type) for transfer \(t.id) in state \(t.state.rawValue)")
        }
        return nil
    }

    // MARK: - Admission

    /// Make-before-break, write-ahead: the transfers go into the store, then their rules and
    /// takeovers into the maps (from then on the data plane answers ARP/NDP for the addresses
    /// and steers), then the store marks them active, then the TNs are told; each address is
    /// announced once its answer is out. A crash between any two steps leaves the store
    /// knowing at least what the maps hold (see `recover`). One answer per candidate, in order;
    /// the `registered` answers are sealed after the lock is let go.
    func admit(_ candidates: [Candidate]) -> [Answer?] {
        var answers = [Answer?](repeating: nil, count: candidates.count)
        let active = lock.withLock { admitLocked(candidates, answers: &answers) }
        for (i, t) in active {
            do {
                answers[i] = Answer(bytes: try t.channel.seal(.registered(Registered())), accepted: true,
                                    to: t.register.control.socketAddress, admitted: t)
            } catch {
                // Sealing never fails for a channel we opened; if it did, the TN retransmits.
                logger.error("transfer \(t.id): sealing `registered` failed: \(error)")
            }
        }
        return answers
    }

    /// The writes of `admit`; returns the transfers made active, by candidate index. Lock held.
    private func admitLocked(_ candidates: [Candidate], answers: inout [Answer?]) -> [(index: Int, transfer: Transfer)] {
        var admitted: [(index: Int, transfer: Transfer)] = []
        var originals = Set<IPAddress>()
        for (i, c) in candidates.enumerated() {
            let t = c.transfer
            // Opened twice meanwhile (a retransmission racing the first): the first one won.
            if transfers[t.id] != nil || finished.contains(where: { $0.id == t.id }) {
                answers[i] = receiveKnown(c.envelope, from: c.source) ?? nil
                continue
            }
            if let other = takenOver[t.register.original] {
                answers[i] = refuse(t.id, t.register, t.channel,
                                    ControlError.conflict("\(t.register.original) is already taken over by transfer \(other)"))
                continue
            }
            guard originals.insert(t.register.original).inserted else {
                answers[i] = refuse(t.id, t.register, t.channel,
                                    ControlError.conflict("\(t.register.original) is taken over by another registration of the same batch"))
                continue
            }
            admitted.append((i, t))
        }
        guard !admitted.isEmpty else { return [] }
        CrashPoint.reached("authorized")

        do {
            try store.insert(admitted.map { candidates[$0.index].stored })
        } catch {
            for (i, t) in admitted { answers[i] = refuse(t.id, t.register, t.channel, error) }
            return []
        }
        CrashPoint.reached("stored")
        for (_, t) in admitted { track(t) }
        let failures = writeMaps(admitted.map(\.transfer))
        CrashPoint.reached("takeover-written")
        var active: [(index: Int, transfer: Transfer)] = []
        var failed: [Transfer] = []
        for (k, (i, t)) in admitted.enumerated() {
            if let error = failures[k] {
                fail(t, error)
                failed.append(t)
                answers[i] = refuse(t.id, t.register, t.channel, error)
            } else {
                t.mark("steering")
                t.state = .active
                t.mark("registered")
                active.append((i, t))
            }
        }
        if !failed.isEmpty {
            do { try store.update(failed.map(record)) } catch { logger.error("store: recording failed registrations: \(error)") }
        }
        guard !active.isEmpty else { return [] }
        do {
            try store.update(states: active.map { Store.StateChange(id: "\($0.transfer.id)", state: $0.transfer.state.rawValue,
                                                                     milestones: $0.transfer.milestones) })
        } catch {
            // The maps were written but the store does not say so: take them back out, so
            // that no TN is told of a transfer a restart would roll back.
            for (i, t) in active {
                unwrite(t)
                fail(t, error)
                answers[i] = refuse(t.id, t.register, t.channel, error)
            }
            return []
        }
        CrashPoint.reached("active")
        // Once per batch: a counter lookup per registration showed in the profile.
        metrics.registration(accepted: true, count: active.count)
        metrics.takeover(count: active.count)
        for (_, t) in active {
            logger.info("transfer \(t.id): took over \(t.register.original) for \(t.device) (\(t.register.mode.rawValue)), \(t.rules.count) session(s) → target \(t.register.targetAddress), others → TN \(t.register.temporary)")
        }
        return active
    }

    /// The transfer a registration asks for, checked against everything but the transfers
    /// there are (`admit` does that under the lock).
    private func transfer(_ id: TransferID, _ r: Register, channel: TransferChannel, device: String,
                          context: inout AdmissionContext) throws -> Transfer {
        try validate(r, context: &context)
        let family = r.original.family
        let toTarget: Forwarding
        let toTN: Forwarding
        switch r.mode {
        case .l2:
            toTarget = .l2(to: r.targetMAC, from: mac)
            toTN = .l2(to: r.tnMAC, from: mac)
        case .l3:
            // Only tunnels need the agent's own address: an L2 takeover works without one.
            let source = try context.tunnelSource[family] ?? NodeAddresses(interface: configuration.interface).global(family)
            context.tunnelSource[family] = source
            let hop = try context.nextHops[r.targetAddress] ?? nextHop(r.targetAddress)
            context.nextHops[r.targetAddress] = hop
            toTarget = .encap(to: r.targetAddress, from: source, nextHop: hop, sourceMAC: mac)
            toTN = .encap(to: r.temporary, from: source, nextHop: r.tnMAC, sourceMAC: mac)
        }
        let rules = r.sessions.map { SessionRule(match: $0, forward: toTarget) }
        let takeover = Takeover(address: r.original, defaultForward: toTN, agentMAC: mac, temporaryAddress: r.temporary)
        do {
            try takeover.validate()
            for rule in rules { try rule.validate() }
        } catch {
            throw ControlError.invalid("\(error)")
        }
        let t = Transfer(id: id, channel: channel, register: r, device: device, takeover: takeover,
                         idleTimeout: r.idleTimeout ?? configuration.idleTimeout)
        t.rules = rules
        return t
    }

    private func validate(_ r: Register, context: inout AdmissionContext) throws {
        let family = r.original.family
        guard r.temporary.family == family, r.targetAddress.family == family else {
            throw ControlError.invalid("original \(r.original), temporary \(r.temporary) and target \(r.targetAddress) must be of one family")
        }
        guard !r.sessions.isEmpty else { throw ControlError.invalid("no sessions to transfer") }
        var seen = Set<SessionMatch>(minimumCapacity: r.sessions.count)
        for s in r.sessions {
            guard s.destination == r.original else {
                throw ControlError.invalid("session \(s) is not addressed to the original address \(r.original)")
            }
            guard seen.insert(s).inserted else { throw ControlError.invalid("session \(s) is given twice") }
        }
        if context.own[family] == nil {
            context.own[family] = Set(try Netlink().addresses(interface: configuration.interface, family: family).map(\.address))
        }
        guard !context.own[family]!.contains(r.original) else { throw ControlError.forbidden("\(r.original) is the agent's own address") }
    }

    /// Writes the transfers' rules (one batch; one transfer at a time if the batch is refused,
    /// so that a full table refuses only what does not fit), then their takeovers. Returns the
    /// error of each transfer that is not in the maps; nothing of those is left there.
    private func writeMaps(_ ts: [Transfer]) -> [(any Error)?] {
        var failures = [(any Error)?](repeating: nil, count: ts.count)
        do {
            try dataPlane.addRules(ts.flatMap(\.rules))
        } catch let error where ts.count > 1 {
            logger.warning("\(ts.count) registrations' rules refused as a batch (\(error)); writing them one transfer at a time")
            for (k, t) in ts.enumerated() {
                do { try dataPlane.addRules(t.rules) } catch { failures[k] = error }
            }
        } catch {
            failures[0] = error
        }
        CrashPoint.reached("rules-written")
        for (k, t) in ts.enumerated() where failures[k] == nil {
            do {
                try dataPlane.setTakeover(t.takeover)
            } catch {
                for rule in t.rules { _ = try? dataPlane.removeRule(rule.match) }
                failures[k] = error
            }
        }
        return failures
    }

    /// Takes a transfer's entries out of the maps. Lock held.
    private func unwrite(_ t: Transfer) {
        for rule in t.rules { _ = try? dataPlane.removeRule(rule.match) }
        _ = try? dataPlane.removeTakeover(t.register.original)
    }

    /// A registration rolled back before the TN was told; the caller stores it. Lock held.
    private func fail(_ t: Transfer, _ error: any Error) {
        untrack(t)
        t.state = .failed
        t.reason = "\(error)"
        t.ended = Date()
        finished.append(t)
    }

    /// The MAC of the next hop towards `destination`, resolving it if the kernel has none yet.
    private func nextHop(_ destination: IPAddress) throws -> MACAddress {
        let netlink = try Netlink()
        let routes = try netlink.routes(family: destination.family)
            .filter { $0.destination.contains(destination) }
            .sorted { $0.destination.length > $1.destination.length }
        let hop = routes.first?.gateway ?? destination
        let deadline = ContinuousClock.now + .seconds(2)
        var poked = false
        while ContinuousClock.now < deadline {
            if let n = try netlink.neighbour(hop, interface: configuration.interface), let mac = n.mac,
               !n.state.intersection(.valid).isEmpty {
                return mac
            }
            if !poked {
                // Any datagram makes the kernel resolve the next hop.
                try? messenger.send([0], to: SocketAddress(destination, port: 9))
                poked = true
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        throw ControlError("cannot resolve the next hop \(hop) towards \(destination)")
    }
}
