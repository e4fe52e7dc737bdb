// End-to-end tests of the built `batonctl`: each test runs the binary as a
// subprocess against its own pin root (/sys/fs/bpf/baton-test-<random>) and,
// where it needs interfaces, its own network namespace with a veth pair made
// through BatonNet. Everything is torn down on the way out, pass or fail.
import BatonModel
import BatonNet
import BatonLab
import Foundation
import Glibc
import Testing

// MARK: - Running batonctl

typealias Run = ToolRun

enum Binary {
    /// `batonctl` in the build directory the tests were built into ($BATONCTL overrides).
    static let path: String? = LabDaemons.findExecutable("batonctl")
    /// `baton-lab`, for commands run inside a lab host.
    static let lab: String? = LabDaemons.findExecutable("baton-lab")
}

/// Runs batonctl with `args`, stdout and stderr captured, killed after `timeout`.
func batonctl(_ args: [String], timeout: TimeInterval = 60) throws -> Run {
    let exe = try #require(Binary.path, "batonctl not found next to the test bundle; run `swift build` first")
    let run = try ToolRun.run(exe, args, timeout: timeout)
    if run.timedOut { Issue.record("batonctl \(args.joined(separator: " ")) timed out") }
    return run
}

/// A private pin root, optionally a network namespace with a veth pair
/// v0 <-> v1 (both up), and batonctl bound to them.
final class Sandbox {
    let root = "/sys/fs/bpf/baton-test-\(UInt64.random(in: 0...UInt64.max) & 0xffff_ffff_ffff)"
    private(set) var namespace: NetworkNamespace?
    /// Small maps, so loading is quick.
    static let load = ["--max-rules", "1024", "--max-takeovers", "64"]

    init(veth: Bool = false) throws {
        if veth {
            let ns = try NetworkNamespace.create(name: "bctl-\(UInt32.random(in: 0...UInt32.max))")
            namespace = ns
            do {
                let nl = try Netlink(in: ns)
                try nl.createVeth("v0", peer: "v1")
                try nl.setUp("v0")
                try nl.setUp("v1")
            } catch {
                try? ns.delete()
                throw error
            }
        }
    }

    /// Unloads (detaching every link), removes the root whatever is left, deletes the namespace.
    func teardown() {
        _ = try? batonctl(["--root", root, "unload"])
        if FileManager.default.fileExists(atPath: root) {
            try? FileManager.default.removeItem(atPath: root)
        }
        if let namespace { try? namespace.delete() }
    }

    /// batonctl --root ROOT [--netns NS] args…
    func run(_ args: String...) throws -> Run { try run(args) }

    func run(_ args: [String]) throws -> Run {
        var full = ["--root", root]
        if let name = namespace?.name { full += ["--netns", name] }
        return try batonctl(full + args)
    }

