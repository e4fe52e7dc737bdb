// batonctl hands its map verbs to baton-dp (Sources/batonctl/MapVerbs.swift): batonctl links no
// libbpf, and an operator still types `batonctl rule add …`. These run the built binaries.
import BatonLab
import Foundation
import Testing

@Suite struct HandoverTests {
    static let dp: String? = LabDaemons.findExecutable("baton-dp")

    /// The verbs in a tool's help, under SUBCOMMANDS: (name, its abstract, wrapped lines joined).
    static func subcommands(_ help: String) -> [(String, String)] {
        guard let start = help.range(of: "SUBCOMMANDS:\n") else { return [] }
        var verbs: [(String, String)] = []
        for line in help[start.upperBound...].split(separator: "\n") {
            if line.hasPrefix("   "), !verbs.isEmpty {
                verbs[verbs.count - 1].1 += " " + line.trimmingCharacters(in: .whitespaces)
            } else if line.hasPrefix("  "), !line.hasPrefix("  See ") {
                let words = line.split(separator: " ", maxSplits: 1)
                verbs.append((String(words[0]), words.count > 1 ? words[1].trimmingCharacters(in: .whitespaces) : ""))
            }
        }
        return verbs
    }

    @Test func everyMapVerbIsBatonDPsAndHelpsTheSameUnderEitherName() throws {
        let ctl = try #require(Binary.path), dp = try #require(Self.dp, "baton-dp not built")
        let dpVerbs = Self.subcommands(try ToolRun.run(dp, ["--help"]).stdout).map(\.0).filter { $0 != "help" }
        let ctlHelp = Self.subcommands(try ToolRun.run(ctl, ["--help"]).stdout)
        #expect(dpVerbs.count == 8, "\(dpVerbs)")
        // batonctl lists exactly baton-dp's verbs as baton-dp's, and nothing else as baton-dp's.
        #expect(Set(ctlHelp.filter { $0.1.contains("(baton-dp") }.map(\.0)) == Set(dpVerbs))
        for verb in dpVerbs {
            let a = try ToolRun.run(ctl, [verb, "--help"]), b = try ToolRun.run(dp, [verb, "--help"])
            #expect(a.status == 0 && b.status == 0)
            #expect(a.stdout == b.stdout.replacingOccurrences(of: "baton-dp", with: "batonctl"), "\(verb)")
            #expect(a.stdout.contains("USAGE: batonctl \(verb)"))
            // Options before the verb, `help VERB`, and an option's value that looks like a verb.
            #expect(try ToolRun.run(ctl, ["help", verb]).stdout == a.stdout)
            #expect(try ToolRun.run(ctl, ["--netns", "rule", verb, "--help"]).stdout == a.stdout)
        }
        // A daemon verb stays batonctl's own.
        let t = try ToolRun.run(ctl, ["--control", "/nonexistent/batond.sock", "transfer", "list"])
        #expect(t.status == 69 && t.stderr.hasPrefix("batonctl: no daemon at /nonexistent/batond.sock"), "\(t)")
    }

    @Test func withoutBatonDPTheMapVerbsSaySoAndTheDaemonVerbsWork() throws {
        let ctl = try #require(Binary.path)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("batonctl-alone-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let alone = dir.appendingPathComponent("batonctl").path
        try FileManager.default.copyItem(atPath: ctl, toPath: alone)
        let env = ["PATH": dir.path]
        let r = try ToolRun.run(alone, ["--root", "/sys/fs/bpf/baton-x", "stats"], environment: env)
        #expect(r.status == 69, "\(r)")
        #expect(r.stderr == "batonctl: the map verbs are baton-dp's (the data plane tool, built and installed with batond), and there is none beside \(alone) or on PATH\n")
        let t = try ToolRun.run(alone, ["transfer", "list", "--control", "/nonexistent/batond.sock"], environment: env)
        #expect(t.status == 69 && t.stderr.hasPrefix("batonctl: no daemon at"), "\(t)")
        #expect(try ToolRun.run(alone, ["--help"], environment: env).status == 0)
    }

    /// What the package graph says (scripts/check-module-graph), seen in the binaries: batonctl
    /// needs neither libbpf nor libmnl at run time, baton-dp needs libbpf.
    @Test func batonctlLinksNoKernelLibrary() throws {
        let ctl = try #require(Binary.path), dp = try #require(Self.dp)
        let ctlLibs = try ToolRun.run("/usr/bin/ldd", [ctl]).stdout
        let dpLibs = try ToolRun.run("/usr/bin/ldd", [dp]).stdout
        #expect(ctlLibs.contains("libc.so") && !ctlLibs.contains("libbpf") && !ctlLibs.contains("libmnl"), "\(ctlLibs)")
        #expect(dpLibs.contains("libbpf.so"), "\(dpLibs)")
    }
}
