import ArgumentParser
import BatonAPI
import BatonBPF
import BatonCLI
import BatonDataPlane
import Foundation
import Logging

/// `batonctl teardown`: removes everything Baton pinned or attached, at one or more pin roots.
struct Teardown: ParsableCommand, HasGlobals {
    /// batond's defaults: the agent's --root and the node's --decap-root.
    static let defaultRoots = [DataPlane.defaultRoot, "/sys/fs/bpf/baton-node"]

    static let configuration = CommandConfiguration(
        commandName: MapVerb.teardown.rawValue,
        abstract: MapVerb.teardown.abstract,
        discussion: """
        For each pin root: detaches the baton_decap links pinned under <root>/decap/links and \
        the baton_steer links under <root>/links, then removes the root with its maps and \
        programs (what `unload` does for one root). The roots are every --root given (several \
        may be), else batond's defaults (\(Teardown.defaultRoots.joined(separator: " and "))); \
        --all takes every directory /sys/fs/bpf/baton* instead, including other test runs'. A \
        root holding anything besides maps/, progs/, links/ and decap/ is refused before \
        anything is removed.

        While a batond answers on --control (default \(ControlOptions.defaultPath)) teardown \
        refuses (exit 1): the daemon would be left without its data plane. Stop it first, or \
        give --force. --dry-run lists what would be removed and changes nothing.
        """)

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Every directory /sys/fs/bpf/baton* instead of --root (other test runs' too).")
    var all = false

    @Flag(name: .customLong("dry-run"), help: "List what would be detached and removed; change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Tear down even while a batond answers on --control.")
    var force = false

    struct Result: Encodable {
        var dryRun: Bool
        /// The role of the batond that answered on --control (teardown went ahead with --force,
        /// or it was a dry run); absent when none answered.
        var daemon: String?
        var roots: [Root]
    }

    struct Root: Encodable {
        var root: String
        /// Whether anything was pinned there.
        var existed: Bool
        /// Whether it was removed (false on a dry run, or when there was nothing).
        var removed: Bool
        /// Interfaces whose baton_steer links were (or would be) detached.
        var detached: [String]
        /// Interfaces whose baton_decap links were (or would be) detached.
        var decapDetached: [String]
        var maps: [String]
        var programs: [String]
    }

    func run() throws {
        bootstrapLogging(verbose: globals.verbose)
        if daemon.api != nil {
            throw CLIError.usage("teardown asks the local batond (--control); --api does not apply")
        }
        if all, !globals.roots.isEmpty {
            throw CLIError.usage("--all and --root are exclusive: --all is every /sys/fs/bpf/baton*")
        }
        var roots = try globals.roots.map { try checkedRoot($0) }
        guard geteuid() == 0 else { throw CLIError.notRoot }
        if all {
            guard BPFFS.isBPFFS(BPFFS.defaultRoot) else {
                throw CLIError("\(BPFFS.defaultRoot) is not a BPF filesystem (bpffs); nothing of Baton's can be pinned there")
            }
            roots = PinRoot.discover()
        } else if roots.isEmpty {
            roots = Self.defaultRoots
        }
        var seen = Set<String>()
        roots = roots.filter { seen.insert($0).inserted }
        for root in roots { try checkBPFFS(root) }

        let pins = roots.map(PinRoot.inspect)
        for p in pins where p.exists { try p.checkIsBaton() }
        let present = pins.filter(\.exists)

        var role: String?
        if !present.isEmpty, let answering = try answeringDaemon() {
            role = answering
            let path = daemon.controlPath
            if dryRun {
                note("a batond (\(answering)) answers at \(path): teardown without --dry-run refuses unless --force")
            } else if force {
                note("a batond (\(answering)) answers at \(path); tearing down anyway (--force): it is left without its data plane")
            } else {
                throw CLIError("a batond (\(answering)) answers at \(path): tearing down would leave it without its data plane; stop it first, or give --force")
            }
        }

        var result = Result(dryRun: dryRun, daemon: role, roots: [])
        for p in pins {
            if p.exists, !dryRun {
                log.debug("detaching \(p.links) (decap: \(p.decapLinks)) and removing \(p.root)")
                do {
                    try p.remove()
                } catch {
                    throw CLIError.from(error, root: p.root)
                }
            }
            result.roots.append(Root(root: p.root, existed: p.exists, removed: p.exists && !dryRun, detached: p.links,
                                     decapDetached: p.decapLinks, maps: p.maps, programs: p.programs))
        }
        if output.json { try JSON.print(result) } else { printText(result) }
    }

    private var log: Logger { Logger(label: toolName) }

    /// The role of the batond answering on --control, "unknown" if it answers with an error,
    /// nil when nothing answers there.
    private func answeringDaemon() throws -> String? {
        let path = try daemon.endpoint().description
        guard connectUnix(path) == 0 else { return nil }
        do {
            return try Control(path: path, timeout: 5).status().role.rawValue
        } catch let e as ControlError where e.code == .unavailable {
            return nil
        } catch {
            return "unknown"
        }
    }

    private func printText(_ r: Result) {
        let present = r.roots.filter(\.existed)
        if present.isEmpty {
            print(all ? "no Baton pin roots under \(BPFFS.defaultRoot)" : "nothing pinned at \(r.roots.map(\.root).joined(separator: ", "))")
            return
        }
        func list(_ items: [String]) -> String { items.isEmpty ? "-" : items.joined(separator: ",") }
        var t = Table(["ROOT", "STEER LINKS", "DECAP LINKS", "MAPS", "PROGRAMS"], numeric: [3, 4])
        for root in present {
            t.add([root.root, list(root.detached), list(root.decapDetached), "\(root.maps.count)", "\(root.programs.count)"])
        }
        t.print()
        let n = present.count == 1 ? "1 pin root" : "\(present.count) pin roots"
        for root in r.roots where !root.existed { print("nothing pinned at \(root.root)") }
        if r.dryRun {
            print("dry run: would detach the links and remove \(n); nothing changed")
        } else {
            print("detached the links and removed \(n)")
        }
    }
}
