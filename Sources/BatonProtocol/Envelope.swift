import BatonModel
import Foundation

/// A datagram's header, parsed without any cryptography so that a daemon can
/// find the transfer (and its channel, or the sealed key) first. Layout, in
/// network byte order (docs/protocol.md has the table):
///
///     0  magic "BATN"            4
///     4  version = 1             1
///     5  type                    1   MessageType
///     6  flags                   1   bit 0: sealed key present; bit 1: mac2 present (with bit 0
///                                    only); others must be 0
///     7  sender role             1   1 TN, 2 target, 3 agent
///     8  transfer ID             8
///    16  counter                 8   u64
///    24  timestamp               8   u64, Unix milliseconds
///    32  [sealed key           112]  sender static pub 32 | ephemeral pub 32 | ciphertext 32 + tag 16
///    32 or 144: AEAD ciphertext of the JSON body, then its 16-byte tag
///    [mac1                    16]  with a sealed key: see `MAC1`
///    [mac2                    16]  with bit 1: see `Cookie`
public struct Envelope: Sendable, Hashable {
    public static let magic: [UInt8] = Array("BATN".utf8)
    /// Bytes before the optional sealed-key block.
    public static let fixedHeaderSize = 32
    public static let tagSize = 16
    /// Flag bit 0.
    public static let sealedKeyFlag: UInt8 = 1
    /// Flag bit 1: a mac2 follows the mac1 (a cookie from a responder under load).
    public static let mac2Flag: UInt8 = 2

    public let version: UInt8
    public let type: MessageType
    public let flags: UInt8
    public let sender: Role
    public let transfer: TransferID
    public let counter: UInt64
    /// Unix time in milliseconds, as the sender's clock read it.
    public let timestamp: UInt64
    public let sealedKey: SealedKey?
    /// Every byte before the ciphertext: the AEAD's additional data.
    public let header: [UInt8]
    /// The encrypted body followed by the 16-byte tag.
    public let ciphertext: [UInt8]
    /// With a sealed key: the recipient-keyed check over header and ciphertext (`MAC1`).
    public let mac1: [UInt8]?
    /// With the mac2 flag: the cookie-keyed check over everything before it (`Cookie`).
    public var mac2: [UInt8]? = nil

    /// The datagram.
    public var bytes: [UInt8] { header + ciphertext + (mac1 ?? []) + (mac2 ?? []) }

    /// `timestamp` as a date.
    public var date: Date { Date(timeIntervalSince1970: Double(timestamp) / 1000) }

    /// Parses and checks the header. Never traps: any malformed input is a `ProtocolError`.
    public static func parse(_ bytes: [UInt8]) throws(ProtocolError) -> Envelope {
        guard bytes.count <= TransferProtocol.maxDatagramSize else { throw .tooLarge(bytes.count) }
        let minimum = fixedHeaderSize + tagSize
        guard bytes.count >= magic.count else { throw .truncated(length: bytes.count, needed: minimum) }
        guard bytes[0..<4].elementsEqual(magic) else { throw .badMagic }
        guard bytes.count >= fixedHeaderSize else { throw .truncated(length: bytes.count, needed: minimum) }
        guard bytes[4] == TransferProtocol.version else { throw .unsupportedVersion(bytes[4]) }
        guard let type = MessageType(rawValue: bytes[5]) else { throw .unknownType(bytes[5]) }
        let flags = bytes[6]
        guard flags & ~(sealedKeyFlag | mac2Flag) == 0, flags & mac2Flag == 0 || flags & sealedKeyFlag != 0 else {
            throw .unsupportedFlags(flags)
        }
        guard let sender = Role(rawValue: bytes[7]) else { throw .unknownRole(bytes[7]) }
        let transfer = TransferID(rawValue: readU64(bytes, at: 8))
        let counter = readU64(bytes, at: 16)
        let timestamp = readU64(bytes, at: 24)
        var headerEnd = fixedHeaderSize
        var sealedKey: SealedKey?
        var trailer = 0
        if flags & sealedKeyFlag != 0 {
            headerEnd += SealedKey.size
            trailer = MAC1.size + (flags & mac2Flag != 0 ? Cookie.macSize : 0)
            guard bytes.count >= headerEnd + tagSize + trailer else {
                throw .truncated(length: bytes.count, needed: headerEnd + tagSize + trailer)
            }
            sealedKey = SealedKey(bytes: bytes[fixedHeaderSize..<headerEnd])
        }
        guard bytes.count >= headerEnd + tagSize else { throw .truncated(length: bytes.count, needed: headerEnd + tagSize) }
        let end = bytes.count - trailer
        var envelope = Envelope(version: bytes[4], type: type, flags: flags, sender: sender, transfer: transfer,
                                counter: counter, timestamp: timestamp, sealedKey: sealedKey,
                                header: Array(bytes[0..<headerEnd]), ciphertext: Array(bytes[headerEnd..<end]),
                                mac1: trailer == 0 ? nil : Array(bytes[end..<(end + MAC1.size)]))
        if flags & mac2Flag != 0 { envelope.mac2 = Array(bytes[(end + MAC1.size)...]) }
        return envelope
    }

    /// The timestamp an outgoing message carries for `date`: Unix milliseconds, clamped.
    static func timestamp(_ date: Date) -> UInt64 {
        let ms = date.timeIntervalSince1970 * 1000
        return ms <= 0 || ms.isNaN ? 0 : ms >= 1.8e19 ? .max : UInt64(ms)
    }

    /// The header of an outgoing message.
    static func header(type: MessageType, sender: Role, transfer: TransferID, counter: UInt64,
                       timestamp: UInt64, sealedKey: SealedKey?, mac2: Bool = false) -> [UInt8] {
        var h = magic
        h.reserveCapacity(fixedHeaderSize + (sealedKey == nil ? 0 : SealedKey.size))
        let flags = sealedKey == nil ? 0 : sealedKeyFlag | (mac2 ? mac2Flag : 0)
        h += [TransferProtocol.version, type.rawValue, flags, sender.rawValue]
        appendU64(&h, transfer.rawValue)
        appendU64(&h, counter)
        appendU64(&h, timestamp)
        if let sealedKey { h += sealedKey.bytes }
        return h
    }

    private static func readU64(_ b: [UInt8], at i: Int) -> UInt64 {
        var v: UInt64 = 0
        for j in i..<(i + 8) { v = v << 8 | UInt64(b[j]) }
        return v
    }

    private static func appendU64(_ b: inout [UInt8], _ v: UInt64) {
        for s in stride(from: 56, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
    }
}
