import BatonModel
import Foundation
import Testing
@testable import BatonProtocol

/// A fixed "now" so that timestamps never depend on the machine's clock.
let t0 = Date(timeIntervalSince1970: 1_750_000_000.123)

/// Deterministic generator for the fuzz tests (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Three nodes and one transfer, each with its channel.
struct Party {
    let tnID = NodeIdentity.generate()
    let targetID = NodeIdentity.generate()
    let agentID = NodeIdentity.generate()
    let transfer = TransferID.random()
    let key = SessionKey.random()
    let tn: TransferChannel
    let target: TransferChannel
    let agent: TransferChannel

    init() {
        // Each party its own count (as each node has), so that tests running side by side do
        // not take each other's counters.
        tn = TransferChannel(transfer: transfer, key: key, role: .tn, counters: CounterSource())
        target = TransferChannel(transfer: transfer, key: Self.held(key, by: .target), role: .target, counters: CounterSource())
        agent = TransferChannel(transfer: transfer, key: Self.held(key, by: .agent), role: .agent, counters: CounterSource())
    }

    /// The key `role` holds when the TN's root key is `root`.
    static func held(_ root: SessionKey, by role: Role) -> SessionKey {
        role == .tn ? root : TransferChannel.pairKey(root: root, peer: role)
    }

    func channel(_ role: Role) -> TransferChannel {
        switch role {
        case .tn: return tn
        case .target: return target
        case .agent: return agent
        }
    }
}

let v4a = IPAddress("192.0.2.10")!
let v4b = IPAddress("192.0.2.20")!
let v6a = IPAddress("2001:db8::10")!
let mac1 = MACAddress("02:00:00:00:00:01")!
let mac2 = MACAddress("02:00:00:00:00:02")!

let sampleSessions: [SessionMatch] = [
    SessionMatch(proto: .tcp, source: IPAddress("198.51.100.7")!, sourcePort: 40000, destination: v4a, destinationPort: 5060),
    SessionMatch(proto: .udp, source: IPAddress("198.51.100.7")!, sourcePort: nil, destination: v4a, destinationPort: 4000),
    SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: v4a, destinationPort: nil),
]

let sampleOffer = Offer(sessions: sampleSessions, original: v4a, mode: .l3, agent: IPAddress("192.0.2.1")!,
                        control: Endpoint(address: IPAddress("192.0.2.200")!, port: 7390))
let sampleRegister = Register(original: v4a, temporary: v4b, tnMAC: mac1, mode: .l2, sessions: sampleSessions,
                              targetMAC: mac2, targetAddress: IPAddress("192.0.2.30")!,
                              control: Endpoint(address: v4b, port: 7390), idleTimeout: 12.5)

/// One example of every message type, with a sender and a recipient it travels between.
let samples: [(Message, Role, Role)] = [
    (.offer(sampleOffer), .tn, .target),
    (.accept(Accept(mac: mac2, address: IPAddress("192.0.2.30")!)), .target, .tn),
    (.reject(Reject(reason: "no room")), .target, .tn),
    (.reject(Reject(reason: "cannot take over")), .agent, .tn),
    (.reject(Reject(reason: "not now")), .tn, .agent),
    (.register(sampleRegister), .tn, .agent),
    (.register(Register(original: v6a, temporary: IPAddress("2001:db8::99")!, tnMAC: mac1, mode: .l3, sessions: [],
                        targetMAC: mac2, targetAddress: IPAddress("2001:db8::30")!,
                        control: Endpoint(address: IPAddress("2001:db8::99")!, port: 7391), idleTimeout: nil)), .tn, .agent),
    (.registered(Registered()), .agent, .tn),
    (.end(End(reason: "operator")), .tn, .agent),
    (.wakeUp(WakeUp(reason: WakeUp.Reason.idle)), .agent, .tn),
    (.wakeUpAck(WakeUpAck()), .tn, .agent),
    (.release(Release()), .tn, .target),
    (.released(Released()), .target, .tn),
    (.closed(Closed(sessions: sampleRegister.sessions)), .target, .tn),
]

/// Parses and opens in one step, so every failure is a ProtocolError.
func parseAndOpen(_ bytes: [UInt8], with channel: TransferChannel, now: Date = t0) throws(ProtocolError) -> Message {
    try channel.open(Envelope.parse(bytes), now: now)
}

/// The ProtocolError `body` throws; nil if it succeeds. Any other error is a test failure.
func error(of body: () throws -> Void) -> ProtocolError? {
    do { try body() } catch let e as ProtocolError { return e } catch {
        Issue.record("not a ProtocolError: \(error)")
        return .malformedBody("unexpected error type")
    }
    return nil
}