    /// Runs and expects success.
    @discardableResult
    func ok(_ args: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> Run {
        try ok(args, sourceLocation: sourceLocation)
    }

    @discardableResult
    func ok(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Run {
        let r = try run(args)
        #expect(r.status == 0, "batonctl \(args.joined(separator: " ")): \(r)", sourceLocation: sourceLocation)
        return r
    }

    /// Runs and expects failure with `status` and one `batonctl: …` line containing `message`.
    @discardableResult
    func fails(_ status: Int32, _ message: String, _ args: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> Run {
        try fails(status, message, args, sourceLocation: sourceLocation)
    }

    @discardableResult
    func fails(_ status: Int32, _ message: String, _ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Run {
        let r = try run(args)
        expectFailure(r, status, message, args, sourceLocation: sourceLocation)
        return r
    }

    /// The MAC of an interface in the namespace, as text.
    func mac(_ interface: String) throws -> String {
        let ns = try #require(namespace)
        return try #require(try Netlink(in: ns).link(named: interface).mac).description
    }
}

func expectFailure(_ r: Run, _ status: Int32, _ message: String, _ args: [String],
                   sourceLocation: SourceLocation = #_sourceLocation) {
    let cmd = "batonctl " + args.joined(separator: " ")
    #expect(r.status == status, "\(cmd): \(r)", sourceLocation: sourceLocation)
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(cmd): expected one stderr line: \(r)", sourceLocation: sourceLocation)
    #expect(r.stderr.hasPrefix("batonctl: "), "\(cmd): \(r)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(message), "\(cmd): expected '\(message)': \(r)", sourceLocation: sourceLocation)
    #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("backtrace"), "\(cmd): crashed: \(r)",
            sourceLocation: sourceLocation)
    #expect(r.stdout.isEmpty, "\(cmd): \(r)", sourceLocation: sourceLocation)
}

/// Runs `body` with a fresh sandbox and always tears it down.
func withSandbox(veth: Bool = false, _ body: (Sandbox) throws -> Void) throws {
    let s = try Sandbox(veth: veth)
    defer { s.teardown() }
    try body(s)
}

// MARK: - JSON shapes (docs/cli.md)

struct StatusJSON: Decodable {
    struct Link: Decodable { var name: String; var ifindex: UInt32; var mode: String; var linkID: UInt32; var programID: UInt32; var problem: String? }
    struct Fill: Decodable { var count: Int; var capacity: Int }
    struct RuleFill: Decodable { var count: Int; var capacity: Int; var byKind: [String: Int] }
    struct Programs: Decodable { var steer: UInt32; var clock: UInt32 }
    var root: String
    var loaded: Bool
    var programs: Programs?
    var links: [Link]
    var takeovers: Fill?
    var rules: RuleFill?
    var clockHz: UInt64?
}

struct CounterJSON: Decodable { var packets: UInt64; var bytes: UInt64; var lastSeenJiffies: UInt64; var tcpFlags: UInt8 }

struct ForwardJSON: Codable, Equatable {
    var action: String
    var destinationMAC: String
    var sourceMAC: String
    var ifindex: UInt32
    var outerSource: String?
    var outerDestination: String?
    var rewrite: RewriteJSON?
}

struct RewriteJSON: Codable, Equatable {
    var source: String
    var sourcePort: UInt16
    var destination: String
    var destinationPort: UInt16
}

struct MatchJSON: Codable, Equatable {
    var proto: String
    var source: String?
    var sourcePort: Int?
    var destination: String
    var destinationPort: Int?
}

struct RuleJSON: Codable, Equatable { var match: MatchJSON; var forward: ForwardJSON }

struct RuleEntryJSON: Decodable {
    var kind: String
    var rule: RuleJSON
    var counter: CounterJSON
    var idleSeconds: Double?
    var finOrReset: Bool
    var egress: String?
}

struct TakeoverEntryJSON: Decodable {
    struct Takeover: Decodable { var address: String; var defaultForward: ForwardJSON; var agentMAC: String?; var router: Bool }
    var takeover: Takeover
    var counter: CounterJSON
    var idleSeconds: Double?
    var egress: String?
}

struct StatJSON: Decodable { var reason: String; var packets: UInt64; var bytes: UInt64; var meaning: String }

struct AttachJSON: Decodable { var interface: String; var ifindex: UInt32; var mode: String; var linkID: UInt32; var programID: UInt32; var pin: String; var fellBack: Bool }

// MARK: - Tests

let canRun = geteuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/bpf")

@Suite(.serialized, .enabled(if: canRun, "needs root and bpffs"))
struct BatonctlTests {
    static let sa = "02:00:00:00:00:0a", tn = "02:00:00:00:00:02", target = "02:00:00:00:00:03"

    @Test func binaryIsBuilt() throws {
        #expect(Binary.path != nil)
        let r = try batonctl(["--help"])
        #expect(r.status == 0)
        for verb in ["attach", "detach", "status", "takeover", "rule", "stats", "unload"] {
            #expect(r.stdout.contains(verb))
        }
    }

    @Test func statusBeforeAndAfterLoading() throws {
        try withSandbox { s in
            let before = try s.ok("status", "--json").json(StatusJSON.self)
            #expect(before.root == s.root && !before.loaded && before.links.isEmpty)
            #expect(before.programs == nil && before.rules == nil && before.clockHz == nil)
            #expect(try s.ok("status").stdout.contains("loaded:      no"))
            #expect(!FileManager.default.fileExists(atPath: s.root), "status must not load anything")

            try s.ok(["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--dport", "53", "--action", "drop"] + Sandbox.load)
            let after = try s.ok("status", "--json").json(StatusJSON.self)
            #expect(after.loaded)
            #expect(after.programs.map { $0.steer > 0 && $0.clock > 0 } == true)
            #expect(after.rules?.count == 1 && after.rules?.capacity == 1024)
            #expect(after.rules?.byKind == ["exact": 0, "any-sport": 0, "any-src": 1, "any-peer": 0])
            #expect(after.takeovers?.count == 0 && after.takeovers?.capacity == 64)
            #expect([100, 250, 300, 1000].contains(after.clockHz ?? 0))
            for dir in ["maps", "progs", "links"] {
                #expect(FileManager.default.fileExists(atPath: s.root + "/" + dir))
            }
            let text = try s.ok("status").stdout
            #expect(text.contains("loaded:      yes") && text.contains("rules:       1/1024"))

            let unload = try s.ok("unload")
            #expect(unload.stdout.contains("unloaded \(s.root)"))
            #expect(!FileManager.default.fileExists(atPath: s.root))
            #expect(try !s.ok("status", "--json").json(StatusJSON.self).loaded)
            #expect(try s.ok("unload").stdout.contains("nothing to unload"))
        }
    }

    @Test func takeoversAddListDelete() throws {
        try withSandbox { s in
            let added = try s.ok(["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--agent-mac", Self.sa, "--json"] + Sandbox.load)
                .json(TakeoverEntryJSON.self)
            #expect(added.takeover.address == "10.0.0.2" && added.takeover.agentMAC == Self.sa && !added.takeover.router)
            #expect(added.takeover.defaultForward == ForwardJSON(action: "l2", destinationMAC: Self.tn, sourceMAC: Self.sa, ifindex: 0))
            #expect(added.egress == nil)

            try s.ok("takeover", "add", "fd00::2", "--tn-mac", Self.tn, "--agent-mac", Self.sa, "--mode", "encap",
                     "--temporary", "fd00:1::2", "--tunnel-source", "fd00:1::a", "--next-hop-mac", Self.target, "--router")
            try s.ok("takeover", "add", "10.0.0.3", "--tn-mac", Self.tn, "--agent-mac", Self.sa, "--no-answer")

            let table = try s.ok("takeover", "list").stdout
            let lines = table.split(separator: "\n")
            #expect(lines.count == 4 && lines[0].hasPrefix("ADDRESS"))
            #expect(lines.contains { $0.hasPrefix("fd00::2 ") && $0.contains("encap") && $0.contains("fd00:1::a -> fd00:1::2") && $0.contains("router") })
            #expect(lines.contains { $0.hasPrefix("10.0.0.3 ") && $0.contains(" no ") })

            let list = try s.ok("takeover", "list", "--json").json([TakeoverEntryJSON].self)
            #expect(list.map(\.takeover.address) == ["10.0.0.2", "10.0.0.3", "fd00::2"])
            let v6 = try #require(list.first { $0.takeover.address == "fd00::2" })
            #expect(v6.takeover.router && v6.takeover.agentMAC == Self.sa)
            #expect(v6.takeover.defaultForward == ForwardJSON(action: "encap", destinationMAC: Self.target, sourceMAC: Self.sa,
                                                             ifindex: 0, outerSource: "fd00:1::a", outerDestination: "fd00:1::2"))
            #expect(list.first { $0.takeover.address == "10.0.0.3" }?.takeover.agentMAC == nil)
            #expect(list.allSatisfy { $0.counter.packets == 0 && $0.idleSeconds == nil })

            // Adding twice is refused; --replace replaces in place.
            try s.fails(1, "already taken over", "takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--agent-mac", Self.sa)
            try s.ok("takeover", "add", "10.0.0.2", "--tn-mac", Self.target, "--agent-mac", Self.sa, "--replace")
            let replaced = try s.ok("takeover", "list", "--json").json([TakeoverEntryJSON].self)
            #expect(replaced.first { $0.takeover.address == "10.0.0.2" }?.takeover.defaultForward.destinationMAC == Self.target)

            #expect(try s.ok("status", "--json").json(StatusJSON.self).takeovers?.count == 3)
            for a in ["10.0.0.2", "fd00::2", "10.0.0.3"] {
                #expect(try s.ok("takeover", "del", a).stdout.contains("removed takeover of \(a)"))
            }
            #expect(try s.ok("takeover", "list", "--json").json([TakeoverEntryJSON].self).isEmpty)
            #expect(try s.ok("takeover", "list").stdout.contains("no takeovers"))
            try s.fails(2, "10.0.0.2 is not taken over", "takeover", "del", "10.0.0.2")
        }
    }

    @Test func rulesAddListDelete() throws {
        try withSandbox { s in
            let exact = try s.ok(["rule", "add", "--proto", "tcp", "--src", "192.0.2.7", "--sport", "40000", "--dst", "10.0.0.2",
                                  "--dport", "443", "--action", "l2", "--to-mac", Self.target, "--from-mac", Self.sa, "--json"] + Sandbox.load)
                .json(RuleEntryJSON.self)
            #expect(exact.kind == "exact")
            #expect(exact.rule == RuleJSON(match: MatchJSON(proto: "tcp", source: "192.0.2.7", sourcePort: 40000, destination: "10.0.0.2", destinationPort: 443),
                                           forward: ForwardJSON(action: "l2", destinationMAC: Self.target, sourceMAC: Self.sa, ifindex: 0)))
            try s.ok("rule", "add", "--proto", "udp", "--src", "192.0.2.7", "--dst", "10.0.0.2", "--dport", "5060", "--action", "pass")
            try s.ok("rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "drop")
            try s.ok("rule", "add", "--proto", "icmp", "--src", "192.0.2.7", "--sport", "77", "--dst", "10.0.0.2", "--action", "drop")
            try s.ok("rule", "add", "--proto", "tcp", "--dst", "fd00::2", "--dport", "80", "--action", "encap", "--to-mac", Self.target,
                     "--from-mac", Self.sa, "--tunnel-dst", "fd00:1::3", "--tunnel-src", "fd00:1::a")

            let table = try s.ok("rule", "list").stdout.split(separator: "\n")
            #expect(table.count == 6 && table[0].hasPrefix("KIND"))
            #expect(table[1].hasPrefix("exact") && table.last!.hasPrefix("any-peer"))
            #expect(table.contains { $0.contains("tcp [*]:* -> [fd00::2]:80") || $0.contains("tcp *:* -> [fd00::2]:80") })

            let list = try s.ok("rule", "list", "--json").json([RuleEntryJSON].self)
            #expect(list.map(\.kind) == ["exact", "exact", "any-sport", "any-src", "any-peer"])
            let icmp = try #require(list.first { $0.rule.match.proto == "icmp" })
            #expect(icmp.rule.match.sourcePort == 77 && icmp.rule.match.destinationPort == nil)
            let encap = try #require(list.first { $0.rule.forward.action == "encap" })
            #expect(encap.rule.forward.outerDestination == "fd00:1::3" && encap.rule.forward.outerSource == "fd00:1::a")
            #expect(list.allSatisfy { $0.counter.packets == 0 && $0.idleSeconds == nil && !$0.finOrReset })

            let status = try s.ok("status", "--json").json(StatusJSON.self)
            #expect(status.rules?.byKind == ["exact": 2, "any-sport": 1, "any-src": 1, "any-peer": 1])

            try s.fails(1, "already exists", "rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "drop")
            try s.ok("rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "pass", "--replace")
            #expect(try s.ok("rule", "list", "--json").json([RuleEntryJSON].self).first { $0.kind == "any-peer" }?.rule.forward.action == "pass")

            try s.ok("rule", "del", "--proto", "tcp", "--src", "192.0.2.7", "--sport", "40000", "--dst", "10.0.0.2", "--dport", "443")
            try s.ok("rule", "del", "--proto", "udp", "--src", "192.0.2.7", "--dst", "10.0.0.2", "--dport", "5060")
            try s.ok("rule", "del", "--proto", "udp", "--dst", "10.0.0.2")
            try s.ok("rule", "del", "--proto", "icmp", "--src", "192.0.2.7", "--sport", "77", "--dst", "10.0.0.2")
            let last = try s.ok("rule", "del", "--proto", "tcp", "--dst", "[fd00::2]", "--dport", "80")
            #expect(last.stdout.contains("removed any-src rule"))
            #expect(try s.ok("rule", "list", "--json").json([RuleEntryJSON].self).isEmpty)
            #expect(try s.ok("rule", "list").stdout.contains("no rules"))
            try s.fails(2, "no rule for", "rule", "del", "--proto", "udp", "--dst", "10.0.0.2")
        }
    }

    @Test func badInputGivesOneClearLine() throws {
        try withSandbox { s in
            // Before anything is loaded: readers and removers say so.
            let nothing = "nothing is loaded at \(s.root); `batonctl attach IFACE` loads it"
            try s.fails(2, nothing, "rule", "list")
            try s.fails(2, nothing, "takeover", "list", "--json")
            try s.fails(2, nothing, "rule", "del", "--proto", "udp", "--dst", "10.0.0.2")
            try s.fails(2, nothing, "stats")
            try s.fails(2, "is not attached", "detach", "eth9")

            let rule = ["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "drop"]
            let cases: [(Int32, String, [String])] = [
                (64, "invalid port '70000': expected 0-65535", rule + ["--src", "192.0.2.1", "--sport", "70000"]),
                (64, "invalid port '-1': expected 0-65535", rule + ["--dport=-1"]),
                (64, "invalid address '10.0.0.256'", ["rule", "add", "--proto", "udp", "--dst", "10.0.0.256", "--action", "drop"]),
                (64, "invalid address 'fd00::zz'", ["takeover", "add", "fd00::zz", "--tn-mac", Self.tn]),
                (64, "invalid MAC address '02:00:00:00:00'", ["takeover", "add", "10.0.0.2", "--tn-mac", "02:00:00:00:00"]),
                (64, "invalid MAC address 'zz:00:00:00:00:01'", ["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "l2",
                                                              "--to-mac", "zz:00:00:00:00:01", "--from-mac", Self.sa]),
                (64, "must be a unicast address", ["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "l2",
                                                   "--to-mac", "01:00:5e:00:00:01", "--from-mac", Self.sa]),
                (64, "address family mismatch: --src fd00::1 is IPv6 but --dst 10.0.0.2 is IPv4", rule + ["--src", "fd00::1"]),
                (64, "address family mismatch: --temporary fd00::9 is IPv6", ["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn,
                     "--agent-mac", Self.sa, "--mode", "encap", "--temporary", "fd00::9", "--tunnel-source", "10.0.0.1"]),
                (64, "address family mismatch: --tunnel-dst 10.0.0.3 is IPv4", ["rule", "add", "--proto", "udp", "--dst", "fd00::2",
                     "--action", "encap", "--to-mac", Self.target, "--from-mac", Self.sa, "--tunnel-dst", "10.0.0.3", "--tunnel-src", "fd00::1"]),
                (64, "icmp rules are for IPv4; use icmpv6", ["rule", "add", "--proto", "icmp", "--dst", "fd00::2", "--action", "drop"]),
                (64, "invalid action 'bounce': expected l2, encap, pass or drop", ["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "bounce"]),
                (64, "invalid protocol 'sctp'", ["rule", "add", "--proto", "sctp", "--dst", "10.0.0.2", "--action", "drop"]),
                (64, "unsupported wildcard", rule + ["--sport", "5"]),
                (64, "--action l2 needs --to-mac", ["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "l2"]),
                (64, "--to-mac is only used with --action l2 or encap", rule + ["--to-mac", Self.target]),
                (64, "--mode encap needs --temporary", ["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--mode", "encap"]),
                (64, "invalid mode 'tunnel'", ["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--mode", "tunnel"]),
                (64, "--router sets the Router flag of IPv6", ["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--agent-mac", Self.sa, "--router"]),
                (64, "cannot tell the agent MAC: nothing is attached", ["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn]),
                (2, "no interface named 'nosuchif0'", ["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--via", "nosuchif0"]),
                (2, "no interface named 'nosuchif0'", ["rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--action", "l2",
                                                       "--to-mac", Self.target, "--egress", "nosuchif0"]),
                (2, "no interface named 'nosuchif0'", ["attach", "nosuchif0"]),
                (64, "invalid mode 'fast': expected native or generic", ["attach", "lo", "--mode", "fast"]),
                (64, "invalid --root 'relative'", ["--root", "relative", "status"]),
                (1, "/tmp is not on a BPF filesystem", ["--root", "/tmp/baton", "status"]),
                (2, "no network namespace named 'bctl-none-\(getpid())'", ["--netns", "bctl-none-\(getpid())", "status"]),
            ]
            for (status, message, args) in cases {
                try s.fails(status, message, args)
            }
            // Nothing above may have loaded anything.
            #expect(!FileManager.default.fileExists(atPath: s.root + "/progs/baton_steer"))

            // With the data plane loaded: missing entries on delete, full maps.
            try s.ok(["rule", "add", "--max-rules", "2", "--max-takeovers", "1", "--proto", "udp", "--dst", "10.0.0.2",
                      "--dport", "1", "--action", "drop"])
            try s.fails(2, "no rule for udp *:* -> 10.0.0.2:2", "rule", "del", "--proto", "udp", "--dst", "10.0.0.2", "--dport", "2")
            try s.fails(2, "10.0.0.9 is not taken over", "takeover", "del", "10.0.0.9")
            try s.ok("rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--dport", "2", "--action", "drop")
            try s.fails(1, "map full", "rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--dport", "3", "--action", "drop")
            try s.ok("takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--agent-mac", Self.sa)
            try s.fails(1, "map full", "takeover", "add", "10.0.0.3", "--tn-mac", Self.tn, "--agent-mac", Self.sa)
        }
    }

    @Test func batchAddFromFile() throws {
        try withSandbox { s in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("batonctl-test-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            // The documented format: an array of SessionRule as it encodes.
            let file = dir.appendingPathComponent("rules.json")
            try Data("""
            [
              {"match": {"proto": 17, "source": "192.0.2.7", "sourcePort": 5060, "destination": "10.0.0.2", "destinationPort": 5060},
               "forward": {"action": "l2", "destinationMAC": "\(Self.target)", "sourceMAC": "\(Self.sa)", "ifindex": 0}},
              {"match": {"proto": 6, "destination": "10.0.0.2"},
               "forward": {"action": "drop", "destinationMAC": "00:00:00:00:00:00", "sourceMAC": "00:00:00:00:00:00", "ifindex": 0}},
              {"match": {"proto": 17, "source": "2001:db8::7", "destination": "fd00::2", "destinationPort": 4000},
               "forward": {"action": "encap", "destinationMAC": "\(Self.target)", "sourceMAC": "\(Self.sa)", "ifindex": 0,
                           "outerSource": "fd00:1::a", "outerDestination": "fd00:1::3"}}
            ]
            """.utf8).write(to: file)
            let added = try s.ok(["rule", "add", "--file", file.path] + Sandbox.load)
            #expect(added.stdout.contains("added 3 rules"))
            let list = try s.ok("rule", "list", "--json").json([RuleEntryJSON].self)
            #expect(list.map(\.kind) == ["exact", "any-sport", "any-peer"])

            // list --json | jq '[.[].rule]' is a rule file.
            let rules = list.map(\.rule)
            let again = dir.appendingPathComponent("again.json")
            try JSONEncoder().encode(rules).write(to: again)
            try s.fails(1, "already exists; a batch adds only new rules", "rule", "add", "--file", again.path)
            try s.ok("unload")
            #expect(try s.ok(["rule", "add", "--file", again.path, "--json"] + Sandbox.load).stdout.contains("\"added\" : 3"))
            #expect(try s.ok("rule", "list", "--json").json([RuleEntryJSON].self).map(\.rule) == rules)

            // Bad files change nothing.
            let bad = dir.appendingPathComponent("bad.json")
            try Data(#"[{"match": {"proto": 17}}]"#.utf8).write(to: bad)
            try s.fails(64, "[0].match.destination: missing", "rule", "add", "--file", bad.path)
            try Data("not json".utf8).write(to: bad)
            try s.fails(64, "not valid JSON", "rule", "add", "--file", bad.path)
            let dup = #"{"match": {"proto": 17, "destination": "10.0.0.9"}, "forward": {"action": "pass", "destinationMAC": "00:00:00:00:00:00", "sourceMAC": "00:00:00:00:00:00", "ifindex": 0}}"#
            try Data("[\(dup), \(dup)]".utf8).write(to: bad)
            try s.fails(64, "rules [0] and [1] have the same match", "rule", "add", "--file", bad.path)
            try s.fails(2, "cannot read", "rule", "add", "--file", dir.appendingPathComponent("missing.json").path)
            try s.fails(64, "--proto cannot be combined with --file", "rule", "add", "--file", file.path, "--proto", "udp")
            #expect(try s.ok("rule", "list", "--json").json([RuleEntryJSON].self).count == 3)

            // Both readers of a file give the same rules: the fast one (keys in any order, nulls,
            // a key it does not know) and JSONDecoder (which an escape in a string sends it to).
            try s.ok("unload")
            let fast = dir.appendingPathComponent("fast.json"), slow = dir.appendingPathComponent("slow.json")
            try Data(#"[ {"forward":{"sourceMAC":"\#(Self.sa)","destinationMAC":"\#(Self.target)","action":"l2","outerSource":null},"comment":"x","match":{"destinationPort":5060,"destination":"10.0.0.2","source":null,"sourcePort":null,"proto":17}} ]"#.utf8).write(to: fast)
            try Data(#"[ {"forward":{"sourceMAC":"\#(Self.sa)","destinationMAC":"\#(Self.target)","action":"l2"},"comment":"\u0078","match":{"destinationPort":5060,"destination":"10.0.0.\u0032","proto":"udp"}} ]"#.utf8).write(to: slow)
            try s.ok(["rule", "add", "--file", fast.path] + Sandbox.load)
            let fromFast = try s.ok("rule", "list", "--json").json([RuleEntryJSON].self).map(\.rule)
            try s.ok("unload")
            try s.ok(["rule", "add", "--file", slow.path] + Sandbox.load)
            let fromSlow = try s.ok("rule", "list", "--json").json([RuleEntryJSON].self).map(\.rule)
            #expect(fromFast.count == 1 && fromFast == fromSlow)
            #expect(fromFast.first?.match.destination == "10.0.0.2")
            try s.ok("unload")

            // A relay (anchored session) comes only from a file, and reads back whole from the map.
            let relay = dir.appendingPathComponent("relay.json")
            try Data("""
            [{"match": {"proto": "udp", "source": "192.0.2.7", "sourcePort": 40000, "destination": "10.0.0.1", "destinationPort": 5004},
              "forward": {"action": "relay", "destinationMAC": "\(Self.target)", "sourceMAC": "\(Self.sa)",
                          "rewrite": {"source": "10.0.0.1", "sourcePort": 30000, "destination": "10.0.0.3", "destinationPort": 6000}}}]
            """.utf8).write(to: relay)
            #expect(try s.ok("rule", "add", "--file", relay.path).stdout.contains("added 1 rule from"))
            let entries = try s.ok("rule", "list", "--json").json([RuleEntryJSON].self)
            let relayed = entries.first { $0.rule.forward.action == "relay" }
            #expect(relayed?.rule.forward.rewrite == RewriteJSON(source: "10.0.0.1", sourcePort: 30000, destination: "10.0.0.3", destinationPort: 6000))
            #expect(try s.ok("rule", "list").stdout.contains("10.0.0.1:30000 → 10.0.0.3:6000 via \(Self.target)"))
            try s.fails(64, "--action relay has no flags for its rewrite", "rule", "add", "--proto", "udp", "--dst", "10.0.0.1",
                        "--dport", "5004", "--action", "relay", "--to-mac", "\(Self.target)")
        }
    }

    @Test func statsJSON() throws {
        try withSandbox { s in
            try s.ok(["takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--agent-mac", Self.sa] + Sandbox.load)
            let stats = try s.ok("stats", "--json").json([StatJSON].self)
            #expect(stats.map(\.reason) == ["not-ip", "malformed-passed", "not-taken-over", "malformed-dropped", "rule-hit",
                                            "default-hit", "fragment-unknown", "arp-reply", "neighbor-advert", "encap-failed",
                                            "redirect-failed", "loop-dropped", "too-big", "relay-dropped"])
            #expect(stats.allSatisfy { $0.packets == 0 && $0.bytes == 0 && !$0.meaning.isEmpty })
            let table = try s.ok("stats").stdout.split(separator: "\n")
            #expect(table.count == 15 && table[0].hasPrefix("REASON") && table[0].hasSuffix("MEANING"))
        }
    }

    @Test func attachDetachOnVethInNamespace() throws {
        try withSandbox(veth: true) { s in
            let ns = try #require(s.namespace)
            let v0 = try s.mac("v0")

            let a = try s.ok(["attach", "v0", "--json"] + Sandbox.load).json(AttachJSON.self)
            #expect(a.interface == "v0" && a.mode == "native" && !a.fellBack && a.pin == s.root + "/links/v0")
            #expect(FileManager.default.fileExists(atPath: s.root + "/links/v0"))
            try s.fails(1, "v0 is already attached", "attach", "v0")
            let g = try s.ok("attach", "v1", "--mode", "generic", "--json").json(AttachJSON.self)
            #expect(g.mode == "generic")

            var status = try s.ok("status", "--json").json(StatusJSON.self)
            #expect(status.loaded && status.links.map(\.name) == ["v0", "v1"])
            #expect(status.links.map(\.mode) == ["native", "generic"])
            #expect(status.links.allSatisfy { $0.problem == nil && $0.programID == status.programs?.steer })
            #expect(status.links[0].linkID == a.linkID && status.links[0].ifindex == a.ifindex)
            let text = try s.ok("status").stdout
            #expect(text.contains("v0") && text.contains("native") && text.contains("generic"))
            #expect(try ipLink(ns, "v0").contains("xdp"))

            // Two attached interfaces: the agent MAC must be named.
            try s.fails(64, "2 interfaces are attached (v0, v1)", "takeover", "add", "10.0.0.2", "--tn-mac", Self.tn)
            try s.ok("detach", "v1")
            try s.fails(2, "v1 is not attached", "detach", "v1")
            #expect(!FileManager.default.fileExists(atPath: s.root + "/links/v1"))

            // One attached interface: its MAC is the agent's.
            let t = try s.ok("takeover", "add", "10.0.0.2", "--tn-mac", Self.tn, "--json").json(TakeoverEntryJSON.self)
            #expect(t.takeover.agentMAC == v0 && t.takeover.defaultForward.sourceMAC == v0)
            let viaEgress = try s.ok("rule", "add", "--proto", "udp", "--dst", "10.0.0.2", "--dport", "7", "--action", "l2",
                                     "--to-mac", Self.target, "--egress", "v1", "--json").json(RuleEntryJSON.self)
            let v1 = try s.mac("v1")
            #expect(viaEgress.egress == "v1" && viaEgress.rule.forward.sourceMAC == v1)

            // Traffic from v1 into v0: a drop rule counts it.
            try s.ok("rule", "add", "--proto", "udp", "--src", "10.0.0.1", "--dst", "10.0.0.2", "--dport", "9", "--action", "drop")
            let nl = try Netlink(in: ns)
            try nl.addAddress(try #require(IPPrefix("10.0.0.1/24")), interface: "v1")
            let target = try #require(IPPrefix("10.0.0.2/32")).address
            try nl.addNeighbour(target, mac: try #require(try nl.link(named: "v0").mac), interface: "v1")
            let socket = try UDPSocket(in: ns, family: .v4)
            defer { socket.close() }
            for _ in 0..<3 { try socket.send(Array("baton".utf8), to: target, port: 9) }
            usleep(300_000)
            let rules = try s.ok("rule", "list", "--json").json([RuleEntryJSON].self)
            let hit = try #require(rules.first { $0.rule.match.destinationPort == 9 })
            #expect(hit.kind == "any-sport" && hit.counter.packets == 3 && hit.counter.bytes > 0)
            #expect(hit.idleSeconds.map { $0 >= 0 && $0 < 30 } == true)
            let row = try s.ok("rule", "list").stdout.split(separator: "\n").first { $0.contains("10.0.0.2:9 ") }
            #expect(row?.split(separator: " ").contains("3") == true, "\(row ?? "no row")")
            let stats = try s.ok("stats", "--json").json([StatJSON].self)
            #expect((stats.first { $0.reason == "rule-hit" }?.packets ?? 0) >= 3)

            // Native XDP is refused on loopback: an error, or generic with --allow-generic-fallback.
            try s.fails(1, "--allow-generic-fallback", "attach", "lo")
            let fb = try s.ok("attach", "lo", "--allow-generic-fallback", "--json")
            #expect(try fb.json(AttachJSON.self).mode == "generic" && fb.stderr.contains("falling back to generic mode"))

            try s.ok("detach", "v0")
            #expect(try !ipLink(ns, "v0").contains("xdp"))
            status = try s.ok("status", "--json").json(StatusJSON.self)
            #expect(status.links.map(\.name) == ["lo"])

            // unload detaches what is left.
            let u = try s.ok("unload", "--json")
            #expect(u.stdout.contains("\"lo\""))
            #expect(try !ipLink(ns, "lo").contains("xdp"))
            #expect(!FileManager.default.fileExists(atPath: s.root))
        }
    }

    @Test func linksOfVanishedInterfacesAreFlagged() throws {
        try withSandbox(veth: true) { s in
            try s.ok(["attach", "v0"] + Sandbox.load)
            let ns = try #require(s.namespace)
            try Netlink(in: ns).deleteLink("v0")
            let status = try s.ok("status", "--json").json(StatusJSON.self)
            #expect(status.links.count == 1 && status.links[0].ifindex == 0)
            #expect(status.links[0].problem?.contains("interface is gone") == true)
            #expect(try s.ok("status").stdout.contains("! interface is gone"))
            #expect(try s.ok("detach", "v0").stdout.contains("already gone"))
            try s.fails(2, "no interface named 'v0'", "attach", "v0")
        }
    }
}

/// `ip -d link show` of an interface in `ns` (the XDP attachment shows as "xdp…").
func ipLink(_ ns: NetworkNamespace, _ name: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
    if !FileManager.default.isExecutableFile(atPath: p.executableURL!.path) { p.executableURL = URL(fileURLWithPath: "/sbin/ip") }
    p.arguments = ["-n", try #require(ns.name), "link", "show", "dev", name]
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
