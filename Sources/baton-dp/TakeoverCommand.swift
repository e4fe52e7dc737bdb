import ArgumentParser
import BatonCLI
import BatonDataPlane
import BatonModel

struct TakeoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: MapVerb.takeover.rawValue,
        abstract: MapVerb.takeover.abstract,
        discussion: """
        A takeover makes the session agent answer ARP/NDP for the TN's address and steer its \
        packets: those matching a session rule go where the rule says, all others to the TN \
        (the takeover's default).
        """,
        subcommands: [Add.self, Del.self, List.self])

    struct Add: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "Take over an address: forward its traffic to the TN by default.",
            discussion: """
            Loads the data plane if nothing is loaded yet, so a takeover can be written before \
            anything is attached (make-before-break).

            Packets no session rule takes go to the TN (--mode):
              l2     rewrite the destination MAC to --tn-mac; the TN keeps the
                     original address as a non-ARP local address
              encap  tunnel --tunnel-source -> --temporary (the TN's temporary
                     address), sent to --next-hop-mac (default --tn-mac)

            MACs: ARP replies and neighbour advertisements carry the agent MAC: --agent-mac, else \
            the MAC of --via, else the MAC of the one interface batonctl attached. Forwarded frames \
            leave from the MAC of --egress, or (no --egress: back out of the interface they came \
            in on) from the agent MAC.
            """)

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup(title: "Loading Options") var load: LoadOptions

        @Argument(help: ArgumentHelp("The TN's address to take over (IPv4 or IPv6).", valueName: "address"))
        var address: String

        @Option(name: .customLong("tn-mac"), help: ArgumentHelp("The TN's MAC address.", valueName: "mac"))
        var tnMAC: String

        @Option(name: .long, help: ArgumentHelp("How to reach the TN: l2 (MAC rewrite) or encap (tunnel to --temporary).",
                                                valueName: "l2|encap"))
        var mode: String = "l2"

        @Option(name: .long, help: ArgumentHelp("The TN's temporary address: the tunnel destination in --mode encap (required there); recorded in l2 mode.",
                                                valueName: "address"))
        var temporary: String?

        @Option(name: .long, help: ArgumentHelp("This agent's address: the tunnel source (--mode encap only).",
                                                valueName: "address"))
        var tunnelSource: String?

        @Option(name: .customLong("next-hop-mac"), help: ArgumentHelp(
            "Send tunnelled packets to this MAC (a router towards --temporary) instead of --tn-mac (--mode encap only).",
            valueName: "mac"))
        var nextHopMAC: String?

        @Option(name: .long, help: ArgumentHelp("The interface the agent serves the TN's segment on; its MAC is the default agent MAC.",
                                                valueName: "iface"))
        var via: String?

        @Option(name: .long, help: ArgumentHelp("Send forwarded packets out of this interface (redirect) instead of back out of their ingress.",
                                                valueName: "iface"))
        var egress: String?

        @Option(name: .customLong("agent-mac"), help: ArgumentHelp("The MAC that ARP replies and neighbour advertisements carry.",
                                                                   valueName: "mac"))
        var agentMAC: String?

        @Flag(name: .customLong("no-answer"), help: "Do not answer ARP requests / neighbour solicitations for the address in XDP.")
        var noAnswer = false

        @Flag(name: .long, help: "Set the Router flag in neighbour advertisements (IPv6; the TN is a router).")
        var router = false

        @Flag(name: .long, help: "Replace an existing takeover of the address in place (one atomic update; its counter is kept).")
        var replace = false

        func run() throws {
            try perform(globals) { ctx in
                let addr = try Parse.address(address, "address")
                let action = try Parse.takeoverMode(mode)
                let tn = try Parse.unicastMAC(tnMAC, "--tn-mac")
                let explicitAgent = try agentMAC.map { try Parse.unicastMAC($0, "--agent-mac") }
                if router && addr.family == .v4 {
                    throw CLIError.usage("--router sets the Router flag of IPv6 neighbour advertisements; \(addr) is IPv4")
                }
                var tunnel: (source: IPAddress, destination: IPAddress)?
                var nextHop = tn
                let temp = try temporary.map { try Parse.address($0, "--temporary") }
                if let temp {
                    try Parse.sameFamily(temp, "--temporary", as: addr, "the taken-over address", why: "")
                }
                if action == .l2 {
                    for (flag, v) in [("--tunnel-source", tunnelSource), ("--next-hop-mac", nextHopMAC)] where v != nil {
                        throw CLIError.usage("\(flag) is only used with --mode encap (l2 mode rewrites the MAC to --tn-mac)")
                    }
                } else {
                    guard let temporary else {
                        throw CLIError.usage("--mode encap needs --temporary ADDRESS (the TN's temporary address, the tunnel's destination)")
                    }
                    guard let tunnelSource else {
                        throw CLIError.usage("--mode encap needs --tunnel-source ADDRESS (this agent's address, the tunnel's source)")
                    }
                    let d = try Parse.address(temporary, "--temporary"), s = try Parse.address(tunnelSource, "--tunnel-source")
                    let why = " (the data plane tunnels IPv4 in IPv4 and IPv6 in IPv6)"
                    try Parse.sameFamily(d, "--temporary", as: addr, "the taken-over address", why: why)
                    try Parse.sameFamily(s, "--tunnel-source", as: addr, "the taken-over address", why: why)
                    tunnel = (s, d)
                    if let n = nextHopMAC { nextHop = try Parse.unicastMAC(n, "--next-hop-mac") }
                }
                let viaIface = try via.map { try ctx.interfaces.named($0, flag: "--via") }
                let egressIface = try egress.map { try ctx.interfaces.named($0, flag: "--egress") }

                // The agent MAC: needed to answer, and as the source when there is no --egress.
                func resolveAgent() throws -> MACAddress {
                    if let explicitAgent { return explicitAgent }
                    if let viaIface { return try ctx.mac(of: viaIface, for: "--via") }
                    let sole = try ctx.soleAttachedInterface("cannot tell the agent MAC", macFlag: "--agent-mac")
                    return try ctx.mac(of: sole, for: "the attached interface")
                }
                let agent: MACAddress? = noAnswer && egressIface != nil && explicitAgent == nil && viaIface == nil
                    ? nil : try resolveAgent()
                let source = try egressIface.map { try ctx.mac(of: $0, for: "--egress") } ?? agent!
                let ifindex = egressIface?.ifindex ?? 0
                let forward: Forwarding = if let tunnel {
                    .encap(to: tunnel.destination, from: tunnel.source, nextHop: nextHop, sourceMAC: source, ifindex: ifindex)
                } else {
                    .l2(to: tn, from: source, ifindex: ifindex)
                }
                let t = Takeover(address: addr, defaultForward: forward, agentMAC: noAnswer ? nil : agent, router: router,
                                 temporaryAddress: temp)
                try t.validate()

                let dp = try ctx.open(load)
                if !replace, try dp.takeover(addr) != nil {
                    throw CLIError("\(addr) is already taken over; --replace replaces it in place")
                }
                ctx.log.debug("writing takeover \(addr): \(forward)")
                try dp.setTakeover(t)
                guard let e = try dp.takeover(addr) else { throw CLIError("takeover of \(addr) vanished after writing it") }
                if output.json {
                    try JSON.print(Describe.takeover(e, nil, ctx))
                } else {
                    let answers = t.agentMAC.map { "answering ARP/NDP as \($0)" + (router ? " (router)" : "") } ?? "not answering ARP/NDP"
                    let dest = tunnel.map { "tunnel \($0.source) -> \($0.destination) via \(nextHop)" } ?? "\(tn)"
                    print("took over \(addr): default \(action.rawValue) to \(dest) out of \(Describe.egressCell(forward, ctx)), \(answers)")
                }
            }
        }
    }

    struct Del: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "End a takeover: stop answering for the address and sending its other packets to the TN.",
            discussion: "Session rules for the address stay, and keep steering their sessions, until removed with `rule del`.")

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The taken-over address.", valueName: "address"))
        var address: String

        func run() throws {
            try perform(globals) { ctx in
                let addr = try Parse.address(address, "address")
                let dp = try ctx.loaded()
                guard let e = try dp.takeover(addr) else {
                    throw CLIError.notFound("\(addr) is not taken over at \(ctx.root)")
                }
                ctx.log.debug("removing takeover \(addr)")
                guard try dp.removeTakeover(addr) else {
                    throw CLIError.notFound("\(addr) is not taken over at \(ctx.root)")
                }
                if output.json {
                    try JSON.print(Describe.takeover(e, nil, ctx))
                } else {
                    print("removed takeover of \(addr) (\(e.counter.packets) packets, \(Format.bytes(e.counter.bytes)) bytes)")
                }
            }
        }
    }

    struct List: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "List taken-over addresses with their default path and counters.",
            discussion: "Counters are those of the default path (packets no session rule took); IDLE is the time since its last packet.")

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try perform(globals) { ctx in
                let dp = try ctx.loaded()
                let entries = try dp.takeovers()
                let clock = try Describe.clock(dp, entries.map(\.counter))
                if output.json {
                    try JSON.print(entries.map { Describe.takeover($0, clock, ctx) })
                } else if entries.isEmpty {
                    print("no takeovers at \(ctx.root)")
                } else {
                    Describe.takeoverTable(entries, clock, ctx).print()
                }
            }
        }
    }
}
