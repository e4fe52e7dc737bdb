/// Where the data plane sends a packet: the value half of a session rule,
/// and a takeover's default. Mirrors `struct baton_fwd`.
public struct Forwarding: Equatable, Hashable, Sendable, Codable {
    public enum Action: String, Sendable, Codable, CaseIterable {
        /// Up the agent's own stack.
        case pass
        /// Dropped (lockouts: with `expires`, only until then).
        case drop
        /// Rewrite the MACs and send: back out (XDP_TX) or redirected to `ifindex`.
        case l2
        /// IPIP (IPv4) or IPv6-in-IPv6 (IPv6) to `outerDestination`, then as `l2`.
        case encap
        /// An anchored session's relay: the packet's addresses and ports become `rewrite`'s
        /// (UDP and TCP), its TTL or hop limit one less, then as `l2`. Rules only.
        case relay
    }

    /// What a relay rule makes of a packet: it leaves from `source`:`sourcePort` (the anchor)
    /// to `destination`:`destinationPort` (a device, or the remote party).
    public struct Rewrite: Equatable, Hashable, Sendable, Codable, CustomStringConvertible {
        public var source: IPAddress
        public var sourcePort: UInt16
        public var destination: IPAddress
        public var destinationPort: UInt16
        /// RTP continuity (toward the remote): the data plane keeps the RTP stream leaving
        /// from `source`:`sourcePort` one stream, whichever device feeds it (docs/anchors.md).
        public var rtp: Bool

        public init(source: IPAddress, sourcePort: UInt16, destination: IPAddress, destinationPort: UInt16, rtp: Bool = false) {
            self.source = source
            self.sourcePort = sourcePort
            self.destination = destination
            self.destinationPort = destinationPort
            self.rtp = rtp
        }

        private enum CodingKeys: String, CodingKey { case source, sourcePort, destination, destinationPort, rtp }

