import BatonModel
import BatonSIP
import Foundation
import NIOCore

/// One leg of a call: a dialog between the server and a device or the remote party.
struct Leg {
    var callID: String
    var localTag: String
    var remoteTag: String?
    /// Our side's and the peer's From/To values without tags.
    var local: NameAddress
    var remote: NameAddress
    var localCSeq: UInt32
    /// Where in-dialog requests go: the peer's Contact, and its address.
    var remoteTarget: SIPAnyURI
    var peer: SIPPeer
    /// The server sent the INVITE (a UAC leg) or received it.
    var uac: Bool
    var confirmed = false
    /// The device's user and instance (user legs only).
    var owner: GRUUOwner?
    /// The peer's media (RTP, RTCP) from its SDP.
    var media: Endpoint?
    var rtcp: Endpoint?

    /// A request in this dialog (BYE, ACK…), a new CSeq for all but ACK; its Via names the
    /// leg's transport and `sentBy` (the server's host:port).
    mutating func request(_ method: String, from sentBy: String, cseq: UInt32? = nil) -> SIPMessage {
        if method != "ACK" { localCSeq += 1 }
        var h = SIPHeaders()
        h.add("Via", SIPServer.via(peer.transport, sentBy: sentBy))
        h.add("Max-Forwards", "70")
        var from = local
        from.parameters = [SIPParameter("tag", localTag)]
        var to = remote
        to.parameters = remoteTag.map { [SIPParameter("tag", $0)] } ?? []
        h.add("From", from.description)
        h.add("To", to.description)
        h.add("Call-ID", callID)
        h.add("CSeq", "\(cseq ?? localCSeq) \(method)")
        return SIPMessage(startLine: .request(method: method, uri: remoteTarget), headers: h)
    }

    func summary(state: DialogSummary.State) -> DialogSummary? {
        guard let owner, let remoteTag else { return nil }
        return DialogSummary(callID: callID, localTag: localTag, remoteTag: remoteTag, createdByInvite: true,
                             initiatedHere: uac, state: state, owner: owner)
    }
}

/// A call through the B2BUA: the user's leg (the device, the side a switch moves) and the
/// remote party's leg, with their media anchored (RTP and RTCP, one anchored session each).
final class Call {
    enum State: String { case setup, confirmed, ended }

    let id: String
    var state: State = .setup
    var user: Leg
    var remote: Leg?
    /// Which leg sent the first INVITE.
    let userCalled: Bool
    /// The INVITE the server answers (the caller's), until it has its final answer and ACK.
    var upstream: SIPMessage
    var downstreamInvite: SIPMessage?
    var rtp: MediaReservation
    var rtcp: MediaReservation
    var rtpAnchor: String?
    var rtcpAnchor: String?
    /// The remote party's SDP with media anchored as the user's devices see it.
    var sdpForDevice: SessionDescription?
    var switches = 0
    var timeline: [(String, Date)] = []
    let created = Date()
    var ended: Date?
    var reason: String?
    /// A device taking the call over: its leg, answered 200, waiting for its ACK.
    var replacing: (leg: Leg, invite: SIPMessage)?
    /// The ringing device whose early dialog another device replaced (its INVITE CANCELled).
    var pickedUpFrom: Leg?

    init(id: String, user: Leg, userCalled: Bool, upstream: SIPMessage, rtp: MediaReservation, rtcp: MediaReservation) {
        self.id = id
        self.user = user
        self.userCalled = userCalled
        self.upstream = upstream
        self.rtp = rtp
        self.rtcp = rtcp
    }

    func note(_ event: String) { timeline.append((event, Date())) }
}

extension SIPServer {
    // MARK: - A new call

