// `batonctl teardown` on throwaway pin roots (/sys/fs/bpf/baton-test-<random>), one with the
// steering program and a node's decapsulator attached to a veth pair in a namespace: the dry
// run lists, the real run detaches and removes, foreign roots and a running batond are refused.
import BatonAPI
import BatonBPF
import BatonDataPlane
import BatonLab
import BatonNet
import Foundation
import Glibc
import Testing

struct TeardownJSON: Decodable {
    struct Root: Decodable {
        var root: String
        var existed: Bool
        var removed: Bool
        var detached: [String]
        var decapDetached: [String]
        var maps: [String]
        var programs: [String]
    }
    var dryRun: Bool
    var daemon: String?
    var roots: [Root]
}

@Suite(.serialized, .enabled(if: canRun && xdpSupported(), "needs root, bpffs and XDP"))
struct TeardownCLITests {
    /// A socket path nobody serves, so that no batond on this host gets in the way.
    static let noDaemon = "/nonexistent-\(getpid()).sock"

    static func teardown(_ args: [String]) throws -> Run {
        try batonctl(["teardown", "--control", noDaemon] + args)
    }

    @Test func dryRunListsThenTeardownDetachesAndRemoves() throws {
        try withSandbox(veth: true) { s in
            let ns = try #require(s.namespace)
            try s.ok(["attach", "v0"] + Sandbox.load)
            #expect(try ipLink(ns, "v0").contains("xdp"))
            // A node's decapsulator at the same root, attached to v1 (as batond node does in L3 mode).
            let v1 = UInt32(try Netlink(in: ns).link(named: "v1").index)
            try ns.run { _ = try Decapsulator.open(root: s.root).attach(ifindex: v1) }
            #expect(FileManager.default.fileExists(atPath: s.root + "/decap/links/v1"))
            #expect(try ipLink(ns, "v1").contains("xdp"))
            // A second root, loaded without attaching anything.
            let other = try Sandbox()
            defer { other.teardown() }
            try other.ok(["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "drop"] + Sandbox.load)

            // Dry run: lists, changes nothing.
            let dry = try Self.teardown(["--root", s.root, "--root", other.root, "--dry-run", "--json"])
            #expect(dry.status == 0 && dry.stderr.isEmpty, "\(dry)")
            let plan = try dry.json(TeardownJSON.self)
            #expect(plan.dryRun && plan.daemon == nil)
            #expect(plan.roots.map(\.root) == [s.root, other.root])
            let first = try #require(plan.roots.first)
            #expect(first.existed && !first.removed && first.detached == ["v0"] && first.decapDetached == ["v1"])
            #expect(first.maps.contains("baton_rules4") && first.maps.contains("baton_takeovers") &&
                    first.maps.contains("decap/baton_decap_accept"), "\(first.maps)")
            #expect(first.programs.sorted() == ["baton_clock", "baton_steer", "decap/baton_decap"], "\(first.programs)")
            #expect(plan.roots[1].existed && plan.roots[1].detached.isEmpty)
            #expect(FileManager.default.fileExists(atPath: s.root + "/links/v0") && FileManager.default.fileExists(atPath: other.root))
            #expect(try ipLink(ns, "v0").contains("xdp") && ipLink(ns, "v1").contains("xdp"))
            let text = try Self.teardown(["--root", s.root, "--dry-run"])
            #expect(text.status == 0, "\(text)")
            let lines = text.stdout.split(separator: "\n")
            #expect(lines.first?.hasPrefix("ROOT") == true &&
                    lines.contains { $0.hasPrefix(s.root + " ") && $0.contains("v0") && $0.contains("v1") },
                    "\(text.stdout)")
            #expect(text.stdout.contains("dry run: would detach the links and remove 1 pin root; nothing changed"), "\(text.stdout)")

            // --all: every /sys/fs/bpf/baton*, ours among them (a dry run: other runs' roots stay).
            let all = try Self.teardown(["--all", "--dry-run", "--json"])
            #expect(all.status == 0, "\(all)")
            let everything = try all.json(TeardownJSON.self)
            #expect(everything.roots.contains { $0.root == s.root && $0.detached == ["v0"] } &&
                    everything.roots.contains { $0.root == other.root }, "\(all.stdout)")
            #expect(everything.roots.allSatisfy { $0.root.hasPrefix("/sys/fs/bpf/baton") && !$0.removed })

            // The real thing: links detached, roots gone.
            let done = try Self.teardown(["--root", s.root, "--root", other.root])
            #expect(done.status == 0 && done.stderr.isEmpty, "\(done)")
            #expect(done.stdout.contains(s.root) && done.stdout.contains("v0") &&
                    done.stdout.contains("detached the links and removed 2 pin roots"), "\(done.stdout)")
            #expect(!FileManager.default.fileExists(atPath: s.root) && !FileManager.default.fileExists(atPath: other.root))
            #expect(try !ipLink(ns, "v0").contains("xdp"))
            #expect(try !ipLink(ns, "v1").contains("xdp"))

