import ArgumentParser
import BatonLab
import BatonModel
import BatonNet
import Foundation

/// `batonctl lab`: the transfer test topology (BatonLab) from the shell, for the demo, the
/// benchmark and trying things by hand. Works on network namespaces only; --root is ignored.
struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build, show, enter and remove transfer labs (hosts in network namespaces).",
        discussion: """
        A lab is a set of network namespaces named <prefix>-<host> (and <prefix>-seg, \
        <prefix>-seg1 for the bridges), wired with veth pairs; see docs/harness.md. Labs stay \
        up until `lab down`. Nothing is created in the current namespace. --root and --netns \
        are ignored.
        """,
        subcommands: [Up.self, Status.self, Down.self, Exec.self])

    // MARK: up

    struct Up: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "Build a transfer lab and leave it up.",
            discussion: """
            Layouts:
              l2  one segment: the correspondents, sa, tn and target
              l3  the correspondents, tn and sa on segment 0; target on segment 1
                  behind router rt (rp_filter off), reached only through rt

            Prints the prefix and, per host and interface, its namespace, MAC and addresses.
            """)

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions

        @Option(name: .long, help: ArgumentHelp("The layout: l2 (one segment) or l3 (target behind a router).", valueName: "l2|l3"))
        var layout: String = "l2"

        @Option(name: .long, help: ArgumentHelp(
            "How many correspondents (1: cn; N: cn1…cnN), or their names, comma-separated (lowercase letters and digits).",
            valueName: "n|names"))
        var correspondents: String = "1"

        @Option(name: .long, help: ArgumentHelp("The lab's prefix: bt + 5 lowercase letters or digits (default: random).",
                                                valueName: "prefix"))
        var prefix: String?

        func run() throws {
            try performLab(globals) {
                guard let layout = LabLayout(rawValue: layout) else {
                    throw CLIError.usage("invalid layout '\(self.layout)': expected l2 or l3 (--layout)")
                }
                let names = try LabCLI.correspondentNames(correspondents)
                if let prefix {
                    guard Lab.isLabNamespace(prefix + "-x") else {
                        throw CLIError.usage("invalid prefix '\(prefix)': expected bt + 5 lowercase letters or digits, like bt3k9zq (--prefix)")
                    }
                }
                let lab = try Lab.transfer(layout, correspondents: names, prefix: prefix)
                let report = LabReport(lab)
                if output.json {
                    try JSON.print(report)
                } else {
                    print("lab \(lab.prefix) is up (layout \(layout.rawValue)); remove it with: batonctl lab down \(lab.prefix)")
                    report.printText()
                }
            }
        }
    }

    // MARK: status

    struct Status: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "List the labs present, with their hosts and addresses.",
            discussion: """
            Reads everything back from the kernel (the namespaces, and netlink in each), so it \
            shows labs made by any process. Without PREFIX: every lab whose namespaces are named \
            bt + 5 characters + "-". --json prints an array of labs.
            """)

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("Only this lab.", valueName: "prefix"))
        var prefix: String?

        func run() throws {
            try performLab(globals) {
                var reports: [LabReport] = []
                if let prefix {
                    try LabCLI.requireLab(prefix)
                    reports = [LabReport(try Lab.open(prefix: prefix))]
                } else {
                    for prefix in Lab.presentPrefixes() {
                        // Labs of test runs come and go while we read them.
                        do {
                            reports.append(LabReport(try Lab.open(prefix: prefix)))
                        } catch {
                            note("lab \(prefix) changed while being read (built or removed just now); skipped")
                        }
                    }
                }
                if output.json {
                    try JSON.print(reports)
                } else if reports.isEmpty {
                    print("no labs")
                } else {
                    for (number, report) in reports.enumerated() {
                        if number > 0 { print("") }
                        print("lab \(report.prefix)" + (report.layout.map { " (layout \($0))" } ?? ""))
                        report.printText()
                    }
                }
            }
        }
    }

    // MARK: down

    struct Down: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "Remove a lab: delete its namespaces, and with them its interfaces.",
            discussion: """
            --all removes every lab (namespaces bt + 5 characters + "-"), including those of \
            test runs in progress.
            """)

        @OptionGroup(title: "Global Options") var globals: GlobalOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The lab's prefix.", valueName: "prefix"))
        var prefix: String?

        @Flag(name: .long, help: "Remove every lab.")
        var all = false

        struct Result: Encodable {
            /// The namespaces deleted.
            var removed: [String]
        }

        func run() throws {
            try performLab(globals) {
                let removed: [String]
                switch (prefix, all) {
                case (let prefix?, false):
                    try LabCLI.requireLab(prefix)
                    removed = try Lab.removeStale(prefix: prefix)
                case (nil, true):
                    removed = try Lab.removeAll(matching: Lab.isLabNamespace)
                case (_?, true):
                    throw CLIError.usage("give a PREFIX or --all, not both")
                case (nil, false):
                    throw CLIError.usage("give the PREFIX of the lab to remove, or --all")
                }
                if output.json {
                    try JSON.print(Result(removed: removed.sorted()))
                } else if removed.isEmpty {
                    print("no labs")
                } else {
                    let labs = Array(Set(removed.map { String($0.prefix { $0 != "-" }) })).sorted()
                    print("removed \(labs.joined(separator: ", ")) (\(removed.count) namespaces)")
                }
            }
        }
    }

    // MARK: exec

    struct Exec: ParsableCommand, HasGlobals {
        static let configuration = CommandConfiguration(
            abstract: "Run a command in a lab host's network namespace.",
            discussion: """
            Enters only the network namespace <prefix>-<host> and execs COMMAND (looked up in \
            PATH): unlike `ip netns exec`, the mounts stay the host's, so bpffs at /sys/fs/bpf \
            and its pins stay visible. HOST may also be seg or seg1 (a segment's bridge). The \
            exit status is the command's (127: not found, 126: not executable).

            Example: batonctl lab exec bt3k9zq cn -- ping -c1 10.1.2.3
            """)

        @OptionGroup(title: "Global Options") var globals: GlobalOptions

        @Argument(help: ArgumentHelp("The lab's prefix.", valueName: "prefix"))
        var prefix: String

        @Argument(help: ArgumentHelp("The host (cn, sa, tn, target, rt, …).", valueName: "host"))
        var host: String

        // Only after `--`: batonctl would otherwise take options it knows (-v, --root, -h) as its own.
        @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "command"))
        var command: [String] = []

        func run() throws {
            let arguments = command
            try performLab(globals) {
                guard !arguments.isEmpty else { throw CLIError.usage("give the command to run after --: lab exec PREFIX HOST -- COMMAND [ARGS...]") }
                try LabCLI.requireLab(prefix)
                let name = "\(prefix)-\(host)"
                guard NetworkNamespace.exists(name: name) else {
                    throw CLIError.notFound("lab \(prefix) has no host \(host) (no namespace \(name))")
                }
                try NetworkNamespace.open(name: name).enterOnCurrentThread()
                fflush(nil)
                let failure = LabCLI.exec(arguments)
                // Only reached when exec failed.
                printError("batonctl: lab exec: \(arguments[0]): \(String(cString: strerror(failure)))")
                Foundation.exit(failure == ENOENT ? 127 : 126)
            }
        }
    }
}