    func invite(_ m: SIPMessage, from peer: SIPPeer) {
        if m.to?.tag != nil {
            // A re-INVITE: the media stays anchored as it is; offers that change it are not taken.
            respond(to: m, 488, "Not Acceptable Here - re-INVITE not supported")
            return
        }
        if !m.headers.values("replaces").isEmpty {
            replace(m, from: peer)
            return
        }
        guard let from = m.from, let fromURI = from.uri.sipURI, let target = m.requestURI?.sipURI ?? m.to?.uri.sipURI else {
            respond(to: m, 416, "Unsupported URI Scheme")
            return
        }
        // A caller of our domains proves who it is; a remote party calls our users as it is.
        var callerOwner: GRUUOwner?
        if case .name(let d) = fromURI.host, configuration.domains.contains(d) {
            guard let user = authenticate(m) else { return }
            guard fromURI.user == user else {
                respond(to: m, 403, "Forbidden - \(user) may not call as \(fromURI.addressOfRecord)")
                return
            }
            guard let contact = m.headers.list("contact")?.first.flatMap({ try? NameAddress($0) })?.uri.sipURI else {
                respond(to: m, 400, "Bad Request - no Contact")
                return
            }
            callerOwner = owner(of: contact) ?? GRUUOwner(aor: fromURI.addressOfRecord, instanceID: "")
        }
        guard m.headers["content-type"]?.lowercased().hasPrefix("application/sdp") == true,
              let offer = try? SessionDescription(parsing: m.body), let offerMedia = offer.rtpEndpoint(0) else {
            respond(to: m, 488, "Not Acceptable Here - an SDP offer with media is needed")
            return
        }
        // Where the call goes: a user of ours (the most recent binding) or a routed domain.
        var calleeOwner: GRUUOwner?
        let requestURI: SIPURI
        let destination: SIPPeer
        if case .name(let d) = target.host, configuration.domains.contains(d) {
            guard let b = registrations.bindings(of: target.addressOfRecord, now: now).max(by: { $0.expires < $1.expires }),
                  let p = Self.peer(b.contact) else {
                respond(to: m, 480, "Temporarily Unavailable")
                return
            }
            requestURI = b.contact
            destination = p
            calleeOwner = b.instanceID.map { GRUUOwner(aor: b.aor, instanceID: $0) } ?? GRUUOwner(aor: b.aor, instanceID: "")
        } else if case .name(let d) = target.host, let hop = configuration.routes[d],
                  let p = try? SocketAddress(ipAddress: "\(hop.address)", port: Int(hop.port)) {
            requestURI = target
            destination = SIPPeer(transport: .udp, address: p)
        } else {
            respond(to: m, 404, "Not Found")
            return
        }
        // The user's leg is the callee's when the caller is a remote party, else the caller's.
        let userIsCallee = callerOwner == nil
        guard callerOwner != nil || calleeOwner != nil else {
            respond(to: m, 403, "Forbidden - no user of \(configuration.domains.sorted().joined(separator: ", ")) in this call")
            return
        }
        let rtp: MediaReservation, rtcp: MediaReservation
        do {
            rtp = try anchors.reserve(family: offerMedia.address.family)
            do { rtcp = try anchors.reserve(family: offerMedia.address.family) } catch {
                anchors.release(rtp)
                throw error
            }
        } catch {
            logger.warning("sip: no media ports for \(m.callID ?? ""): \(error)")
            respond(to: m, 503, "Service Unavailable - no media ports")
            return
        }

        // The caller's leg: we are its UAS.
        let callerContact = m.headers.list("contact")?.first.flatMap { try? NameAddress($0) }?.uri ?? .sip(fromURI)
        let callerLeg = Leg(callID: m.callID!, localTag: Self.newTag(), remoteTag: from.tag, local: stripped(m.to!),
                            remote: stripped(from), localCSeq: 0, remoteTarget: callerContact, peer: peer, uac: false,
                            owner: callerOwner, media: offerMedia, rtcp: offer.rtcpEndpoint(0))
        // The callee's leg: we are its UAC, with a Call-ID and tag of our own.
        var calleeLeg = Leg(callID: Self.newTag() + "@" + hostText(configuration.listen.address), localTag: Self.newTag(),
                            remoteTag: nil, local: stripped(from), remote: stripped(m.to!), localCSeq: 0,
                            remoteTarget: .sip(requestURI), peer: destination, uac: true, owner: calleeOwner)
        // The INVITE first: the leg kept in the call then has its CSeq (a later BYE counts on).
        var invite = calleeLeg.request("INVITE", from: sentBy)
        let callID = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        let call: Call
        if userIsCallee {
            call = Call(id: callID, user: calleeLeg, userCalled: false, upstream: m, rtp: rtp, rtcp: rtcp)
            call.remote = callerLeg
        } else {
            call = Call(id: callID, user: callerLeg, userCalled: true, upstream: m, rtp: rtp, rtcp: rtcp)
            call.remote = calleeLeg
        }
        calls[callID] = call
        metrics?.callStarted()
        call.note("invite received")

        // The offer as the callee sees it: media at the anchor's side it talks to.
        let calleeSees = userIsCallee ? (rtp.deviceSide, rtcp.deviceSide) : (rtp.anchor, rtcp.anchor)
        let downstreamOffer = anchorOnly(offer).anchoring(media: 0, rtp: calleeSees.0, rtcp: calleeSees.1)
        invite.startLine = .request(method: "INVITE", uri: .sip(requestURI))
        let mf = m.headers["max-forwards"].flatMap { Int($0) } ?? 70
        invite.headers.set("Max-Forwards", "\(max(0, mf - 1))")
        invite.headers.add("Contact", contact(destination.transport))
        invite.headers.add("Content-Type", "application/sdp")
        invite.body = downstreamOffer.bytes
        call.downstreamInvite = invite
        start(invite, to: destination) { [self] event in downstream(call, event) }
        call.note("invite sent")
        logger.info("sip: call \(call.id): \(from.uri) → \(target.addressOfRecord) at \(destination)")
    }

