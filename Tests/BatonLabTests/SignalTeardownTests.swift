import BatonBPF
import BatonLab
import Foundation
import Glibc
import Testing

/// A process holding a lab and its daemons, killed by SIGTERM (a test run stopped, Ctrl-C):
/// its namespaces, its daemons and their pins must go with it. Labs and LabDaemons register
/// themselves with SignalCleanup, whoever made them.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct SignalTeardownTests {
    /// The batond processes whose parent is `pid`, with their --netns.
    static func children(of pid: Int32) -> [(pid: Int32, netns: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { name -> (Int32, String)? in
            guard let child = Int32(name),
                  let status = try? String(contentsOfFile: "/proc/\(name)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") }),
                  Int32(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) == pid,
                  let cmdline = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(name)/cmdline")) else { return nil }
            let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard args.first?.hasSuffix("batond") == true, let i = args.firstIndex(of: "--netns"), i + 1 < args.count else { return nil }
            return (child, args[i + 1])
        }
    }

    /// Not a test of its own: the process the test below kills. It builds a lab with its
    /// daemons the way every transfer test does, with no signal handling of its own, and waits.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["BATON_HOLD_LAB"] == "1"))
    func holdALabUntilKilled() throws {
        let lab = try Lab.transfer(.l2)
        defer { try? lab.teardown() }
        let daemons = try LabDaemons.start(lab, batond: try #require(LabDaemons.findBatond()))
        defer { daemons.stop() }
        Thread.sleep(forTimeInterval: 120)
    }

    /// A test run stopped by SIGTERM while a test holds a lab and its daemons (what left
    /// namespaces, batond processes and pins behind before labs registered themselves).
    @Test func sigtermTearsDownTheLabAndItsDaemons() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        p.arguments = ["--testing-library", "swift-testing", "--filter", "holdALabUntilKilled"]
        p.environment = ProcessInfo.processInfo.environment.merging(["BATON_HOLD_LAB": "1"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        // Until its three daemons run.
        var daemons: [(pid: Int32, netns: String)] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, p.isRunning {
            daemons = Self.children(of: p.processIdentifier)
            if daemons.count == 3 { break }
            usleep(100_000)
        }
        try #require(daemons.count == 3, "the test process did not start its daemons")
        let prefix = String(daemons[0].netns.prefix { $0 != "-" })
        #expect(Lab.isLabNamespace(prefix + "-x"))
        // Whatever the outcome, nothing of this lab outlives the test.
        defer {
            for d in daemons { kill(d.pid, SIGKILL) }
            for pin in BPFFS.list(BPFFS.defaultRoot) where pin.hasPrefix("baton-\(prefix)") {
                try? FileManager.default.removeItem(atPath: BPFFS.defaultRoot + "/" + pin)
            }
            _ = try? Lab.removeStale(prefix: prefix)
        }
        Thread.sleep(forTimeInterval: 1)   // the daemons have pinned their data planes by now

        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + SIGTERM)
        let namespaces = (try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []
        #expect(namespaces.filter { $0.hasPrefix(prefix + "-") }.isEmpty, "namespaces left: \(namespaces.filter { $0.hasPrefix(prefix) })")
        let pins = BPFFS.list(BPFFS.defaultRoot).filter { $0.hasPrefix("baton-\(prefix)") }
        #expect(pins.isEmpty, "pins left: \(pins)")
        for d in daemons {
            var gone = false
            for _ in 0..<50 where !gone {
                gone = kill(d.pid, 0) != 0 || ((try? String(contentsOfFile: "/proc/\(d.pid)/status", encoding: .utf8))?
                    .contains("State:\tZ") ?? true)
                if !gone { usleep(100_000) }
            }
            #expect(gone, "batond \(d.pid) in \(d.netns) still runs")
        }
    }
}
