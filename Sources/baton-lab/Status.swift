import ArgumentParser
import BatonCLI
import BatonLab

struct Status: ParsableCommand, LabVerb {
    static let configuration = CommandConfiguration(
        abstract: "List the labs present, with their hosts and addresses.",
        discussion: """
        Reads everything back from the kernel (the namespaces, and netlink in each), so it \
        shows labs made by any process. Without PREFIX: every lab whose namespaces are named \
        bt + 5 characters + "-". --json prints an array of labs.
        """)

    @OptionGroup var options: LabOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("Only this lab.", valueName: "prefix"))
    var prefix: String?

    func run() throws {
        try perform {
            var reports: [LabReport] = []
            if let prefix {
                try LabArguments.requireLab(prefix)
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