    /// The callee's answers to our INVITE.
    func downstream(_ call: Call, _ event: ClientEvent) {
        if call.pickedUpFrom != nil {
            ringingDeviceAnswered(call, event)
            return
        }
        guard case .response(let r) = event else {
            end(call, reason: "no answer")
            respond(to: call.upstream, 408, "Request Timeout")
            return
        }
        let status = r.status!
        let calleeIsUser = !call.userCalled
        if status < 200 {
            // The user's device ringing: its early dialog, which a Replaces may name.
            if calleeIsUser, status > 100, call.user.remoteTag == nil, let tag = r.to?.tag {
                call.user.remoteTag = tag
                if let c = r.headers.list("contact")?.first.flatMap({ try? NameAddress($0) }) { call.user.remoteTarget = c.uri }
            }
            if status > 100 {
                var relay = call.upstream.response(status, r.startLine.reason, toTag: callerTag(call))
                relay.headers.add("Contact", contact(answering: call.upstream))
                respond(to: call.upstream, relay)
            }
            return
        }
        if status >= 300 {
            call.note("refused \(status)")
            respond(to: call.upstream, call.upstream.response(status, r.startLine.reason, toTag: callerTag(call)))
            end(call, reason: "\(status)")
            return
        }
        // 2xx: the dialog with the callee.
        var callee = calleeIsUser ? call.user : call.remote!
        if callee.confirmed {
            // A retransmitted 2xx: ACK it again.
            send(callee.request("ACK", from: sentBy, cseq: r.cseq?.number ?? 1), to: callee.peer)
            return
        }
        callee.remoteTag = r.to?.tag
        if let c = r.headers.list("contact")?.first.flatMap({ try? NameAddress($0) }) {
            callee.remoteTarget = c.uri
            // A TCP leg stays on its connection; a UDP leg follows the Contact.
            if let u = c.uri.sipURI, let p = Self.peer(u), p.transport == callee.peer.transport, !p.reliable { callee.peer = p }
        }
        callee.confirmed = true
        guard let answer = try? SessionDescription(parsing: r.body), let media = answer.rtpEndpoint(0) else {
            if calleeIsUser { call.user = callee } else { call.remote = callee }
            send(callee.request("ACK", from: sentBy, cseq: r.cseq?.number ?? 1), to: callee.peer)
            hangUp(call, leg: calleeIsUser ? .user : .remote)
            respond(to: call.upstream, call.upstream.response(488, "Not Acceptable Here - no SDP answer", toTag: callerTag(call)))
            end(call, reason: "no SDP answer")
            return
        }
        callee.media = media
        callee.rtcp = answer.rtcpEndpoint(0)
        if calleeIsUser { call.user = callee } else { call.remote = callee }
        send(callee.request("ACK", from: sentBy, cseq: r.cseq?.number ?? 1), to: callee.peer)
        call.note("callee answered")

        // Media: the remote party ↔ anchor:port, the device ↔ anchor:relay port.
        let userMedia = call.user.media!, remoteMedia = call.remote!.media!
        do {
            call.rtpAnchor = try anchors.connect(call.rtp, remote: remoteMedia, device: userMedia, rtpContinuity: configuration.rtpContinuity)
            if let ur = call.user.rtcp, let rr = call.remote!.rtcp {
                call.rtcpAnchor = try anchors.connect(call.rtcp, remote: rr, device: ur, rtpContinuity: false)
            } else {
                anchors.release(call.rtcp)
            }
        } catch {
            logger.error("sip: call \(call.id): anchoring its media failed: \(error)")
            hangUp(call, leg: calleeIsUser ? .user : .remote)
            respond(to: call.upstream, call.upstream.response(500, "Server Internal Error - media", toTag: callerTag(call)))
            end(call, reason: "media: \(error)")
            return
        }
        call.note("media anchored")
        // The caller's answer: the callee's SDP, media at the anchor's side the caller talks to.
        let callerSees = calleeIsUser ? (call.rtp.anchor, call.rtcp.anchor) : (call.rtp.deviceSide, call.rtcp.deviceSide)
        let upstreamAnswer = anchorOnly(answer).anchoring(media: 0, rtp: callerSees.0, rtcp: callerSees.1)
        // What a device taking the call over is answered: the remote's SDP at the relay side.
        let remoteSDP = calleeIsUser ? (try? SessionDescription(parsing: call.upstream.body)) : answer
        call.sdpForDevice = remoteSDP.map { anchorOnly($0).anchoring(media: 0, rtp: call.rtp.deviceSide, rtcp: call.rtcp.deviceSide) }
        var ok = call.upstream.response(200, "OK", toTag: callerTag(call))
        ok.headers.add("Contact", contact(answering: call.upstream))
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = upstreamAnswer.bytes
        answerUntilACK(call.upstream, ok, call: call)
        call.note("caller answered")
    }

