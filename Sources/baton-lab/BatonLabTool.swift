import ArgumentParser
import BatonCLI
import BatonLab
import Foundation

/// baton-lab: transfer labs (test hosts in network namespaces, BatonLab) from the shell, for
/// the demo, the benchmark and trying things by hand. A test tool: the operator's batonctl
/// does not link it.
@main
struct BatonLabTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-lab",
        abstract: "Build, show, enter and remove transfer labs (test hosts in network namespaces).",
        discussion: """
        A lab is a set of network namespaces named <prefix>-<host> (and <prefix>-seg, \
        <prefix>-seg1 for the bridges), wired with veth pairs; see docs/harness.md. Labs stay \
        up until `baton-lab down`. Nothing is created in the current namespace. Needs root.
        """,
        subcommands: [Up.self, Status.self, Down.self, Exec.self])

    static func main() { runAsTool() }
}

/// What every verb takes.
struct LabOptions: ParsableArguments {
    @Flag(name: [.customShort("v"), .long], help: "Print the whole error text, not only its first line.")
    var verbose = false
}

protocol LabVerb: VerboseCommand {
    var options: LabOptions { get }
}

extension LabVerb {
    var isVerbose: Bool { options.verbose }

    /// Root check and error mapping (no pin root, no bpffs needed).
    func perform(_ body: () throws -> Void) throws {
        guard geteuid() == 0 else {
            throw CLIError("must run as root (network namespaces and veth pairs need CAP_SYS_ADMIN and CAP_NET_ADMIN)", .forbidden)
        }
        do {
            try body()
        } catch let e as CLIError {
            throw e
        } catch {
            let text = String(describing: error)
            throw CLIError(CLIError.firstLine(text), .failure, detail: text)
        }
    }
}

enum LabArguments {
    /// "3" → cn1, cn2, cn3 ("1" → cn); "alice,bob" → alice, bob.
    static func correspondentNames(_ text: String) throws -> [String] {
        if let count = Int(text) {
            guard (1...64).contains(count) else {
                throw CLIError.usage("invalid correspondent count '\(text)': expected 1-64 (--correspondents)")
            }
            return count == 1 ? ["cn"] : (1...count).map { "cn\($0)" }
        }
        let names = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for name in names where name.isEmpty || !name.utf8.allSatisfy({ (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) }) {
            throw CLIError.usage("invalid correspondent name '\(name)': expected lowercase letters or digits (--correspondents)")
        }
        return names
    }

    /// A lab prefix: 1-8 lowercase letters or digits; and a lab with it must exist.
    static func requireLab(_ prefix: String) throws {
        guard (1...8).contains(prefix.utf8.count),
              prefix.utf8.allSatisfy({ (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) }) else {
            throw CLIError.usage("invalid prefix '\(prefix)': expected lowercase letters or digits, like bt3k9zq")
        }
        guard Lab.exists(prefix: prefix) else {
            throw CLIError.notFound("no lab with prefix \(prefix) (`baton-lab status` lists them)")
        }
    }
}
