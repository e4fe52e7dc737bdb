import BatonModel
import BatonSIP
import Foundation

/// A call as the API shows it (`batonctl sip calls`, `sip call ID`).
public struct CallInfo: Sendable {
    public struct LegInfo: Sendable {
        public var role: String               // "device" or "remote"
        public var callID: String
        public var localTag: String
        public var remoteTag: String?
        public var peer: String
        public var media: Endpoint?
        public var aor: String?
        public var instance: String?
    }
    public var id: String
    public var state: String
    public var legs: [LegInfo]
    public var rtpAnchor: String?
    public var rtcpAnchor: String?
    public var anchor: Endpoint
    public var relayPort: UInt16
    public var toDevice: UInt64?
    public var toRemote: UInt64?
    public var switches: Int
    public var created: Double
    public var ended: Double?
    public var reason: String?
    /// (event, Unix time) in order.
    public var timeline: [(String, Double)]

    var userCallID: String { legs.first { $0.role == "device" }?.callID ?? "" }

    /// How an ended call answers a Replaces for its device leg: terminated (603).
    var summary: DialogSummary {
        let u = legs.first { $0.role == "device" }!
        return DialogSummary(callID: u.callID, localTag: u.localTag, remoteTag: u.remoteTag ?? "", state: .terminated,
                             owner: GRUUOwner(aor: (try? SIPURI(u.aor ?? "sip:x@invalid")) ?? SIPURI(user: "x", host: .name("invalid")),
                                              instanceID: u.instance ?? ""))
    }
}

/// A binding as the API shows it (`batonctl sip registrations`).
public struct RegistrationInfo: Sendable {
    public var aor: String
    public var contact: String
    public var instance: String?
    public var publicGRUU: String?
    public var temporaryGRUUs: Int
    public var expiresIn: Int
}

extension SIPServer {
    func info(_ call: Call) -> CallInfo {
        func leg(_ l: Leg, _ role: String) -> CallInfo.LegInfo {
            CallInfo.LegInfo(role: role, callID: l.callID, localTag: l.localTag, remoteTag: l.remoteTag, peer: "\(l.peer)",
                             media: l.media, aor: l.owner?.aor.description, instance: l.owner?.instanceID)
        }
        let counters = call.rtpAnchor.flatMap { anchors.counters($0) }
        return CallInfo(id: call.id, state: call.state.rawValue,
                        legs: [leg(call.user, "device")] + (call.remote.map { [leg($0, "remote")] } ?? []),
                        rtpAnchor: call.rtpAnchor, rtcpAnchor: call.rtcpAnchor, anchor: call.rtp.anchor, relayPort: call.rtp.relayPort,
                        toDevice: counters?.toDevice, toRemote: counters?.toRemote, switches: call.switches,
                        created: call.created.timeIntervalSince1970, ended: call.ended?.timeIntervalSince1970, reason: call.reason,
                        timeline: call.timeline.map { ($0.0, $0.1.timeIntervalSince1970) })
    }

    /// Live calls oldest first, then the ended ones (last 256).
    public func callInfos() throws -> [CallInfo] {
        try read { s in s.calls.values.sorted { $0.created < $1.created }.map { s.info($0) } + s.endedCalls }
    }

    public func registrationInfos() throws -> [RegistrationInfo] {
        try read { s in
            let now = s.now
            return s.registrations.all(now: now).map { b in
                RegistrationInfo(aor: b.aor.description, contact: b.contact.description, instance: b.instanceID,
                                 publicGRUU: b.publicGRUU?.description, temporaryGRUUs: b.temporaryGRUUs.count,
                                 expiresIn: max(0, Int((b.expires - now).rounded())))
            }
        }
    }
}
