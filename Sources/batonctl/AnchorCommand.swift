import ArgumentParser
import BatonAPI
import BatonCLI
import BatonModel
import Foundation

/// `batonctl anchor …`: anchored sessions on the session agent, through its API.
struct AnchorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "anchor",
        abstract: "Create, list, show, move and end anchored sessions on the session agent.",
        discussion: """
        An anchored session is relayed by the agent in XDP: the remote party talks to \
        ANCHOR:PORT, the device to ANCHOR:RELAY-PORT, and each packet is rewritten on its way \
        (docs/anchors.md). `move` hands the device side to another device with one map update; \
        the remote sees the same address and port throughout. These verbs talk to the agent's \
        API (--control, or --api with the TLS options); they touch no BPF object themselves.
        """,
        subcommands: [Create.self, List.self, Show.self, Move.self, End.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Relay a session between a remote party and a device through the agent.",
            discussion: """
            ENDPOINT is ADDR:PORT, with IPv6 addresses in brackets ([2001:db8::7]:5004). The \
            remote, the device and the anchor are of one family. The agent gives the session \
            a relay port (and the anchor port unless --port) from its --relay-ports pool and \
            resolves both next hops before it answers.
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Option(name: .long, help: ArgumentHelp("The remote party's address and port.", valueName: "endpoint"))
        var remote: String

        @Option(name: .long, help: ArgumentHelp("The device that holds the session now.", valueName: "endpoint"))
        var device: String

        @Option(name: .long, help: ArgumentHelp("udp or tcp.", valueName: "proto"))
        var proto: String = "udp"

        @Option(name: .long, help: ArgumentHelp("The anchor's address; default: the agent's global address of the family.", valueName: "address"))
        var anchor: String?

        @Option(name: .long, help: ArgumentHelp("The anchor port the remote talks to (within --relay-ports); default: the pool's next.", valueName: "port"))
        var port: String?

        @Option(name: .customLong("idle-timeout"), help: ArgumentHelp("End it when neither leg saw a packet this long; default: the agent's.",
                                                                    valueName: "seconds"))
        var idleTimeout: String?

        @Flag(name: .customLong("rtp-continuity"), help: "Keep the RTP stream toward the remote one across moves (one SSRC, contiguous numbers).")
        var rtpContinuity = false

        func run() throws {
            let remote = try Parse.endpoint(remote, "--remote"), device = try Parse.endpoint(device, "--device")
            try Parse.sameFamily(device.address, "--device", as: remote.address, "--remote", why: ": a relay does not translate families")
            let p = try Parse.proto(proto)
            guard p == .udp || p == .tcp else { throw CLIError.usage("invalid protocol '\(proto)': an anchored session is udp or tcp (--proto)") }
            let a = try anchor.map { try Parse.address($0, "--anchor") }
            if let a { try Parse.sameFamily(a, "--anchor", as: remote.address, "--remote") }
            let request = AnchorRequest(proto: p == .tcp ? .tcp : .udp, remote: remote, device: device, anchor: a,
                                        port: try port.map { Int(try Parse.port($0, "--port")) },
                                        idleTimeout: try idleTimeout.map { try Parse.seconds($0, "--idle-timeout") },
                                        rtpContinuity: rtpContinuity ? true : nil)
            let info = try withDaemon(daemon) { try $0.createAnchor(request) }
            if output.json { try JSON.print(info) } else { AnchorText.detail(info) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List anchored sessions, active and recently ended.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let anchors = try withDaemon(daemon) { try $0.anchors() }
            if output.json {
                try JSON.print(anchors)
            } else if anchors.isEmpty {
                print("no anchored sessions")
            } else {
                AnchorText.table(anchors).print()
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one anchored session: its legs with their counters, and earlier devices.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The session's ID (16 hex digits, as `anchor list` shows).", valueName: "id"))
        var id: String

        func run() throws {
            let id = try Parse.transferID(id, "anchor ID")
            let info = try withDaemon(daemon) { try $0.anchor(id) }
            if output.json { try JSON.print(info) } else { AnchorText.detail(info) }
        }
    }

    struct Move: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the session's device side to another device (make-before-break).",
            discussion: """
            The new device's reverse rule is written first, then the forward rule switches in \
            one map update. The old device's packets are still relayed for --grace seconds \
            (default: the agent's --anchor-grace); with --lockout they are dropped, and \
            counted, for that long instead.
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The session's ID.", valueName: "id"))
        var id: String

        @Option(name: .long, help: ArgumentHelp("The device that takes the session over.", valueName: "endpoint"))
        var device: String

        @Option(name: .long, help: ArgumentHelp("Drop the old device's packets this long (0.001-86400).", valueName: "seconds"))
        var lockout: Double?

        @Option(name: .long, help: ArgumentHelp("Relay the old device's late packets this long (0-3600).", valueName: "seconds"))
        var grace: Double?

        func run() throws {
            if let lockout, !(lockout.isFinite && (0.001...86400).contains(lockout)) {
                throw CLIError.usage("invalid --lockout \(lockout): expected 0.001-86400 seconds")
            }
            if let grace, !(grace.isFinite && (0...3600).contains(grace)) {
                throw CLIError.usage("invalid --grace \(grace): expected 0-3600 seconds")
            }
            if lockout != nil, grace != nil { throw CLIError.usage("--lockout and --grace exclude each other: a locked-out device gets no grace") }
            let id = try Parse.transferID(id, "anchor ID")
            let move = AnchorMove(device: try Parse.endpoint(device, "--device"), lockout: lockout, grace: grace)
            let info = try withDaemon(daemon) { try $0.moveAnchor(id, move) }
            if output.json { try JSON.print(info) } else { AnchorText.detail(info) }
        }
    }

    struct End: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End an anchored session: its rules go, its ports return to the pool.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The session's ID.", valueName: "id"))
        var id: String

        func run() throws {
            let id = try Parse.transferID(id, "anchor ID")
            let info = try withDaemon(daemon) { try $0.endAnchor(id) }
            if output.json { try JSON.print(info) } else { print("anchor \(info.id): \(info.state.rawValue)") }
        }
    }
}

