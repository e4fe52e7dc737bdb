import ArgumentParser
import BatonAPI
import BatonCLI
import Foundation

/// `batonctl policy …`: which enrolled devices may move sessions to which.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Add, list and remove the agent's transfer policies (which TN may move sessions to which target).",
        discussion: """
        Run against the agent's batond (--control, default \(ControlOptions.defaultPath), or \
        --api). A policy FROM → TO lets device FROM (the TN) register transfers to device TO \
        (the target); either side may be * (any enrolled device). Without a policy that allows \
        the pair the agent refuses the registration (`no policy allows transfers from …`). The \
        devices need not be enrolled yet.
        """,
        subcommands: [Add.self, List.self, Del.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Allow transfers from one device (the TN) to another (the target).",
            discussion: "Quote * in the shell: --from '*'. The same pair twice is refused (exit 1).")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Option(name: .long, help: ArgumentHelp("The TN: a device's name, or * for any.", valueName: "device|*"))
        var from: String

        @Option(name: .long, help: ArgumentHelp("The target: a device's name, or * for any.", valueName: "device|*"))
        var to: String

        func run() throws {
            let from = try Parse.policySide(from, "--from")
            let to = try Parse.policySide(to, "--to")
            let p = try withDaemon(daemon) { try $0.addPolicy(Policy(from: from, to: to)) }
            if output.json { try JSON.print(p) } else { print("added \(PolicyText.describe(p))") }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the policies, oldest first.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let policies = try withDaemon(daemon) { try $0.policies() }
            if output.json {
                try JSON.print(policies)
            } else if policies.isEmpty {
                print("no policies")
            } else {
                var t = Table(["ID", "FROM", "TO"], numeric: [0])
                for p in policies { t.add([p.id.map { "\($0)" } ?? "-", p.from, p.to]) }
                t.print()
            }
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "del",
            abstract: "Remove a policy by its ID.",
            discussion: "Transfers in progress go on; new registrations it allowed are refused.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The policy's ID, as `policy list` shows it.", valueName: "id"))
        var id: String

        struct Result: Encodable {
            var policy: Int
            var removed: Bool
        }

        func run() throws {
            let id = try Parse.policyID(id)
            try withDaemon(daemon) { try $0.deletePolicy(id) }
            if output.json { try JSON.print(Result(policy: id, removed: true)) } else { print("removed policy \(id)") }
        }
    }
}

enum PolicyText {
    /// "policy 3: tn -> target"
    static func describe(_ p: Policy) -> String {
        "policy \(p.id.map { "\($0)" } ?? "?"): \(p.from) -> \(p.to)"
    }
}
