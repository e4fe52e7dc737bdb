import Crypto
import Foundation

/// A cheap check before any public-key operation (WireGuard's mac1 is the model): every
/// message with a sealed key ends with
///
///     mac1 = HMAC-SHA256(key = SHA-256("baton-mac1-v2" ‖ recipient's static public key),
///                        header ‖ ciphertext)[0..<16]
///
/// so that a receiver drops a datagram not made for it, junk included, for the price of one
/// HMAC instead of two X25519. It proves only knowledge of the recipient's public key, which
/// its peers have and an off-path flooder does not; what authenticates is the sealed key.
public struct MAC1: Sendable {
    public static let size = 16
    private let key: SymmetricKey

    /// The check for messages to `recipient`.
    public init(recipient: PublicKey) {
        key = SymmetricKey(data: SHA256.hash(data: Array("baton-mac1-v2".utf8) + recipient.bytes))
    }

    public func compute(header: [UInt8], ciphertext: [UInt8]) -> [UInt8] {
        var h = HMAC<SHA256>(key: key)
        h.update(data: header)
        h.update(data: ciphertext)
        return Array(h.finalize().prefix(Self.size))
    }

    /// Whether `envelope` carries a sealed key with a mac1 made for this recipient.
    public func verifies(_ envelope: Envelope) -> Bool {
        guard let mac1 = envelope.mac1, mac1.count == Self.size else { return false }
        let expected = compute(header: envelope.header, ciphertext: envelope.ciphertext)
        // Constant time: no early exit on the first differing byte.
        return zip(expected, mac1).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
