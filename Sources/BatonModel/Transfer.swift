/// Who takes part in a transfer. The raw value is the protocol envelope's sender-role byte
/// and the first byte of the AEAD nonce, so the three roles never share a nonce; JSON
/// carries the name ("tn", "target", "agent").
public enum Role: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The transferring node.
    case tn = 1
    case target = 2
    /// The session agent.
    case agent = 3

    /// The name in JSON, the API and the CLI.
    public var name: String {
        switch self {
        case .tn: return "tn"
        case .target: return "target"
        case .agent: return "agent"
        }
    }

    public init?(name: String) {
        guard let r = Role.allCases.first(where: { $0.name == name }) else { return nil }
        self = r
    }

    /// For people: "TN", "target", "agent".
    public var description: String { self == .tn ? "TN" : name }
}

extension Role: TextCoded {
    public init?(text: String) { self.init(name: text) }
    public var text: String { name }
    public static var expectedText: String { "a role: tn, target or agent" }
    public init(from decoder: Decoder) throws { try self.init(textFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeText(to: encoder) }
}

/// How the agent steers transferred sessions to the target.
public enum TransferMode: String, Codable, Sendable, CaseIterable {
    /// Rewrite the destination MAC: the target is on the agent's segment.
    case l2
    /// Encapsulate (IPIP / IPv6-in-IPv6) to the target's address.
    case l3
}

/// How the agent steers (seed 000): by taking the TN's address over on the segment, or
/// inline on the host that forwards between the ports (a bridge), where nothing is taken over.
public enum AgentMode: String, Codable, Sendable, CaseIterable {
    /// Answer ARP/NDP for the TN's address and steer what then arrives (claims 1-16).
    case takeover
    /// Redirect the transferred sessions at the switch to the target's port (claims 17-18).
    case `switch`
}

/// Where a transfer is, as the API reports it. One enum for all three roles, because the API
/// reports them side by side; each role keeps its own subset (`AgentTransferState`,
/// `TNTransferState`, `TargetTransferState`):
///
/// - agent: `stored` → `active` → `waking` → `lingering` → `ended` (or `failed`)
/// - TN: `negotiating` → `registering` → `active` → `ending` → `ended` (or `failed`)
/// - target: `accepted` → `released`
public enum TransferState: String, Codable, Sendable, CaseIterable {
    /// Agent: written to the store ahead of its map entries (a registration in progress).
    case stored
    /// TN: offering the sessions to the target.
    case negotiating
    /// TN: the target accepted; registering with the agent.
    case registering
    /// Target: holding the TN's original address for sessions it accepted.
    case accepted
    /// Steered (agent), or moved away (TN).
    case active
    /// Agent: the wake-up is out; waiting for the TN to reclaim its address.
    case waking
    /// TN: the wake-up came; reclaiming the address.
    case ending
    /// Agent: the TN reclaimed; the rules stay a grace period for packets in flight.
    case lingering
    /// Over: the TN has its address back.
    case ended
    /// Target: let go of the sessions.
    case released
    /// Refused or rolled back.
    case failed
}

/// A transfer at the session agent (the `TransferState` of the same name in the API).
public enum AgentTransferState: String, Codable, Sendable, CaseIterable {
    case stored, active, waking, lingering, ended, failed
}

/// A transfer at its TN.
public enum TNTransferState: String, Codable, Sendable, CaseIterable {
    case negotiating, registering, active, ending, ended, failed
}

/// A transfer at its target.
public enum TargetTransferState: String, Codable, Sendable, CaseIterable {
    case accepted, released
}

extension TransferState {
    public init(_ s: AgentTransferState) { self = TransferState(rawValue: s.rawValue)! }
    public init(_ s: TNTransferState) { self = TransferState(rawValue: s.rawValue)! }
    public init(_ s: TargetTransferState) { self = TransferState(rawValue: s.rawValue)! }
}

/// What a batond runs as.
public enum DaemonRole: String, Codable, Sendable, CaseIterable {
    /// On the session agent.
    case agent
    /// On a TN or a target.
    case node
}
