import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Public keys

/// A node's static X25519 public key: 32 bytes. Its text form is base64url
/// without padding (43 characters), as in configuration files and logs.
public struct PublicKey: Hashable, Sendable, Codable, LosslessStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        self.bytes = Array(bytes)
    }

    /// Parses the 43-character base64url form; anything else (padding, the
    /// standard alphabet, whitespace, non-canonical trailing bits) is nil.
    public init?(_ description: String) {
        guard description.utf8.count == 43, let b = Base64URL.decode(description), b.count == 32 else { return nil }
        bytes = b
    }

    public var description: String { Base64URL.encode(bytes) }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let k = PublicKey(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a public key (43 base64url characters): \(s)")
        }
        self = k
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    var agreementKey: Curve25519.KeyAgreement.PublicKey {
        // Any 32 bytes are an X25519 public key; low-order points show up as an
        // all-zero shared secret, refused in `NodeIdentity.agree(with:)`.
        try! Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes)
    }
}

// MARK: - Node identity

/// Why a node identity could not be loaded or created.
public enum IdentityError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file exists but is not exactly 32 bytes (or not a regular file).
    case malformed(path: String, detail: String)
    /// The file is readable or writable by group or others.
    case tooOpen(path: String, mode: UInt32)
    /// A system call failed.
    case system(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .malformed(let path, let detail):
            return "identity key \(path) is malformed: \(detail) (expected a raw 32-byte X25519 private key)"
        case .tooOpen(let path, let mode):
            return "identity key \(path) has mode \(String(mode, radix: 8)), accessible by group or others: run chmod 600 \(path)"
        case .system(let path, let operation, let e):
            return "identity key \(path): \(operation) failed: \(String(cString: strerror(e)))"
        }
    }
}

/// A node's static X25519 key pair. The public key is what peers list as trusted.
public struct NodeIdentity: Sendable, CustomStringConvertible {
    let privateKey: Curve25519.KeyAgreement.PrivateKey
    public let publicKey: PublicKey

    init(privateKey: Curve25519.KeyAgreement.PrivateKey) {
        self.privateKey = privateKey
        publicKey = PublicKey(bytes: Array(privateKey.publicKey.rawRepresentation))!
    }

    public static func generate() -> NodeIdentity {
        NodeIdentity(privateKey: Curve25519.KeyAgreement.PrivateKey())
    }

    /// Never shows the private key.
    public var description: String { "NodeIdentity(\(publicKey))" }

    /// Loads the raw 32-byte private key at `path`, or, if there is no file,
    /// creates one (mode 0600) atomically: written to a temporary file in the
    /// same directory, then linked into place, so a reader never sees a partial
    /// key and two concurrent creators agree on one key. The directory must exist.
    /// A file that is not 32 bytes, or that group or others may read or write, is an error.
    public static func loadOrCreate(at path: String) throws(IdentityError) -> NodeIdentity {
        if let existing = try load(path) { return existing }
        let identity = generate()
        let raw = Array(identity.privateKey.rawRepresentation)
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .system(path: path, operation: "create \(tmp)", errno: errno) }
        var ok = fchmod(fd, 0o600) == 0
        var failure = ok ? "" : "chmod"
        if ok {
            let n = raw.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            ok = n == raw.count
            if !ok { failure = "write" }
        }
        if ok && fsync(fd) != 0 { ok = false; failure = "fsync" }
        let savedErrno = errno
        close(fd)
        guard ok else {
            unlink(tmp)
            throw .system(path: path, operation: failure, errno: savedErrno)
        }
        // link(2) never replaces an existing file: if another process won the race, use its key.
        let linked = link(tmp, path) == 0
        let linkErrno = errno
        unlink(tmp)
        if !linked {
            if linkErrno == EEXIST, let existing = try load(path) { return existing }
            throw .system(path: path, operation: "link", errno: linkErrno)
        }
        // Make the new directory entry durable too.
        let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
        return identity
    }

    /// nil if there is no file at `path`.
    private static func load(_ path: String) throws(IdentityError) -> NodeIdentity? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .system(path: path, operation: "open", errno: errno)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(path: path, operation: "stat", errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .malformed(path: path, detail: "not a regular file") }
        let mode = UInt32(st.st_mode & 0o7777)
        guard mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: mode) }
        var buf = [UInt8](repeating: 0, count: 33)
        var total = 0
        while total < buf.count {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            total += n
        }
        guard total == 32 else {
            throw .malformed(path: path, detail: total > 32 ? "longer than 32 bytes" : "\(total) bytes")
        }
        guard let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: buf[0..<32]) else {
            throw .malformed(path: path, detail: "not an X25519 private key")
        }
        return NodeIdentity(privateKey: key)
    }

    func agree(with peer: PublicKey) throws(ProtocolError) -> [UInt8] {
        let secret: [UInt8]
        do {
            secret = try privateKey.sharedSecretFromKeyAgreement(with: peer.agreementKey).withUnsafeBytes { Array($0) }
        } catch {
            throw .badSealedKey
        }
        // A low-order public key gives the all-zero output (RFC 7748 §6.1): refuse it.
        guard secret.reduce(0, |) != 0 else { throw .badSealedKey }
        return secret
    }
}