        /// `rtp` may be left out (false), and is written only when true.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(source: try c.decode(IPAddress.self, forKey: .source), sourcePort: try c.decode(UInt16.self, forKey: .sourcePort),
                      destination: try c.decode(IPAddress.self, forKey: .destination),
                      destinationPort: try c.decode(UInt16.self, forKey: .destinationPort),
                      rtp: try c.decodeIfPresent(Bool.self, forKey: .rtp) ?? false)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(source, forKey: .source)
            try c.encode(sourcePort, forKey: .sourcePort)
            try c.encode(destination, forKey: .destination)
            try c.encode(destinationPort, forKey: .destinationPort)
            if rtp { try c.encode(true, forKey: .rtp) }
        }

        public var description: String {
            func endpoint(_ a: IPAddress, _ p: UInt16) -> String { a.family == .v6 ? "[\(a)]:\(p)" : "\(a):\(p)" }
            return "\(endpoint(source, sourcePort)) → \(endpoint(destination, destinationPort))" + (rtp ? " (rtp one stream)" : "")
        }
    }

    public var action: Action
    /// Next hop: the target, the TN, or (encap) the router towards them.
    public var destinationMAC: MACAddress
    /// The agent's MAC on the egress interface.
    public var sourceMAC: MACAddress
    /// Egress interface; 0 sends it back out of the interface it came in on.
    public var ifindex: UInt32
    public var outerSource: IPAddress?
    public var outerDestination: IPAddress?
    /// Encap: the egress interface's MTU. A packet that would not fit with the outer header
    /// is answered with ICMP Fragmentation Needed (IPv4 with DF; dropped without) or Packet
    /// Too Big (IPv6), as a router would. nil: not checked.
    public var mtu: UInt16?
    /// Relay: the packet's new addresses and ports.
    public var rewrite: Rewrite?
    /// Drop in a rule (a lockout): the kernel's CLOCK_MONOTONIC time, in nanoseconds, from
    /// which the rule is as if absent. nil: for good. (Monotonic time does not survive a
    /// reboot; whoever stores a lockout keeps its end as wall-clock time.)
    public var expires: UInt64?

    public init(action: Action, destinationMAC: MACAddress = .zero, sourceMAC: MACAddress = .zero,
                ifindex: UInt32 = 0, outerSource: IPAddress? = nil, outerDestination: IPAddress? = nil,
                mtu: UInt16? = nil, rewrite: Rewrite? = nil, expires: UInt64? = nil) {
        self.action = action
        self.destinationMAC = destinationMAC
        self.sourceMAC = sourceMAC
        self.ifindex = ifindex
        self.outerSource = outerSource
        self.outerDestination = outerDestination
        self.mtu = mtu
        self.rewrite = rewrite
        self.expires = expires
    }

    private enum CodingKeys: String, CodingKey {
        case action, destinationMAC, sourceMAC, ifindex, outerSource, outerDestination, mtu, rewrite, expires
    }

    /// Fields an action does not use may be left out of JSON.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(action: try c.decode(Action.self, forKey: .action),
                  destinationMAC: try c.decodeIfPresent(MACAddress.self, forKey: .destinationMAC) ?? .zero,
                  sourceMAC: try c.decodeIfPresent(MACAddress.self, forKey: .sourceMAC) ?? .zero,
                  ifindex: try c.decodeIfPresent(UInt32.self, forKey: .ifindex) ?? 0,
                  outerSource: try c.decodeIfPresent(IPAddress.self, forKey: .outerSource),
                  outerDestination: try c.decodeIfPresent(IPAddress.self, forKey: .outerDestination),
                  mtu: try c.decodeIfPresent(UInt16.self, forKey: .mtu),
                  rewrite: try c.decodeIfPresent(Rewrite.self, forKey: .rewrite),
                  expires: try c.decodeIfPresent(UInt64.self, forKey: .expires))
    }

    /// The action sends the packet out (to `destinationMAC`, by `ifindex`).
    public var sends: Bool { action == .l2 || action == .encap || action == .relay }

    public static let pass = Forwarding(action: .pass)
    public static let drop = Forwarding(action: .drop)

    /// A lockout: dropped until `monotonicNanoseconds` (CLOCK_MONOTONIC), then as if absent.
    public static func drop(until monotonicNanoseconds: UInt64) -> Forwarding {
        Forwarding(action: .drop, expires: monotonicNanoseconds)
    }

    public static func l2(to destination: MACAddress, from source: MACAddress, ifindex: UInt32 = 0) -> Forwarding {
        Forwarding(action: .l2, destinationMAC: destination, sourceMAC: source, ifindex: ifindex)
    }

    public static func encap(to outerDestination: IPAddress, from outerSource: IPAddress,
                             nextHop: MACAddress, sourceMAC: MACAddress, ifindex: UInt32 = 0, mtu: UInt16? = nil) -> Forwarding {
        Forwarding(action: .encap, destinationMAC: nextHop, sourceMAC: sourceMAC, ifindex: ifindex,
                   outerSource: outerSource, outerDestination: outerDestination, mtu: mtu)
    }

    /// An anchored session's relay to `rewrite`, sent on to `nextHop` (the device, the remote,
    /// or the router toward them).
    public static func relay(_ rewrite: Rewrite, nextHop: MACAddress, sourceMAC: MACAddress, ifindex: UInt32 = 0) -> Forwarding {
        Forwarding(action: .relay, destinationMAC: nextHop, sourceMAC: sourceMAC, ifindex: ifindex, rewrite: rewrite)
    }

    /// The smallest MTU an encap forward may name: the least every link of the family
    /// carries (576, 1280) plus the outer header. The Fragmentation Needed or Packet Too
    /// Big answer advertises the MTU less the outer header, and a host ignores an
    /// advertised MTU below its family's minimum (RFC 8201 section 4, RFC 1191).
    public static func minimumMTU(_ family: IPAddress.Family) -> UInt16 { family == .v4 ? 576 + 20 : 1280 + 40 }

    /// Checks that this can carry packets of `family`: MACs set for the
    /// sending actions; the tunnel's addresses of the same family (the data
    /// plane encapsulates IPv4 in IPv4 and IPv6 in IPv6).
    public func validate(for family: IPAddress.Family) throws(ModelError) {
        if let expires {
            guard action == .drop else { throw .invalid("only a drop expires (a lockout); \(action.rawValue) does not") }
            guard expires > 0 else { throw .invalid("a lockout's end must be a time after boot (got 0)") }
        }
        switch action {
        case .pass, .drop:
            return
        case .l2, .encap, .relay:
            guard !destinationMAC.isZero, !destinationMAC.isMulticast else {
                throw .invalid("next-hop MAC \(destinationMAC) must be a unicast address")
            }
            guard !sourceMAC.isZero, !sourceMAC.isMulticast else {
                throw .invalid("source MAC \(sourceMAC) must be the agent's unicast address")
            }
        }
        if action == .encap {
            guard let src = outerSource, let dst = outerDestination else {
                throw .invalid("encap needs an outer source and destination address")
            }
            guard src.family == family, dst.family == family else {
                throw .invalid("encap of \(family.rawValue) traffic needs \(family.rawValue) tunnel addresses (got \(src) -> \(dst))")
            }
            guard !dst.isUnspecified, !dst.isMulticast else {
                throw .invalid("tunnel destination \(dst) must be a unicast address")
            }
            if let mtu, mtu < Self.minimumMTU(family) {
                throw .invalid("mtu \(mtu) is below \(Self.minimumMTU(family)): with the outer header it leaves less than the \(Self.minimumMTU(family) - (family == .v4 ? 20 : 40)) bytes a \(family.rawValue) host accepts as a path MTU")
            }
        }
        if action == .relay {
            guard let r = rewrite else { throw .invalid("relay needs the rewrite: new source and destination with their ports") }
            guard r.source.family == family, r.destination.family == family else {
                throw .invalid("relay of \(family.rawValue) traffic needs \(family.rawValue) addresses (got \(r))")
            }
            for a in [r.source, r.destination] where a.isUnspecified || a.isMulticast {
                throw .invalid("relay address \(a) must be a unicast address")
            }
            guard r.sourcePort != 0, r.destinationPort != 0 else {
                throw .invalid("relay ports must be 1-65535 (got \(r))")
            }
        }
    }
}
