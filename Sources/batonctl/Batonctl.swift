import ArgumentParser
import BatonCLI
import Foundation

/// batonctl: the operator's CLI for Baton. The daemon verbs (transfer, anchor, sip, node, device,
/// policy, metrics) talk to batond through its HTTP/JSON API, on the local socket or remotely over
/// mutual TLS; the map verbs, which work directly on the objects pinned under bpffs (like
/// bpftool), are baton-dp's, and batonctl hands them over (MapVerbs.swift): batonctl links
/// neither libbpf nor the data plane.
@main
struct Batonctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batonctl",
        abstract: "Operate Baton: transfers, devices and policies through batond's API, and its XDP data plane directly.",
        discussion: """
        Daemon verbs: `transfer` (start, list, show, end), `node status`, `device` (add, list, \
        show, del), `policy` (add, list, del) and `metrics` talk to batond through its API: the \
        local socket (--control, default /run/baton/batond.sock) or a remote daemon over mutual \
        TLS (--api https://HOST:PORT with --tls-ca, --tls-cert, --tls-key). This is the normal \
        way to move sessions and to enrol devices.

        Map verbs (attach, detach, status, takeover, rule, stats, unload) work directly on the \
        data plane pinned at --root (default /sys/fs/bpf/baton), without a daemon, for debugging \
        and trying things by hand; they need root. Rules and takeovers may be added before \
        anything is attached: the first `takeover add`, `rule add` or `attach` loads and pins the \
        data plane. `teardown` detaches and removes everything Baton pinned (refusing while a \
        batond answers). These verbs are baton-dp's, the data plane tool beside batonctl: \
        batonctl runs it with the same arguments. Test labs in network namespaces are baton-lab's.

        Commands that print take --json. See docs/cli.md.
        """,
        subcommands: [TransferCommand.self, AnchorCommand.self, SIPCommand.self, NodeCommand.self, DeviceCommand.self, PolicyCommand.self, MetricsCommand.self,
                      AttachVerb.self, DetachVerb.self, StatusVerb.self, TakeoverVerb.self, RuleVerb.self,
                      StatsVerb.self, UnloadVerb.self, TeardownVerb.self])

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    /// So that --control and --api may come before the verb too (the daemon verbs read the
    /// same values); hidden here, shown in each daemon verb's help.
    @OptionGroup(title: "Daemon Options", visibility: .hidden) var daemon: ControlOptions

    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if Handover.verb(in: arguments) != nil {
            do { try Handover.exec(arguments) } catch let e as CLIError {
                printError("\(toolName): " + e.message)
                Foundation.exit(e.status.rawValue)
            } catch { exit(withError: error) }
        }
        runAsTool()
    }
}
