import BatonCLI
import BatonDataPlane
import BatonModel

// How rules and takeovers are shown: JSON shapes and table cells, shared by
// `takeover` and `rule`.

/// One takeover in `takeover list --json` (and add/del --json).
struct TakeoverJSON: Encodable {
    /// As DataPlane encodes it: address, defaultForward, agentMAC (absent: no ARP/NDP answers), router,
    /// temporaryAddress (absent when not given).
    var takeover: Takeover
    /// packets, bytes, lastSeenJiffies, tcpFlags.
    var counter: Counter
    /// Seconds since the last packet; absent when none was seen.
    var idleSeconds: Double?
    /// Name of the egress interface; absent when the packet goes back out of its ingress (ifindex 0).
    var egress: String?
}

/// One rule in `rule list --json` (and add/del --json). `rule` is exactly
/// what `rule add --file` reads, so `jq '[.[].rule]'` round-trips.
struct RuleJSON: Encodable {
    var kind: String
    var rule: SessionRule
    var counter: Counter
    var idleSeconds: Double?
    /// A TCP FIN or RST was seen here: the session may be closing (a hint; the target judges).
    var finOrReset: Bool
    var egress: String?
}

enum Describe {
    /// Where packets go, for a table cell: "02:00:00:00:00:03", "10.0.0.9 -> 10.1.0.2 via 02:…", "-".
    static func target(_ f: Forwarding) -> String {
        switch f.action {
        case .pass, .drop: return "-"
        case .l2: return "\(f.destinationMAC)"
        case .encap:
            let s = f.outerSource.map { "\($0)" } ?? "?", d = f.outerDestination.map { "\($0)" } ?? "?"
            return "\(s) -> \(d) via \(f.destinationMAC)"
        case .relay:
            return "\(f.rewrite.map { "\($0)" } ?? "?") via \(f.destinationMAC)"
        }
    }

    static func egress(_ f: Forwarding, _ ctx: Context) -> String? {
        guard f.sends else { return nil }
        return f.ifindex == 0 ? nil : ctx.interfaces.name(f.ifindex)
    }

    static func egressCell(_ f: Forwarding, _ ctx: Context) -> String {
        guard f.sends else { return "-" }
        return egress(f, ctx) ?? "ingress"
    }

    /// The kernel clock, read only when some counter has packets (reading it
    /// takes a few ticks).
    static func clock(_ dp: DataPlane, _ counters: [Counter]) throws -> KernelClock? {
        counters.contains { $0.packets > 0 } ? try dp.clock() : nil
    }

    static func idle(_ c: Counter, _ clock: KernelClock?) -> Double? {
        clock.flatMap { c.idleSeconds(at: $0) }
    }

    static func takeover(_ e: DataPlane.TakeoverEntry, _ clock: KernelClock?, _ ctx: Context) -> TakeoverJSON {
        TakeoverJSON(takeover: e.takeover, counter: e.counter, idleSeconds: Format.seconds(idle(e.counter, clock)),
                     egress: egress(e.takeover.defaultForward, ctx))
    }

    static func rule(_ e: DataPlane.RuleEntry, _ clock: KernelClock?, _ ctx: Context) -> RuleJSON {
        RuleJSON(kind: e.kind.description, rule: e.rule, counter: e.counter,
                 idleSeconds: Format.seconds(idle(e.counter, clock)), finOrReset: e.counter.sawFinOrReset,
                 egress: egress(e.rule.forward, ctx))
    }

    static func takeoverTable(_ entries: [DataPlane.TakeoverEntry], _ clock: KernelClock?, _ ctx: Context) -> Table {
        var t = Table(["ADDRESS", "MODE", "NEXT-HOP", "TEMPORARY", "TUNNEL", "EGRESS", "ANSWERS", "PACKETS", "BYTES", "IDLE"],
                      numeric: [7, 8, 9])
        for e in entries {
            let f = e.takeover.defaultForward
            let tunnel = f.action == .encap
                ? "\(f.outerSource.map { "\($0)" } ?? "?") -> \(f.outerDestination.map { "\($0)" } ?? "?")" : "-"
            let answers = e.takeover.agentMAC.map { "\($0)" + (e.takeover.router ? " router" : "") } ?? "no"
            let hop = f.sends ? "\(f.destinationMAC)" : "-"
            t.add(["\(e.takeover.address)", f.action.rawValue, hop, e.takeover.temporaryAddress.map { "\($0)" } ?? "-",
                   tunnel, egressCell(f, ctx), answers,
                   "\(e.counter.packets)", Format.bytes(e.counter.bytes), Format.idle(idle(e.counter, clock))])
        }
        return t
    }

    static func ruleTable(_ entries: [DataPlane.RuleEntry], _ clock: KernelClock?, _ ctx: Context) -> Table {
        var t = Table(["KIND", "MATCH", "ACTION", "TARGET", "EGRESS", "PACKETS", "BYTES", "IDLE", "FIN/RST"],
                      numeric: [5, 6, 7])
        for e in entries {
            let f = e.rule.forward
            t.add([e.kind.description, e.rule.match.description, f.action.rawValue, target(f), egressCell(f, ctx),
                   "\(e.counter.packets)", Format.bytes(e.counter.bytes), Format.idle(idle(e.counter, clock)),
                   e.rule.match.proto == .tcp ? (e.counter.sawFinOrReset ? "yes" : "no") : "-"])
        }
        return t
    }
}
