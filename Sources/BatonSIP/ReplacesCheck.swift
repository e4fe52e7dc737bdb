/// A dialog as the Replaces check sees it (RFC 3891 3): its identifiers at the server, how
/// it was made and where it stands, and whose device holds it.
public struct DialogSummary: Hashable, Sendable {
    public enum State: Sendable { case early, confirmed, terminated }
    public var callID: String
    public var localTag: String
    public var remoteTag: String
    public var createdByInvite: Bool
    /// True for an early dialog of an INVITE the server sent (it CANCELs that one).
    public var initiatedHere: Bool
    public var state: State
    /// The device's user and instance on this leg.
    public var owner: GRUUOwner

    public init(callID: String, localTag: String, remoteTag: String, createdByInvite: Bool = true, initiatedHere: Bool = false,
                state: State, owner: GRUUOwner) {
        self.callID = callID
        self.localTag = localTag
        self.remoteTag = remoteTag
        self.createdByInvite = createdByInvite
        self.initiatedHere = initiatedHere
        self.state = state
        self.owner = owner
    }
}

/// RFC 3891's decision for an INVITE with Replaces, and seed 002's authorization: the new
/// device is the same user (authenticated AOR), its GRUU resolves to that AOR and names
/// another instance. Pure: it changes nothing, so a refusal leaves the call as it was.
public enum ReplacesCheck {
    /// The dialog to replace, or the refusal to answer with.
    /// - `dialogs`: every dialog of a Call-ID at the server.
    /// - `authenticatedAOR`: who the digest check proved the sender to be.
    /// - `senderGRUU`: the sender's GRUU owner (its Contact resolved by the registrar), nil when unknown.
    public static func decide(_ request: SIPMessage, dialogs: (String) -> [DialogSummary], authenticatedAOR: SIPURI?,
                              senderGRUU: GRUUOwner?) -> Result<DialogSummary, SIPRefusal> {
        let values = request.headers.values("replaces")
        // One Replaces, on an INVITE, not beside Join, readable: else 400.
        guard values.count == 1, request.method == "INVITE", request.headers.values("join").isEmpty,
              (request.headers.list("replaces") ?? []).count == 1 else {
            return .failure(SIPRefusal(400, "Bad Request - Replaces"))
        }
        guard let r = try? Replaces(parsing: values[0][...]) else { return .failure(SIPRefusal(400, "Bad Request - Replaces")) }
        // to-tag is the server's local tag, from-tag the remote's (RFC 3891 3).
        let matches = dialogs(r.callID).filter { $0.localTag == r.toTag && $0.remoteTag == r.fromTag }
        guard matches.count == 1, let d = matches.first, d.createdByInvite else {
            return .failure(SIPRefusal(481, "Call/Transaction Does Not Exist"))
        }
        if d.state == .terminated { return .failure(SIPRefusal(603, "Declined")) }
        if d.state == .confirmed && r.earlyOnly { return .failure(SIPRefusal(486, "Busy Here")) }
        if d.state == .early && !d.initiatedHere { return .failure(SIPRefusal(481, "Call/Transaction Does Not Exist")) }
        guard let aor = authenticatedAOR, aor.addressOfRecord.isEquivalent(to: d.owner.aor.addressOfRecord),
              let g = senderGRUU, g.aor.addressOfRecord.isEquivalent(to: d.owner.aor.addressOfRecord),
              g.instanceID != d.owner.instanceID else {
            return .failure(SIPRefusal(403, "Forbidden"))
        }
        return .success(d)
    }
}
