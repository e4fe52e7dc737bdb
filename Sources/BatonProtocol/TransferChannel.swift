import BatonModel
import Crypto
import Foundation
import Synchronization

/// One transfer's message protection at one node: seals outgoing messages and
/// opens incoming ones, with replay protection.
///
/// Keys: the TN makes the transfer's root key and gives each peer only its pair's key,
/// HKDF(root, "baton-pair-v2 tn-target") to the target (sealed in the `offer`) and
/// HKDF(root, "baton-pair-v2 tn-agent") to the agent (in the `register`). Each direction of a
/// pair has a message key of its own, HKDF(pair key, "baton-msg-v2 SENDER>RECIPIENT"). So the
/// target cannot seal anything the agent or the TN would take as the other pair's, and a
/// message cannot be reflected back to its sender. `key` is the key this role holds: the root
/// on the TN, its pair's key on the target and the agent (what `storedKey` gives back).
///
/// Counters: every channel of a process takes its send counters from `CounterSource.shared`,
/// one increasing count for all of them, so no two messages a node seals under one key share
/// a counter (two channels for one transfer included). A daemon raises it at start past the
/// reservation it persisted in the previous run (`CounterSource.advance`), so a restart, even
/// with the wall clock stepped back, never counts below what was sent before.
///
/// Thread-safe.
public final class TransferChannel: Sendable {
    public let transfer: TransferID
    /// The local role: the role of every message sealed here; messages claiming it are refused.
    public let role: Role
    let sessionKey: SessionKey
    /// The message keys of the directions this role takes part in.
    private let messageKeys: [Direction: SymmetricKey]
    private let pairKeys: [Role: SessionKey]
    private let counters: CounterSource
    private let state: Mutex<State>

    struct Direction: Hashable {
        var sender: Role
        var recipient: Role
    }

    private struct State {
        var highest: [Role: UInt64] = [:]
        /// Unix ms: messages stamped earlier are refused (set when a channel is restored).
        var notBefore: UInt64 = 0
        var maxClockSkew: Double = TransferProtocol.defaultMaxClockSkew
        /// Pair keys sealed for a recipient ahead of (or at) the first message to it.
        var sealed: [Role: Sealed] = [:]
    }

    private struct Sealed {
        var recipientKey: PublicKey
        var sender: PublicKey
        var key: SealedKey
    }

    /// `key` is what `role` holds: the root key on the TN, the pair's key elsewhere.
    public init(transfer: TransferID, key: SessionKey, role: Role, counters: CounterSource = .shared) {
        self.transfer = transfer
        self.role = role
        self.counters = counters
        sessionKey = key
        var pairs: [Role: SessionKey] = [:]
        if role == .tn {
            for peer in [Role.target, .agent] { pairs[peer] = Self.pairKey(root: key, peer: peer) }
        } else {
            pairs[role] = key
        }
        pairKeys = pairs
        var keys: [Direction: SymmetricKey] = [:]
        for (peer, pair) in pairs {
            for d in [Direction(sender: .tn, recipient: peer), Direction(sender: peer, recipient: .tn)] {
                keys[d] = HKDF<SHA256>.deriveKey(inputKeyMaterial: pair.key, info: Array("baton-msg-v2 \(d.sender.name)>\(d.recipient.name)".utf8),
                                                 outputByteCount: 32)
            }
        }
        messageKeys = keys
        state = Mutex(State())
    }

    /// The key the TN gives `peer` (target or agent).
    static func pairKey(root: SessionKey, peer: Role) -> SessionKey {
        SessionKey(key: HKDF<SHA256>.deriveKey(inputKeyMaterial: root.key, info: Array("baton-pair-v2 tn-\(peer.name)".utf8),
                                               outputByteCount: 32))
    }

    /// The largest accepted |timestamp − now|, in seconds (default 30).
    public var maxClockSkew: Double {
        get { state.withLock { $0.maxClockSkew } }
        set { state.withLock { $0.maxClockSkew = newValue } }
    }

    /// The highest counter accepted so far from `sender`, if any.
    public func highestAccepted(from sender: Role) -> UInt64? {
        state.withLock { $0.highest[sender] }
    }

    func restore(highest counter: UInt64, from sender: Role) {
        state.withLock { s in s.highest[sender] = max(s.highest[sender] ?? 0, counter) }
    }

    func restoreNotBefore(_ ms: UInt64) {
        state.withLock { s in s.notBefore = max(s.notBefore, ms) }
    }

    /// The counter the next sealed message would carry (any channel of the process may take it first).
    public var nextCounter: UInt64 { counters.peek }

