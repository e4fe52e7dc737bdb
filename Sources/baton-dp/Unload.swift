import ArgumentParser
import BatonBPF
import BatonCLI
import BatonDataPlane

struct Unload: ParsableCommand, HasGlobals {
    static let configuration = CommandConfiguration(
        commandName: MapVerb.unload.rawValue,
        abstract: MapVerb.unload.abstract,
        discussion: """
        Detaches the XDP links pinned under <root>/links (and the decapsulation program's under \
        <root>/decap/links), then removes <root> with its maps and programs: every rule, \
        takeover and counter is gone. Nothing at the root is not an error. Refuses a root \
        holding anything besides maps/, progs/, links/ and decap/, so a wrong --root cannot \
        remove someone else's pins. `batonctl teardown` does the same for several roots (or \
        every /sys/fs/bpf/baton* with --all), with a dry run and a check for a running batond.
        """)

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    @OptionGroup var output: OutputOptions

    struct Result: Encodable {
        var root: String
        /// Whether there was anything to remove.
        var removed: Bool
        /// Interfaces (pin names) whose links were detached.
        var detached: [String]
        /// Interfaces whose decapsulation (baton_decap) links were detached; absent when none.
        var decapDetached: [String]?
    }

    func run() throws {
        try perform(globals) { ctx in
            let pins = PinRoot.inspect(ctx.root)
            guard pins.exists else {
                let r = Result(root: ctx.root, removed: false, detached: [])
                if output.json { try JSON.print(r) } else { print("nothing to unload at \(ctx.root)") }
                return
            }
            try pins.checkIsBaton()
            ctx.log.debug("detaching \(pins.links) (decap: \(pins.decapLinks)) and removing \(ctx.root)")
            try pins.remove()
            let r = Result(root: ctx.root, removed: true, detached: pins.links,
                           decapDetached: pins.decapLinks.isEmpty ? nil : pins.decapLinks)
            if output.json {
                try JSON.print(r)
            } else {
                var d = pins.links.isEmpty ? "no links attached" : "detached \(pins.links.joined(separator: ", "))"
                if !pins.decapLinks.isEmpty { d += "; decap detached from \(pins.decapLinks.joined(separator: ", "))" }
                print("unloaded \(ctx.root) (\(d))")
            }
        }
    }
}
