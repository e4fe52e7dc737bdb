/// An anchored session (docs/anchors.md): the remote party talks to `anchor`:`port`, the
/// device holding the session talks to `anchor`:`relayPort`, and the anchor relays between
/// them in XDP with a two-way rewrite. Moving the session to another device changes the
/// forward rule's destination in one map update; the remote sees the same address and port
/// throughout.
public struct AnchoredSession: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable { case active, ended }

    /// A device that held the session before a move: its reverse rule stays until `until`
    /// (Unix time) so its late packets are still relayed, or, locked out, its packets are
    /// dropped (and counted) until then.
    public struct Retired: Sendable, Equatable, Codable {
        public var device: Endpoint
        public var until: Double
        public var lockedOut: Bool

        public init(device: Endpoint, until: Double, lockedOut: Bool) {
            self.device = device
            self.until = until
            self.lockedOut = lockedOut
        }
    }

    /// 16 lowercase hex digits.
    public var id: String
    public var proto: IPProtocol
    /// The anchor's address (the agent's own) and the port the remote talks to.
    public var anchor: Endpoint
    /// The port of the anchor the device talks to (from the relay port pool).
    public var relayPort: UInt16
    public var remote: Endpoint
    public var device: Endpoint
    public var retired: [Retired]
    /// Seconds without a packet in either direction after which the session ends.
    public var idleTimeout: Double
    /// RTP continuity: the remote sees one RTP stream whichever device feeds it (the
    /// relays toward the remote rewrite SSRC, sequence and timestamp; docs/anchors.md).
    public var rtpContinuity: Bool
    public var state: State
    public var reason: String?
    /// Unix times, seconds.
    public var created: Double
    public var moved: Double?
    public var ended: Double?
    public var moves: Int

    public init(id: String, proto: IPProtocol, anchor: Endpoint, relayPort: UInt16, remote: Endpoint, device: Endpoint,
                idleTimeout: Double, created: Double, rtpContinuity: Bool = false) {
        self.id = id
        self.proto = proto
        self.anchor = anchor
        self.relayPort = relayPort
        self.remote = remote
        self.device = device
        self.retired = []
        self.idleTimeout = idleTimeout
        self.rtpContinuity = rtpContinuity
        self.state = .active
        self.created = created
        self.moves = 0
    }

    /// Exactly 16 lowercase hex digits.
    public static func validID(_ id: String) -> Bool {
        id.utf8.count == 16 && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The remote's packets, as it sends them (remote → anchor:port).
    public var forwardMatch: SessionMatch {
        SessionMatch(proto: proto, source: remote.address, sourcePort: remote.port,
                     destination: anchor.address, destinationPort: anchor.port)
    }

    /// A device's packets (device → anchor:relay port).
    public func reverseMatch(_ device: Endpoint) -> SessionMatch {
        SessionMatch(proto: proto, source: device.address, sourcePort: device.port,
                     destination: anchor.address, destinationPort: relayPort)
    }

    /// Where the remote's packets go: anchor:relay port → the device.
    public var toDevice: Forwarding.Rewrite {
        .init(source: anchor.address, sourcePort: relayPort, destination: device.address, destinationPort: device.port)
    }

    /// Where a device's packets go: anchor:port → the remote (one RTP stream, if asked).
    public var toRemote: Forwarding.Rewrite {
        .init(source: anchor.address, sourcePort: anchor.port, destination: remote.address, destinationPort: remote.port,
              rtp: rtpContinuity)
    }

    /// Checks what a session must be before any rule is written: UDP or TCP, one family
    /// throughout, unicast addresses, ports 1-65535, the two anchor ports distinct, the
    /// remote not the device, no endpoint the anchor itself.
    public func validate() throws(ModelError) {
        guard Self.validID(id) else { throw .invalid("anchor id must be 16 lowercase hex digits, not '\(id)'") }
        guard proto == .udp || proto == .tcp else { throw .invalid("an anchored session is udp or tcp, not \(proto)") }
        let family = anchor.address.family
        for (what, e) in [("anchor", anchor), ("remote", remote), ("device", device)] + retired.map({ ("earlier device", $0.device) }) {
            guard e.address.family == family else {
                throw .invalid("the \(what) \(e) is not of the anchor's family (\(family.rawValue)): a relay does not translate families")
            }
            guard !e.address.isUnspecified, !e.address.isMulticast else { throw .invalid("the \(what) address \(e.address) must be unicast") }
            guard e.port != 0 else { throw .invalid("the \(what) port must be 1-65535") }
        }
        guard relayPort != 0, relayPort != anchor.port else {
            throw .invalid("the relay port \(relayPort) must be 1-65535 and not the anchor port \(anchor.port)")
        }
        guard remote != device else { throw .invalid("the remote and the device are the same endpoint \(remote)") }
        for e in [remote, device] where e.address == anchor.address {
            throw .invalid("\(e) is the anchor's own address: it would relay to itself")
        }
        guard idleTimeout.isFinite, idleTimeout > 0 else { throw .invalid("idle timeout must be a positive number of seconds") }
        guard retired.allSatisfy({ $0.until.isFinite }) else { throw .invalid("an earlier device's end must be a finite time") }
    }

    /// The rules that carry this session now, given each endpoint's next-hop MAC: the
    /// forward rule, the device's reverse rule, and one per retired device: relayed until its
    /// grace ends, or, locked out, dropped until then (the end on the monotonic clock, as
    /// the data plane reads it).
    public func rules(hop: (Endpoint) -> MACAddress, sourceMAC: MACAddress) -> [SessionRule] {
        let toRemoteRelay = Forwarding.relay(toRemote, nextHop: hop(remote), sourceMAC: sourceMAC)
        var out = [SessionRule(match: forwardMatch, forward: .relay(toDevice, nextHop: hop(device), sourceMAC: sourceMAC)),
                   SessionRule(match: reverseMatch(device), forward: toRemoteRelay)]
        for r in retired where r.device != device {
            // Clamped into what nanoseconds since 1970 can say in 64 bits (year 2540).
            let end = BootClock.monotonicNanoseconds(ofWall: UInt64(min(max(0, r.until), 1.8e10) * 1e9))
            out.append(SessionRule(match: reverseMatch(r.device), forward: r.lockedOut ? .drop(until: end) : toRemoteRelay))
        }
        return out
    }
}
