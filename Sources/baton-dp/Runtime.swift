import ArgumentParser
import BatonBPF
import BatonCLI
import BatonDataPlane
import BatonModel
import Foundation
import Logging

// What a map verb runs with: the checked pin root on bpffs, the network namespace entered,
// interface lookups, and the data plane adopted or loaded.

/// Capacities used only when a command loads the data plane (first attach or add).
struct LoadOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Rule capacity if this command loads the data plane (default \(DataPlane.Options().maxRules)); ignored when it is already loaded.",
        valueName: "n"))
    var maxRules: String?

    @Option(name: .long, help: ArgumentHelp(
        "Takeover capacity if this command loads the data plane (default \(DataPlane.Options().maxTakeovers)); ignored when it is already loaded.",
        valueName: "n"))
    var maxTakeovers: String?

    func options() throws -> DataPlane.Options {
        var o = DataPlane.Options()
        if let s = maxRules { o.maxRules = try Parse.positive(s, "--max-rules") }
        if let s = maxTakeovers { o.maxTakeovers = try Parse.positive(s, "--max-takeovers") }
        return o
    }
}

/// What a command runs with: the checked pin root, the namespace entered,
/// interface lookups and the data plane.
final class Context {
    let root: String
    let netns: String?
    let verbose: Bool
    let log: Logger
    let interfaces: Interfaces

    init(root: String, netns: String?, verbose: Bool) {
        self.root = root
        self.netns = netns
        self.verbose = verbose
        log = Logger(label: toolName)
        interfaces = Interfaces(namespace: netns)
    }

    var linksDirectory: String { root + "/links" }
    func linkPath(_ interface: String) -> String { linksDirectory + "/" + interface }

    /// Names of interfaces with a pinned link.
    var pinnedLinks: [String] { BPFFS.list(linksDirectory) }

    var isLoaded: Bool { DataPlane.isPinned(root: root) }

    /// The pinned data plane, for commands that read or remove.
    func loaded() throws -> DataPlane {
        guard isLoaded else { throw CLIError.notLoaded(root) }
        log.debug("adopting the data plane pinned at \(root)")
        return try DataPlane.adopt(root: root)
    }

    /// The pinned data plane, loaded and pinned first if there is none
    /// (make-before-break: rules may be written before anything is attached).
    func open(_ load: LoadOptions) throws -> DataPlane {
        let options = try load.options()
        if isLoaded {
            let dp = try loaded()
            if load.maxRules != nil || load.maxTakeovers != nil,
               dp.ruleCapacity != options.maxRules || dp.takeoverCapacity != options.maxTakeovers {
                note("the data plane at \(root) is already loaded (\(dp.ruleCapacity) rules, \(dp.takeoverCapacity) takeovers); --max-rules/--max-takeovers apply only when loading")
            }
            return dp
        }
        log.debug("loading the embedded data plane and pinning it at \(root)")
        let dp = try DataPlane.open(root: root, options: options)
        note("loaded the data plane at \(root) (\(dp.ruleCapacity) rules, \(dp.takeoverCapacity) takeovers)")
        return dp
    }

    /// The interface whose MAC is the agent's when no flag names one: the
    /// one interface the program is attached to.
    func soleAttachedInterface(_ need: String, macFlag: String) throws -> InterfaceInfo {
        let names = pinnedLinks
        guard names.count == 1 else {
            let what = names.isEmpty ? "nothing is attached at \(root)" : "\(names.count) interfaces are attached (\(names.joined(separator: ", ")))"
            throw CLIError.usage("\(need): \(what); give --via IFACE or \(macFlag) MAC")
        }
        let link = try XDPLink.pinned(at: linkPath(names[0]))
        guard !link.isDefunct, let info = interfaces.index(link.ifindex) else {
            throw CLIError.notFound("\(need): the attached interface \(names[0]) is gone; give --via IFACE or \(macFlag) MAC")
        }
        return info
    }

