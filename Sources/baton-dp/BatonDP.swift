import ArgumentParser
import BatonCLI
import BatonDataPlane
import Foundation

/// baton-dp: Baton's data plane, directly. The map verbs work on the objects pinned under bpffs
/// (like bpftool), for debugging, without a daemon. It is the one tool of the operator's that
/// links libbpf; `batonctl` hands it these verbs (`batonctl rule add …` runs `baton-dp rule add
/// …` under the name batonctl), so that batonctl itself links neither libbpf nor the data plane.
@main
struct BatonDP: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            // Under batonctl's name when batonctl handed the verb over: its usage lines and
            // messages then name the command the operator typed.
            commandName: toolName == "batonctl" ? "batonctl" : "baton-dp",
            abstract: "Baton's XDP data plane, directly: attach, rules, takeovers, counters, teardown.",
            discussion: """
            The map verbs work directly on the data plane pinned at --root (default \
            \(DataPlane.defaultRoot)), without a daemon, for debugging and trying things by hand; \
            they need root. Rules and takeovers may be added before anything is attached: the first \
            `takeover add`, `rule add` or `attach` loads and pins the data plane. `teardown` detaches \
            and removes everything Baton pinned (refusing while a batond answers on --control).

            batonctl runs these verbs through baton-dp: `batonctl VERB …` and `baton-dp VERB …` are \
            the same command. Commands that print take --json. See docs/cli.md.
            """,
            subcommands: [Attach.self, Detach.self, Status.self, TakeoverCommand.self, RuleCommand.self,
                          Stats.self, Unload.self, Teardown.self])
    }

    @OptionGroup(title: "Global Options") var globals: GlobalOptions
    /// Accepted before the verb as batonctl accepts them (teardown reads --control).
    @OptionGroup(title: "Daemon Options", visibility: .hidden) var daemon: ControlOptions

    static func main() { runAsTool() }
}
