import ArgumentParser
import BatonBPF
import BatonDataPlane

struct Unload: ParsableCommand, HasGlobals {
    static let configuration = CommandConfiguration(
        abstract: "Detach every pinned link and remove the whole pin root.",
        discussion: """
        Detaches the XDP links pinned under <root>/links, then removes <root> with its maps and \
        programs: every rule, takeover and counter is gone. Nothing at the root is not an error. \
        Refuses a root holding anything besides maps/, progs/ and links/, so a wrong --root \
        cannot remove someone else's pins.
        """)

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    @OptionGroup var output: OutputOptions

    struct Result: Encodable {
        var root: String
        /// Whether there was anything to remove.
        var removed: Bool
        /// Interfaces (pin names) whose links were detached.
        var detached: [String]
    }

    func run() throws {
        try perform(globals) { ctx in
            guard BPFFS.exists(ctx.root) else {
                let r = Result(root: ctx.root, removed: false, detached: [])
                if output.json { try JSON.print(r) } else { print("nothing to unload at \(ctx.root)") }
                return
            }
            let foreign = BPFFS.list(ctx.root).filter { !["maps", "progs", "links"].contains($0) }
            guard foreign.isEmpty else {
                throw CLIError("\(ctx.root) holds \(foreign.joined(separator: ", ")) besides maps/, progs/ and links/; not a Baton pin root, refusing to remove it")
            }
            let links = ctx.pinnedLinks
            ctx.log.debug("detaching \(links) and removing \(ctx.root)")
            try DataPlane.unload(root: ctx.root)
            if BPFFS.exists(ctx.root) { throw CLIError("could not remove \(ctx.root)") }
            let r = Result(root: ctx.root, removed: true, detached: links)
            if output.json {
                try JSON.print(r)
            } else {
                let d = links.isEmpty ? "no links attached" : "detached \(links.joined(separator: ", "))"
                print("unloaded \(ctx.root) (\(d))")
            }
        }
    }
}
