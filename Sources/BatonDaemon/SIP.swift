import BatonAPI
import BatonDataPlane
import BatonModel
import BatonSIP
import BatonSIPServer
import BatonStore
import Foundation

// The agent's SIP server (docs/sip.md): its calls' media are the agent's anchored sessions,
// its users are in the agent's store, its counters in the agent's metrics.

/// A call's ports from the relay pool, in the SIP server's terms (both media modes take them).
extension AnchorTable {
    func reserveMedia(family: IPAddress.Family) throws -> MediaReservation {
        let r = try reserve(family: family)
        return MediaReservation(anchor: r.anchor, relayPort: r.relayPort)
    }

    func releaseMedia(_ r: MediaReservation) { release(.init(anchor: r.anchor, relayPort: r.relayPort)) }
}

/// `MediaAnchors` over the agent's `AnchorTable`.
struct AgentMediaAnchors: MediaAnchors {
    let anchors: AnchorTable
    let dataPlane: DataPlane

    func reserve(family: IPAddress.Family) throws -> MediaReservation { try anchors.reserveMedia(family: family) }

    func release(_ r: MediaReservation) { anchors.releaseMedia(r) }

    func connect(_ r: MediaReservation, remote: Endpoint, device: Endpoint, rtpContinuity: Bool) throws -> String {
        let request = AnchorRequest(proto: .udp, remote: remote, device: device, rtpContinuity: rtpContinuity)
        return try anchors.create(request, reserved: .init(anchor: r.anchor, relayPort: r.relayPort)).id
    }

    func move(_ id: String, to device: Endpoint, lockout: Double?) throws {
        _ = try anchors.move(id, to: device, lockout: lockout, grace: nil)
    }

    func end(_ id: String, reason: String) throws { _ = try anchors.end(id, reason: reason) }

    func counters(_ id: String) -> (toDevice: UInt64, toRemote: UInt64)? {
        guard let e = try? anchors.entry(id), e.session.state == .active else { return nil }
        let a = e.session
        let toDevice = (try? dataPlane.rule(a.forwardMatch))??.counter.packets ?? 0
        let toRemote = (try? dataPlane.rule(a.reverseMatch(a.device)))??.counter.packets ?? 0
        return (toDevice, toRemote)
    }
}

/// `SIPCredentials` from the store's `sip_user` table.
struct StoreCredentials: SIPCredentials {
    let store: Store

    func credential(username: String) -> StoredCredential? {
        guard let u = try? store.sipUser(username) else { return nil }
        return StoredCredential(username: u.username, realm: u.realm,
                                ha1: Dictionary(uniqueKeysWithValues: u.ha1.compactMap { k, v in DigestAlgorithm(header: k).map { ($0, v) } }))
    }
}

extension DaemonMetrics: SIPMetrics {
    func message(received method: String) {
        // Methods we serve by name; anything else counted together (no unbounded labels).
        let known = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER"]
        registry.makeCounter(name: "baton_sip_requests_total", labels: [("method", known.contains(method) ? method : "other")],
                             help: "SIP requests received (retransmissions included), by method.").increment()
    }

    func refused(status: Int) {
        registry.makeCounter(name: "baton_sip_refusals_total", labels: [("status", "\(status)")],
                             help: "SIP requests answered with a status of 300 or above (and messages refused unanswered), by status.").increment()
    }

    func callStarted() {
        registry.makeCounter(name: "baton_sip_calls_total", help: "Calls the B2BUA set up (INVITEs it forwarded).").increment()
    }

    func callEnded(reason: String) {
        let r = reason.hasPrefix("bye") || ["cancelled", "no answer", "no ACK"].contains(reason) ? reason : reason.first?.isNumber == true ? "refused" : "failed"
        registry.makeCounter(name: "baton_sip_calls_ended_total", labels: [("reason", r)],
                             help: "Calls ended, by reason (bye from device/remote, refused, cancelled, no answer, no ACK, failed).").increment()
    }

    func switched() {
        registry.makeCounter(name: "baton_sip_switches_total", help: "Calls moved to another device of their user (INVITE with Replaces).").increment()
    }
}

