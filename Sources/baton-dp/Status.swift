import ArgumentParser
import BatonBPF
import BatonCLI
import BatonDataPlane
import BatonModel

struct Status: ParsableCommand, HasGlobals {
    static let configuration = CommandConfiguration(
        commandName: MapVerb.status.rawValue,
        abstract: MapVerb.status.abstract,
        discussion: """
        Reads only; loads nothing. Attached interfaces come from the links pinned under \
        <root>/links; a link whose interface is gone (or was renamed) is flagged. Interface \
        names and modes are looked up in the current network namespace (or --netns).
        """)

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    @OptionGroup var output: OutputOptions

    struct LinkStatus: Encodable {
        /// The pin name under links/ (the interface name at attach time).
        var name: String
        var ifindex: UInt32
        /// "native", "generic", or "unknown" (interface gone, or in another namespace).
        var mode: String
        var linkID: UInt32
        var programID: UInt32
        /// Why this link needs attention; absent when all is well.
        var problem: String?
    }

    struct Fill: Encodable {
        var count: Int
        var capacity: Int
    }

    struct RuleFill: Encodable {
        var count: Int
        var capacity: Int
        var byKind: [String: Int]
    }

    struct Programs: Encodable {
        var steer: UInt32
        var clock: UInt32
    }

    struct Report: Encodable {
        var root: String
        var loaded: Bool
        var programs: Programs?
        var links: [LinkStatus]
        var takeovers: Fill?
        var rules: RuleFill?
        var clockHz: UInt64?
    }

    func run() throws {
        try perform(globals) { ctx in
            var report = Report(root: ctx.root, loaded: ctx.isLoaded, links: [])
            let dp = report.loaded ? try ctx.loaded() : nil
            if let dp {
                report.programs = Programs(steer: dp.steerProgram.id, clock: dp.clockProgram.id)
            }
            for name in ctx.pinnedLinks {
                report.links.append(linkStatus(name, ctx, steerID: dp?.steerProgram.id))
            }
            if let dp {
                report.takeovers = Fill(count: try dp.takeovers().count, capacity: dp.takeoverCapacity)
                var kinds: [String: Int] = [:]
                for k in MatchKind.allCases { kinds[k.description] = 0 }
                let rules = try dp.rules(withCounters: false)
                for r in rules { kinds[r.kind.description, default: 0] += 1 }
                report.rules = RuleFill(count: rules.count, capacity: dp.ruleCapacity, byKind: kinds)
                report.clockHz = try dp.clock().hz
            }
            if output.json {
                try JSON.print(report)
            } else {
                printText(report)
            }
        }
    }

    private func linkStatus(_ name: String, _ ctx: Context, steerID: UInt32?) -> LinkStatus {
        guard let link = try? XDPLink.pinned(at: ctx.linkPath(name)) else {
            return LinkStatus(name: name, ifindex: 0, mode: "unknown", linkID: 0, programID: 0,
                              problem: "cannot open the pinned link")
        }
        var s = LinkStatus(name: name, ifindex: link.ifindex, mode: "unknown", linkID: link.id,
                           programID: link.programID)
        if link.isDefunct {
            s.problem = "interface is gone; `batonctl detach \(name)` removes the pin"
            return s
        }
        let elsewhere = "attached in another network namespace? (--netns)"
        guard let iface = ctx.interfaces.index(link.ifindex) else {
            s.problem = "no interface with ifindex \(link.ifindex) in this network namespace: \(elsewhere)"
            return s
        }
        let attached = XDPLink.attachedPrograms(ifindex: link.ifindex)
        if attached.native == link.programID {
            s.mode = "native"
        } else if attached.generic == link.programID {
            s.mode = "generic"
        } else {
            s.problem = "ifindex \(link.ifindex) here is \(iface.name), which does not run this link's program: \(elsewhere)"
            return s
        }
        if iface.name != name {
            s.problem = "the interface is now named \(iface.name)"
        } else if let steerID, link.programID != steerID {
            s.problem = "runs program \(link.programID), not the pinned baton_steer \(steerID)"
        }
        return s
    }

    private func printText(_ r: Report) {
        print("root:        \(r.root)")
        guard r.loaded, let p = r.programs else {
            print("loaded:      no (`batonctl attach IFACE`, `takeover add` or `rule add` loads it)")
            if !r.links.isEmpty { printLinks(r.links) }
            return
        }
        print("loaded:      yes (baton_steer prog \(p.steer), baton_clock prog \(p.clock))")
        if let t = r.takeovers { print("takeovers:   \(t.count)/\(t.capacity)") }
        if let rules = r.rules {
            let kinds = MatchKind.allCases.map { "\($0.description) \(rules.byKind[$0.description] ?? 0)" }
            print("rules:       \(rules.count)/\(rules.capacity) (\(kinds.joined(separator: ", ")))")
        }
        if let hz = r.clockHz { print("clock:       \(hz) Hz") }
        if r.links.isEmpty {
            print("attached:    none (`batonctl attach IFACE`)")
        } else {
            printLinks(r.links)
        }
    }

    private func printLinks(_ links: [LinkStatus]) {
        print("attached:")
        var t = Table(["INTERFACE", "IFINDEX", "MODE", "LINK", "PROG", "NOTE"], numeric: [1, 3, 4])
        for l in links {
            t.add([l.name, "\(l.ifindex)", l.mode, "\(l.linkID)", "\(l.programID)", l.problem.map { "! " + $0 } ?? ""])
        }
        print(t.render().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
    }
}
