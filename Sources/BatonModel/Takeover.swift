/// A taken-over address: the agent answers for it and steers its packets.
/// Packets that match no session rule go to `defaultForward` (the TN through
/// its temporary address). Mirrors `struct baton_takeover`.
public struct Takeover: Equatable, Sendable, Codable {
    public var address: IPAddress
    public var defaultForward: Forwarding
    /// The MAC that ARP replies and neighbour advertisements carry; nil
    /// leaves ARP/NDP to the control plane (or to nobody).
    public var agentMAC: MACAddress?
    /// Set the Router flag in advertisements (the address owner is a router).
    public var router: Bool
    /// The TN's temporary address, where its other sessions continue: the
    /// tunnel destination of an encap default, kept for the record in L2 mode.
    public var temporaryAddress: IPAddress?

    public init(address: IPAddress, defaultForward: Forwarding, agentMAC: MACAddress? = nil, router: Bool = false,
                temporaryAddress: IPAddress? = nil) {
        self.address = address
        self.defaultForward = defaultForward
        self.agentMAC = agentMAC
        self.router = router
        self.temporaryAddress = temporaryAddress ?? (defaultForward.action == .encap ? defaultForward.outerDestination : nil)
    }

    public func validate() throws(ModelError) {
        guard !address.isUnspecified, !address.isMulticast else {
            throw .invalid("cannot take over \(address): not a unicast address")
        }
        if let mac = agentMAC, mac.isZero || mac.isMulticast {
            throw .invalid("agent MAC \(mac) must be a unicast address")
        }
        if let temp = temporaryAddress {
            guard temp.family == address.family, !temp.isUnspecified, !temp.isMulticast, temp != address else {
                throw .invalid("temporary address \(temp) must be another unicast \(address.family.rawValue) address")
            }
        }
        guard defaultForward.expires == nil else {
            throw .invalid("a takeover's default does not expire: a lockout is a session rule")
        }
        guard defaultForward.action != .relay else {
            throw .invalid("a takeover's default cannot relay: relaying is a session rule's (anchored sessions)")
        }
        try defaultForward.validate(for: address.family)
    }
}