// MARK: - Session key

/// The transfer's symmetric key: 256 random bits, created by the TN, sealed
/// for the target and the agent. Never printed.
public struct SessionKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let key: SymmetricKey

    init(key: SymmetricKey) { self.key = key }

    public static func random() -> SessionKey { SessionKey(key: SymmetricKey(size: .bits256)) }

    /// Constant-time comparison (SymmetricKey's).
    public static func == (l: SessionKey, r: SessionKey) -> Bool { l.key == r.key }

    public var description: String { "SessionKey(redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [:]) }

    var bytes: [UInt8] { key.withUnsafeBytes { Array($0) } }
}

// MARK: - Transfer ID

/// Names a transfer on all three hosts: 8 random bytes, written as 16 lowercase hex digits.
public struct TransferID: Hashable, Sendable, Codable, LosslessStringConvertible, Comparable {
    /// The 8 bytes read big-endian.
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static func random() -> TransferID {
        var g = SystemRandomNumberGenerator()   // getrandom(2) on Linux
        return TransferID(rawValue: g.next())
    }

    /// Exactly 16 lowercase hex digits.
    public init?(_ description: String) {
        let u = Array(description.utf8)
        guard u.count == 16, u.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
              let v = UInt64(description, radix: 16) else { return nil }
        rawValue = v
    }

    public var description: String {
        let s = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// Network order, as in the envelope.
    public var bytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: rawValue >> (56 - 8 * $0)) } }

    public static func < (l: TransferID, r: TransferID) -> Bool { l.rawValue < r.rawValue }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let id = TransferID(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a transfer ID (16 lowercase hex digits): \(s)")
        }
        self = id
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

// MARK: - Sealed session key

/// The session key sealed for one recipient (the target or the agent) and
/// authenticated by the sender's static key:
///
///     E = fresh X25519 key pair, S = sender's static pair, R = recipient's public key
///     ikm = X25519(E, R) ‖ X25519(S, R)
///     k   = HKDF-SHA256(ikm, salt "baton-seal-v1", info E.pub ‖ S.pub ‖ R.pub ‖ transfer ID, 32 bytes)
///     ciphertext = ChaChaPoly(k, nonce 0, session key) ‖ tag       (48 bytes)
///
/// Only the holder of S's or R's private key can compute X25519(S, R), so a
/// key that opens was sealed by `senderPublicKey` (the recipient still decides
/// whether it trusts that key).
public struct SealedKey: Sendable, Hashable, Codable {
    public let senderPublicKey: PublicKey
    public let ephemeralPublicKey: PublicKey
    /// 32 bytes of encrypted key and the 16-byte tag.
    public let ciphertext: [UInt8]

    public static let ciphertextSize = 48
    /// Size of the block in the envelope.
    public static let size = 32 + 32 + ciphertextSize

    public init?(senderPublicKey: PublicKey, ephemeralPublicKey: PublicKey, ciphertext: [UInt8]) {
        guard ciphertext.count == Self.ciphertextSize else { return nil }
        self.senderPublicKey = senderPublicKey
        self.ephemeralPublicKey = ephemeralPublicKey
        self.ciphertext = ciphertext
    }

    /// The envelope's form: sender ‖ ephemeral ‖ ciphertext (112 bytes).
    public init?(bytes: some Collection<UInt8>) {
        let b = Array(bytes)
        guard b.count == Self.size else { return nil }
        senderPublicKey = PublicKey(bytes: b[0..<32])!
        ephemeralPublicKey = PublicKey(bytes: b[32..<64])!
        ciphertext = Array(b[64...])
    }

    public var bytes: [UInt8] { senderPublicKey.bytes + ephemeralPublicKey.bytes + ciphertext }

    public static func seal(_ key: SessionKey, for recipient: PublicKey, from sender: NodeIdentity,
                            transfer: TransferID) throws(ProtocolError) -> SealedKey {
        let ephemeral = NodeIdentity.generate()
        let k = try derive(ephemeralSecret: ephemeral.agree(with: recipient), staticSecret: sender.agree(with: recipient),
                           ephemeral: ephemeral.publicKey, sender: sender.publicKey, recipient: recipient, transfer: transfer)
        do {
            // A fixed zero nonce is safe: k depends on the fresh ephemeral key E
            // (through X25519(E, R) and the info), so no two seals share k, and
            // each k encrypts exactly one message.
            let box = try ChaChaPoly.seal(key.bytes, using: k, nonce: zeroNonce)
            return SealedKey(senderPublicKey: sender.publicKey, ephemeralPublicKey: ephemeral.publicKey,
                             ciphertext: Array(box.ciphertext) + Array(box.tag))!
        } catch {
            throw .badSealedKey
        }
    }

