import ArgumentParser
import BatonAPI
import BatonBPF
import BatonCLI
import BatonDataPlane
import BatonModel
import Foundation
import Logging

/// Options every command takes, before or after the verb.
struct GlobalOptions: ParsableArguments {
    /// Every `--root` given (teardown takes them all; the other verbs the last).
    @Option(name: .customLong("root"), help: ArgumentHelp(
        "The data plane's pin root on bpffs (maps/, progs/, links/ below it); default \(DataPlane.defaultRoot). Given twice, the last counts; teardown takes several.",
        valueName: "path"))
    var roots: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Enter the named network namespace (/var/run/netns/<name>, as `ip netns add` makes) first. Only the network namespace is entered, so bpffs stays the host's; interface names and ifindexes are that namespace's.",
        valueName: "name"))
    var netns: String?

    @Flag(name: [.customShort("v"), .long], help: "Log each step, and libbpf's log on errors, to stderr.")
    var verbose = false

    /// The pin root of a map verb: the last --root given, as for any option given twice.
    var root: String { roots.last ?? DataPlane.defaultRoot }
}

/// The daemon verbs' options: which batond to talk to. The local one over its Unix socket
/// (--control), or a remote one over HTTPS with client certificates (--api and the TLS files).
/// Accepted before or after the verb.
struct ControlOptions: ParsableArguments {
    static let defaultPath = "/run/baton/batond.sock"

    @Option(name: .long, help: ArgumentHelp(
        "The local batond's API socket (batond's --control; default \(ControlOptions.defaultPath)).", valueName: "path"))
    var control: String?

    @Option(name: .long, help: ArgumentHelp(
        "A remote batond's API instead (batond's --listen), over mutual TLS: needs --tls-ca, --tls-cert and --tls-key.",
        valueName: "https://host:port"))
    var api: String?

    @Option(name: [.customLong("tls-ca"), .customLong("ca")], help: ArgumentHelp(
        "With --api: the CA that signed the daemon's certificate (PEM).", valueName: "file"))
    var tlsCA: String?

    @Option(name: [.customLong("tls-cert"), .customLong("cert")], help: ArgumentHelp(
        "With --api: this client's certificate (PEM), signed by the daemon's --tls-client-ca.", valueName: "file"))
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp(
        "With --api: this client's private key (PEM).", valueName: "file"))
    var tlsKey: String?

    /// The local socket's path (--control or the default), when --api is not given.
    var controlPath: String { control ?? Self.defaultPath }

    /// Where to send requests; every contradiction or malformed value is a usage error.
    func endpoint() throws -> APIEndpoint {
        guard let api else {
            let given = [("--tls-ca", tlsCA), ("--tls-cert", tlsCert), ("--tls-key", tlsKey)].filter { $0.1 != nil }.map(\.0)
            if !given.isEmpty {
                throw CLIError.usage("\(given.joined(separator: ", ")): --tls-ca, --tls-cert and --tls-key go with --api (a remote daemon); the local socket needs no certificates")
            }
            let path = controlPath
            guard !path.isEmpty else { throw CLIError.usage("invalid --control '': expected the path of batond's API socket") }
            guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
                throw CLIError.usage("invalid --control '\(path)': a socket path is at most \(MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1) bytes")
            }
            return .unix(path: path)
        }
        if control != nil {
            throw CLIError.usage("--control and --api are exclusive: --control is the local daemon's socket, --api a remote daemon's address")
        }
        let base = try Parse.apiBase(api)
        let files = [("--tls-ca", tlsCA), ("--tls-cert", tlsCert), ("--tls-key", tlsKey)]
        let missing = files.filter { $0.1 == nil }.map(\.0)
        guard missing.isEmpty, let ca = tlsCA, let cert = tlsCert, let key = tlsKey else {
            throw CLIError.usage("--api needs \(missing.joined(separator: ", ")): the daemon's API over TCP is mutual TLS (--tls-ca, --tls-cert, --tls-key)")
        }
        for (flag, file) in files {
            guard let file else { continue }
            if access(file, R_OK) != 0 {
                let why = strerrorText(errno)
                throw CLIError.notFound("cannot read \(file): \(why) (\(flag))")
            }
        }
        return .https(base: base, tls: ClientTLS(ca: ca, certificate: cert, key: key))
    }
}

/// Runs a daemon verb's body with a client of the daemon's API; every error below becomes a
/// one-line CLIError whose exit status follows the error's code (docs/cli.md).
func withDaemon<T>(_ o: ControlOptions, _ body: (Control) throws -> T) throws -> T {
    let endpoint = try o.endpoint()
    if case .unix(let path) = endpoint { try probeSocket(path) }
    do {
        return try body(Control(endpoint: endpoint))
    } catch {
        throw CLIError.fromControl(error)
    }
}

/// Connects once to the local socket, so that "nothing there" and "not yours" get their own
/// one-line messages (exit 69 and 77) before any request is made.
func probeSocket(_ path: String) throws {
    switch connectUnix(path) {
    case 0:
        return
    case EACCES, EPERM:
        throw CLIError("connect to \(path): \(strerrorText(EACCES)): the API socket is root's; run batonctl as root", .forbidden)
    case let e:
        throw CLIError("no daemon at \(path) (\(strerrorText(e))): is batond running? (--control)", .unavailable)
    }
}

/// connect(2) to a Unix stream socket and close it: 0, or the errno.
func connectUnix(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return errno }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return ENAMETOOLONG }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let r = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    return r == 0 ? 0 : errno
}

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
        log = Logger(label: "batonctl")
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

nonisolated(unsafe) private var loggingReady = false

func bootstrapLogging(verbose: Bool) {
    guard !loggingReady else { return }
    loggingReady = true
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = verbose ? .debug : .warning
        return h
    }
}
