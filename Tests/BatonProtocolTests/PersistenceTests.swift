import BatonModel
import Foundation
import Testing
@testable import BatonProtocol

/// What the agent writes for a registration (`Register.storedBytes`) and reads back at start.
@Suite struct StoredRegisterTests {
    static let registers: [Register] = {
        let mac1 = MACAddress("02:00:00:00:00:0b")!, mac2 = MACAddress("02:00:00:00:00:0c")!
        let o4 = IPAddress("10.0.0.3")!, o6 = IPAddress("2001:db8::3")!
        return [
            Register(original: o4, temporary: IPAddress("10.0.0.103")!, tnMAC: mac1, mode: .l2,
                     sessions: [SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: o4, destinationPort: 5004)],
                     targetMAC: mac2, targetAddress: IPAddress("10.0.0.4")!,
                     control: Endpoint(address: IPAddress("10.0.0.103")!, port: 7390)),
            Register(original: o6, temporary: IPAddress("2001:db8::103")!, tnMAC: mac1, mode: .l3,
                     sessions: [SessionMatch(proto: .tcp, source: IPAddress("2001:db8:ff::7")!, sourcePort: 65535, destination: o6,
                                             destinationPort: 443)],
                     targetMAC: mac2, targetAddress: IPAddress("2001:db8:1::4")!,
                     control: Endpoint(address: IPAddress("2001:db8::103")!, port: 65535), idleTimeout: 0.25),
            // A control endpoint of the other family, and the largest idle timeout there is.
            Register(original: o4, temporary: IPAddress("10.0.0.103")!, tnMAC: mac1, mode: .l3, sessions: [],
                     targetMAC: .zero, targetAddress: IPAddress("198.51.100.4")!,
                     control: Endpoint(address: IPAddress("fd00::1")!, port: 0), idleTimeout: .greatestFiniteMagnitude),
        ]
    }()

    private func withoutSessions(_ r: Register) -> Register {
        var r = r
        r.sessions = []
        return r
    }

    @Test(arguments: registers.indices)
    func roundTrip(_ i: Int) throws {
        let r = Self.registers[i]
        let bytes = r.storedBytes
        #expect(bytes.count == Register.storedSize)
        #expect(Register(storedBytes: bytes) == withoutSessions(r))
        #expect(Register(stored: Data(bytes)) == withoutSessions(r))
    }

    /// Stores written before the binary layout hold the registration's JSON: still read.
    @Test func legacyJSON() throws {
        for r in Self.registers {
            #expect(Register(stored: try JSONEncoder().encode(r)) == r)
            #expect(Register(stored: try JSONEncoder().encode(withoutSessions(r))) == withoutSessions(r))
        }
        #expect(Register(stored: Data("{\"original\":1}".utf8)) == nil)
    }

    /// Anything else is nil (the agent marks such a transfer failed), never a crash.
    @Test func malformed() {
        let good = Self.registers[1].storedBytes
        #expect(Register(stored: Data()) == nil)
        #expect(Register(storedBytes: Array(good.dropLast())) == nil)
        #expect(Register(storedBytes: good + [0]) == nil)
        for (offset, value) in [(0, UInt8(2)), (1, 2), (2, 2), (3, 5), (3 + 17, 0), (3 + 3 * 17, 255)] as [(Int, UInt8)] {
            var bad = good
            bad[offset] = value
            #expect(Register(storedBytes: bad) == nil, "byte \(offset) = \(value)")
        }
        var random = SeededRandom(seed: 7)
        for _ in 0..<2000 {
            var bytes = good
            for _ in 0..<4 { bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random) }
            // Either refused or a registration that encodes back to the same bytes.
            if let r = Register(storedBytes: bytes) { #expect(r.storedBytes == bytes) }
        }
    }
}
