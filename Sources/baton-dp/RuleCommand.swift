import ArgumentParser
import BatonCLI
import BatonDataPlane
import BatonModel
import Foundation

struct RuleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: MapVerb.rule.rawValue,
        abstract: MapVerb.rule.abstract,
        discussion: """
        A rule matches packets as the correspondent sends them: --src/--sport are the \
        correspondent's, --dst/--dport the taken-over address's. Left-out fields are wildcards, \
        in this order only: the source port (kind any-sport), then the source address (any-src), \
        then the destination port (any-peer). Exact rules win over any-sport, which wins over \
        any-src, then any-peer. For icmp/icmpv6 echo, --sport is the echo identifier and there is \
        no destination port. A rule acts as soon as it is written, also before its address is taken \
        over (make-before-break: write the rules, then the takeover).
        """,
        subcommands: [Add.self, Del.self, List.self])

    /// The 5-tuple from flag values.
    static func match(proto: String, src: String?, sport: String?, dst: String, dport: String?) throws -> SessionMatch {
        let p = try Parse.proto(proto)
        let d = try Parse.address(dst, "--dst")
        let s = try src.map { try Parse.address($0, "--src") }
        if let s { try Parse.sameFamily(s, "--src", as: d, "--dst") }
        let sp = try sport.map { try Parse.port($0, "--sport") }
        let dp = try dport.map { try Parse.port($0, "--dport") }
        if p == .icmp || p == .icmpv6, let dp, dp != 0 {
            throw CLIError.usage("\(p) has no destination port (--dport); the echo identifier is --sport")
        }
        let m = SessionMatch(proto: p, source: s, sourcePort: sp, destination: d,
                             destinationPort: p == .icmp || p == .icmpv6 ? nil : dp)
        try m.validate()
        return m
    }

    struct Add: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "Add a session rule, or many from a JSON file.",
            discussion: """
            Loads the data plane if nothing is loaded yet, so rules can be written before the \
            takeover and before anything is attached (make-before-break).

            Actions (--action):
              l2     rewrite the MACs to --to-mac (the target) and send
              encap  tunnel --tunnel-src -> --tunnel-dst (IPIP or IPv6-in-IPv6),
                     then send to --to-mac (the target or a router towards it)
              pass   up this host's own stack
              drop   drop (lockouts)
              relay  an anchored session's rewrite: only with --file (docs/cli.md)

            The source MAC of sent frames is --from-mac, else the MAC of --via, else of --egress, \
            else of the one interface batonctl attached. Without --egress, frames go back out of \
            the interface they came in on.

            --file PATH adds a JSON array of rules in one batch (all must be new; nothing is \
            written unless all are valid). Its format is SessionRule's JSON; `rule list --json | \
            jq '[.[].rule]'` produces it. See docs/cli.md.
            """)

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup(title: "Loading Options") var load: LoadOptions

        @Option(name: .long, help: ArgumentHelp("Protocol (required without --file).", valueName: "tcp|udp|icmp|icmpv6"))
        var proto: String?
        @Option(name: .long, help: ArgumentHelp("Correspondent's address; leave out for any.", valueName: "address"))
        var src: String?
        @Option(name: .long, help: ArgumentHelp("Correspondent's port (icmp: echo identifier); leave out for any.", valueName: "port"))
        var sport: String?
        @Option(name: .long, help: ArgumentHelp("Taken-over address (required without --file).", valueName: "address"))
        var dst: String?
        @Option(name: .long, help: ArgumentHelp("Taken-over address's port; leave out for any.", valueName: "port"))
        var dport: String?

        @Option(name: .long, help: ArgumentHelp("What to do with matching packets (required without --file).",
                                                valueName: "l2|encap|pass|drop"))
        var action: String?
        @Option(name: .customLong("to-mac"), help: ArgumentHelp("Next hop MAC: the target (l2), or the target or a router (encap).", valueName: "mac"))
        var toMAC: String?
        @Option(name: .customLong("from-mac"), help: ArgumentHelp("Source MAC of sent frames: the agent's MAC on the egress.", valueName: "mac"))
        var fromMAC: String?
        @Option(name: .long, help: ArgumentHelp("Take the source MAC from this interface (instead of --from-mac).", valueName: "iface"))
        var via: String?
        @Option(name: .long, help: ArgumentHelp("Send out of this interface (redirect) instead of back out of the ingress.", valueName: "iface"))
        var egress: String?
        @Option(name: .long, help: ArgumentHelp("Tunnel destination: the target's address (encap).", valueName: "address"))
        var tunnelDst: String?
        @Option(name: .long, help: ArgumentHelp("Tunnel source: this agent's address (encap).", valueName: "address"))
        var tunnelSrc: String?

        @Flag(name: .long, help: "Replace a rule with the same match in place (its counter is kept).")
        var replace = false

        @Option(name: .long, help: ArgumentHelp("Add the rules in this JSON file in one batch (no other rule flags).", valueName: "path"))
        var file: String?

        func run() throws {
            try perform(globals) { ctx in
                if let file { return try addFile(file, ctx) }
                guard let proto else { throw CLIError.usage("missing --proto (or --file)") }
                guard let dst else { throw CLIError.usage("missing --dst (or --file)") }
                guard let action else { throw CLIError.usage("missing --action (l2, encap, pass or drop)") }
                let m = try RuleCommand.match(proto: proto, src: src, sport: sport, dst: dst, dport: dport)
                let f = try forwarding(try Parse.action(action), family: m.destination.family, ctx)
                let rule = SessionRule(match: m, forward: f)
                try rule.validate()

                let dp = try ctx.open(load)
                if !replace, try dp.rule(m) != nil {
                    throw CLIError("a rule for \(m) already exists; --replace replaces it in place")
                }
                ctx.log.debug("writing rule \(m): \(f)")
                try dp.setRule(rule)
                guard let e = try dp.rule(m) else { throw CLIError("rule \(m) vanished after writing it") }
                if output.json {
                    try JSON.print(Describe.rule(e, nil, ctx))
                } else {
                    let to = Describe.target(f)
                    print("added \(e.kind) rule \(m): \(f.action.rawValue)" + (to == "-" ? "" : " to \(to)")
                          + (f.sends ? " out of \(Describe.egressCell(f, ctx))" : ""))
                }
            }
        }

        private func forwarding(_ action: Forwarding.Action, family: IPAddress.Family, _ ctx: Context) throws -> Forwarding {
            guard action != .relay else {
                throw CLIError.usage("--action relay has no flags for its rewrite: give the rule in --file, with \"forward\": {\"action\": \"relay\", \"rewrite\": {…}, …}")
            }
            let sending = action == .l2 || action == .encap
            if !sending {
                for (flag, v) in [("--to-mac", toMAC), ("--from-mac", fromMAC), ("--via", via), ("--egress", egress),
                                  ("--tunnel-dst", tunnelDst), ("--tunnel-src", tunnelSrc)] where v != nil {
                    throw CLIError.usage("\(flag) is only used with --action l2 or encap")
                }
                return action == .pass ? .pass : .drop
            }
            if action == .l2 {
                for (flag, v) in [("--tunnel-dst", tunnelDst), ("--tunnel-src", tunnelSrc)] where v != nil {
                    throw CLIError.usage("\(flag) is only used with --action encap")
                }
            }
            guard let toMAC else {
                throw CLIError.usage("--action \(action.rawValue) needs --to-mac MAC (the \(action == .l2 ? "target" : "next hop")'s MAC)")
            }
            let to = try Parse.unicastMAC(toMAC, "--to-mac")
            if fromMAC != nil && via != nil {
                throw CLIError.usage("--from-mac and --via both give the source MAC; use one")
            }
            let egressIface = try egress.map { try ctx.interfaces.named($0, flag: "--egress") }
            let from: MACAddress
            if let fromMAC {
                from = try Parse.unicastMAC(fromMAC, "--from-mac")
            } else if let via {
                from = try ctx.mac(of: try ctx.interfaces.named(via, flag: "--via"), for: "--via")
            } else if let egressIface {
                from = try ctx.mac(of: egressIface, for: "--egress")
            } else {
                let sole = try ctx.soleAttachedInterface("cannot tell the source MAC", macFlag: "--from-mac")
                from = try ctx.mac(of: sole, for: "the attached interface")
            }
            let ifindex = egressIface?.ifindex ?? 0
            if action == .l2 { return .l2(to: to, from: from, ifindex: ifindex) }
            guard let tunnelDst, let tunnelSrc else {
                throw CLIError.usage("--action encap needs --tunnel-dst ADDRESS and --tunnel-src ADDRESS")
            }
            let d = try Parse.address(tunnelDst, "--tunnel-dst"), s = try Parse.address(tunnelSrc, "--tunnel-src")
            let why = " (the data plane tunnels IPv4 in IPv4 and IPv6 in IPv6)"
            for (a, flag) in [(d, "--tunnel-dst"), (s, "--tunnel-src")] where a.family != family {
                throw CLIError.usage("address family mismatch: \(flag) \(a) is \(Parse.familyName(a.family)) but the rule's traffic is \(Parse.familyName(family))" + why)
            }
            return .encap(to: d, from: s, nextHop: to, sourceMAC: from, ifindex: ifindex)
        }

        private func addFile(_ path: String, _ ctx: Context) throws {
            let given: [(String, Any?)] = [("--proto", proto), ("--src", src), ("--sport", sport), ("--dst", dst),
                                           ("--dport", dport), ("--action", action), ("--to-mac", toMAC),
                                           ("--from-mac", fromMAC), ("--via", via), ("--egress", egress),
                                           ("--tunnel-dst", tunnelDst), ("--tunnel-src", tunnelSrc)]
            if let (flag, _) = given.first(where: { $0.1 != nil }) {
                throw CLIError.usage("\(flag) cannot be combined with --file (the file gives every field)")
            }
            if replace { throw CLIError.usage("--replace cannot be combined with --file (a batch adds only new rules)") }
            guard access(path, R_OK) == 0 else {
                throw CLIError.notFound("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                throw CLIError.usage("cannot read \(path): it is a directory (--file wants a JSON file)")
            }
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw CLIError("cannot read \(path): \(error.localizedDescription)")
            }
            let rules: [SessionRule]
            do {
                rules = try RuleFile.decode(data)
            } catch let e as DecodingError {
                throw CLIError.usage("\(path): \(CLIError.describe(e))")
            }
            for i in rules.indices {
                do {
                    try rules[i].validate()
                } catch {
                    throw CLIError.usage("\(path): rule [\(i)] (\(rules[i].match)): \(error)")
                }
            }
            let dp = try ctx.open(load)
            ctx.log.debug("adding \(rules.count) rules from \(path) in one batch")
            // addRules refuses a match given twice or already in the table before it writes
            // anything (one pass, no lookup per rule); only then are the rules searched for
            // which ones, to say so by their place in the file.
            do {
                if !rules.isEmpty { try dp.addRules(rules) }
            } catch let e as DataPlaneError {
                var seen: [SessionMatch: Int] = [:]
                for i in rules.indices {
                    if let j = seen.updateValue(i, forKey: rules[i].match) {
                        throw CLIError.usage("\(path): rules [\(j)] and [\(i)] have the same match \(rules[i].match)")
                    }
                }
                let present = try dp.ruleMatches()
                for i in rules.indices where present.contains(rules[i].match) {
                    throw CLIError("\(path): rule [\(i)] (\(rules[i].match)) already exists; a batch adds only new rules")
                }
                throw e
            }
            struct Added: Encodable { var added: Int; var file: String }
            if output.json {
                try JSON.print(Added(added: rules.count, file: path))
            } else {
                print("added \(rules.count) rule\(rules.count == 1 ? "" : "s") from \(path)")
            }
        }
    }

    struct Del: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "Remove the session rule with exactly this match.",
            discussion: "Give the same match flags as `rule add` did; left-out fields name the same wildcard rule.")

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions

        @Option(name: .long, help: ArgumentHelp("Protocol.", valueName: "tcp|udp|icmp|icmpv6"))
        var proto: String
        @Option(name: .long, help: ArgumentHelp("Correspondent's address; leave out for a rule with any.", valueName: "address"))
        var src: String?
        @Option(name: .long, help: ArgumentHelp("Correspondent's port (icmp: echo identifier).", valueName: "port"))
        var sport: String?
        @Option(name: .long, help: ArgumentHelp("Taken-over address.", valueName: "address"))
        var dst: String
        @Option(name: .long, help: ArgumentHelp("Taken-over address's port.", valueName: "port"))
        var dport: String?

        func run() throws {
            try perform(globals) { ctx in
                let m = try RuleCommand.match(proto: proto, src: src, sport: sport, dst: dst, dport: dport)
                let dp = try ctx.loaded()
                guard let e = try dp.rule(m), try dp.removeRule(m) else {
                    throw CLIError.notFound("no rule for \(m) at \(ctx.root)")
                }
                if output.json {
                    try JSON.print(Describe.rule(e, nil, ctx))
                } else {
                    print("removed \(e.kind) rule \(m) (\(e.counter.packets) packets, \(Format.bytes(e.counter.bytes)) bytes)")
                }
            }
        }
    }

    struct List: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "List session rules with their counters, most specific kind first.",
            discussion: "IDLE is the time since the rule's last packet; FIN/RST says whether a TCP FIN or RST was seen.")

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try perform(globals) { ctx in
                let dp = try ctx.loaded()
                let entries = try dp.rules()
                let clock = try Describe.clock(dp, entries.map(\.counter))
                if output.json {
                    try JSON.print(entries.map { Describe.rule($0, clock, ctx) })
                } else if entries.isEmpty {
                    print("no rules at \(ctx.root)")
                } else {
                    Describe.ruleTable(entries, clock, ctx).print()
                }
            }
        }
    }
}
