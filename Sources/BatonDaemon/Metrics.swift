import BatonDataPlane
import Foundation
import Prometheus

/// batond's Prometheus metrics (swift-prometheus). Events are counted as they happen in one
/// registry; what the maps and the transfer table hold (per-transfer and per-rule packets and
/// bytes from the per-CPU counters) is read at scrape time into a fresh registry, so that
/// ended transfers leave no stale series behind.
final class DaemonMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    init() {
        // Present from the start, at zero, so that dashboards and alerts see them.
        _ = registry.makeCounter(name: "baton_takeovers_total", help: "Addresses taken over (registrations accepted).")
        _ = registry.makeCounter(name: "baton_wakeups_total", help: "Transfers whose wake-up was sent (retransmissions not counted).")
        for result in ["accepted", "refused"] {
            _ = registry.makeCounter(name: "baton_registrations_total", labels: [("result", result)],
                                     help: "Registrations by result.")
        }
    }

    func rejection(_ reason: String) {
        registry.makeCounter(name: "baton_rejections_total", labels: [("reason", reason)],
                             help: "Messages and requests rejected, by reason.").increment()
    }

    func registration(accepted: Bool, count: Int = 1) {
        registry.makeCounter(name: "baton_registrations_total", labels: [("result", accepted ? "accepted" : "refused")],
                             help: "Registrations by result.").increment(by: Int64(count))
    }

    func takeover(count: Int) {
        registry.makeCounter(name: "baton_takeovers_total", help: "Addresses taken over (registrations accepted).").increment(by: Int64(count))
    }

    func wakeUp() {
        registry.makeCounter(name: "baton_wakeups_total", help: "Transfers whose wake-up was sent (retransmissions not counted).").increment()
    }

    func ended(reason: String) {
        registry.makeCounter(name: "baton_transfers_ended_total", labels: [("reason", reason)],
                             help: "Transfers ended, by reason (operator, idle, closed, requested).").increment()
    }

    func anchorCreated() {
        registry.makeCounter(name: "baton_anchors_created_total", help: "Anchored sessions created.").increment()
    }

    func anchorMoved(lockout: Bool) {
        registry.makeCounter(name: "baton_anchor_moves_total", labels: [("lockout", lockout ? "true" : "false")],
                             help: "Anchored sessions moved to another device, with or without a lockout of the old one.").increment()
    }

    func anchorEnded(reason: String) {
        registry.makeCounter(name: "baton_anchors_ended_total", labels: [("reason", reason)],
                             help: "Anchored sessions ended, by reason (operator, idle).").increment()
    }

    /// One anchored session's leg, as read from the maps.
    struct LegSample {
        var anchor: String
        /// to-device, to-remote, retired (an earlier device in its grace period) or locked-out.
        var leg: String
        var packets: UInt64
        var bytes: UInt64
    }

    /// One transferred session's counters, as read from the maps.
    struct RuleSample {
        var transfer: String
        var session: String
        var packets: UInt64
        var bytes: UInt64
    }

    /// The text exposition: the event counters, then a snapshot of the state.
    func render(transfersByState: [String: Int], rules: [RuleSample], mapRules: Int?, mapTakeovers: Int?,
                datapath: [StatReason: StatValue], anchors: Int = 0, legs: [LegSample] = [], freeRelayPorts: Int? = nil) -> String {
        let snapshot = PrometheusCollectorRegistry()
        snapshot.makeGauge(name: "baton_anchors", help: "Active anchored sessions.").set(to: Double(anchors))
        if let freeRelayPorts {
            snapshot.makeGauge(name: "baton_relay_ports_free", help: "Free ports in the relay port pool.").set(to: Double(freeRelayPorts))
        }
        for l in legs {
            // Several earlier devices of one session share a leg label: summed.
            let labels = [("anchor", l.anchor), ("leg", l.leg)]
            snapshot.makeGauge(name: "baton_anchor_packets", labels: labels,
                               help: "Packets relayed (or, locked out, dropped) by an anchored session's rule.").increment(by: Double(l.packets))
            snapshot.makeGauge(name: "baton_anchor_bytes", labels: labels,
                               help: "Bytes relayed (or dropped) by an anchored session's rule.").increment(by: Double(l.bytes))
        }
        for (state, n) in transfersByState {
            snapshot.makeGauge(name: "baton_transfers", labels: [("state", state)], help: "Transfers by state.").set(to: Double(n))
        }
        var perTransfer: [String: (packets: UInt64, bytes: UInt64)] = [:]
        for r in rules {
            let labels = [("transfer", r.transfer), ("session", r.session)]
            snapshot.makeGauge(name: "baton_rule_packets", labels: labels,
                               help: "Packets steered by a transferred session's rule (per-CPU counters summed).").set(to: Double(r.packets))
            snapshot.makeGauge(name: "baton_rule_bytes", labels: labels,
                               help: "Bytes steered by a transferred session's rule.").set(to: Double(r.bytes))
            perTransfer[r.transfer, default: (0, 0)].packets += r.packets
            perTransfer[r.transfer, default: (0, 0)].bytes += r.bytes
        }
        for (t, v) in perTransfer {
            snapshot.makeGauge(name: "baton_transfer_packets", labels: [("transfer", t)],
                               help: "Packets steered for a transfer (all its sessions).").set(to: Double(v.packets))
            snapshot.makeGauge(name: "baton_transfer_bytes", labels: [("transfer", t)],
                               help: "Bytes steered for a transfer.").set(to: Double(v.bytes))
        }
        if let mapRules {
            snapshot.makeGauge(name: "baton_map_rules", help: "Rules in the data plane's maps.").set(to: Double(mapRules))
        }
        if let mapTakeovers {
            snapshot.makeGauge(name: "baton_map_takeovers", help: "Takeovers in the data plane's maps.").set(to: Double(mapTakeovers))
        }
        for (reason, v) in datapath.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            snapshot.makeGauge(name: "baton_datapath_packets", labels: [("reason", "\(reason)")],
                               help: "Packets the XDP program decided, by decision (per-CPU counters summed).").set(to: Double(v.packets))
        }
        return registry.emitToString() + snapshot.emitToString()
    }
}

/// A test hook: with BATON_CRASH_AT=<step> in its environment, batond kills itself with
/// SIGKILL when it reaches that step of a registration (docs/daemon.md lists the steps), so
/// that tests can check what the next start makes of every half-done state.
enum CrashPoint {
    static let armed: String? = ProcessInfo.processInfo.environment["BATON_CRASH_AT"]

    static func reached(_ step: String) {
        guard armed == step else { return }
        FileHandle.standardError.write(Data("batond: BATON_CRASH_AT=\(step): killing myself\n".utf8))
        kill(getpid(), SIGKILL)
    }
}