    /// Seals `message` into a datagram with the next counter. With
    /// `sealingKeyFor`, the session key is sealed for that recipient by
    /// `identity` and carried in the header (the first message to the target
    /// and to the agent, and its retransmissions).
    /// `to` names the recipient where the type does not (the TN's `reject`); other messages
    /// go to the one role their type travels to from this one.
    /// `cookie`: one the recipient (under load) gave this sender: the datagram then ends with
    /// a mac2 too (`Cookie`; only with `sealingKeyFor`).
    public func seal(_ message: Message, to recipient: Role? = nil, sealingKeyFor recipientKey: PublicKey? = nil,
                     identity: NodeIdentity? = nil, cookie: [UInt8]? = nil, now: Date = Date()) throws(ProtocolError) -> [UInt8] {
        let to = try self.recipient(of: message.type, recipient)
        let body = try message.encodeBody()
        var sealedKey: (key: SealedKey, mac1: MAC1)?
        if let recipientKey {
            guard let identity else { throw .missingIdentity }
            sealedKey = (try sealedPairKey(to: to, for: recipientKey, identity: identity, type: message.type), MAC1(recipient: recipientKey))
        }
        return try seal(type: message.type, to: to, body: body, sealedKey: sealedKey, cookie: cookie, now: now)
    }

    /// Seals the pair key of `recipient` for `recipientKey` now (a key pair generated, two
    /// X25519), so that the first message to it costs only its encryption: the TN prepares
    /// the agent's while the target works on the offer. The sealed key is made once per
    /// recipient and carried by every datagram that needs it (the first message and its
    /// retransmissions); each message is still sealed under a fresh counter.
    public func prepareSealedKey(to recipient: Role, for recipientKey: PublicKey, identity: NodeIdentity) throws(ProtocolError) {
        _ = try sealedPairKey(to: recipient, for: recipientKey, identity: identity, type: nil)
    }

    private func sealedPairKey(to recipient: Role, for recipientKey: PublicKey, identity: NodeIdentity,
                               type: MessageType?) throws(ProtocolError) -> SealedKey {
        if let made = state.withLock({ $0.sealed[recipient] }), made.recipientKey == recipientKey, made.sender == identity.publicKey {
            return made.key
        }
        // Only the TN gives pair keys away (a peer's channel holds its own pair's key).
        guard role == .tn, recipient != .tn, let pair = pairKeys[recipient] else {
            // Prepared ahead: named by the message that carries a sealed key to that recipient.
            throw .wrongRole(type: type ?? (recipient == .agent ? .register : .offer), sender: role, recipient: recipient)
        }
        let key = try SealedKey.seal(pair, for: recipientKey, from: identity, transfer: transfer)
        state.withLock { $0.sealed[recipient] = Sealed(recipientKey: recipientKey, sender: identity.publicKey, key: key) }
        return key
    }

    private func recipient(of type: MessageType, _ given: Role?) throws(ProtocolError) -> Role {
        if let given {
            guard type.travels(from: role, to: given) else { throw .wrongRole(type: type, sender: role, recipient: given) }
            return given
        }
        let candidates = Role.allCases.filter { type.travels(from: role, to: $0) && messageKeys[Direction(sender: role, recipient: $0)] != nil }
        guard candidates.count == 1 else { throw .wrongRole(type: type, sender: role, recipient: nil) }
        return candidates[0]
    }

    /// Seals any body under `type` (tests use it for authentic but malformed bodies).
    func seal(type: MessageType, to recipient: Role? = nil, body: [UInt8], sealedKey: (key: SealedKey, mac1: MAC1)?,
              cookie: [UInt8]? = nil, now: Date) throws(ProtocolError) -> [UInt8] {
        let to = try self.recipient(of: type, recipient)
        guard let messageKey = messageKeys[Direction(sender: role, recipient: to)] else {
            throw .wrongRole(type: type, sender: role, recipient: to)
        }
        let cookie = sealedKey == nil ? nil : cookie
        let size = Envelope.fixedHeaderSize + (sealedKey == nil ? 0 : SealedKey.size + MAC1.size) + body.count + Envelope.tagSize
            + (cookie == nil ? 0 : Cookie.macSize)
        guard size <= TransferProtocol.maxDatagramSize else { throw .tooLarge(size) }
        guard let counter = counters.next() else { throw .counterExhausted }
        let header = Envelope.header(type: type, sender: role, transfer: transfer, counter: counter,
                                     timestamp: Envelope.timestamp(now), sealedKey: sealedKey?.key, mac2: cookie != nil)
        do {
            let box = try ChaChaPoly.seal(body, using: messageKey, nonce: Self.nonce(role: role, counter: counter),
                                          authenticating: header)
            let ciphertext = Array(box.ciphertext) + Array(box.tag)
            guard let mac1 = sealedKey?.mac1.compute(header: header, ciphertext: ciphertext) else { return header + ciphertext }
            let mac2 = cookie.map { Cookie.mac2(cookie: $0, header: header, ciphertext: ciphertext, mac1: mac1) } ?? []
            return header + ciphertext + mac1 + mac2
        } catch {
            throw .malformedBody("sealing failed: \(error)")
        }
    }

