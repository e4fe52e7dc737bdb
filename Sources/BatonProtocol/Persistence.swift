import Crypto
import Foundation

// What a daemon writes to its store so that a transfer's channel outlives a restart: the
// session key and the highest counter accepted from each peer role. Send counters need
// nothing: they start at the clock (see TransferChannel).

extension SessionKey {
    /// The 32 key bytes, for the daemon's store (a 0600 file, like identity.key).
    public var storedBytes: [UInt8] { bytes }

    /// A key read back from the store; nil unless exactly 32 bytes.
    public init?(storedBytes: some Collection<UInt8>) {
        guard storedBytes.count == 32 else { return nil }
        self.init(key: SymmetricKey(data: Array(storedBytes)))
    }
}

extension TransferChannel {
    /// The session key, for the store.
    public var storedKey: SessionKey { sessionKey }

    /// Restores the replay high-water mark for `sender` after a restart: messages at or below
    /// `counter` are refused as replays, as they were before.
    public func restoreHighestAccepted(_ counter: UInt64, from sender: Role) {
        restore(highest: counter, from: sender)
    }
}
