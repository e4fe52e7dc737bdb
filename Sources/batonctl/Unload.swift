import ArgumentParser
import BatonBPF
import BatonDataPlane

struct Unload: ParsableCommand, HasGlobals {
    static let configuration = CommandConfiguration(
        abstract: "Detach every pinned link and remove the whole pin root.",
        discussion: """
        Detaches the XDP links pinned under <root>/links (and the decapsulation program's under \
        <root>/decap/links), then removes <root> with its maps and programs: every rule, \
        takeover and counter is gone. Nothing at the root is not an error. Refuses a root \
        holding anything besides maps/, progs/, links/ and decap/, so a wrong --root cannot \
        remove someone else's pins.
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
            guard BPFFS.exists(ctx.root) else {
                let r = Result(root: ctx.root, removed: false, detached: [])
                if output.json { try JSON.print(r) } else { print("nothing to unload at \(ctx.root)") }
                return
            }
            let foreign = BPFFS.list(ctx.root).filter { !["maps", "progs", "links", "decap"].contains($0) }
            guard foreign.isEmpty else {
                throw CLIError("\(ctx.root) holds \(foreign.joined(separator: ", ")) besides maps/, progs/, links/ and decap/; not a Baton pin root, refusing to remove it")
            }
            let links = ctx.pinnedLinks
            let decapLinks = BPFFS.list(Decapsulator.pinDirectory(root: ctx.root) + "/links")
            ctx.log.debug("detaching \(links) (decap: \(decapLinks)) and removing \(ctx.root)")
            try Decapsulator.unload(root: ctx.root)
            try DataPlane.unload(root: ctx.root)
            if BPFFS.exists(ctx.root) { throw CLIError("could not remove \(ctx.root)") }
            let r = Result(root: ctx.root, removed: true, detached: links, decapDetached: decapLinks.isEmpty ? nil : decapLinks)
            if output.json {
                try JSON.print(r)
            } else {
                var d = links.isEmpty ? "no links attached" : "detached \(links.joined(separator: ", "))"
                if !decapLinks.isEmpty { d += "; decap detached from \(decapLinks.joined(separator: ", "))" }
                print("unloaded \(ctx.root) (\(d))")
            }
        }
    }
}