    /// Opens the key with the recipient's identity. Fails with `.badSealedKey`
    /// if it was sealed for another key, by a sender other than
    /// `senderPublicKey`, for another transfer, or was altered.
    /// With `staticSecrets` (made for `recipient`), the static-static agreement with the
    /// sender is taken from there.
    public func open(with recipient: NodeIdentity, transfer: TransferID,
                     staticSecrets: StaticSecrets? = nil) throws(ProtocolError) -> SessionKey {
        let staticSecret = if let staticSecrets, staticSecrets.identity.publicKey == recipient.publicKey {
            try staticSecrets.secret(with: senderPublicKey)
        } else {
            try recipient.agree(with: senderPublicKey)
        }
        let k = try Self.derive(ephemeralSecret: recipient.agree(with: ephemeralPublicKey),
                                staticSecret: staticSecret,
                                ephemeral: ephemeralPublicKey, sender: senderPublicKey,
                                recipient: recipient.publicKey, transfer: transfer)
        do {
            let box = try ChaChaPoly.SealedBox(nonce: Self.zeroNonce, ciphertext: ciphertext[0..<32], tag: ciphertext[32..<48])
            let raw = try ChaChaPoly.open(box, using: k)
            guard raw.count == 32 else { throw ProtocolError.badSealedKey }
            return SessionKey(key: SymmetricKey(data: raw))
        } catch {
            throw .badSealedKey
        }
    }

    private static var zeroNonce: ChaChaPoly.Nonce { try! ChaChaPoly.Nonce(data: [UInt8](repeating: 0, count: 12)) }

    private static func derive(ephemeralSecret: [UInt8], staticSecret: [UInt8], ephemeral: PublicKey, sender: PublicKey,
                               recipient: PublicKey, transfer: TransferID) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: ephemeralSecret + staticSecret),
                               salt: Array("baton-seal-v1".utf8),
                               info: ephemeral.bytes + sender.bytes + recipient.bytes + transfer.bytes,
                               outputByteCount: 32)
    }

    private enum CodingKeys: String, CodingKey { case senderPublicKey, ephemeralPublicKey, ciphertext }

    /// The ciphertext is base64url like the keys.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        senderPublicKey = try c.decode(PublicKey.self, forKey: .senderPublicKey)
        ephemeralPublicKey = try c.decode(PublicKey.self, forKey: .ephemeralPublicKey)
        let text = try c.decode(String.self, forKey: .ciphertext)
        guard let b = Base64URL.decode(text), b.count == Self.ciphertextSize else {
            throw DecodingError.dataCorruptedError(forKey: .ciphertext, in: c, debugDescription: "expected 48 bytes in base64url")
        }
        ciphertext = b
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(senderPublicKey, forKey: .senderPublicKey)
        try c.encode(ephemeralPublicKey, forKey: .ephemeralPublicKey)
        try c.encode(Base64URL.encode(ciphertext), forKey: .ciphertext)
    }
}

// MARK: - base64url (RFC 4648 §5, no padding)

enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            var v = UInt32(bytes[i]) << 16
            if n > 1 { v |= UInt32(bytes[i + 1]) << 8 }
            if n > 2 { v |= UInt32(bytes[i + 2]) }
            for j in 0...n { out.append(alphabet[Int(v >> (18 - 6 * UInt32(j)) & 0x3f)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Strict: only the URL alphabet, no padding, no whitespace, zero unused bits.
    static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        for c in u {
            let v: UInt32
            switch c {
            case 0x41...0x5a: v = UInt32(c - 0x41)
            case 0x61...0x7a: v = UInt32(c - 0x61 + 26)
            case 0x30...0x39: v = UInt32(c - 0x30 + 52)
            case 0x2d: v = 62
            case 0x5f: v = 63
            default: return nil
            }
            acc = (acc << 6 | v) & 0xffffff
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero for a canonical encoding.
        guard acc & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }
}

/// The static-static agreements of one identity with the peers it hears from often, so that
/// opening a sealed key from a known sender costs one X25519 instead of two (WireGuard keeps
/// its peers' static secret the same way). Give it only peers you know (enrolled devices):
/// it holds at most `capacity` and starts over when full. Thread-safe.
public final class StaticSecrets: Sendable {
    public let identity: NodeIdentity
    private let capacity: Int
    // Read by every registration, written once per device: a mutex here had the API threads
    // queueing behind each other.
    private let secrets: ReadWriteLocked<[PublicKey: [UInt8]]>

    public init(identity: NodeIdentity, capacity: Int = 4096) {
        self.identity = identity
        self.capacity = max(capacity, 1)
        secrets = ReadWriteLocked([:])
    }

    func secret(with peer: PublicKey) throws(ProtocolError) -> [UInt8] {
        if let known = secrets.read({ $0[peer] }) { return known }
        let secret = try identity.agree(with: peer)
        secrets.write { s in
            if s.count >= capacity { s.removeAll(keepingCapacity: true) }
            s[peer] = secret
        }
        return secret
    }

    /// Forgets a peer's secret (a device removed).
    public func forget(_ peer: PublicKey) { _ = secrets.write { $0.removeValue(forKey: peer) } }
}