    /// Our tag on the caller's leg.
    func callerTag(_ call: Call) -> String { call.userCalled ? call.user.localTag : call.remote!.localTag }

    /// Sends a 2xx to an INVITE and again at T1, 2·T1… (capped at T2) until its ACK (13.3.1.4);
    /// without one after 64·T1 the dialog is ended with a BYE.
    func answerUntilACK(_ invite: SIPMessage, _ ok: SIPMessage, call: Call) {
        respond(to: invite, ok)
        let t = configuration.timers
        let key = TimerKey.call(invite.callID!, "2xx")
        func again(_ interval: Double, _ total: Double) {
            arm(key, after: interval) { [self] in
                if total + interval >= 64 * t.t1 {
                    logger.info("sip: call \(call.id): no ACK for the 200 to \(invite.callID!): hanging up")
                    if call.replacing?.invite.callID == invite.callID {
                        var leg = call.replacing!.leg
                        call.replacing = nil
                        send(leg.request("BYE", from: sentBy), to: leg.peer)
                    } else {
                        hangUp(call, leg: .user)
                        hangUp(call, leg: .remote)
                        end(call, reason: "no ACK")
                    }
                    return
                }
                respond(to: invite, ok)
                again(min(2 * interval, t.t2), total + interval)
            }
        }
        again(t.t1, 0)
    }

    /// An ACK outside any transaction: the ACK of a 2xx we sent.
    func ackOf2xx(_ m: SIPMessage, from peer: SIPPeer) {
        guard let callID = m.callID else { return }
        disarm(.call(callID, "2xx"))
        for call in calls.values {
            if call.state == .setup, call.upstream.callID == callID {
                call.state = .confirmed
                if call.userCalled { call.user.confirmed = true } else { call.remote!.confirmed = true }
                call.note("confirmed")
                return
            }
            if let r = call.replacing, r.invite.callID == callID {
                completeSwitch(call)
                return
            }
        }
    }

    /// A 2xx whose client transaction is gone: ACK it again from its dialog.
    func retransmitted2xx(_ r: SIPMessage) {
        for call in calls.values {
            for which in [LegRole.user, .remote] {
                guard var leg = which == .user ? call.user : call.remote, leg.uac, leg.callID == r.callID else { continue }
                send(leg.request("ACK", from: sentBy, cseq: r.cseq?.number ?? 1), to: leg.peer)
            }
        }
    }

    // MARK: - CANCEL and BYE

