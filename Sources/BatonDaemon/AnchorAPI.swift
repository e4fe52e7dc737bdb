import BatonAPI
import BatonDataPlane
import BatonModel
import Foundation

// The agent's anchored sessions through the API (docs/api.md, "Anchors"). The table is
// copied under its lock; counters are read after it.

extension Agent {
    public func listAnchors() throws -> [AnchorInfo] { anchorInfo(anchors.entries()) }

    public func createAnchor(_ request: AnchorRequest) throws -> AnchorInfo {
        let a = try anchors.create(request)
        return anchorInfo([try anchors.entry(a.id)])[0]
    }

    public func showAnchor(_ id: String) throws -> AnchorInfo { anchorInfo([try anchors.entry(id)])[0] }

    public func moveAnchor(_ id: String, _ move: AnchorMove) throws -> AnchorInfo {
        _ = try anchors.move(id, to: move.device, lockout: move.lockout, grace: move.grace)
        return anchorInfo([try anchors.entry(id)])[0]
    }

    public func endAnchor(_ id: String) throws -> AnchorInfo {
        anchorInfo([AnchorTable.Entry(session: try anchors.end(id, reason: "operator"), rules: [], since: .now)])[0]
    }

    /// What the API shows of anchored sessions, with their rules' counters read now.
    func anchorInfo(_ entries: [AnchorTable.Entry]) -> [AnchorInfo] {
        let clock = try? dataPlane.clock()
        return entries.map { e in
            let a = e.session
            let live = a.state == .active
            func counters(_ m: SessionMatch) -> LegCounters? {
                guard live, let c = (try? dataPlane.rule(m))?.counter else { return nil }
                return LegCounters(packets: c.packets, bytes: c.bytes, idleSeconds: clock.flatMap { c.idleSeconds(at: $0) })
            }
            return AnchorInfo(id: a.id, state: live ? .active : .ended, proto: a.proto == .tcp ? .tcp : .udp,
                              anchor: a.anchor, relayPort: a.relayPort, remote: a.remote, device: a.device,
                              retired: a.retired.map { r in
                                  RetiredDevice(device: r.device, until: r.until, lockedOut: r.lockedOut,
                                                counters: counters(a.reverseMatch(r.device)))
                              },
                              idleTimeout: a.idleTimeout, created: a.created, moved: a.moved, ended: a.ended,
                              reason: a.reason, moves: a.moves,
                              toDevice: counters(a.forwardMatch), toRemote: counters(a.reverseMatch(a.device)),
                              rtpContinuity: a.rtpContinuity, rtp: live && a.rtpContinuity ? rtpState(a.anchor) : nil)
        }
    }

    private func rtpState(_ anchor: Endpoint) -> RTPState? {
        guard let s = try? dataPlane.rtpStream(anchor) else { return nil }
        return RTPState(started: s.started, ssrc: Int(s.ssrc), lastSequence: s.started ? Int(s.lastSequence) : nil,
                        rebases: Int(s.rebases), packets: s.packets)
    }

    /// The anchored sessions' legs for the metrics.
    func anchorLegs() -> [DaemonMetrics.LegSample] {
        anchors.entries().filter { $0.session.state == .active }.flatMap { e -> [DaemonMetrics.LegSample] in
            let a = e.session
            var legs = [(a.forwardMatch, "to-device"), (a.reverseMatch(a.device), "to-remote")]
            legs += a.retired.map { (a.reverseMatch($0.device), $0.lockedOut ? "locked-out" : "retired") }
            return legs.compactMap { m, leg in
                (try? dataPlane.rule(m))?.map { DaemonMetrics.LegSample(anchor: a.id, leg: leg, packets: $0.counter.packets, bytes: $0.counter.bytes) }
            }
        }
    }
}
