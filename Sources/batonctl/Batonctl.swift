import ArgumentParser
import Foundation

/// batonctl: the operator's CLI for Baton. The daemon verbs (transfer, node) talk to
/// the local batond over its control socket; the map verbs work directly on the
/// objects pinned under bpffs (like bpftool/bpfctl), for debugging, without a daemon.
@main
struct Batonctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batonctl",
        abstract: "Operate Baton: transfers through the local batond, and its XDP data plane directly.",
        discussion: """
        Daemon verbs: `transfer` (start, list, show, end) and `node status` talk to the batond \
        running on this host over its control socket (--control, default /run/baton/batond.sock); \
        this is the normal way to move sessions.

        Map verbs (attach, detach, status, takeover, rule, stats, unload) work directly on the \
        data plane pinned at --root (default /sys/fs/bpf/baton), without a daemon, for debugging \
        and trying things by hand; they need root. Rules and takeovers may be added before \
        anything is attached: the first `takeover add`, `rule add` or `attach` loads and pins the \
        data plane. `lab` builds test labs in network namespaces.

        Commands that print take --json. See docs/cli.md.
        """,
        subcommands: [TransferCommand.self, NodeCommand.self,
                      Attach.self, Detach.self, Status.self, TakeoverCommand.self, RuleCommand.self,
                      Stats.self, Unload.self, LabCommand.self])

    @OptionGroup(title: "Global Options") var globals: GlobalOptions

    static func main() {
        let command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error) // usage errors and --help: ArgumentParser's own text
        }
        do {
            var c = command
            try c.run()
        } catch let e as CLIError {
            printError("batonctl: " + e.message)
            if verboseRequested(command), !e.detail.isEmpty { printError(e.detail) }
            Foundation.exit(e.status.rawValue)
        } catch {
            exit(withError: error) // --help, --version, ExitCode: ArgumentParser's handling
        }
    }

    private static func verboseRequested(_ c: ParsableCommand) -> Bool {
        (c as? any HasGlobals)?.globals.verbose ?? false
    }
}

/// Commands whose globals the error reporter can read.
protocol HasGlobals {
    var globals: GlobalOptions { get }
}
