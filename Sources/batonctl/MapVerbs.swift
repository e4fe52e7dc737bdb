import ArgumentParser
import BatonCLI
import Foundation

// The map verbs are baton-dp's (it links libbpf and the data plane; batonctl links neither).
// batonctl lists them in its help and hands each over whole: `batonctl [OPTIONS] VERB ARGS` runs
// baton-dp with the same arguments under the name batonctl (argv[0]), so that its usage lines,
// messages and exit codes are those of the command the operator typed.

enum Handover {
    /// The map verbs: batonctl's subcommands that are handed over (HandoverTests checks them
    /// against baton-dp's own).
    static let verbs = Set(Batonctl.configuration.subcommands.filter { $0 is any HandedOver.Type }
        .compactMap { $0.configuration.commandName })

    /// The map verb a command line names, if it names one: the first word that is neither an
    /// option nor an option's value (`help VERB` too). Nil for the daemon verbs.
    static func verb(in arguments: [String]) -> String? {
        let valued = GlobalOptions.valued.union(ControlOptions.valued)
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { return nil }
            if a.hasPrefix("-") {
                i += (!a.contains("=") && valued.contains(a)) ? 2 : 1
                continue
            }
            if a == "help", i + 1 < arguments.count { return verbs.contains(arguments[i + 1]) ? arguments[i + 1] : nil }
            return verbs.contains(a) ? a : nil
        }
        return nil
    }

    /// Replaces this process with baton-dp: beside batonctl's own executable, else on PATH.
    static func exec(_ arguments: [String]) throws -> Never {
        guard let path = locate() else {
            throw CLIError("the map verbs are baton-dp's (the data plane tool, built and installed with batond), and there is none beside \(ownPath ?? "batonctl") or on PATH", .unavailable)
        }
        let argv = (["batonctl"] + arguments).map { strdup($0) } + [nil]
        execv(path, argv)
        let why = strerrorText(errno)
        throw CLIError("cannot run \(path): \(why)", .failure)
    }

    private static var ownPath: String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
    }

    static func locate() -> String? {
        var candidates: [String] = []
        if let own = ownPath { candidates.append((own as NSString).deletingLastPathComponent + "/baton-dp") }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") where !dir.isEmpty {
            candidates.append(dir + "/baton-dp")
        }
        return candidates.first { access($0, X_OK) == 0 }
    }
}

/// A map verb in batonctl's help; running it hands the whole command line to baton-dp. It
/// declares no arguments: `main` hands a map verb over before ArgumentParser parses anything
/// (and a sibling capturing its arguments for passthrough made ArgumentParser refuse
/// `node status --control …`).
protocol HandedOver: ParsableCommand {}

extension HandedOver {
    func run() throws { try Handover.exec(Array(CommandLine.arguments.dropFirst())) }
}

// One type per verb, for the help's list (`batonctl VERB --help` is baton-dp's own help).
extension MapVerb {
    var handedOver: CommandConfiguration { CommandConfiguration(commandName: rawValue, abstract: abstract.dropLast() + " (baton-dp).") }
}

struct AttachVerb: HandedOver { static let configuration = MapVerb.attach.handedOver }
struct DetachVerb: HandedOver { static let configuration = MapVerb.detach.handedOver }
struct StatusVerb: HandedOver { static let configuration = MapVerb.status.handedOver }
struct TakeoverVerb: HandedOver { static let configuration = MapVerb.takeover.handedOver }
struct RuleVerb: HandedOver { static let configuration = MapVerb.rule.handedOver }
struct StatsVerb: HandedOver { static let configuration = MapVerb.stats.handedOver }
struct UnloadVerb: HandedOver { static let configuration = MapVerb.unload.handedOver }
struct TeardownVerb: HandedOver { static let configuration = MapVerb.teardown.handedOver }
