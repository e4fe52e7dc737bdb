import Foundation
import Testing
@testable import BatonProtocol
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PublicKeyTests {
    @Test func textRoundTrip() throws {
        for _ in 0..<50 {
            let k = NodeIdentity.generate().publicKey
            let text = k.description
            #expect(text.count == 43)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(PublicKey(text) == k)
        }
        // Known vector: 32 zero bytes, and bytes 0...31.
        #expect(PublicKey(bytes: [UInt8](repeating: 0, count: 32))!.description == String(repeating: "A", count: 43))
        #expect(PublicKey(bytes: Array(0...31))!.description == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
    }

    @Test func textRejectsEverythingElse() {
        let good = PublicKey(bytes: Array(0...31))!.description
        #expect(PublicKey(good) != nil)
        #expect(PublicKey(good + "=") == nil)                      // padding
        #expect(PublicKey(String(good.dropLast())) == nil)          // 42 chars
        #expect(PublicKey(good + "A") == nil)                       // 44 chars
        #expect(PublicKey(" " + String(good.dropFirst())) == nil)   // whitespace
        #expect(PublicKey("+" + String(good.dropFirst())) == nil)   // standard alphabet
        #expect(good.hasSuffix("8"))                                 // 0b111100: the last 2 bits are unused
        #expect(PublicKey(String(good.dropLast()) + "9") == nil)    // non-canonical trailing bits
        #expect(PublicKey(String(good.dropLast()) + "_") == nil)
        #expect(PublicKey("") == nil)
        #expect(PublicKey(bytes: [UInt8](repeating: 1, count: 31)) == nil)
    }

    @Test func codableAsString() throws {
        let k = NodeIdentity.generate().publicKey
        let json = try JSONEncoder().encode([k])
        #expect(String(decoding: json, as: UTF8.self) == "[\"\(k)\"]")
        #expect(try JSONDecoder().decode([PublicKey].self, from: json) == [k])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([PublicKey].self, from: Data("[\"abc\"]".utf8)) }
    }
}

@Suite struct TransferIDTests {
    @Test func text() {
        let id = TransferID(rawValue: 0x00ab_cdef_0123_4567)
        #expect(id.description == "00abcdef01234567")
        #expect(TransferID("00abcdef01234567") == id)
        #expect(id.bytes == [0x00, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67])
        #expect(TransferID("00ABCDEF01234567") == nil)
        #expect(TransferID("abcdef01234567") == nil)
        #expect(TransferID("+0abcdef01234567") == nil)
        #expect(TransferID("00abcdef012345678") == nil)
        #expect(TransferID("00abcdef0123456g") == nil)
        for _ in 0..<20 {
            let r = TransferID.random()
            #expect(TransferID(r.description) == r)
        }
        #expect(TransferID(rawValue: 1) < TransferID(rawValue: 0x100))
    }

    @Test func randomIsRandom() {
        #expect(Set((0..<100).map { _ in TransferID.random() }).count == 100)
    }
}

@Suite struct SessionKeyTests {
    @Test func neverPrinted() {
        let k = SessionKey.random()
        let raw = k.bytes.map { String(format: "%02x", $0) }.joined()
        for text in ["\(k)", String(describing: k), String(reflecting: k), "\(Mirror(reflecting: k).children.count)"] {
            #expect(!text.contains(raw))
        }
        #expect("\(k)" == "SessionKey(redacted)")
        #expect(Mirror(reflecting: k).children.isEmpty)
        var dumped = ""
        dump(k, to: &dumped)
        #expect(!dumped.contains(raw))
        #expect(SessionKey.random() != k)
        #expect(k.bytes.count == 32)
    }
}

@Suite struct SealedKeyTests {
    let sender = NodeIdentity.generate()
    let recipient = NodeIdentity.generate()
    let other = NodeIdentity.generate()
    let transfer = TransferID.random()
    let key = SessionKey.random()

