import BatonModel
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

    /// After a restart: refuses every message stamped before `date`. The stored high-water
    /// marks are written on state changes only, not after every message, so a message
    /// accepted after the last write could otherwise be replayed; a peer's retransmission is
    /// sealed anew, after the restart, and goes through.
    public func refuseStampedBefore(_ date: Date) {
        let ms = date.timeIntervalSince1970 * 1000
        let floor: UInt64 = ms > 0 && ms < 1.8e19 ? UInt64(ms) : 0
        restoreNotBefore(floor)
    }
}

extension Register {
    /// The registration without its sessions (the store keeps those as the transfer's rules),
    /// in a fixed 93-byte layout: encoding it as JSON was a sixth of a registration's cost.
    ///
    ///     version (1), mode (0 l2, 1 l3), flags (1: has idleTimeout),
    ///     original, temporary, targetAddress, control address: 17 bytes each (4 or 6, then
    ///     the address, zero-padded to 16), control port BE16, tnMAC, targetMAC,
    ///     idleTimeout (Float64 bits, BE64; 0 if none)
    public var storedBytes: [UInt8] {
        var out: [UInt8] = [Self.storedVersion, mode == .l2 ? 0 : 1, idleTimeout == nil ? 0 : 1]
        out.reserveCapacity(Self.storedSize)
        for a in [original, temporary, targetAddress, control.address] {
            let wire = a.wireBytes
            out.append(a.family == .v4 ? 4 : 6)
            out += wire
            out += [UInt8](repeating: 0, count: 16 - wire.count)
        }
        out += [UInt8(control.port >> 8), UInt8(control.port & 0xff)]
        out += tnMAC.bytes
        out += targetMAC.bytes
        let idle = (idleTimeout ?? 0).bitPattern
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: idle >> UInt64(shift))) }
        return out
    }

    /// A registration read back from `storedBytes`, with no sessions; nil if the bytes are not
    /// exactly that layout (padding and an absent timeout are zeros).
    public init?(storedBytes b: [UInt8]) {
        guard b.count == Self.storedSize, b[0] == Self.storedVersion, b[1] <= 1, b[2] <= 1 else { return nil }
        func address(_ slot: Int) -> IPAddress? {
            let at = 3 + slot * 17
            switch b[at] {
            case 4: return b[at + 5..<at + 17].allSatisfy { $0 == 0 } ? IPAddress(wire: b[at + 1..<at + 5]) : nil
            case 6: return IPAddress(wire: b[at + 1..<at + 17])
            default: return nil
            }
        }
        guard let original = address(0), let temporary = address(1), let target = address(2), let control = address(3),
              let tnMAC = MACAddress(bytes: b[73..<79]), let targetMAC = MACAddress(bytes: b[79..<85]) else { return nil }
        let idle = b[85..<93].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard b[2] == 1 || idle == 0 else { return nil }
        self.init(original: original, temporary: temporary, tnMAC: tnMAC, mode: b[1] == 0 ? .l2 : .l3, sessions: [],
                  targetMAC: targetMAC, targetAddress: target,
                  control: Endpoint(address: control, port: UInt16(b[71]) << 8 | UInt16(b[72])),
                  idleTimeout: b[2] == 1 ? Double(bitPattern: idle) : nil)
    }

    /// A stored registration: `storedBytes`, or the JSON that stores written before that
    /// layout hold (sessions and all).
    public init?(stored data: Data) {
        if data.first == UInt8(ascii: "{") {
            guard let r = try? JSONDecoder().decode(Register.self, from: data) else { return nil }
            self = r
        } else {
            self.init(storedBytes: Array(data))
        }
    }

    static let storedVersion: UInt8 = 1
    static let storedSize = 93
}
