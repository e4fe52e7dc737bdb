import BatonModel
import Foundation

// The bodies of batond's HTTP/JSON API (docs/api.md, docs/openapi.json). Both roles answer
// status and the transfer routes; devices, policies and registrations are the agent's;
// starting a transfer is the TN's.

/// `transfer start`: move `sessions` from this node (the TN) to the target `to`.
public struct TransferRequest: Codable, Sendable {
    /// A target peer's name (from `--peer NAME,KEY,ADDRESS`).
    public var to: String
    /// The sessions to move. Each destination must be the same local address (the original
    /// address); a nil destination port or source means "any" (see SessionMatch).
    public var sessions: [SessionMatch]
    /// The temporary address; nil picks one from the node's pool.
    public var temporary: IPAddress?
    /// l2 (the agent rewrites MACs; the target is on the TN's segment) or l3 (the agent
    /// encapsulates to the target, which decapsulates).
    public var mode: TransferMode
    /// End the transfer when all its sessions have been idle this long (seconds); nil: the
    /// agent's default.
    public var idleTimeout: Double?

    public init(to: String, sessions: [SessionMatch], temporary: IPAddress? = nil, mode: TransferMode = .l2,
                idleTimeout: Double? = nil) {
        self.to = to
        self.sessions = sessions
        self.temporary = temporary
        self.mode = mode
        self.idleTimeout = idleTimeout
    }
}

/// One transferred session as a role sees it.
public struct SessionInfo: Codable, Sendable {
    public var match: SessionMatch
    /// Where the agent steers it ("l2 → 02:…", "encap → 10.…").
    public var forward: String?
    public var packets: UInt64?
    public var bytes: UInt64?
    /// Seconds since its last packet at the agent; nil if none was seen.
    public var idleSeconds: Double?
    /// The agent saw a TCP FIN or RST.
    public var closed: Bool?

    public init(match: SessionMatch, forward: String? = nil, packets: UInt64? = nil, bytes: UInt64? = nil,
                idleSeconds: Double? = nil, closed: Bool? = nil) {
        self.match = match
        self.forward = forward
        self.packets = packets
        self.bytes = bytes
        self.idleSeconds = idleSeconds
        self.closed = closed
    }
}

/// A transfer as one role sees it.
public struct TransferInfo: Codable, Sendable {
    public var id: String
    /// This daemon's part in it: agent, tn or target.
    public var role: Role
    /// See docs/daemon.md. TN: negotiating, registering, active, ending, ended, failed; target:
    /// accepted, released; agent: stored, active, waking, lingering, ended, failed.
    public var state: TransferState
    public var original: IPAddress
    public var temporary: IPAddress?
    public var mode: TransferMode
    /// The target's address (and name, on the TN).
    public var target: String?
    public var sessions: [SessionInfo]
    /// Why it ended (operator, idle, closed, requested) or failed.
    public var reason: String?
    /// Unix time, seconds.
    public var started: Double
    public var ended: Double?
    /// Milestones in milliseconds since `started` ("accepted", "registered", "off-wire",
    /// "wake-up", "reclaimed", …).
    public var milestones: [String: Double]

    public init(id: String, role: Role, state: TransferState, original: IPAddress, temporary: IPAddress?, mode: TransferMode,
                target: String?, sessions: [SessionInfo], reason: String?, started: Double, ended: Double?,
                milestones: [String: Double]) {
        self.id = id
        self.role = role
        self.state = state
        self.original = original
        self.temporary = temporary
        self.mode = mode
        self.target = target
        self.sessions = sessions
        self.reason = reason
        self.started = started
        self.ended = ended
        self.milestones = milestones
    }
}

public struct DaemonStatus: Codable, Sendable {
    public var role: DaemonRole
    public var publicKey: String
    public var interface: String
    public var mac: MACAddress
    public var addresses: [String]
    public var port: UInt16
    public var activeTransfers: Int
    /// Messages rejected, by reason: forged, replayed, stale, misdirected, unknown-transfer,
    /// malformed, unexpected; the agent also unenrolled, rate-limited, not-owner,
    /// unenrolled-target, not-allowed; a node also untrusted (docs/daemon.md, "Logs").
    public var rejected: [String: Int]
    /// Node: addresses held as non-ARP local addresses (originals moved off the wire on a TN,
    /// accepted originals on a target).
    public var heldAddresses: [String]
    /// Node: temporary addresses in use.
    public var temporaryAddresses: [String]
    /// Agent: taken-over addresses.
    public var takeovers: [String]
    /// Agent: what the last start found in the pinned maps and did about it.
    public var reconcile: ReconcileSummary?

    public init(role: DaemonRole, publicKey: String, interface: String, mac: MACAddress, addresses: [String], port: UInt16,
                activeTransfers: Int, rejected: [String: Int], heldAddresses: [String] = [],
                temporaryAddresses: [String] = [], takeovers: [String] = []) {
        self.role = role
        self.publicKey = publicKey
        self.interface = interface
        self.mac = mac
        self.addresses = addresses
        self.port = port
        self.activeTransfers = activeTransfers
        self.rejected = rejected
        self.heldAddresses = heldAddresses
        self.temporaryAddresses = temporaryAddresses
        self.takeovers = takeovers
    }
}


/// `GET /v1/transfers`.
public struct TransferList: Codable, Sendable {
    public var transfers: [TransferInfo]
    public init(transfers: [TransferInfo]) { self.transfers = transfers }
}

