import Crypto
import Foundation
import Synchronization

/// WireGuard's cookie, for a responder under load (the agent): mac1 proves only knowledge of
/// the responder's public key, which is no secret, so a flood with valid mac1s from spoofed
/// addresses would still cost an X25519 each. Under load the responder opens a sealed message
/// only if it also carries
///
///     mac2 = HMAC-SHA256(key = cookie, header ‖ ciphertext ‖ mac1)[0..<16]
///
/// where the cookie is one it handed to the sender's IP address:
///
///     cookie = HMAC-SHA256(key = secret, source IP address)[0..<16]
///
/// with a secret that changes every two minutes (the one before still counts). A message
/// without a valid mac2 is answered with a `cookieReply` to its source address, which only a
/// sender that receives at that address can use, and is dropped: the price of a flood from
/// spoofed addresses is an HMAC and a small reply, never an X25519. The reply carries the
/// cookie encrypted (ChaCha20-Poly1305, a random nonce) under a key derived from the
/// responder's public key, with the message's mac1 as additional data, so that it is good only
/// to the sender of that message. The sender then seals its retransmissions with mac2.
public enum Cookie {
    public static let size = 16
    public static let macSize = 16
    /// The secret's lifetime; a cookie made with the one before is still accepted.
    public static let rotation: Duration = .seconds(120)

    /// mac2 over a sealed message's header, ciphertext and mac1.
    public static func mac2(cookie: [UInt8], header: [UInt8], ciphertext: [UInt8], mac1: [UInt8]) -> [UInt8] {
        var h = HMAC<SHA256>(key: SymmetricKey(data: cookie))
        h.update(data: header)
        h.update(data: ciphertext)
        h.update(data: mac1)
        return Array(h.finalize().prefix(macSize))
    }

    private static func replyKey(_ responder: PublicKey) -> SymmetricKey {
        SymmetricKey(data: SHA256.hash(data: Array("baton-cookie-v2".utf8) + responder.bytes))
    }

    /// The `cookieReply` payload (nonce, sealed cookie, tag: 44 bytes) for the message whose
    /// mac1 is `mac1`, from `responder`.
    public static func sealReply(_ cookie: [UInt8], mac1: [UInt8], responder: PublicKey) -> [UInt8] {
        let nonce = ChaChaPoly.Nonce()
        // Sealing with a fresh random nonce and a 32-byte key cannot fail.
        let box = try! ChaChaPoly.seal(cookie, using: replyKey(responder), nonce: nonce, authenticating: mac1)
        return Array(nonce) + Array(box.ciphertext) + Array(box.tag)
    }

    /// The cookie in a `cookieReply` payload, if it was made for the message whose mac1 is
    /// `mac1` by `responder`; nil otherwise (forged, or for another message).
    public static func openReply(_ payload: [UInt8], mac1: [UInt8], responder: PublicKey) -> [UInt8]? {
        guard payload.count == 12 + size + 16, let nonce = try? ChaChaPoly.Nonce(data: payload[0..<12]),
              let box = try? ChaChaPoly.SealedBox(nonce: nonce, ciphertext: payload[12..<(12 + size)], tag: payload[(12 + size)...]),
              let cookie = try? ChaChaPoly.open(box, using: replyKey(responder), authenticating: mac1) else { return nil }
        return Array(cookie)
    }

    /// A `cookieReply` datagram: the envelope header (agent, the message's transfer, counter
    /// 0, flags 0) and the payload. Not a channel message: it is authenticated by mac1 only.
    public static func replyDatagram(transfer: TransferID, payload: [UInt8], now: Date = Date()) -> [UInt8] {
        Envelope.header(type: .cookieReply, sender: .agent, transfer: transfer, counter: 0,
                        timestamp: Envelope.timestamp(now), sealedKey: nil) + payload
    }
}

/// The responder's side: the rotating secret, the cookies it hands out and the mac2s it checks.
public final class CookieJar: Sendable {
    private struct Secrets {
        var current: SymmetricKey
        var previous: SymmetricKey?
        var since: ContinuousClock.Instant
    }
    private let secrets: Mutex<Secrets>

    public init() {
        secrets = Mutex(Secrets(current: SymmetricKey(size: .bits256), previous: nil, since: .now))
    }

    private func keys() -> (SymmetricKey, SymmetricKey?) {
        secrets.withLock { s in
            if ContinuousClock.now - s.since >= Cookie.rotation {
                s.previous = s.current
                s.current = SymmetricKey(size: .bits256)
                s.since = .now
            }
            return (s.current, s.previous)
        }
    }

    private static func cookie(_ key: SymmetricKey, _ address: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: address, using: key).prefix(Cookie.size))
    }

    /// The cookie for a sender at `address` (its IP address's bytes).
    public func cookie(for address: [UInt8]) -> [UInt8] { Self.cookie(keys().0, address) }

    /// Whether `envelope` carries a mac2 made with a cookie this jar gave to `address` lately.
    public func verifies(_ envelope: Envelope, from address: [UInt8]) -> Bool {
        guard let mac2 = envelope.mac2, let mac1 = envelope.mac1 else { return false }
        let (current, previous) = keys()
        for key in [current, previous].compactMap({ $0 }) {
            let expected = Cookie.mac2(cookie: Self.cookie(key, address), header: envelope.header,
                                       ciphertext: envelope.ciphertext, mac1: mac1)
            if zip(expected, mac2).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 { return true }
        }
        return false
    }
}
