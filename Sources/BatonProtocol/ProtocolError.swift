import BatonModel
/// Why a datagram was refused, or a message could not be sealed. Every
/// description is one line.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Longer than `TransferProtocol.maxDatagramSize`.
    case tooLarge(Int)
    /// Shorter than its header says it must be.
    case truncated(length: Int, needed: Int)
    /// Does not start with "BATN".
    case badMagic
    case unsupportedVersion(UInt8)
    case unknownType(UInt8)
    case unknownRole(UInt8)
    /// Flag bits this version does not define.
    case unsupportedFlags(UInt8)
    /// The AEAD tag does not verify: forged, corrupted, or sealed under another session key.
    case authenticationFailed
    /// A message with a sealed key whose mac1 is not this node's (`MAC1`): junk, or made for
    /// another node. Found before any public-key operation.
    case badMAC1
    /// The sealed session key does not open with this node's key: not sealed
    /// for this node, sealed by another sender key, or tampered with.
    case badSealedKey
    /// The first message of a transfer must carry a sealed session key.
    case missingSealedKey
    /// The sealed key's sender is not one of this node's trusted peers.
    case untrustedSender(PublicKey)
    /// The envelope belongs to another transfer than the channel's.
    case wrongTransfer(expected: TransferID, got: TransferID)
    /// This message type does not travel from `sender` to `recipient` (nil when sealing);
    /// also a message that claims the receiving channel's own role.
    case wrongRole(type: MessageType, sender: Role, recipient: Role?)
    /// The counter is not above the highest accepted from that role: a replay or a reordered old message.
    case replayed(counter: UInt64, highest: UInt64)
    /// Sealed before this node restored the channel (Unix ms): it may be a replay of a message
    /// accepted before the restart, whose high-water mark is not stored message by message.
    case sealedBeforeRestart(timestamp: UInt64)
    /// The timestamp is further than the allowed skew from now (seconds; positive = in the future).
    case stale(skew: Double)
    /// Authentic, but the body is not the JSON its type calls for (or could not be encoded).
    case malformedBody(String)
    /// `seal(_:sealingKeyFor:identity:)` was asked to seal the key without an identity.
    case missingIdentity
    /// The send counter reached 2^64 − 1; no further message may be sealed under this key.
    case counterExhausted

    public var description: String {
        switch self {
        case .tooLarge(let n):
            return "datagram too large: \(n) bytes, at most \(TransferProtocol.maxDatagramSize)"
        case .truncated(let length, let needed):
            return "truncated datagram: \(length) bytes, need at least \(needed)"
        case .badMagic:
            return "not a baton datagram (bad magic)"
        case .unsupportedVersion(let v):
            return "unsupported protocol version \(v) (this node speaks \(TransferProtocol.version))"
        case .unknownType(let t):
            return "unknown message type \(t)"
        case .unknownRole(let r):
            return "unknown sender role \(r)"
        case .unsupportedFlags(let f):
            return "unsupported flags 0x\(String(f, radix: 16))"
        case .authenticationFailed:
            return "authentication failed: forged, corrupted, or sealed under another session key"
        case .sealedBeforeRestart(let t):
            return "sealed before this node's restart (timestamp \(t) ms): possibly a replay"
        case .badMAC1:
            return "no valid mac1 for this node: junk, or made for another node"
        case .badSealedKey:
            return "sealed session key does not open: not sealed for this node, or tampered with"
        case .missingSealedKey:
            return "first message of an unknown transfer carries no sealed session key"
        case .untrustedSender(let k):
            return "untrusted sender key \(k)"
        case .wrongTransfer(let expected, let got):
            return "message for transfer \(got) opened with the channel of transfer \(expected)"
        case .wrongRole(let type, let sender, let recipient?):
            return "wrong role: \(type) from \(sender) to \(recipient) is not part of the protocol"
        case .wrongRole(let type, let sender, nil):
            return "wrong role: a \(sender) does not send \(type)"
        case .replayed(let counter, let highest):
            return "replayed: counter \(counter) is not above the highest accepted \(highest)"
        case .stale(let skew):
            let s = (skew * 1000).rounded() / 1000
            return "stale: timestamp is \(abs(s)) s \(skew < 0 ? "in the past" : "in the future")"
        case .malformedBody(let why):
            return "malformed body: \(why.split(whereSeparator: \.isNewline).joined(separator: " "))"
        case .missingIdentity:
            return "cannot seal the session key: no node identity given"
        case .counterExhausted:
            return "send counter exhausted for this session key"
        }
    }
}
