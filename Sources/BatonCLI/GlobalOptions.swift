import ArgumentParser
import BatonModel
import Logging

/// Options every batonctl and baton-dp command takes, before or after the verb. The map verbs
/// use all three; the daemon verbs only --verbose (batonctl accepts --root and --netns before a
/// daemon verb too, so that one set of options can precede any verb).
public struct GlobalOptions: ParsableArguments {
    /// Every `--root` given (teardown takes them all; the other verbs the last).
    @Option(name: .customLong("root"), help: ArgumentHelp(
        "The data plane's pin root on bpffs (maps/, progs/, links/ below it); default \(DefaultPaths.pinRoot). Given twice, the last counts; teardown takes several.",
        valueName: "path"))
    public var roots: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Enter the named network namespace (/var/run/netns/<name>, as `ip netns add` makes) first. Only the network namespace is entered, so bpffs stays the host's; interface names and ifindexes are that namespace's.",
        valueName: "name"))
    public var netns: String?

    @Flag(name: [.customShort("v"), .long], help: "Log each step, and libbpf's log on errors, to stderr.")
    public var verbose = false

    public init() {}

    /// The pin root of a map verb: the last --root given, as for any option given twice.
    public var root: String { roots.last ?? DefaultPaths.pinRoot }

    /// The options that take a value, as they may precede the verb (batonctl finds the verb
    /// behind them to hand the map verbs to baton-dp).
    public static let valued: Set<String> = ["--root", "--netns"]
}

/// Commands whose globals the error reporter can read.
public protocol HasGlobals: VerboseCommand {
    var globals: GlobalOptions { get }
}

extension HasGlobals {
    public var isVerbose: Bool { globals.verbose }
}

nonisolated(unsafe) private var loggingReady = false

/// swift-log to stderr: warnings, or every step with --verbose. Once per process.
public func bootstrapLogging(verbose: Bool) {
    guard !loggingReady else { return }
    loggingReady = true
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = verbose ? .debug : .warning
        return h
    }
}
