import BatonModel
import Crypto
import Foundation
import Synchronization

/// One transfer's message protection at one node: seals outgoing messages and
/// opens incoming ones under the session key, with replay protection.
///
/// Keep exactly one channel per transfer on each node, used for every peer of
/// that transfer: the nonce is (role, counter), so two channels of one role
/// under one key must never both send. Send counters start at the Unix time in
/// nanoseconds when the channel is made, so a channel re-created after a
/// restart still counts above anything sent before.
///
/// Thread-safe.
public final class TransferChannel: Sendable {
    public let transfer: TransferID
    /// The local role: the role of every message sealed here; messages claiming it are refused.
    public let role: Role
    let sessionKey: SessionKey
    private let messageKey: SymmetricKey
    private let state: Mutex<State>

    private struct State {
        var nextCounter: UInt64
        var highest: [Role: UInt64] = [:]
        var maxClockSkew: Double = TransferProtocol.defaultMaxClockSkew
    }

    public init(transfer: TransferID, key: SessionKey, role: Role) {
        self.transfer = transfer
        self.role = role
        sessionKey = key
        messageKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: key.key, info: Array("baton-msg-v1".utf8), outputByteCount: 32)
        let ns = Date().timeIntervalSince1970 * 1e9
        state = Mutex(State(nextCounter: ns >= 1 && ns < 1.8e19 ? UInt64(ns) : 1))
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

    /// The counter the next sealed message will carry.
    public var nextCounter: UInt64 { state.withLock { $0.nextCounter } }

    /// Seals `message` into a datagram with the next counter. With
    /// `sealingKeyFor`, the session key is sealed for that recipient by
    /// `identity` and carried in the header (the first message to the target
    /// and to the agent, and its retransmissions).
    public func seal(_ message: Message, sealingKeyFor recipient: PublicKey? = nil, identity: NodeIdentity? = nil,
                     now: Date = Date()) throws(ProtocolError) -> [UInt8] {
        guard message.type.isSent(by: role) else { throw .wrongRole(type: message.type, sender: role, recipient: nil) }
        let body = try message.encodeBody()
        var sealedKey: SealedKey?
        if let recipient {
            guard let identity else { throw .missingIdentity }
            sealedKey = try SealedKey.seal(sessionKey, for: recipient, from: identity, transfer: transfer)
        }
        return try seal(type: message.type, body: body, sealedKey: sealedKey, now: now)
    }

    /// Seals any body under `type` (tests use it for authentic but malformed bodies).
    func seal(type: MessageType, body: [UInt8], sealedKey: SealedKey?, now: Date) throws(ProtocolError) -> [UInt8] {
        let size = Envelope.fixedHeaderSize + (sealedKey == nil ? 0 : SealedKey.size) + body.count + Envelope.tagSize
        guard size <= TransferProtocol.maxDatagramSize else { throw .tooLarge(size) }
        let counter: UInt64 = try state.withLock { (s: inout State) throws(ProtocolError) -> UInt64 in
            guard s.nextCounter < .max else { throw .counterExhausted }
            defer { s.nextCounter += 1 }
            return s.nextCounter
        }
        let ms = now.timeIntervalSince1970 * 1000
        let timestamp: UInt64 = ms <= 0 || ms.isNaN ? 0 : ms >= 1.8e19 ? .max : UInt64(ms)
        let header = Envelope.header(type: type, sender: role, transfer: transfer, counter: counter,
                                     timestamp: timestamp, sealedKey: sealedKey)
        do {
            let box = try ChaChaPoly.seal(body, using: messageKey, nonce: Self.nonce(role: role, counter: counter),
                                          authenticating: header)
            return header + Array(box.ciphertext) + Array(box.tag)
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
        let body: [UInt8]
        do {
            let n = envelope.ciphertext.count - Envelope.tagSize
            let box = try ChaChaPoly.SealedBox(nonce: Self.nonce(role: envelope.sender, counter: envelope.counter),
                                               ciphertext: envelope.ciphertext[0..<n],
                                               tag: envelope.ciphertext[n...])
            body = Array(try ChaChaPoly.open(box, using: messageKey, authenticating: envelope.header))
        } catch {
            throw .authenticationFailed
        }
        guard envelope.type.travels(from: envelope.sender, to: role) else {
            throw .wrongRole(type: envelope.type, sender: envelope.sender, recipient: role)
        }
        return try state.withLock { (s: inout State) throws(ProtocolError) -> Message in
            let skew = Double(envelope.timestamp) / 1000 - now.timeIntervalSince1970
            guard abs(skew) <= s.maxClockSkew else { throw .stale(skew: skew) }
            if let highest = s.highest[envelope.sender], envelope.counter <= highest {
                throw .replayed(counter: envelope.counter, highest: highest)
            }
            let message = try Message.decode(envelope.type, body: body)
            s.highest[envelope.sender] = envelope.counter
            return message
        }
    }

    /// For the first message of a transfer, which carries a sealed key (the
    /// offer at the target, the register at the agent): checks that the
    /// sealer's static key is trusted, opens the session key with `identity`,
    /// makes the channel for `role` and opens the message with it.
    /// Call it only for a transfer ID this node has no channel for (and has not
    /// had one for recently); otherwise use that channel's `open`, or a replayed
    /// first message would create a second channel with fresh replay state.
    public static func opening(_ envelope: Envelope, identity: NodeIdentity, role: Role,
                               trusted: (PublicKey) -> Bool, staticSecrets: StaticSecrets? = nil,
                               now: Date = Date()) throws(ProtocolError) -> (TransferChannel, Message) {
        guard let sealed = envelope.sealedKey else { throw .missingSealedKey }
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