    /// An interface's MAC, which steering needs.
    func mac(of iface: InterfaceInfo, for flag: String) throws -> MACAddress {
        guard let m = iface.mac, !m.isZero, !m.isMulticast else {
            throw CLIError.usage("\(iface.name) has no unicast MAC address to use (\(flag))")
        }
        return m
    }
}

/// Runs a command's body: root check, bpffs check, namespace, errors.
func perform<T>(_ g: GlobalOptions, _ body: (Context) throws -> T) throws -> T {
    bootstrapLogging(verbose: g.verbose)
    let root = try checkedRoot(g.root)
    guard geteuid() == 0 else { throw CLIError.notRoot }
    try checkBPFFS(root)
    let ctx = Context(root: root, netns: g.netns, verbose: g.verbose)
    do {
        if let name = g.netns { return try Interfaces.inNamespace(name) { try body(ctx) } }
        return try body(ctx)
    } catch {
        throw CLIError.from(error, root: root)
    }
}

/// The pin root's parent must be on bpffs, and the root not a bpffs mount itself.
func checkBPFFS(_ root: String) throws {
    let parent = (root as NSString).deletingLastPathComponent
    if !BPFFS.isBPFFS(parent) {
        if BPFFS.isBPFFS(root) {
            throw CLIError.usage("--root \(root) is a bpffs mount itself; use a directory below it, such as \(root)/baton")
        }
        throw CLIError("\(parent) is not on a BPF filesystem (bpffs); mount it with: mount -t bpf bpf /sys/fs/bpf (or choose a --root below a bpffs mount)")
    }
}

/// An absolute, normalised path: no empty, "." or ".." components.
func checkedRoot(_ text: String) throws -> String {
    guard text.hasPrefix("/") else { throw CLIError.usage("invalid --root '\(text)': expected an absolute path") }
    let parts = text.split(separator: "/")
    guard !parts.isEmpty, !parts.contains(where: { $0 == "." || $0 == ".." }) else {
        throw CLIError.usage("invalid --root '\(text)': expected a directory below a bpffs mount, without '.' or '..'")
    }
    return "/" + parts.joined(separator: "/")
}

extension Parse {
    static func xdpMode(_ text: String, _ flag: String = "--mode") throws -> XDPMode {
        guard let m = XDPMode(rawValue: text.lowercased()) else {
            throw CLIError.usage("invalid mode '\(text)': expected native or generic (\(flag))")
        }
        return m
    }
}

/// What the map verbs make of the errors below them.
extension CLIError {
    static let notRoot = CLIError("must run as root (BPF and XDP need CAP_BPF and CAP_NET_ADMIN)", .forbidden)

    static func notLoaded(_ root: String) -> CLIError {
        .notFound("nothing is loaded at \(root); `\(toolName) attach IFACE` loads it")
    }

    /// Turns anything thrown below into a CLIError: DataPlane's domain errors
    /// keep their text, kernel errors keep theirs (the verifier log goes to
    /// `detail`), anything else is described as it describes itself.
    static func from(_ error: any Error, root: String) -> CLIError {
        switch error {
        case let e as CLIError:
            return e
        case let e as ModelError:
            return .usage(e.description)
        case let e as DataPlaneError:
            switch e {
            case .invalid(let s): return .usage(s)
            case .notFound(let s): return .notFound(s)
            case .full(let s): return CLIError("map full: \(s)", .failure)
            case .notLoaded: return .notLoaded(root)
            }
        case let e as BPFError:
            let line = e.description.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? e.operation
            if e.errno == E2BIG { return CLIError("map full: \(line)", .failure, detail: e.log) }
            if e.errno == EPERM || e.errno == EACCES { return CLIError(line, .forbidden, detail: e.log) }
            var message = line
            if !e.log.isEmpty { message += " (--verbose shows libbpf's log)" }
            return CLIError(message, .failure, detail: e.log)
        case let e as DecodingError:
            return .usage(describe(e))
        default:
            let text = String(describing: error)
            return CLIError(text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? text, .failure,
                            detail: text)
        }
    }

    static func describe(_ e: DecodingError) -> String { e.summary }
}
