import ArgumentParser
import BatonCLI
import BatonLab

struct Up: ParsableCommand, LabVerb {
    static let configuration = CommandConfiguration(
        abstract: "Build a transfer lab and leave it up.",
        discussion: """
        Layouts:
          l2  one segment: the correspondents, sa, tn and target
          l3  the correspondents, tn and sa on segment 0; target on segment 1
              behind router rt (rp_filter off), reached only through rt

        Prints the prefix and, per host and interface, its namespace, MAC and addresses.
        """)

    @OptionGroup var options: LabOptions
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
        try perform {
            guard let layout = LabLayout(rawValue: layout) else {
                throw CLIError.usage("invalid layout '\(self.layout)': expected l2 or l3 (--layout)")
            }
            let names = try LabArguments.correspondentNames(correspondents)
            if let prefix {
                guard Lab.isLabNamespace(prefix + "-x") else {
                    throw CLIError.usage("invalid prefix '\(prefix)': expected bt + 5 lowercase letters or digits, like bt3k9zq (--prefix)")
                }
            }
            let lab = try Lab.transfer(layout, correspondents: names, prefix: prefix)
            lab.keep() // up on purpose: `baton-lab down` removes it
            let report = LabReport(lab)
            if output.json {
                try JSON.print(report)
            } else {
                print("lab \(lab.prefix) is up (layout \(layout.rawValue)); remove it with: baton-lab down \(lab.prefix)")
                report.printText()
            }
        }
    }
}