enum AnchorText {
    static func table(_ anchors: [AnchorInfo]) -> Table {
        var t = Table(["ID", "STATE", "PROTO", "REMOTE", "ANCHOR", "RELAY", "DEVICE", "MOVES", "TO-DEVICE", "TO-REMOTE"], numeric: [7, 8, 9])
        for a in anchors {
            t.add([a.id, a.state.rawValue, a.proto.rawValue, "\(a.remote)", "\(a.anchor)", "\(a.relayPort)", "\(a.device)", "\(a.moves)",
                   a.toDevice.map { "\($0.packets)" } ?? "-", a.toRemote.map { "\($0.packets)" } ?? "-"])
        }
        return t
    }

    static func detail(_ a: AnchorInfo) {
        var lines: [(String, String)] = [
            ("id", a.id), ("state", a.state.rawValue), ("proto", a.proto.rawValue), ("remote", "\(a.remote)"),
            ("anchor", "\(a.anchor) (relay port \(a.relayPort))"), ("device", "\(a.device)"), ("moves", "\(a.moves)"),
            ("idle after", "\(a.idleTimeout) s"), ("created", TransferText.time(a.created)),
        ]
        if let m = a.moved { lines.append(("moved", TransferText.time(m))) }
        if let e = a.ended { lines.append(("ended", TransferText.time(e))) }
        if let r = a.reason { lines.append(("reason", r)) }
        if a.rtpContinuity {
            let rtp = a.rtp.map { s in
                s.started ? "one stream, SSRC \(String(format: "%08x", s.ssrc)), \(s.packets) packets, \(s.rebases) source change(s)"
                          : "one stream, no RTP packet yet"
            }
            lines.append(("rtp", rtp ?? "one stream"))
        }
        for (key, value) in lines { print((key + ":").padding(toLength: 12, withPad: " ", startingAt: 0) + value) }
        var legs = Table(["LEG", "FROM", "PACKETS", "BYTES", "IDLE"], numeric: [2, 3, 4])
        func add(_ leg: String, _ from: String, _ c: LegCounters?) {
            legs.add([leg, from, c.map { "\($0.packets)" } ?? "-", c.map { Format.bytes($0.bytes) } ?? "-", Format.idle(c?.idleSeconds)])
        }
        add("to-device", "\(a.remote)", a.toDevice)
        add("to-remote", "\(a.device)", a.toRemote)
        for r in a.retired {
            add(r.lockedOut ? "locked-out" : "retired", "\(r.device) until \(TransferText.time(r.until))", r.counters)
        }
        print("legs:")
        TransferText.indent(legs.render())
    }
}

extension Parse {
    /// ADDR:PORT or [V6]:PORT, port 1-65535.
    static func endpoint(_ text: String, _ flag: String) throws -> Endpoint {
        guard let e = Endpoint(text), e.port != 0 else {
            throw CLIError.usage("invalid endpoint '\(text)': expected ADDR:PORT like 192.0.2.7:5004 or [2001:db8::7]:5004, port 1-65535 (\(flag))")
        }
        return e
    }
}
