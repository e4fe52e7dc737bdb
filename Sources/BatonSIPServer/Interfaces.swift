import BatonModel
import BatonSIP

/// Media anchored for a call: what the SIP server asks of the agent's anchored sessions
/// (docs/anchors.md). The agent implements it over its `AnchorTable`; the server never
/// touches a map itself.
public protocol MediaAnchors: Sendable {
    /// Two ports held before the remote's media is known: the remote side talks to `anchor`,
    /// the user's device to `anchor.address:relayPort`.
    func reserve(family: IPAddress.Family) throws -> MediaReservation
    func release(_ r: MediaReservation)
    /// Turns a reservation into an anchored session relaying `remote` ↔ `device`; its ID.
    func connect(_ r: MediaReservation, remote: Endpoint, device: Endpoint, rtpContinuity: Bool) throws -> String
    /// Make-before-break to another device; `lockout`: the old device's packets dropped that long.
    func move(_ id: String, to device: Endpoint, lockout: Double?) throws
    func end(_ id: String, reason: String) throws
    /// Packets relayed toward the device and toward the remote, nil when the anchor is gone.
    func counters(_ id: String) -> (toDevice: UInt64, toRemote: UInt64)?
}

public struct MediaReservation: Sendable, Hashable {
    public var anchor: Endpoint
    public var relayPort: UInt16
    public init(anchor: Endpoint, relayPort: UInt16) {
        self.anchor = anchor
        self.relayPort = relayPort
    }
    /// Where the user's device sends.
    public var deviceSide: Endpoint { Endpoint(address: anchor.address, port: relayPort) }
}

/// The SIP users' stored credentials (HA1 only), by user name.
public protocol SIPCredentials: Sendable {
    func credential(username: String) -> StoredCredential?
}

/// What the server counts (the agent's Prometheus registry implements it).
public protocol SIPMetrics: Sendable {
    func message(received method: String)
    func refused(status: Int)
    func callStarted()
    func callEnded(reason: String)
    func switched()
}
