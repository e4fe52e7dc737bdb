import BatonAPI
import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation
import Logging
import Synchronization

/// How a registration becomes a transfer, one at a time (a datagram) or many at once (a batch
/// through the API). Everything that needs no shared state runs here without the table's lock
/// and in parallel: opening the sealed key (X25519), authorizing, building and checking the
/// transfer, encoding its store record. The conflict check and the writes are the table's
/// (`TransferTable.admit`), a batch sharing them.
final class Admission: Sendable {
    /// An envelope after `open`: answered already (a known transfer's message, a refusal, or
    /// nothing for what is dropped), or a registration to admit.
    enum Opened {
        case answered(Answer?)
        case candidate(Candidate)
    }

    /// What a batch looks up once: the agent's own addresses, its tunnel source and next hops.
    struct Context {
        var own: [IPAddress.Family: Set<IPAddress>] = [:]
        var tunnelSource: [IPAddress.Family: IPAddress] = [:]
        var nextHops: [IPAddress: MACAddress] = [:]
        var targetMACs: [IPAddress: MACAddress] = [:]
        /// Whether a next hop the kernel has not resolved yet may be waited for (up to 2 s):
        /// through the API, whose calls run on a pool; not on a protocol socket's only reader.
        var mayWait = true
        /// The interface's MTU: tunnelled packets that would not fit are answered with ICMP.
        var mtu: Int?
        /// Switch mode: the bridge port of each target MAC.
        var switchPorts: [MACAddress: UInt32] = [:]
    }

    let configuration: AgentConfiguration
    let mac: MACAddress
    let table: TransferTable
    let enrolments: Enrolments
    /// Enrolled devices' static secrets: a registration then costs one X25519, not two.
    let staticSecrets: StaticSecrets
    let limiter: RateLimiter
    /// Before any public-key operation: the agent's mac1 check, and a bucket per source
    /// address (four times a device's rate and burst, at least 200/s and 400).
    let mac1: MAC1
    let sources: RateLimiter
    /// Messages of a known transfer, per transfer and type, before the AEAD: what a
    /// transfer's protocol needs is a few a second (retransmissions every 200 ms).
    let perTransfer = RateLimiter(rate: 50, burst: 100)
    /// Under load (`cookieThreshold`), sealed messages by datagram must carry a cookie.
    let cookies = CookieJar()
    let load: LoadMeter
    /// The next hops' MACs (the kernel's neighbour table, resolved when missing).
    let nextHops: NextHops
    /// Registrations seen lately (and the agent's start): a replay is dropped before it costs
    /// a rate-limit token or is judged again.
    let replays = ReplayWindow(window: 2 * TransferProtocol.defaultMaxClockSkew + 1)
    let rejections: Rejections
    let messenger: Messenger
    let logger: Logger

    init(configuration: AgentConfiguration, mac: MACAddress, table: TransferTable, enrolments: Enrolments,
         staticSecrets: StaticSecrets, rejections: Rejections, messenger: Messenger, logger: Logger) {
        self.configuration = configuration
        self.mac = mac
        self.table = table
        self.enrolments = enrolments
        self.staticSecrets = staticSecrets
        limiter = RateLimiter(rate: configuration.rateLimit, burst: configuration.rateBurst)
        mac1 = MAC1(recipient: configuration.identity.publicKey)
        sources = RateLimiter(rate: max(4 * configuration.rateLimit, 200), burst: max(4 * configuration.rateBurst, 400))
        load = LoadMeter(threshold: configuration.cookieThreshold)
        self.rejections = rejections
        self.messenger = messenger
        self.logger = logger
        nextHops = NextHops(interface: configuration.interface, messenger: messenger)
    }

    /// One message from a TN's datagram. Returns the answer for its sender (registrations);
    /// other answers go to the transfer's control endpoint.
    func receive(_ envelope: Envelope, from datagramSource: SocketAddress) -> Answer? {
        var context = Context()
        context.mayWait = false
        switch open(envelope, from: "\(datagramSource)", address: datagramSource.address, context: &context) {
        case .answered(let answer): return answer
        case .candidate(let c): return admit([c])[0]
        }
    }