extension Agent {
    var sipOff: ControlError { ControlError.notFound("the SIP server is off: start the agent with --sip-domain") }

    public func listSIPUsers() throws -> [SIPUser] {
        guard let sip else { throw sipOff }
        let domain = sip.configuration.domains.sorted().first ?? ""
        return try store.sipUsers().map { SIPUser(username: $0.username, realm: $0.realm, aor: "sip:\($0.username)@\(domain)", created: $0.created) }
    }

    public func addSIPUser(_ request: SIPUserRequest) throws -> SIPUser {
        guard let sip else { throw sipOff }
        guard (1...64).contains(request.username.utf8.count), request.username.utf8.allSatisfy(SIPURI.userCharacter) else {
            throw ControlError.invalid("invalid user name '\(request.username)': 1-64 characters of a SIP URI's user part")
        }
        guard (8...256).contains(request.password.count) else { throw ControlError.invalid("the password must have 8-256 characters") }
        let c = StoredCredential(username: request.username, realm: sip.configuration.realm, password: request.password)
        let u = StoredSIPUser(username: c.username, realm: c.realm, ha1: Dictionary(uniqueKeysWithValues: c.ha1.map { ($0.rawValue, $1) }),
                              created: Date().timeIntervalSince1970)
        guard try store.addSIPUser(u) else { throw ControlError.conflict("a SIP user \(u.username) exists") }
        logger.info("sip: user \(u.username) added")
        let domain = sip.configuration.domains.sorted().first ?? ""
        return SIPUser(username: u.username, realm: u.realm, aor: "sip:\(u.username)@\(domain)", created: u.created)
    }

    public func deleteSIPUser(_ username: String) throws {
        guard sip != nil else { throw sipOff }
        guard (1...64).contains(username.utf8.count), username.utf8.allSatisfy(SIPURI.userCharacter) else {
            throw ControlError.invalid("invalid user name '\(username)': 1-64 characters of a SIP URI's user part")
        }
        guard try store.deleteSIPUser(username) else { throw ControlError.notFound("no SIP user \(username)") }
        logger.info("sip: user \(username) removed")
    }

    public func listSIPRegistrations() throws -> [SIPRegistration] {
        guard let sip else { throw sipOff }
        return try sip.registrationInfos().map {
            SIPRegistration(aor: $0.aor, contact: $0.contact, instance: $0.instance, publicGRUU: $0.publicGRUU,
                            temporaryGRUUs: $0.temporaryGRUUs, expiresIn: $0.expiresIn)
        }
    }

    public func listSIPCalls() throws -> [SIPCall] {
        guard let sip else { throw sipOff }
        return try sip.callInfos().map(Self.sipCall)
    }

    public func showSIPCall(_ id: String) throws -> SIPCall {
        guard let sip else { throw sipOff }
        guard !id.isEmpty, id.count <= 16, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw ControlError.invalid("invalid call ID '\(id)': expected 1-16 lowercase hex digits")
        }
        guard let c = try sip.callInfos().last(where: { $0.id == id }) else { throw ControlError.notFound("no call \(id)") }
        return Self.sipCall(c)
    }

    static func sipCall(_ c: CallInfo) -> SIPCall {
        SIPCall(id: c.id, state: .init(rawValue: c.state) ?? .ended,
                legs: c.legs.map { l in
                    SIPLeg(role: l.role == "device" ? .device : .remote, callID: l.callID, localTag: l.localTag, remoteTag: l.remoteTag,
                           peer: l.peer, media: l.media, aor: l.aor, instance: l.instance)
                },
                rtpAnchor: c.rtpAnchor, rtcpAnchor: c.rtcpAnchor, anchor: c.anchor, relayPort: Int(c.relayPort),
                toDevice: c.toDevice, toRemote: c.toRemote,
                switches: c.switches, created: c.created, ended: c.ended, reason: c.reason,
                timeline: c.timeline.map { SIPTimelineEvent(event: $0.0, at: $0.1) })
    }
}