/// An enrolled device (agent): a node that may register transfers for the addresses it owns,
/// and that may receive transfers where a policy allows.
public struct Device: Codable, Sendable, Equatable {
    /// 1-63 characters: letters, digits, '-', '_' and '.'.
    public var name: String
    /// Its batond public key (`batond key`), 43 base64url characters.
    public var publicKey: String
    /// The prefixes it owns, such as "10.0.0.3/32" or "2001:db8::/64". A registration's original
    /// address must fall in one of the TN's; a target's address in one of the target's.
    public var addresses: [String]
    /// Registrations this device may make per second (token bucket; nil: the agent's default).
    public var rateLimit: Double?
    /// Unix time of enrolment, seconds (set by the agent).
    public var enrolled: Double?

    public init(name: String, publicKey: String, addresses: [String], rateLimit: Double? = nil, enrolled: Double? = nil) {
        self.name = name
        self.publicKey = publicKey
        self.addresses = addresses
        self.rateLimit = rateLimit
        self.enrolled = enrolled
    }

    /// Device names: what `batonctl device` and the API accept: 1-63 ASCII letters, digits,
    /// '-', '_' and '.', the first a letter or digit (so that "." and ".." never name one).
    public static func validName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 63 else { return false }
        func alnum(_ u: Unicode.Scalar) -> Bool { u.isASCII && CharacterSet.alphanumerics.contains(u) }
        return alnum(first) && name.unicodeScalars.allSatisfy { alnum($0) || "-_.".unicodeScalars.contains($0) }
    }
}

public struct DeviceList: Codable, Sendable {
    public var devices: [Device]
    public init(devices: [Device]) { self.devices = devices }
}

/// A transfer policy (agent): TN device `from` may move sessions to target device `to`. Either
/// side may be "*" (any enrolled device). Without a policy that allows it, a transfer is refused.
public struct Policy: Codable, Sendable, Equatable {
    /// Set by the agent.
    public var id: Int?
    public var from: String
    public var to: String

    public init(id: Int? = nil, from: String, to: String) {
        self.id = id
        self.from = from
        self.to = to
    }
}

public struct PolicyList: Codable, Sendable {
    public var policies: [Policy]
    public init(policies: [Policy]) { self.policies = policies }
}

/// `POST /v1/registrations` (agent): sealed `register` messages (docs/protocol.md), base64,
/// as the TN would send them over UDP. Up to `RegistrationBatch.maximum` per request.
public struct RegistrationBatch: Codable, Sendable {
    public static let maximum = 1024
    public var envelopes: [String]
    public init(envelopes: [String]) { self.envelopes = envelopes }
}

/// One answer per envelope, in order: a sealed `registered` or `reject` for the TN, or, when
/// nothing could be sealed (forged, untrusted, malformed), only the error.
public struct RegistrationResult: Codable, Sendable {
    /// The transfer ID, when the envelope's header could be read.
    public var transfer: String?
    public var accepted: Bool
    /// A sealed answer, base64.
    public var envelope: String?
    public var error: String?

    public init(transfer: String?, accepted: Bool, envelope: String? = nil, error: String? = nil) {
        self.transfer = transfer
        self.accepted = accepted
        self.envelope = envelope
        self.error = error
    }
}

public struct RegistrationResults: Codable, Sendable {
    public var results: [RegistrationResult]
    public init(results: [RegistrationResult]) { self.results = results }
}

/// Every error answer: `{"code": "not-found", "error": "no transfer 0123…"}`.
public struct ErrorBody: Codable, Sendable {
    /// See `ControlError.Code`.
    public var code: String
    public var error: String
    public init(code: String, error: String) {
        self.code = code
        self.error = error
    }
}

/// What the agent's start-up reconcile did to make the pinned maps hold exactly the stored
/// rules and takeovers (docs/daemon.md, "Restarts").
public struct ReconcileSummary: Codable, Sendable, Equatable {
    /// Stored rules found in the maps as stored.
    public var rulesKept: Int
    /// Stored rules missing from the maps, written.
    public var rulesRestored: Int
    /// Stored rules found with another forwarding, rewritten.
    public var rulesRewritten: Int
    /// Map rules no stored transfer owns, removed.
    public var rulesRemoved: Int
    public var takeoversKept: Int
    public var takeoversRestored: Int
    public var takeoversRewritten: Int
    public var takeoversRemoved: Int
    /// Transfers that go on (active, waking).
    public var transfersResumed: Int
    /// Transfers whose registration had not been answered, rolled back.
    public var transfersRolledBack: Int
    /// Transfers that were lingering, cleared.
    public var transfersCleared: Int
    /// Wall time of the reconcile, seconds.
    public var seconds: Double

    public init(rulesKept: Int = 0, rulesRestored: Int = 0, rulesRewritten: Int = 0, rulesRemoved: Int = 0,
                takeoversKept: Int = 0, takeoversRestored: Int = 0, takeoversRewritten: Int = 0, takeoversRemoved: Int = 0,
                transfersResumed: Int = 0, transfersRolledBack: Int = 0, transfersCleared: Int = 0, seconds: Double = 0) {
        self.rulesKept = rulesKept
        self.rulesRestored = rulesRestored
        self.rulesRewritten = rulesRewritten
        self.rulesRemoved = rulesRemoved
        self.takeoversKept = takeoversKept
        self.takeoversRestored = takeoversRestored
        self.takeoversRewritten = takeoversRewritten
        self.takeoversRemoved = takeoversRemoved
        self.transfersResumed = transfersResumed
        self.transfersRolledBack = transfersRolledBack
        self.transfersCleared = transfersCleared
        self.seconds = seconds
    }
}