            // Nothing left: not an error.
            let again = try Self.teardown(["--root", s.root, "--json"])
            #expect(again.status == 0, "\(again)")
            let nothing = try again.json(TeardownJSON.self)
            #expect(nothing.roots.count == 1 && !nothing.roots[0].existed && !nothing.roots[0].removed)
            #expect(try Self.teardown(["--root", s.root]).stdout == "nothing pinned at \(s.root)\n")
        }
    }

    @Test func foreignRootsAndBadFlagsAreRefused() throws {
        try withSandbox { s in
            try s.ok(["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "drop"] + Sandbox.load)
            #expect(mkdir(s.root + "/someone-else", 0o700) == 0)
            defer { rmdir(s.root + "/someone-else") }
            for extra in [[], ["--dry-run"]] {
                let args = ["--root", s.root] + extra
                expectFailure(try Self.teardown(args), 1, "\(s.root) holds someone-else besides maps/", ["teardown"] + args)
            }
            #expect(FileManager.default.fileExists(atPath: s.root + "/progs/baton_steer"))
        }
        let cases: [(Int32, String, [String])] = [
            (64, "--all and --root are exclusive", ["teardown", "--all", "--root", "/sys/fs/bpf/baton-x"]),
            (64, "--api does not apply", ["teardown", "--api", "https://10.0.0.1:7391"]),
            (64, "invalid --root 'relative'", ["teardown", "--root", "relative"]),
            (1, "/tmp is not on a BPF filesystem", ["teardown", "--root", "/tmp/baton", "--control", Self.noDaemon]),
        ]
        for (status, message, args) in cases {
            expectFailure(try batonctl(args), status, message, args)
        }
        // The other verbs take the last --root, as before.
        let last = try batonctl(["--root", "/sys/fs/bpf/baton-a-\(getpid())", "status", "--root", "/sys/fs/bpf/baton-b-\(getpid())", "--json"])
        #expect(last.status == 0, "\(last)")
        #expect(try last.json(StatusJSON.self).root == "/sys/fs/bpf/baton-b-\(getpid())")
    }

    @Test func refusesWhileADaemonAnswers() throws {
        try TransferCLITests.withDaemons { _, daemons in
            let sock = daemons.agent.control
            try withSandbox { s in
                try s.ok(["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "drop"] + Sandbox.load)
                let args = ["teardown", "--root", s.root, "--control", sock]
                expectFailure(try batonctl(args), 1, "a batond (agent) answers at \(sock)", args)
                #expect(try batonctl(args).stderr.contains("--force"))
                #expect(FileManager.default.fileExists(atPath: s.root + "/progs/baton_steer"))

                // A dry run says so and goes on.
                let dry = try batonctl(args + ["--dry-run", "--json"])
                #expect(dry.status == 0 && dry.stderr.contains("answers at \(sock)"), "\(dry)")
                #expect(try dry.json(TeardownJSON.self).daemon == "agent")
                #expect(FileManager.default.fileExists(atPath: s.root + "/progs/baton_steer"))

                // --force tears down anyway.
                let forced = try batonctl(args + ["--force", "--json"])
                #expect(forced.status == 0 && forced.stderr.contains("--force"), "\(forced)")
                let r = try forced.json(TeardownJSON.self)
                #expect(r.daemon == "agent" && r.roots.first?.removed == true)
                #expect(!FileManager.default.fileExists(atPath: s.root))

                // Nothing pinned: nothing to refuse.
                let empty = try batonctl(args)
                #expect(empty.status == 0 && empty.stdout == "nothing pinned at \(s.root)\n", "\(empty)")
            }
            #expect(try TransferCLITests.ok(sock, ["node", "status", "--json"]).json(DaemonStatus.self).role == .agent)
        }
    }
}
