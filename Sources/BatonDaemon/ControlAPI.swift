import BatonDataPlane
import BatonModel
import Foundation

// What batonctl and batond say to each other over the control socket (one
// JSON object per line). Both roles answer `status` and the `transfer.*`
// commands; `transfer.start` is the TN's.

public struct ControlRequest: Codable, Sendable {
    public enum Command: String, Codable, Sendable {
        case status
        case transferStart = "transfer.start"
        case transferList = "transfer.list"
        case transferShow = "transfer.show"
        case transferEnd = "transfer.end"
    }

    public var command: Command
    /// transfer.show, transfer.end: the transfer's ID.
    public var transfer: String?
    /// transfer.start.
    public var start: TransferRequest?

    public init(command: Command, transfer: String? = nil, start: TransferRequest? = nil) {
        self.command = command
        self.transfer = transfer
        self.start = start
    }
}

/// `transfer start`: move `sessions` from this node (the TN) to the target `to`.
public struct TransferRequest: Codable, Sendable {
    /// A target peer's name (from `--peer NAME,KEY,ADDRESS`).
    public var to: String
    /// The sessions to move. Each destination must be the same local address (the original
    /// address); a nil destination port or source means "any" (see SessionMatch).
    public var sessions: [SessionMatch]
    /// The temporary address; nil picks one from the node's pool.
    public var temporary: IPAddress?
    /// "l2" (the agent rewrites MACs; the target is on the TN's segment) or "l3" (the agent
    /// encapsulates to the target, which decapsulates).
    public var mode: String
    /// End the transfer when all its sessions have been idle this long (seconds); nil: the
    /// agent's default.
    public var idleTimeout: Double?

    public init(to: String, sessions: [SessionMatch], temporary: IPAddress? = nil, mode: String = "l2",
                idleTimeout: Double? = nil) {
        self.to = to
        self.sessions = sessions
        self.temporary = temporary
        self.mode = mode
        self.idleTimeout = idleTimeout
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var status: DaemonStatus?
    public var transfers: [TransferInfo]?
    public var transfer: TransferInfo?

    public init(ok: Bool = true, error: String? = nil, status: DaemonStatus? = nil, transfers: [TransferInfo]? = nil,
                transfer: TransferInfo? = nil) {
        self.ok = ok
        self.error = error
        self.status = status
        self.transfers = transfers
        self.transfer = transfer
    }

    public static func failure(_ message: String) -> ControlResponse { ControlResponse(ok: false, error: message) }
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
    /// "agent", "tn" or "target": this daemon's part in it.
    public var role: String
    /// See docs/daemon.md. TN: negotiating, registering, active, ending, ended, failed; target:
    /// accepted, released; agent: active, waking, lingering, ended.
    public var state: String
    public var original: IPAddress
    public var temporary: IPAddress?
    public var mode: String
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

    public init(id: String, role: String, state: String, original: IPAddress, temporary: IPAddress?, mode: String,
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
    /// "agent" or "node".
    public var role: String
    public var publicKey: String
    public var interface: String
    public var mac: MACAddress
    public var addresses: [String]
    public var port: UInt16
    public var activeTransfers: Int
    /// Messages rejected, by reason (forged, replayed, stale, untrusted, misdirected,
    /// unknown-transfer, malformed, unexpected).
    public var rejected: [String: Int]
    /// Node: addresses held as non-ARP local addresses (originals moved off the wire on a TN,
    /// accepted originals on a target).
    public var heldAddresses: [String]
    /// Node: temporary addresses in use.
    public var temporaryAddresses: [String]
    /// Agent: taken-over addresses.
    public var takeovers: [String]

    public init(role: String, publicKey: String, interface: String, mac: MACAddress, addresses: [String], port: UInt16,
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

/// Typed calls over a `ControlClient`.
public struct Control: Sendable {
    public let path: String
    public let timeout: Double

    public init(path: String, timeout: Double = 30) {
        self.path = path
        self.timeout = timeout
    }

    public func call(_ request: ControlRequest) throws -> ControlResponse {
        let client = try ControlClient(path: path, timeout: timeout)
        defer { client.close() }
        let line = try client.exchange(Array(try JSONEncoder().encode(request)))
        let response: ControlResponse
        do {
            response = try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        } catch {
            throw ControlError("the daemon's answer is not understood: \(error)")
        }
        guard response.ok else { throw ControlError(response.error ?? "the daemon refused without a reason") }
        return response
    }

    public func status() throws -> DaemonStatus {
        guard let s = try call(ControlRequest(command: .status)).status else { throw ControlError("no status in the answer") }
        return s
    }

    public func start(_ request: TransferRequest) throws -> TransferInfo {
        guard let t = try call(ControlRequest(command: .transferStart, start: request)).transfer else {
            throw ControlError("no transfer in the answer")
        }
        return t
    }

    public func list() throws -> [TransferInfo] {
        try call(ControlRequest(command: .transferList)).transfers ?? []
    }

    public func show(_ id: String) throws -> TransferInfo {
        guard let t = try call(ControlRequest(command: .transferShow, transfer: id)).transfer else {
            throw ControlError("no transfer in the answer")
        }
        return t
    }

    @discardableResult
    public func end(_ id: String) throws -> TransferInfo {
        guard let t = try call(ControlRequest(command: .transferEnd, transfer: id)).transfer else {
            throw ControlError("no transfer in the answer")
        }
        return t
    }
}

/// Serves `ControlRequest`s with `handler`, turning thrown errors into failure responses.
func controlHandler(_ handler: @escaping @Sendable (ControlRequest) throws -> ControlResponse) -> @Sendable ([UInt8]) -> [UInt8] {
    { line in
        let response: ControlResponse
        do {
            let request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
            response = try handler(request)
        } catch let e as DecodingError {
            response = .failure("malformed control request: \(describe(e))")
        } catch {
            response = .failure("\(error)")
        }
        return Array((try? JSONEncoder().encode(response)) ?? Data(#"{"ok":false,"error":"internal: response not encodable"}"#.utf8))
    }
}

private func describe(_ e: DecodingError) -> String {
    switch e {
    case .dataCorrupted(let c), .keyNotFound(_, let c), .typeMismatch(_, let c), .valueNotFound(_, let c):
        let path = c.codingPath.map(\.stringValue).joined(separator: ".")
        return (path.isEmpty ? "" : "\(path): ") + c.debugDescription
    @unknown default:
        return "\(e)"
    }
}
