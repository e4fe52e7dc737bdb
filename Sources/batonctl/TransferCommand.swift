import ArgumentParser
import BatonAPI
import BatonCLI
import BatonModel
import Foundation

/// `batonctl transfer …`: transfers as a batond sees them, through its API.
struct TransferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfer",
        abstract: "Start, list, show and end transfers through batond's API.",
        discussion: """
        These verbs talk to the batond running on this host through its API socket (--control, \
        default \(ControlOptions.defaultPath)), or to a remote one over mutual TLS (--api with \
        --tls-ca, --tls-cert, --tls-key); they touch no BPF object themselves. `start` is \
        run on the transferring node (TN); `list`, `show` and `end` work on the TN and on the \
        session agent (the target's daemon lists and shows the transfers it accepted).
        """,
        subcommands: [Start.self, List.self, Show.self, End.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move sessions of this node (the TN) to a target.",
            discussion: """
            The TN's batond negotiates with the target, registers the transfer with the session \
            agent, takes the original address off the wire and brings up the temporary address; \
            the command returns when the transfer is active (or failed).

            SPEC is PROTO/SOURCE/DESTINATION, as the correspondent sends:
              PROTO        tcp, udp, icmp or icmpv6
              SOURCE       the correspondent: ADDR:PORT, ADDR:* (any source port)
                           or * (any correspondent)
              DESTINATION  this node's original address: ADDR:PORT or ADDR:* (any port)
            IPv6 addresses go in brackets: udp/[2001:db8::7]:40000/[fd00::2]:5004. For icmp and \
            icmpv6 (echo) the source port is the echo identifier and the destination port is * or 0. \
            Every --session must have the same destination address.
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Option(name: .long, help: ArgumentHelp("The target: a peer's name as batond was given it (--peer NAME,…).",
                                                valueName: "name"))
        var to: String

        @Option(name: .long, help: ArgumentHelp("A session to move (repeatable); see below.", valueName: "spec"))
        var session: [String] = []

        @Option(name: .long, help: ArgumentHelp(
            "l2: the agent rewrites MACs (the target is on the TN's segment); l3: the agent tunnels to the target, which decapsulates.",
            valueName: "l2|l3"))
        var mode: String = "l2"

        @Option(name: .long, help: ArgumentHelp(
            "The TN's temporary address (same family as the sessions); default: one from batond's --temporary-pool.",
            valueName: "address"))
        var temporary: String?

        @Option(name: .customLong("idle-timeout"), help: ArgumentHelp(
            "End the transfer when all its sessions have been idle this long; default: the agent's.",
            valueName: "seconds"))
        var idleTimeout: String?

        func validate() throws {
            // ArgumentParser's own check, so a missing --session reads like a missing --to.
            if session.isEmpty { throw ValidationError("Missing expected argument '--session <spec>'") }
        }

        func run() throws {
            let sessions = try session.map { try Parse.session($0) }
            let original = sessions[0].destination
            for s in sessions.dropFirst() where s.destination != original {
                throw CLIError.usage("sessions go to \(original) and \(s.destination): a transfer moves sessions of one address (--session)")
            }
            guard let m = TransferMode(rawValue: mode.lowercased()) else {
                throw CLIError.usage("invalid mode '\(mode)': expected l2 or l3 (--mode)")
            }
            let temp = try temporary.map { try Parse.address($0, "--temporary") }
            if let temp {
                try Parse.sameFamily(temp, "--temporary", as: original, "the sessions' destination")
                if temp == original {
                    throw CLIError.usage("--temporary \(temp) is the sessions' destination (the original address); give another address")
                }
            }
            let idle = try idleTimeout.map { try Parse.seconds($0, "--idle-timeout") }
            let name = to.trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw CLIError.usage("invalid target '': expected a peer's name (--to)") }
            let request = TransferRequest(to: name, sessions: sessions, temporary: temp, mode: m, idleTimeout: idle)
            let t = try withDaemon(daemon) { try $0.start(request) }
            if output.json { try JSON.print(t) } else { TransferText.detail(t) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the daemon's transfers, current and recently ended.",
            discussion: "ROLE is this daemon's part in each transfer: tn, target or agent.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let transfers = try withDaemon(daemon) { try $0.list() }
            if output.json {
                try JSON.print(transfers)
            } else if transfers.isEmpty {
                print("no transfers")
            } else {
                TransferText.table(transfers).print()
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one transfer: its sessions (with the agent's counters) and milestones.",
            discussion: """
            On the session agent each session shows where it is steered (FORWARD) and its \
            packets, bytes, idle time and whether a TCP FIN/RST was seen; the TN and the target \
            show the sessions only. Milestones are milliseconds since the transfer started.
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The transfer's ID (16 hex digits, as `transfer list` shows).", valueName: "id"))
        var id: String

        func run() throws {
            let id = try Parse.transferID(id)
            let t = try withDaemon(daemon) { try $0.show(id) }
            if output.json { try JSON.print(t) } else { TransferText.detail(t) }
        }
    }

    struct End: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End a transfer: the sessions go back to the TN, which reclaims its address.",
            discussion: """
            Run it on the TN or on the session agent (the target cannot end a transfer). The \
            agent sends the wake-up, the TN reclaims and announces its original address, and the \
            agent keeps forwarding until the TN confirms. On the agent the command returns at \
            once; on the TN once the address is back (or after 3 s without a wake-up: then \
            nothing ended, exit 1). It prints the transfer's state at that moment (`transfer show \
            ID` follows it to "ended").

            --force is for a peer that is gone. On the TN: when the agent does not answer, the TN \
            reclaims its address anyway (back on the wire, announced; reason "forced"); if the \
            agent's host still runs its XDP program, it goes on answering ARP for the address \
            until its batond clears it. On the agent: the takeover and the rules are cleared at \
            once, without waiting for the TN to confirm (reason "forced").
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The transfer's ID.", valueName: "id"))
        var id: String

        @Flag(help: "End it without the other side: the TN reclaims with the agent silent; the agent clears at once.")
        var force = false

        func run() throws {
            let id = try Parse.transferID(id)
            let force = force
            let t = try withDaemon(daemon) { try $0.end(id, force: force) }
            if output.json {
                try JSON.print(t)
            } else {
                print("ending transfer \(t.id): \(t.state)" + (t.reason.map { " (\($0))" } ?? ""))
            }
        }
    }
}

// MARK: - Text

enum TransferText {
    static func address(_ a: IPAddress?) -> String { a.map { "\($0)" } ?? "-" }

    /// "udp 192.0.2.7:40000 -> 10.0.0.2:5004", as `rule list` writes a match.
    static func match(_ m: SessionMatch) -> String { m.description }

    static func sessions(_ t: TransferInfo) -> String {
        switch t.sessions.count {
        case 0: return "-"
        case 1: return match(t.sessions[0].match)
        default: return "\(match(t.sessions[0].match)) (+\(t.sessions.count - 1))"
        }
    }

    static func table(_ transfers: [TransferInfo]) -> Table {
        var table = Table(["ID", "ROLE", "STATE", "ORIGINAL", "TEMPORARY", "MODE", "TARGET", "SESSIONS", "REASON"])
        for t in transfers {
            table.add([t.id, t.role.name, t.state.rawValue, "\(t.original)", address(t.temporary), t.mode.rawValue, t.target ?? "-",
                       sessions(t), t.reason ?? "-"])
        }
        return table
    }

    static func time(_ unix: Double) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: unix))
    }

    static func milliseconds(_ ms: Double) -> String { String(format: "%.1f", ms) }

    static func detail(_ t: TransferInfo) {
        var lines: [(String, String)] = [
            ("id", t.id), ("role", t.role.name), ("state", t.state.rawValue), ("original", "\(t.original)"),
            ("temporary", address(t.temporary)), ("mode", t.mode.rawValue), ("target", t.target ?? "-"),
            ("started", time(t.started)),
        ]
        if let ended = t.ended {
            lines.append(("ended", time(ended) + " (after \(milliseconds((ended - t.started) * 1000)) ms)"))
        }
        if let reason = t.reason { lines.append(("reason", reason)) }
        for (key, value) in lines { print((key + ":").padding(toLength: 11, withPad: " ", startingAt: 0) + value) }

        print("sessions:")
        var s = Table(["MATCH", "FORWARD", "PACKETS", "BYTES", "IDLE", "CLOSED"], numeric: [2, 3, 4])
        for session in t.sessions {
            s.add([match(session.match), session.forward ?? "-", session.packets.map { "\($0)" } ?? "-",
                   session.bytes.map { Format.bytes($0) } ?? "-", Format.idle(session.idleSeconds),
                   session.closed.map { $0 ? "yes" : "no" } ?? "-"])
        }
        indent(s.render())

        if t.milestones.isEmpty {
            print("milestones: none yet")
        } else {
            print("milestones (ms since started):")
            var m = Table(["MILESTONE", "MS"], numeric: [1])
            for (name, ms) in t.milestones.sorted(by: { ($0.value, $0.key) < ($1.value, $1.key) }) {
                m.add([name, milliseconds(ms)])
            }
            indent(m.render())
        }
    }

    static func indent(_ text: String) {
        print(text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))
    }
}

// MARK: - Parsing

extension Parse {
    static let sessionForm = "expected PROTO/SOURCE/DESTINATION like udp/192.0.2.7:40000/10.0.0.2:5004, udp/*/10.0.0.2:5004 or tcp/[2001:db8::7]:*/[fd00::2]:443"

    /// `PROTO/SOURCE/DESTINATION` (see `transfer start --help`) as a validated SessionMatch.
    static func session(_ text: String, _ flag: String = "--session") throws -> SessionMatch {
        func bad(_ why: String) -> CLIError {
            .usage("invalid session '\(text)': \(why); \(sessionForm) (\(flag))")
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else {
            throw bad("\(parts.count) part\(parts.count == 1 ? "" : "s") separated by '/', not 3")
        }
        guard let proto = IPProtocol(name: parts[0]) else {
            throw bad("unknown protocol '\(parts[0])' (tcp, udp, icmp or icmpv6)")
        }
        var source: IPAddress?, sourcePort: UInt16?
        if parts[1] != "*" {
            let (a, p) = try endpoint(parts[1], "source", bad)
            source = a
            sourcePort = p
        }
        guard parts[2] != "*" else { throw bad("the destination must be this node's original address, not '*'") }
        let (destination, destinationPort) = try endpoint(parts[2], "destination", bad)
        let match = SessionMatch(proto: proto, source: source, sourcePort: sourcePort, destination: destination,
                                 destinationPort: destinationPort)
        do {
            try match.validate()
        } catch {
            throw bad(error.description)
        }
        return match
    }

    /// `ADDR:PORT`, `ADDR:*`, `[V6]:PORT`, `[V6]:*` -> address and port (nil for `*`).
    private static func endpoint(_ text: String, _ what: String, _ bad: (String) -> CLIError) throws -> (IPAddress, UInt16?) {
        let host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw bad("the \(what) '\(text)' has no ']' after its IPv6 address")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                throw bad("the \(what) '\(text)' needs ':PORT' or ':*' after the ']'")
            }
            port = rest.dropFirst()
            guard let a = IPAddress(String(host)), a.family == .v6 else {
                throw bad("invalid \(what) address '\(host)' in brackets (an IPv6 address)")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw bad("the \(what) '\(text)' needs a port or '*' (\(text):PORT or \(text):*)")
            }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            if host.contains(":") {
                throw bad("IPv6 addresses go in brackets ([\(host)]:\(port.isEmpty ? "PORT" : String(port))) in the \(what) '\(text)'")
            }
            guard let a = IPAddress(String(host)), a.family == .v4 else {
                throw bad("invalid \(what) address '\(host)' (an IPv4 address, or IPv6 in brackets)")
            }
        }
        let address = IPAddress(String(host))!
        if port == "*" { return (address, nil) }
        guard port.allSatisfy(\.isASCII), let n = Int(port), (0...65535).contains(n) else {
            throw bad("invalid \(what) port '\(port)' (0-65535 or *)")
        }
        return (address, UInt16(n))
    }

    /// A transfer ID: 16 hex digits.
    static func transferID(_ text: String, _ what: String = "transfer ID") throws -> String {
        guard text.count == 16, text.allSatisfy(\.isHexDigit) else {
            throw CLIError.usage("invalid \(what) '\(text)': expected 16 hex digits, as `batonctl transfer list` shows")
        }
        return text.lowercased()
    }

    /// An idle timeout in seconds, in the range the daemons take (`Limits.idleTimeout`).
    static func seconds(_ text: String, _ flag: String) throws -> Double {
        let r = Limits.idleTimeout
        guard let s = Double(text), s.isFinite, r.contains(s) else {
            throw CLIError.usage("invalid duration '\(text)': expected \(r.lowerBound)-\(Int(r.upperBound)) seconds (\(flag))")
        }
        return s
    }
}
