import ArgumentParser
import BatonCLI
import BatonLab
import BatonNet
import Foundation

struct Exec: ParsableCommand, LabVerb {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in a lab host's network namespace.",
        discussion: """
        Enters only the network namespace <prefix>-<host> and execs COMMAND (looked up in \
        PATH): unlike `ip netns exec`, the mounts stay the host's, so bpffs at /sys/fs/bpf \
        and its pins stay visible. HOST may also be seg or seg1 (a segment's bridge). The \
        exit status is the command's (127: not found, 126: not executable).

        Example: baton-lab exec bt3k9zq cn -- ping -c1 10.1.2.3
        """)

    @OptionGroup var options: LabOptions

    @Argument(help: ArgumentHelp("The lab's prefix.", valueName: "prefix"))
    var prefix: String

    @Argument(help: ArgumentHelp("The host (cn, sa, tn, target, rt, …).", valueName: "host"))
    var host: String

    // Only after `--`: baton-lab would otherwise take options it knows (-v, -h) as its own.
    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "command"))
    var command: [String] = []

    func run() throws {
        let arguments = command
        try perform {
            guard !arguments.isEmpty else { throw CLIError.usage("give the command to run after --: exec PREFIX HOST -- COMMAND [ARGS...]") }
            try LabArguments.requireLab(prefix)
            let name = "\(prefix)-\(host)"
            guard NetworkNamespace.exists(name: name) else {
                throw CLIError.notFound("lab \(prefix) has no host \(host) (no namespace \(name))")
            }
            try NetworkNamespace.open(name: name).enterOnCurrentThread()
            fflush(nil)
            let failure = Self.exec(arguments)
            // Only reached when exec failed.
            note("exec: \(arguments[0]): \(String(cString: strerror(failure)))")
            Foundation.exit(failure == ENOENT ? 127 : 126)
        }
    }

    /// execvp: replaces the process, so it returns only on failure, with errno.
    static func exec(_ arguments: [String]) -> Int32 {
        let pointers = arguments.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        execvp(arguments[0], pointers)
        return errno
    }
}
