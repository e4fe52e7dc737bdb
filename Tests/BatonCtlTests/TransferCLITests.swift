// The daemon verbs of the built `batonctl` (transfer, node) against real batond daemons in a
// transfer lab, run as a subprocess with --control pointing at each daemon's API socket.
import BatonAPI
import BatonBPF
import BatonLab
import BatonModel
import Foundation
import Glibc
import Testing

@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct TransferCLITests {
    /// batonctl ARGS… --control PATH
    static func ctl(_ control: String, _ args: [String]) throws -> Run {
        try batonctl(args + ["--control", control])
    }

    @discardableResult
    static func ok(_ control: String, _ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Run {
        let r = try ctl(control, args)
        #expect(r.status == 0, "batonctl \(args.joined(separator: " ")): \(r)", sourceLocation: sourceLocation)
        #expect(r.stderr.isEmpty, "batonctl \(args.joined(separator: " ")): \(r)", sourceLocation: sourceLocation)
        return r
    }

    static func fails(_ control: String, _ status: Int32, _ message: String, _ args: [String],
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try ctl(control, args)
        expectFailure(r, status, message, args + ["--control", control], sourceLocation: sourceLocation)
    }

    /// A lab with batond on sa, tn and target; daemons stopped and the lab torn down whatever happens.
    static func withDaemons(options: LabDaemons.Options = LabDaemons.Options(), _ body: (Lab, LabDaemons) throws -> Void) throws {
        let batond = try #require(LabDaemons.findBatond(), "batond not found next to the tests: run `swift build` first")
        let lab = try Lab.transfer(.l2)
        defer { try? lab.teardown() }
        let daemons = try LabDaemons.start(lab, batond: batond, options: options)
        var failed = true
        defer {
            daemons.stop(keepLogs: failed)
            if failed { print("daemon logs kept in \(daemons.directory)\n" + daemons.logs()) }
        }
        try body(lab, daemons)
        failed = false
    }

    @Test func wholeTransferThroughTheCLI() throws {
        try Self.withDaemons { lab, daemons in
            let tnSock = daemons.tn.control, agentSock = daemons.agent.control, targetSock = daemons.target.control
            let cn = lab["cn"].ipv4, original = lab["tn"].ipv4

            // node status on both roles.
            let tnStatus = try Self.ok(tnSock, ["node", "status", "--json"]).json(DaemonStatus.self)
            #expect(tnStatus.role == .node)
            #expect(tnStatus.publicKey.count == 43)
            #expect(tnStatus.activeTransfers == 0)
            let agentStatus = try Self.ok(agentSock, ["node", "status", "--json"]).json(DaemonStatus.self)
            #expect(agentStatus.role == .agent)
            #expect(agentStatus.publicKey.count == 43 && agentStatus.publicKey != tnStatus.publicKey)
            let text = try Self.ok(agentSock, ["node", "status"]).stdout
            #expect(text.contains("role:       agent") && text.contains(agentStatus.publicKey), "\(text)")
            #expect(try Self.ok(tnSock, ["transfer", "list"]).stdout == "no transfers\n")

            // A number out of range through the API is refused where it enters, naming the field.
            let call = SessionMatch(proto: .udp, source: cn, sourcePort: 40000, destination: original, destinationPort: 5004)
            for idle in [1e308, -1, 0.01] {
                let refused = #expect(throws: ControlError.self) {
                    try Control(path: tnSock).start(TransferRequest(to: "target", sessions: [call], mode: .l2, idleTimeout: idle))
                }
                #expect(refused?.code == .invalid && refused?.description.contains("invalid idleTimeout") == true
                        && refused?.description.contains("expected 0.1-86400 seconds") == true, "\(String(describing: refused))")
            }
            #expect(try Self.ok(tnSock, ["transfer", "list"]).stdout == "no transfers\n")

            // start on the TN.
            let spec = "udp/\(cn):40000/\(original):5004"
            let started = try Self.ok(tnSock, ["transfer", "start", "--to", "target", "--session", spec, "--json"])
                .json(TransferInfo.self)
            #expect(started.state == .active, "\(started)")
            #expect(started.role == .tn && started.original == original && started.mode == .l2)
            #expect(started.temporary != nil)
            #expect(started.sessions.count == 1)
            #expect(started.sessions.first?.match.source == cn && started.sessions.first?.match.sourcePort == 40000)
            #expect(started.sessions.first?.match.destinationPort == 5004)
            #expect(started.milestones["registered"] != nil, "\(started.milestones)")
            let id = started.id
            #expect(id.count == 16)

            // A second start for the same address is refused by the daemon (conflict): exit 1, one line.
            try Self.fails(tnSock, 1, "is already being transferred",
                           ["transfer", "start", "--to", "target", "--session", "udp/*/\(original):5004"])
            // An unknown target: exit 2.
            try Self.fails(tnSock, 2, "unknown target 'nobody'",
                           ["transfer", "start", "--to", "nobody", "--session", "udp/*/\(original):6000"])
            // Start is the TN's: the agent does not serve the route (not-found, exit 2).
            try Self.fails(agentSock, 2, "is served by a node",
                           ["transfer", "start", "--to", "target", "--session", spec])

            // list on the TN, the agent and the target.
            for (sock, role) in [(tnSock, Role.tn), (agentSock, .agent), (targetSock, .target)] {
                let list = try Self.ok(sock, ["transfer", "list", "--json"]).json([TransferInfo].self)
                #expect(list.contains { $0.id == id && $0.role == role }, "\(role): \(list)")
                let table = try Self.ok(sock, ["transfer", "list"]).stdout
                #expect(table.hasPrefix("ID "), "\(table)")
                for column in ["ROLE", "STATE", "ORIGINAL", "TEMPORARY", "MODE", "TARGET", "SESSIONS", "REASON"] {
                    #expect(table.contains(column), "\(table)")
                }
                #expect(table.contains(id) && table.contains(role.name) && table.contains("\(original)"), "\(table)")
            }

            // show on the agent: the session with its forward and counters.
            let shown = try Self.ok(agentSock, ["transfer", "show", id, "--json"]).json(TransferInfo.self)
            #expect(shown.role == .agent && shown.state == .active)
            let session = try #require(shown.sessions.first)
            #expect(session.forward?.hasPrefix("l2") == true, "\(session)")
            #expect(session.packets != nil)
            let detail = try Self.ok(agentSock, ["transfer", "show", id]).stdout
            for word in ["id:", "state:", "original:", "temporary:", "target:", "sessions:", "FORWARD", "PACKETS", "milestones"] {
                #expect(detail.contains(word), "\(word): \(detail)")
            }
            #expect(detail.contains("udp \(cn):40000 -> \(original):5004"), "\(detail)")

            // Unknown and malformed IDs.
            try Self.fails(agentSock, 2, "no transfer 0123456789abcdef", ["transfer", "show", "0123456789abcdef"])
            try Self.fails(tnSock, 2, "no transfer 0123456789abcdef", ["transfer", "end", "0123456789abcdef"])
            try Self.fails(tnSock, 64, "invalid transfer ID 'xyz'", ["transfer", "show", "xyz"])
            // The target cannot end it.
            try Self.fails(targetSock, 1, "end it on the TN or the agent", ["transfer", "end", id])

            // end on the TN; the agent follows it to "ended".
            let ending = try Self.ok(tnSock, ["transfer", "end", id, "--json"]).json(TransferInfo.self)
            #expect(ending.id == id)
            let deadline = Date().addingTimeInterval(5)
            var state = TransferState.active
            while Date() < deadline {
                state = try Self.ok(agentSock, ["transfer", "show", id, "--json"]).json(TransferInfo.self).state
                if state == .ended { break }
                usleep(50_000)
            }
            #expect(state == .ended, "the agent's transfer \(id) is \(state), not ended, 5 s after `transfer end`")
            let after = try Self.ok(tnSock, ["transfer", "show", id, "--json"]).json(TransferInfo.self)
            #expect(after.state == .ended, "\(after)")
            #expect(try Self.ok(agentSock, ["transfer", "show", id]).stdout.contains("ended:"))

            // Nothing to end: `transfer end` of an ended transfer fails (exit 1), on both roles.
            try Self.fails(tnSock, 1, "only an active transfer can be ended", ["transfer", "end", id])
            try Self.fails(agentSock, 1, "only an active transfer can be ended", ["transfer", "end", id])

            // An agent that does not answer: the TN says so (exit 1) and the transfer goes on.
            let second = try Self.ok(tnSock, ["transfer", "start", "--to", "target", "--session", spec, "--json"])
                .json(TransferInfo.self)
            #expect(second.state == .active, "\(second)")
            daemons.agent.stop()
            try Self.fails(tnSock, 1, "did not answer", ["transfer", "end", second.id])
            #expect(try Self.ok(tnSock, ["transfer", "show", second.id, "--json"]).json(TransferInfo.self).state == .active)
        }
    }

    @Test func malformedSessionsAreUsageErrors() throws {
        // Parsing happens before connecting: no daemon is needed to refuse these.
        let sock = "/nonexistent.sock"
        let cases: [(String, String)] = [
            ("udp/1.2.3.4/5.6.7.8:1", "the source '1.2.3.4' needs a port or '*'"),
            ("xyz/*/1.2.3.4:5", "unknown protocol 'xyz'"),
            ("udp/*/[::1:5", "has no ']'"),
            ("udp/*/fd00::1:5", "IPv6 addresses go in brackets"),
            ("udp/*/1.2.3.4", "needs a port or '*'"),
            ("udp/*/*", "not '*'"),
            ("udp/1.2.3.4:70000/5.6.7.8:1", "invalid source port '70000'"),
            ("udp/1.2.3.999:1/5.6.7.8:1", "invalid source address '1.2.3.999'"),
            ("udp/*:5/5.6.7.8:1", "invalid source address '*'"),
            ("udp/[fd00::1]:1/5.6.7.8:1", "different families"),
            ("icmp/*/[fd00::1]:*", "icmp rules are for IPv4"),
            ("tcp/1.2.3.4:1/5.6.7.8:*", "unsupported wildcard"),
            ("udp/5.6.7.8:1", "2 parts"),
            ("", "1 part"),
        ]
        for (spec, message) in cases {
            let args = ["transfer", "start", "--to", "target", "--session", spec]
            let r = try Self.ctl(sock, args)
            expectFailure(r, 64, message, args)
            #expect(r.stderr.contains("(--session)") && r.stderr.contains("PROTO/SOURCE/DESTINATION"), "\(spec): \(r)")
        }
        let good = "udp/*/10.0.0.2:5004"
        for (args, message) in [
            (["--mode", "l4"], "invalid mode 'l4': expected l2 or l3 (--mode)"),
            (["--temporary", "fd00::9"], "address family mismatch"),
            (["--temporary", "10.0.0.2"], "is the sessions' destination"),
            (["--idle-timeout", "0"], "invalid duration '0'"),
            (["--idle-timeout", "1e308"], "invalid duration '1e308': expected 0.1-86400 seconds (--idle-timeout)"),
            (["--session", "udp/*/10.0.0.3:5004"], "a transfer moves sessions of one address"),
        ] {
            let full = ["transfer", "start", "--to", "target", "--session", good] + args
            expectFailure(try Self.ctl(sock, full), 64, message, full)
        }
        // Well-formed specs of every shape get as far as the (missing) daemon.
        for spec in [good, "udp/192.0.2.7:*/10.0.0.2:5004", "tcp/*/10.0.0.2:*", "udp/[2001:db8::7]:40000/[fd00::2]:5004",
                     "icmp/192.0.2.7:4242/10.0.0.2:*", "icmpv6/[2001:db8::7]:7/[fd00::2]:0"] {
            let args = ["transfer", "start", "--to", "target", "--session", spec]
            expectFailure(try Self.ctl(sock, args), 69, "no daemon at \(sock)", args)
        }
        // A missing --session is ArgumentParser's usage error.
        let missing = try Self.ctl(sock, ["transfer", "start", "--to", "target"])
        #expect(missing.status == 64 && missing.stderr.contains("--session"), "\(missing)")
    }

    @Test func noDaemonIsOneLineAndExit69() throws {
        let sock = "/nonexistent.sock"
        for args in [["node", "status"], ["node", "status", "--json"], ["transfer", "list"], ["transfer", "list", "--json"],
                     ["transfer", "show", "0123456789abcdef"], ["transfer", "end", "0123456789abcdef"]] {
            let r = try Self.ctl(sock, args)
            expectFailure(r, 69, "no daemon at \(sock)", args)
            #expect(r.stderr.contains("is batond running?"), "\(r)")
        }
        // A socket file nobody serves (a stale one) reads the same.
        let stale = FileManager.default.temporaryDirectory.appendingPathComponent("stale-\(UUID().uuidString).sock").path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(stale.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(fd)
        defer { unlink(stale) }
        #expect(bound == 0)
        expectFailure(try Self.ctl(stale, ["node", "status"]), 69, "no daemon at \(stale)", ["node", "status"])
    }
}