    func cancel(_ m: SIPMessage, from peer: SIPPeer) {
        var key = ServerTransactionKey(m)!
        let (tx, actions) = ServerTransaction.start(m, reliable: peer.reliable, timers: configuration.timers)
        servers[key] = ServerEntry(tx: tx, peer: peer)
        perform(actions.filter { if case .deliver = $0 { return false } else { return true } }, server: key)
        key.method = "INVITE"
        guard let invite = servers[key], invite.tx.state == .proceeding else {
            respond(to: m, 481, "Call/Transaction Does Not Exist")
            return
        }
        respond(to: m, m.response(200, "OK", toTag: nil))
        guard let call = calls.values.first(where: { $0.upstream.callID == m.callID && $0.state == .setup }) else {
            respond(to: invite.tx.request, 487, "Request Terminated")
            return
        }
        respond(to: call.upstream, call.upstream.response(487, "Request Terminated", toTag: callerTag(call)))
        cancelDownstream(call, peer: (call.userCalled ? call.remote! : call.user).peer)
        call.note("cancelled")
        end(call, reason: "cancelled")
    }

    /// CANCEL of our INVITE to the callee (RFC 3261 9.1: its Via, From, To, Call-ID and CSeq number).
    func cancelDownstream(_ call: Call, peer: SIPPeer) {
        guard let down = call.downstreamInvite, let v = down.headers.list("via")?.first else { return }
        var c = SIPMessage(startLine: .request(method: "CANCEL", uri: down.requestURI!), headers: SIPHeaders())
        c.headers.add("Via", v)
        c.headers.add("Max-Forwards", "70")
        for h in ["from", "to", "call-id"] { c.headers.add(h, down.headers[h]!) }
        c.headers.add("CSeq", "\(down.cseq!.number) CANCEL")
        start(c, to: peer) { _ in }
    }

    enum LegRole { case user, remote }

    func bye(_ m: SIPMessage) {
        for call in calls.values where call.state != .ended {
            for which in [LegRole.user, .remote] {
                guard let leg = which == .user ? call.user : call.remote, leg.callID == m.callID,
                      leg.localTag == m.to?.tag, leg.remoteTag == m.from?.tag else { continue }
                respond(to: m, m.response(200, "OK", toTag: nil))
                call.note("bye from \(which == .user ? "device" : "remote")")
                hangUp(call, leg: which == .user ? .remote : .user)
                end(call, reason: "bye from \(which == .user ? "device" : "remote")")
                return
            }
            // The replaced device's late BYE (it ended its leg itself).
        }
        respond(to: m, 481, "Call/Transaction Does Not Exist")
    }

    /// A BYE to one leg of the call.
    func hangUp(_ call: Call, leg which: LegRole) {
        guard var leg = which == .user ? call.user : call.remote, leg.remoteTag != nil, leg.confirmed || leg.uac else { return }
        let bye = leg.request("BYE", from: sentBy)
        if which == .user { call.user = leg } else { call.remote = leg }
        start(bye, to: leg.peer) { _ in }
        call.note("bye sent to \(which == .user ? "device" : "remote")")
    }

    /// The call over: anchors ended (or reservations given back), kept in the ended list.
    func end(_ call: Call, reason: String) {
        guard call.state != .ended else { return }
        call.state = .ended
        call.ended = Date()
        call.reason = reason
        for (id, r) in [(call.rtpAnchor, call.rtp), (call.rtcpAnchor, call.rtcp)] {
            if let id { try? anchors.end(id, reason: "call ended") } else { anchors.release(r) }
        }
        call.replacing = nil
        metrics?.callEnded(reason: reason)
        endedCalls.append(info(call))
        if endedCalls.count > 256 { endedCalls.removeFirst(endedCalls.count - 256) }
        calls[call.id] = nil
    }

    // MARK: - The switch (INVITE with Replaces)