    @Test func opensForTheRecipient() throws {
        let sealed = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        #expect(sealed.senderPublicKey == sender.publicKey)
        #expect(sealed.ciphertext.count == 48)
        #expect(try sealed.open(with: recipient, transfer: transfer) == key)
        // A fresh ephemeral key each time.
        let again = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        #expect(again.ephemeralPublicKey != sealed.ephemeralPublicKey)
        #expect(again.ciphertext != sealed.ciphertext)
        // Wire and JSON forms round-trip.
        #expect(SealedKey(bytes: sealed.bytes) == sealed)
        #expect(try JSONDecoder().decode(SealedKey.self, from: JSONEncoder().encode(sealed)) == sealed)
    }

    /// Kept static secrets give the same key; they are used only for the identity they were
    /// made for, and never let a sealed key claim a sender that did not seal it.
    @Test func staticSecrets() throws {
        let secrets = StaticSecrets(identity: recipient, capacity: 1)
        let sealed = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        #expect(try sealed.open(with: recipient, transfer: transfer, staticSecrets: secrets) == key)
        #expect(try sealed.open(with: recipient, transfer: transfer, staticSecrets: secrets) == key, "from the kept secret")
        // Made for another identity: ignored.
        #expect(try sealed.open(with: recipient, transfer: transfer, staticSecrets: StaticSecrets(identity: other)) == key)
        // Sealed by `other` but claiming `sender`, whose secret is kept: refused.
        let forged = try SealedKey.seal(key, for: recipient.publicKey, from: other, transfer: transfer)
        let claim = try #require(SealedKey(senderPublicKey: sender.publicKey, ephemeralPublicKey: forged.ephemeralPublicKey,
                                           ciphertext: forged.ciphertext))
        #expect(throws: ProtocolError.badSealedKey) { try claim.open(with: recipient, transfer: transfer, staticSecrets: secrets) }
        // Full at capacity 1: starts over, still right.
        #expect(try forged.open(with: recipient, transfer: transfer, staticSecrets: secrets) == key)
        #expect(try sealed.open(with: recipient, transfer: transfer, staticSecrets: secrets) == key)
        secrets.forget(sender.publicKey)
        #expect(try sealed.open(with: recipient, transfer: transfer, staticSecrets: secrets) == key)
    }

    @Test func wrongRecipient() throws {
        let sealed = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        #expect(throws: ProtocolError.badSealedKey) { try sealed.open(with: other, transfer: transfer) }
        #expect(throws: ProtocolError.badSealedKey) { try sealed.open(with: sender, transfer: transfer) }
    }

    @Test func wrongTransfer() throws {
        let sealed = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        #expect(throws: ProtocolError.badSealedKey) { try sealed.open(with: recipient, transfer: TransferID(rawValue: transfer.rawValue ^ 1)) }
    }

    @Test func tamperedCiphertext() throws {
        let sealed = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        for i in 0..<sealed.ciphertext.count {
            var c = sealed.ciphertext
            c[i] ^= 0x01
            let t = SealedKey(senderPublicKey: sealed.senderPublicKey, ephemeralPublicKey: sealed.ephemeralPublicKey, ciphertext: c)!
            #expect(throws: ProtocolError.badSealedKey) { try t.open(with: recipient, transfer: transfer) }
        }
    }

    /// Claiming another (say, trusted) sender key does not open: X25519(S, R) binds the sender.
    @Test func tamperedSenderKey() throws {
        let sealed = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        let forged = SealedKey(senderPublicKey: other.publicKey, ephemeralPublicKey: sealed.ephemeralPublicKey, ciphertext: sealed.ciphertext)!
        #expect(throws: ProtocolError.badSealedKey) { try forged.open(with: recipient, transfer: transfer) }
        var b = sealed.bytes
        for i in 0..<64 {      // every byte of both public keys
            b[i] ^= 0x80
            #expect(throws: ProtocolError.badSealedKey) { try SealedKey(bytes: b)!.open(with: recipient, transfer: transfer) }
            b[i] ^= 0x80
        }
        #expect(try SealedKey(bytes: b)!.open(with: recipient, transfer: transfer) == key)
    }

    /// An attacker who knows only public keys cannot make a key that opens as from `sender`.
    @Test func sealedByAnotherSender() throws {
        let byOther = try SealedKey.seal(key, for: recipient.publicKey, from: other, transfer: transfer)
        #expect(try byOther.open(with: recipient, transfer: transfer) == key)
        let relabelled = SealedKey(senderPublicKey: sender.publicKey, ephemeralPublicKey: byOther.ephemeralPublicKey, ciphertext: byOther.ciphertext)!
        #expect(throws: ProtocolError.badSealedKey) { try relabelled.open(with: recipient, transfer: transfer) }
    }

    /// Low-order points give an all-zero X25519 output: refused, not trapped.
    @Test func lowOrderKeys() throws {
        let zero = PublicKey(bytes: [UInt8](repeating: 0, count: 32))!
        let one = PublicKey(bytes: [1] + [UInt8](repeating: 0, count: 31))!     // u = 1, order 4
        for low in [zero, one] {
            #expect(throws: ProtocolError.badSealedKey) { try SealedKey.seal(key, for: low, from: sender, transfer: transfer) }
            #expect(throws: ProtocolError.badSealedKey) { try sender.agree(with: low) }
        }
        let sealed = try SealedKey.seal(key, for: recipient.publicKey, from: sender, transfer: transfer)
        let bad = SealedKey(senderPublicKey: sealed.senderPublicKey, ephemeralPublicKey: zero, ciphertext: sealed.ciphertext)!
        #expect(throws: ProtocolError.badSealedKey) { try bad.open(with: recipient, transfer: transfer) }
    }
}