    /// Authenticates and decrypts `envelope`, then checks, in this order: the
    /// message travels from its sender's role to this channel's role; its
    /// timestamp is within `maxClockSkew` of `now`; its counter is above the
    /// highest accepted from that role. Only then is the counter recorded.
    /// A datagram refused for any reason but `.authenticationFailed` (or
    /// `.wrongTransfer`) was authentic.
    public func open(_ envelope: Envelope, now: Date = Date()) throws(ProtocolError) -> Message {
        guard envelope.transfer == transfer else { throw .wrongTransfer(expected: transfer, got: envelope.transfer) }
        // The key of the direction the header claims: a sender this role shares no key with
        // (the target claiming to be the agent) cannot have sealed it. A datagram claiming this
        // role is tried under this role's own outgoing keys: one of ours reflected back
        // authenticates there, and is refused below as misdirected.
        let keys = envelope.sender == role
            ? messageKeys.filter { $0.key.sender == role }.map(\.value)
            : messageKeys[Direction(sender: envelope.sender, recipient: role)].map { [$0] } ?? []
        var opened: [UInt8]?
        let n = envelope.ciphertext.count - Envelope.tagSize
        if let box = try? ChaChaPoly.SealedBox(nonce: Self.nonce(role: envelope.sender, counter: envelope.counter),
                                               ciphertext: envelope.ciphertext[0..<n], tag: envelope.ciphertext[n...]) {
            for key in keys where opened == nil {
                opened = try? Array(ChaChaPoly.open(box, using: key, authenticating: envelope.header))
            }
        }
        guard let body = opened else { throw .authenticationFailed }
        guard envelope.type.travels(from: envelope.sender, to: role) else {
            throw .wrongRole(type: envelope.type, sender: envelope.sender, recipient: role)
        }
        return try state.withLock { (s: inout State) throws(ProtocolError) -> Message in
            let skew = Double(envelope.timestamp) / 1000 - now.timeIntervalSince1970
            guard abs(skew) <= s.maxClockSkew else { throw .stale(skew: skew) }
            guard envelope.timestamp >= s.notBefore else { throw .sealedBeforeRestart(timestamp: envelope.timestamp) }
            if let highest = s.highest[envelope.sender], envelope.counter <= highest {
                throw .replayed(counter: envelope.counter, highest: highest)
            }
            let message = try Message.decode(envelope.type, body: body)
            s.highest[envelope.sender] = envelope.counter
            return message
        }
    }

    /// For the first message of a transfer, which carries a sealed key (the
    /// offer at the target, the register at the agent): checks its mac1 (`MAC1`,
    /// before any public-key operation) and that the sealer's static key is
    /// trusted, opens the session key with `identity`,
    /// makes the channel for `role` and opens the message with it.
    /// Call it only for a transfer ID this node has no channel for (and has not
    /// had one for recently); otherwise use that channel's `open`, or a replayed
    /// first message would create a second channel with fresh replay state.
    public static func opening(_ envelope: Envelope, identity: NodeIdentity, role: Role,
                               trusted: (PublicKey) -> Bool, staticSecrets: StaticSecrets? = nil, mac1Verified: Bool = false,
                               now: Date = Date()) throws(ProtocolError) -> (TransferChannel, Message) {
        guard let sealed = envelope.sealedKey else { throw .missingSealedKey }
        // The cheap check first: junk costs an HMAC, not two X25519.
        // (`mac1Verified`: the caller checked it already, with a rate limit after it.)
        guard mac1Verified || MAC1(recipient: identity.publicKey).verifies(envelope) else { throw .badMAC1 }
        guard trusted(sealed.senderPublicKey) else { throw .untrustedSender(sealed.senderPublicKey) }
        let key = try sealed.open(with: identity, transfer: envelope.transfer, staticSecrets: staticSecrets)
        let channel = TransferChannel(transfer: envelope.transfer, key: key, role: role)
        let message = try channel.open(envelope, now: now)
        return (channel, message)
    }

    /// role ‖ 0 0 0 ‖ counter (big-endian).
    private static func nonce(role: Role, counter: UInt64) -> ChaChaPoly.Nonce {
        var n: [UInt8] = [role.rawValue, 0, 0, 0]
        for s in stride(from: 56, through: 0, by: -8) { n.append(UInt8(truncatingIfNeeded: counter >> UInt64(s))) }
        return try! ChaChaPoly.Nonce(data: n)
    }
}
