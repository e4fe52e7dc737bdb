import ArgumentParser
import BatonBPF
import BatonCLI
import BatonDataPlane
import Glibc

struct Attach: ParsableCommand, HasGlobals {
    static let configuration = CommandConfiguration(
        commandName: MapVerb.attach.rawValue,
        abstract: MapVerb.attach.abstract,
        discussion: """
        Loads the data plane (or adopts the one pinned at --root), attaches baton_steer to IFACE \
        as an XDP link and pins the link at <root>/links/IFACE, so it stays attached after \
        batonctl exits. Native (driver) mode by default; a native failure is an error unless \
        --allow-generic-fallback is given, which retries in generic mode and says so on stderr.
        """)

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup(title: "Loading Options") var load: LoadOptions

    @Argument(help: ArgumentHelp("The interface to attach to.", valueName: "iface"))
    var interface: String

    @Option(name: .long, help: ArgumentHelp("XDP mode: native (in the driver) or generic (skb path, works everywhere).",
                                            valueName: "native|generic"))
    var mode: String = "native"

    @Flag(name: .long, help: "If native attach fails, attach in generic mode instead (noted on stderr).")
    var allowGenericFallback = false

    struct Result: Encodable {
        var interface: String
        var ifindex: UInt32
        var mode: String
        var linkID: UInt32
        var programID: UInt32
        var pin: String
        var fellBack: Bool
    }

    func run() throws {
        try perform(globals) { ctx in
            let mode = try Parse.xdpMode(mode)
            let name = try Parse.interfaceName(interface)
            if mode == .generic && allowGenericFallback {
                throw CLIError.usage("--allow-generic-fallback only applies to --mode native")
            }
            let path = ctx.linkPath(name)
            if BPFFS.exists(path) {
                let detail = (try? XDPLink.pinned(at: path)).map { l in
                    l.isDefunct ? "link \(l.id), its interface is gone" : "link \(l.id), ifindex \(l.ifindex)"
                } ?? "pinned at \(path)"
                throw CLIError("\(name) is already attached (\(detail)); `batonctl detach \(name)` first")
            }
            let iface = try ctx.interfaces.named(name)
            let dp = try ctx.open(load)
            var used = mode
            var fellBack = false
            let link: XDPLink
            do {
                ctx.log.debug("attaching baton_steer (prog \(dp.steerProgram.id)) to \(name) (ifindex \(iface.ifindex)) in \(mode.rawValue) mode")
                link = try XDPLink.attach(dp.steerProgram, ifindex: iface.ifindex, mode: mode)
            } catch let e as BPFError where mode == .native {
                let busy = [EBUSY, EEXIST, EPERM, EACCES].contains(e.errno)
                let why = "\(String(cString: strerror(e.errno))) (errno \(e.errno))"
                if busy {
                    var m = CLIError.from(e, root: ctx.root)
                    if e.errno == EBUSY || e.errno == EEXIST {
                        m.message = "cannot attach to \(name): another XDP program is attached there (\(why)); detach it first (`ip link set dev \(name) xdp off`)"
                    }
                    throw m
                }
                guard allowGenericFallback else {
                    throw CLIError("native XDP attach to \(name) failed: \(why); the driver may lack native XDP: use --mode generic, or --allow-generic-fallback",
                                   detail: e.log)
                }
                note("native XDP attach to \(name) failed: \(why); falling back to generic mode (skb path: slower)")
                link = try XDPLink.attach(dp.steerProgram, ifindex: iface.ifindex, mode: .generic)
                used = .generic
                fellBack = true
            }
            // Pinned outside the fallback: a failed pin is not the driver's.
            do {
                try link.pin(at: path)
            } catch {
                try? link.detach()
                throw error
            }
            let r = Result(interface: name, ifindex: iface.ifindex, mode: used.rawValue, linkID: link.id,
                           programID: link.programID, pin: path, fellBack: fellBack)
            if output.json {
                try JSON.print(r)
            } else {
                print("attached baton_steer (prog \(r.programID)) to \(name) (ifindex \(r.ifindex)) in \(used.rawValue) mode; link \(r.linkID) pinned at \(path)")
            }
        }
    }
}