    /// Opens an envelope: a known transfer's message is handled at once (by the table); a new
    /// registration is opened, authorized and checked without the table's lock. A registration
    /// carries a sealed key, and is opened without looking for a known transfer first: a
    /// retransmission is recognised by the table when it admits, or here when it cannot be
    /// admitted (the first one was). `address`: the datagram's source address, for its token
    /// bucket (nil through the API, whose callers are authenticated otherwise).
    func open(_ envelope: Envelope, from source: String, address: IPAddress?, context: inout Context) -> Opened {
        if envelope.sealedKey == nil {
            guard perTransfer.take("\(envelope.transfer) \(envelope.type)") else {
                rejections.record("flood", from: source, "over \(Int(perTransfer.rate)) \(envelope.type) messages/s for transfer \(envelope.transfer)")
                return .answered(nil)
            }
            if let handled = table.receiveKnown(envelope, from: source) { return .answered(handled) }
        }
        func known() -> Answer?? { envelope.sealedKey == nil ? nil : table.receiveKnown(envelope, from: source) }
        if envelope.sealedKey != nil {
            // Cheap refusals first: junk costs an HMAC; a source over its rate costs nothing
            // more. Only then the X25519.
            guard mac1.verifies(envelope) else {
                rejections.record(ProtocolError.badMAC1, from: source)
                return .answered(nil)
            }
            // Under load, a datagram's sender must show it receives at its address (a cookie
            // given there, in its mac2) before it costs an X25519; else it gets the cookie.
            if let address, load.count(), !cookies.verifies(envelope, from: address.wireBytes) {
                rejections.record("cookie", from: source, "under load: \(envelope.type) for transfer \(envelope.transfer) answered with a cookie")
                let payload = Cookie.sealReply(cookies.cookie(for: address.wireBytes), mac1: envelope.mac1!,
                                               responder: configuration.identity.publicKey)
                // To the protocol port of the address it came from (the TN sends from ports of
                // the moment; it listens on the protocol's).
                return .answered(Answer(bytes: Cookie.replyDatagram(transfer: envelope.transfer, payload: payload),
                                        accepted: false, port: configuration.port))
            }
            if let address, !sources.take("\(address)") {
                rejections.record("flood", from: source, "over \(Int(sources.rate)) sealed messages/s from \(address)")
                return .answered(nil)
            }
        }
        let sender = envelope.sealedKey?.senderPublicKey
        // Only enrolled senders' static secrets are kept: anyone can send a sealed key.
        let enrolled = sender.map { (try? enrolments.current())?.device(publicKey: "\($0)") != nil } ?? false
        do {
            // Any sender's key opens the channel, so that an unenrolled device hears why it is
            // refused (sealed to it); `authorize` checks the enrolment before anything is written.
            let (channel, message) = try TransferChannel.opening(
                envelope, identity: configuration.identity, role: .agent, trusted: { _ in true },
                staticSecrets: enrolled ? staticSecrets : nil, mac1Verified: true)
            guard case .register(let register) = message else {
                if let handled = known() { return .answered(handled) }
                rejections.record("unexpected", from: source, "\(message.type) for unknown transfer \(envelope.transfer)")
                return .answered(nil)
            }
            // Replays first, whatever became of the original (admitted, refused, rate-limited):
            // a replay takes no token and is never judged again, so it can neither drain the
            // device's bucket nor be admitted once what refused it has gone.
            switch replays.check(envelope) {
            case .new: break
            case .seen:
                rejections.record("replayed", from: source, "register for transfer \(envelope.transfer) seen before")
                return .answered(nil)
            case .beforeStart:
                rejections.record("replayed", from: source, "register for transfer \(envelope.transfer) sealed before the agent started")
                return .answered(nil)
            }
            // Not looked up in the table here: its lock is the admissions' (a batch's opens run
            // in parallel); a retransmission of a known transfer is recognised when it admits.
            do {
                let device = try authorize(register, from: sender!, source: source)
                let t = try transfer(envelope.transfer, register, channel: channel, device: device, context: &context)
                let stored = try Store.PreparedTransfer(t.record, rules: t.rules)
                return .candidate(Candidate(envelope: envelope, transfer: t, stored: stored, source: source))
            } catch let pending as NextHopPending {
                // Not refused: the TN retransmits in 200 ms, by when the kernel has resolved it.
                logger.info("transfer \(envelope.transfer): \(pending); answering its retransmission")
                return .answered(nil)
            } catch {
                if let handled = known() { return .answered(handled) }
                var answer = table.refuse(envelope.transfer, register, channel, error)
                // A refusal goes back to the address the datagram came from (the control port),
                // never to the control address it names (refused, that address is unchecked);
                // to an unenrolled sender, none.
                answer?.to = nil
                answer?.port = register.control.port
                if !enrolled { answer?.datagram = false }
                return .answered(answer)
            }
        } catch {
            if let handled = known() { return .answered(handled) }
            rejections.record(error, from: source)
        }
        return .answered(nil)
    }

