import ArgumentParser
import BatonBPF
import BatonCLI
import BatonDataPlane

struct Detach: ParsableCommand, HasGlobals {
    static let configuration = CommandConfiguration(
        commandName: MapVerb.detach.rawValue,
        abstract: MapVerb.detach.abstract,
        discussion: """
        Detaches the XDP link pinned at <root>/links/IFACE and removes the pin. Works also when \
        the interface is gone. Rules and takeovers stay loaded.
        """)

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("The interface to detach from (its pin name under <root>/links).", valueName: "iface"))
    var interface: String

    struct Result: Encodable {
        var interface: String
        var linkID: UInt32
        var ifindex: UInt32
    }

    func run() throws {
        try perform(globals) { ctx in
            let name = try Parse.interfaceName(interface)
            let path = ctx.linkPath(name)
            guard BPFFS.exists(path) else {
                throw CLIError.notFound("\(name) is not attached (no link pinned at \(path))")
            }
            let link = try XDPLink.pinned(at: path)
            ctx.log.debug("detaching link \(link.id) (ifindex \(link.ifindex)) and removing \(path)")
            if !link.isDefunct { try link.detach() }
            try BPFFS.remove(path)
            let r = Result(interface: name, linkID: link.id, ifindex: link.ifindex)
            if output.json {
                try JSON.print(r)
            } else {
                print("detached \(name) (link \(link.id)\(link.isDefunct ? ", its interface was already gone" : ""))")
            }
        }
    }
}
