import ArgumentParser
import BatonCLI
import BatonLab

struct Down: ParsableCommand, LabVerb {
    static let configuration = CommandConfiguration(
        abstract: "Remove a lab: delete its namespaces, and with them its interfaces.",
        discussion: """
        --all removes every lab (namespaces bt + 5 characters + "-"), including those of \
        test runs in progress.
        """)

    @OptionGroup var options: LabOptions
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
        try perform {
            let removed: [String]
            switch (prefix, all) {
            case (let prefix?, false):
                try LabArguments.requireLab(prefix)
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