    /// Admits the candidates (the table's writes), then seals the `registered` answers without
    /// the lock. One answer per candidate, in order.
    func admit(_ candidates: [Candidate]) -> [Answer?] {
        var answers = [Answer?](repeating: nil, count: candidates.count)
        for (i, t) in table.admit(candidates, answers: &answers) {
            do {
                answers[i] = Answer(bytes: try t.channel.seal(.registered(table.registered)), accepted: true,
                                    to: t.register.control.socketAddress, admitted: t)
            } catch {
                // Sealing never fails for a channel we opened; if it did, the TN retransmits.
                logger.error("transfer \(t.id): sealing `registered` failed: \(error)")
            }
        }
        return answers
    }

    /// The transfer a registration asks for, checked against everything but the transfers
    /// there are (the table does that under its lock).
    private func transfer(_ id: TransferID, _ r: Register, channel: TransferChannel, device: String,
                          context: inout Context) throws -> AgentTransfer {
        try validate(r, context: &context)
        let family = r.original.family
        let toTarget: Forwarding
        let toTN: Forwarding
        switch r.mode {
        case .l2 where configuration.mode == .switch:
            // Inline: out of the bridge port the target's MAC was learned on (resolving the
            // target first makes it answer through the bridge, which learns its port).
            let known = try context.targetMACs[r.targetAddress] ?? nextHops.neighbourMAC(r.targetAddress, wait: context.mayWait)
            context.targetMACs[r.targetAddress] = known
            toTarget = .l2(to: r.targetMAC, from: mac, ifindex: try switchPort(of: r.targetMAC, context: &context))
            toTN = .l2(to: r.tnMAC, from: mac)
        case .l2:
            toTarget = .l2(to: r.targetMAC, from: mac)
            toTN = .l2(to: r.tnMAC, from: mac)
        case .l3 where configuration.mode == .switch:
            throw ControlError.forbidden("the agent steers inline (--mode switch): a transfer is l2, the target on one of the switch's ports")
        case .l3:
            // Only tunnels need the agent's own address: an L2 takeover works without one.
            let source = try context.tunnelSource[family] ?? NodeAddresses(interface: configuration.interface).global(family)
            context.tunnelSource[family] = source
            let hop = try context.nextHops[r.targetAddress] ?? nextHops.mac(toward: r.targetAddress, wait: context.mayWait)
            context.nextHops[r.targetAddress] = hop
            let linkMTU = try context.mtu ?? Netlink().link(named: configuration.interface).mtu
            context.mtu = linkMTU
            // Below what the family needs (a misconfigured link): not checked, as before.
            let mtu = linkMTU >= Int(Forwarding.minimumMTU(family)) ? UInt16(clamping: linkMTU) : nil
            toTarget = .encap(to: r.targetAddress, from: source, nextHop: hop, sourceMAC: mac, mtu: mtu)
            toTN = .encap(to: r.temporary, from: source, nextHop: r.tnMAC, sourceMAC: mac, mtu: mtu)
        }
        for (what, m) in [("the target's", r.targetMAC), ("the TN's", r.tnMAC)] where m == mac {
            throw ControlError.forbidden("\(what) MAC \(m) is the agent's own: it would loop")
        }
        if r.mode == .l2 {
            // The agent steers to the target's MAC as it knows it, not as the TN claims it.
            let known = try context.targetMACs[r.targetAddress] ?? nextHops.neighbourMAC(r.targetAddress, wait: context.mayWait)
            context.targetMACs[r.targetAddress] = known
            guard known == r.targetMAC else {
                throw ControlError.forbidden("the target MAC \(r.targetMAC) is not \(r.targetAddress)'s on \(configuration.interface) (\(known))")
            }
        }
        let rules = r.sessions.map { SessionRule(match: $0, forward: toTarget) }
        let takeover = Takeover(address: r.original, defaultForward: toTN, agentMAC: mac, temporaryAddress: r.temporary)
        do {
            try takeover.validate()
            for rule in rules { try rule.validate() }
        } catch {
            throw ControlError.invalid("\(error)")
        }
        let t = AgentTransfer(id: id, channel: channel, register: r, device: device, takeover: takeover,
                              idleTimeout: r.idleTimeout ?? configuration.idleTimeout)
        t.rules = rules
        return t
    }