@Suite struct IdentityFileTests {
    private func tempDir() -> String {
        var template = Array("/tmp/baton-proto-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!)
    }

    private func write(_ bytes: [UInt8], to path: String, mode: mode_t) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        precondition(fd >= 0)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        fchmod(fd, mode)
        close(fd)
    }

    @Test func createsThenLoads() throws {
        let dir = tempDir()
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/identity.key"
        let a = try NodeIdentity.loadOrCreate(at: path)
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(st.st_size == 32)
        let b = try NodeIdentity.loadOrCreate(at: path)
        #expect(a.publicKey == b.publicKey)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["identity.key"])   // no temporary left
        #expect(!"\(a)".contains(Base64URL.encode(Array(a.privateKey.rawRepresentation))))
    }

    @Test func malformed() throws {
        let dir = tempDir()
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        for size in [0, 31, 33, 64] {
            let path = dir + "/k\(size)"
            write([UInt8](repeating: 7, count: size), to: path, mode: 0o600)
            #expect(throws: IdentityError.self) { try NodeIdentity.loadOrCreate(at: path) }
            do { _ = try NodeIdentity.loadOrCreate(at: path) } catch {
                guard case .malformed = error else { Issue.record("expected malformed, got \(error)"); continue }
                #expect("\(error)".contains(path))
            }
        }
        // A directory where the key should be.
        #expect(throws: IdentityError.self) { try NodeIdentity.loadOrCreate(at: dir) }
    }

    @Test func groupOrWorldReadable() throws {
        let dir = tempDir()
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/identity.key"
        for mode: mode_t in [0o644, 0o640, 0o604, 0o660] {
            write(Array(NodeIdentity.generate().privateKey.rawRepresentation), to: path, mode: mode)
            #expect(throws: IdentityError.tooOpen(path: path, mode: UInt32(mode))) { try NodeIdentity.loadOrCreate(at: path) }
        }
        chmod(path, 0o600)
        #expect(throws: Never.self) { try NodeIdentity.loadOrCreate(at: path) }
    }

    @Test func missingDirectory() {
        let path = "/tmp/baton-no-such-dir-\(UInt64.random(in: 0 ... .max))/identity.key"
        #expect(throws: IdentityError.self) { try NodeIdentity.loadOrCreate(at: path) }
    }
}