    func replace(_ m: SIPMessage, from peer: SIPPeer) {
        guard let user = authenticate(m) else { return }
        guard let fromURI = m.from?.uri.sipURI, case .name(let d) = fromURI.host, configuration.domains.contains(d), fromURI.user == user else {
            respond(to: m, 403, "Forbidden")
            return
        }
        let senderContact = m.headers.list("contact")?.first.flatMap { try? NameAddress($0) }
        let contactURI = senderContact?.uri.sipURI
        let sender = senderContact.flatMap { registrations.sender(contact: $0, now: now) }
        let decision = ReplacesCheck.decide(m, dialogs: { id in
            self.calls.values.compactMap { c in
                c.user.callID == id ? c.user.summary(state: c.state == .ended ? .terminated : c.state == .confirmed ? .confirmed : .early) : nil
            } + self.endedCalls.filter { $0.userCallID == id }.map { $0.summary }
        }, authenticatedAOR: fromURI.addressOfRecord, senderGRUU: sender)
        let dialog: DialogSummary
        switch decision {
        case .failure(let refusal):
            logger.info("sip: Replaces from \(user) refused: \(refusal)")
            respond(to: m, refusal.status, refusal.reason)
            return
        case .success(let d): dialog = d
        }
        if let call = calls.values.first(where: { $0.user.callID == dialog.callID }), call.state == .setup, !call.userCalled,
           call.pickedUpFrom == nil, !call.user.confirmed, let contactURI {
            pickUp(call, m, from: peer, sender: sender, contact: contactURI)
            return
        }
        guard let call = calls.values.first(where: { $0.user.callID == dialog.callID }), call.state == .confirmed,
              call.replacing == nil, let answer = call.sdpForDevice else {
            respond(to: m, 491, "Request Pending")
            return
        }
        guard let offer = try? SessionDescription(parsing: m.body), let media = offer.rtpEndpoint(0),
              media.address.family == call.rtp.anchor.address.family else {
            respond(to: m, 488, "Not Acceptable Here - an SDP offer with media of the call's family is needed")
            return
        }
        call.note("replaces received")
        let leg = Leg(callID: m.callID!, localTag: Self.newTag(), remoteTag: m.from?.tag, local: stripped(m.to!), remote: stripped(m.from!),
                      localCSeq: 0, remoteTarget: .sip(contactURI!), peer: peer, uac: false, confirmed: false, owner: sender,
                      media: media, rtcp: offer.rtcpEndpoint(0))
        call.replacing = (leg, m)
        var ok = m.response(200, "OK", toTag: leg.localTag)
        ok.headers.add("Contact", contact(answering: m))
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = answer.bytes
        answerUntilACK(m, ok, call: call)
        call.note("200 sent to the new device")
    }

    /// A Replaces naming the ringing device's early dialog, which this side initiated (RFC 3891
    /// 3): the new device answers instead. Its media and the remote's are anchored, the remote
    /// gets its 200 with the anchor's side, the new device its 200, and the ringing device's
    /// INVITE is CANCELled.
    func pickUp(_ call: Call, _ m: SIPMessage, from peer: SIPPeer, sender: GRUUOwner?, contact contactURI: SIPURI) {
        guard let offer = try? SessionDescription(parsing: m.body), let media = offer.rtpEndpoint(0),
              media.address.family == call.rtp.anchor.address.family, let remoteMedia = call.remote?.media,
              let remoteOffer = try? SessionDescription(parsing: call.upstream.body) else {
            respond(to: m, 488, "Not Acceptable Here - an SDP offer with media of the call's family is needed")
            return
        }
        call.note("replaces received (early dialog)")
        var leg = Leg(callID: m.callID!, localTag: Self.newTag(), remoteTag: m.from?.tag, local: stripped(m.to!), remote: stripped(m.from!),
                      localCSeq: 0, remoteTarget: .sip(contactURI), peer: peer, uac: false, confirmed: true, owner: sender,
                      media: media, rtcp: offer.rtcpEndpoint(0))
        do {
            call.rtpAnchor = try anchors.connect(call.rtp, remote: remoteMedia, device: media, rtpContinuity: configuration.rtpContinuity)
            if let ur = leg.rtcp, let rr = call.remote!.rtcp {
                call.rtcpAnchor = try anchors.connect(call.rtcp, remote: rr, device: ur, rtpContinuity: false)
            } else {
                anchors.release(call.rtcp)
            }
        } catch {
            logger.error("sip: call \(call.id): anchoring its media failed: \(error)")
            respond(to: m, 500, "Server Internal Error - media")
            return
        }
        call.note("media anchored")
        let ringing = call.user
        call.pickedUpFrom = ringing
        leg.confirmed = true
        call.user = leg
        call.sdpForDevice = anchorOnly(remoteOffer).anchoring(media: 0, rtp: call.rtp.deviceSide, rtcp: call.rtcp.deviceSide)
        var ok = m.response(200, "OK", toTag: leg.localTag)
        ok.headers.add("Contact", contact(answering: m))
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = call.sdpForDevice!.bytes
        answerUntilACK(m, ok, call: call)
        call.note("200 sent to the new device")
        var answer = call.upstream.response(200, "OK", toTag: callerTag(call))
        answer.headers.add("Contact", contact(answering: call.upstream))
        answer.headers.add("Content-Type", "application/sdp")
        answer.body = anchorOnly(offer).anchoring(media: 0, rtp: call.rtp.anchor, rtcp: call.rtcp.anchor).bytes
        answerUntilACK(call.upstream, answer, call: call)
        call.note("caller answered")
        cancelDownstream(call, peer: ringing.peer)
        call.note("cancel sent to device")
        call.switches += 1
        metrics?.switched()
        logger.info("sip: call \(call.id) picked up by \(leg.owner?.instanceID ?? "?") from the ringing device")
    }