    private func validate(_ r: Register, context: inout Context) throws {
        let family = r.original.family
        guard r.temporary.family == family, r.targetAddress.family == family else {
            throw ControlError.invalid("original \(r.original), temporary \(r.temporary) and target \(r.targetAddress) must be of one family")
        }
        guard !r.sessions.isEmpty else { throw ControlError.invalid("no sessions to transfer") }
        if let idle = r.idleTimeout {
            do { try Limits.check(idle, Limits.idleTimeout, "idleTimeout", unit: "seconds") } catch { throw ControlError.invalid(error.description) }
        }
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

    /// Switch mode: the bridge port (ifindex) the target's MAC was learned on, after making
    /// the target answer (ARP/NDP) if the bridge has not seen it yet.
    private func switchPort(of targetMAC: MACAddress, context: inout Context) throws -> UInt32 {
        if let p = context.switchPorts[targetMAC] { return p }
        let netlink = try Netlink()
        guard let port = try netlink.bridgePort(of: targetMAC, bridge: configuration.interface) else {
            throw ControlError.forbidden("the target's MAC \(targetMAC) is on no port of \(configuration.interface) (the bridge has not seen it)")
        }
        let portName = try netlink.link(index: port).name
        guard configuration.switchPorts.isEmpty || configuration.switchPorts.contains(portName) else {
            throw ControlError.forbidden("the target's MAC \(targetMAC) is on a port the agent does not steer from")
        }
        context.switchPorts[targetMAC] = UInt32(port)
        return UInt32(port)
    }
}

/// Sealed messages a second by datagram, over the last whole second: past `threshold` the
/// agent is under load (0: always).
final class LoadMeter: Sendable {
    let threshold: Int
    private struct Window {
        var start = ContinuousClock.now
        var count = 0
        var last = 0
    }
    private let window = Mutex(Window())

    init(threshold: Int) { self.threshold = threshold }

    /// Counts one message; whether the agent is under load.
    func count() -> Bool {
        guard threshold > 0 else { return true }
        return window.withLock { w in
            let now = ContinuousClock.now
            if now - w.start >= .seconds(1) {
                w.last = now - w.start >= .seconds(2) ? 0 : w.count
                w.count = 0
                w.start = now
            }
            w.count += 1
            return max(w.last, w.count) > threshold
        }
    }
}

/// A registration's next hop is being resolved (see `Admission.neighbourMAC`).
struct NextHopPending: Error, CustomStringConvertible {
    let hop: IPAddress
    let destination: IPAddress
    var description: String { "the next hop \(hop) towards \(destination) is being resolved" }
}