/// Root check and error mapping for `lab` verbs (no pin root, no bpffs needed).
private func performLab(_ g: GlobalOptions, _ body: () throws -> Void) throws {
    bootstrapLogging(verbose: g.verbose)
    guard geteuid() == 0 else { throw CLIError.notRoot }
    do {
        try body()
    } catch {
        throw CLIError.from(error, root: g.root)
    }
}

enum LabCLI {
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
            throw CLIError.notFound("no lab with prefix \(prefix) (`batonctl lab status` lists them)")
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

// MARK: - Output

/// What `lab up` and `lab status` print (`--json`: this, as JSON).
struct LabReport: Encodable {
    struct SegmentReport: Encodable {
        var name: String
        var namespace: String
        var ipv4Network: String
        var ipv6Network: String
    }

    struct InterfaceReport: Encodable {
        var name: String
        var ifindex: Int
        var mac: String
        var ipv4: String
        var ipv6: String
        var ipv4Network: String
        var ipv6Network: String
        var segment: String
    }

    struct HostReport: Encodable {
        var name: String
        var namespace: String
        var interfaces: [InterfaceReport]
    }

    var prefix: String
    /// "l2", "l3", or absent for a lab of another shape.
    var layout: String?
    var segments: [SegmentReport]
    var hosts: [HostReport]

    init(_ lab: Lab) {
        prefix = lab.prefix
        layout = lab.layout?.rawValue
        segments = lab.segments.map {
            SegmentReport(name: $0.name, namespace: $0.namespace.description, ipv4Network: "\($0.ipv4)",
                          ipv6Network: "\($0.ipv6)")
        }
        hosts = lab.hosts.map { host in
            HostReport(name: host.name, namespace: host.namespace.description, interfaces: host.interfaces.map {
                InterfaceReport(name: $0.name, ifindex: $0.index, mac: "\($0.mac)", ipv4: "\($0.ipv4)", ipv6: "\($0.ipv6)",
                                ipv4Network: "\($0.ipv4Network)", ipv6Network: "\($0.ipv6Network)", segment: $0.segment)
            })
        }
    }

    func printText() {
        var table = Table(["HOST", "NAMESPACE", "INTERFACE", "MAC", "IPV4", "IPV6", "SEGMENT"])
        for host in hosts {
            for interface in host.interfaces {
                let length4 = interface.ipv4Network.split(separator: "/").last.map { "/" + $0 } ?? ""
                let length6 = interface.ipv6Network.split(separator: "/").last.map { "/" + $0 } ?? ""
                table.add([host.name, host.namespace, interface.name, interface.mac, interface.ipv4 + length4,
                           interface.ipv6 + length6, interface.segment])
            }
        }
        table.print()
    }
}