    /// What the ringing device answers after its INVITE was CANCELled: a 487 ends its
    /// transaction; a 200 that crossed the CANCEL is ACKed and ended with a BYE.
    func ringingDeviceAnswered(_ call: Call, _ event: ClientEvent) {
        guard case .response(let r) = event, let status = r.status, (200..<300).contains(status), var ringing = call.pickedUpFrom else { return }
        ringing.remoteTag = r.to?.tag ?? ringing.remoteTag
        if let c = r.headers.list("contact")?.first.flatMap({ try? NameAddress($0) }) { ringing.remoteTarget = c.uri }
        send(ringing.request("ACK", from: sentBy, cseq: r.cseq?.number ?? 1), to: ringing.peer)
        start(ringing.request("BYE", from: sentBy), to: ringing.peer) { _ in }
        call.pickedUpFrom = ringing
        call.note("bye sent to the ringing device (its 200 crossed the CANCEL)")
    }

    /// The new device's ACK: the anchor moves (make-before-break), then the old device gets its BYE.
    func completeSwitch(_ call: Call) {
        guard var (leg, _) = call.replacing else { return }
        call.replacing = nil
        call.note("ack from the new device")
        do {
            if let id = call.rtpAnchor, let media = leg.media { try anchors.move(id, to: media, lockout: configuration.lockout) }
            if let id = call.rtcpAnchor, let rtcp = leg.rtcp { try anchors.move(id, to: rtcp, lockout: configuration.lockout) }
        } catch {
            // The media stays with the old device: the new leg is ended, the call goes on.
            logger.error("sip: call \(call.id): moving the media failed, the call stays on its device: \(error)")
            send(leg.request("BYE", from: sentBy), to: leg.peer)
            return
        }
        call.note("media moved")
        leg.confirmed = true
        hangUp(call, leg: .user)
        call.user = leg
        call.switches += 1
        metrics?.switched()
        logger.info("sip: call \(call.id) switched to \(leg.owner?.instanceID ?? "?")")
    }

    // MARK: - Helpers

    func owner(of contact: SIPURI) -> GRUUOwner? {
        if let o = registrations.resolve(contact, now: now) { return o }
        return registrations.all(now: now).first { $0.contact.isEquivalent(to: contact) }
            .flatMap { b in b.instanceID.map { GRUUOwner(aor: b.aor, instanceID: $0) } }
    }

    func stripped(_ n: NameAddress) -> NameAddress {
        var c = n
        c.parameters.removeAll { $0.name == "tag" }
        return c
    }

    /// Only the first media is anchored; any other is refused (port 0) on both legs.
    func anchorOnly(_ d: SessionDescription) -> SessionDescription {
        var out = d
        for i in d.media.indices.dropFirst() {
            var f = out.lines[out.media[i]].value.split(separator: " ").map(String.init)
            f[1] = "0"
            out.lines[out.media[i]].value = f.joined(separator: " ")
        }
        return out
    }
}

extension SIPStartLine {
    var reason: String { if case .response(_, let r) = self { return r } else { return "" } }
}
