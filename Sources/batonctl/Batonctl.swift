import ArgumentParser
import Foundation

/// batonctl: the operator's CLI for Baton's XDP data plane, working directly
/// on the objects pinned under bpffs (like bpftool/bpfctl): no daemon needed.
@main
struct Batonctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batonctl",
        abstract: "Operate Baton's XDP session-steering data plane pinned under bpffs.",
        discussion: """
        Every command works on the data plane pinned at --root (default /sys/fs/bpf/baton) and \
        needs root. Rules and takeovers may be added before anything is attached: the first \
        `takeover add`, `rule add` or `attach` loads and pins the data plane. Commands that \
        print take --json. See docs/cli.md.
        """,
        subcommands: [Attach.self, Detach.self, Status.self, TakeoverCommand.self, RuleCommand.self,
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
