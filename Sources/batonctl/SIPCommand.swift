import ArgumentParser
import BatonAPI
import BatonCLI
import BatonModel
import BatonSIP
import Foundation

/// `batonctl sip …`: the agent's SIP server (batond agent --sip-domain), through its API.
struct SIPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sip",
        abstract: "SIP users, registrations and calls of the session agent's SIP server.",
        discussion: """
        The agent serves SIP with --sip-domain (docs/sip.md): a registrar with GRUU and a \
        B2BUA whose calls' media are anchored sessions, so that a user moves a live call to \
        another of their devices with INVITE/Replaces while the remote party notices nothing. \
        These verbs talk to the agent's API (--control, or --api with the TLS options).
        """,
        subcommands: [User.self, Registrations.self, Calls.self, Call.self])

    struct User: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add, list and remove SIP users (digest credentials, stored hashed).",
            subcommands: [Add.self, List.self, Delete.self])

        struct Add: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Add a user of the served domains.",
                discussion: """
                The password is read from standard input (one line; 8-256 characters), never \
                from the command line. The agent keeps H(user:realm:password) for SHA-256 and \
                MD5, not the password.
                """)

            @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
            @OptionGroup var output: OutputOptions

            @Argument(help: ArgumentHelp("The user name: the user part of sip:NAME@domain (1-64 characters).", valueName: "name"))
            var name: String

            func validate() throws {
                guard (1...64).contains(name.utf8.count),
                      name.utf8.allSatisfy(SIPURI.userCharacter) else {
                    throw ValidationError("invalid user name '\(name)': 1-64 of A-Z a-z 0-9 - _ . ! ~ * ' ( ) & = + $ , ; ? /")
                }
            }

            func run() throws {
                guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                    throw CLIError.usage("no password on standard input (echo PASSWORD | batonctl sip user add \(name))")
                }
                guard (8...256).contains(line.count) else { throw CLIError.usage("the password must have 8-256 characters") }
                let user = try withDaemon(daemon) { try $0.addSIPUser(SIPUserRequest(username: name, password: line)) }
                if output.json { try JSON.print(user) } else { print("sip user \(user.username) added (\(user.aor), realm \(user.realm))") }
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List SIP users (no secrets).")
            @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
            @OptionGroup var output: OutputOptions

            func run() throws {
                let users = try withDaemon(daemon) { try $0.sipUsers() }
                if output.json { return try JSON.print(users) }
                if users.isEmpty { return print("no sip users") }
                var t = Table(["USER", "AOR", "REALM", "ADDED"])
                for u in users { t.add([u.username, u.aor, u.realm, TransferText.time(u.created)]) }
                t.print()
            }
        }

        struct Delete: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove a SIP user; its bindings expire on their own, its calls go on.")
            @OptionGroup(title: "Daemon Options") var daemon: ControlOptions

            @Argument(help: ArgumentHelp("The user name.", valueName: "name"))
            var name: String

            func run() throws {
                try withDaemon(daemon) { try $0.deleteSIPUser(name) }
                print("sip user \(name) removed")
            }
        }
    }

    struct Registrations: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List live registrations: each device's contact, instance and GRUU.")
        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let regs = try withDaemon(daemon) { try $0.sipRegistrations() }
            if output.json { return try JSON.print(regs) }
            if regs.isEmpty { return print("no registrations") }
            var t = Table(["AOR", "CONTACT", "INSTANCE", "PUBLIC-GRUU", "TEMP-GRUUS", "EXPIRES"], numeric: [4, 5])
            for r in regs {
                t.add([r.aor, r.contact, r.instance ?? "-", r.publicGRUU ?? "-", "\(r.temporaryGRUUs)", "\(r.expiresIn) s"])
            }
            t.print()
        }
    }

    struct Calls: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List calls, live and recently ended, with their media counters.")
        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let calls = try withDaemon(daemon) { try $0.sipCalls() }
            if output.json { return try JSON.print(calls) }
            if calls.isEmpty { return print("no calls") }
            var t = Table(["ID", "STATE", "DEVICE", "REMOTE", "ANCHOR", "SWITCHES", "TO-DEVICE", "TO-REMOTE"], numeric: [5, 6, 7])
            for c in calls {
                let device = c.legs.first { $0.role == .device }, remote = c.legs.first { $0.role == .remote }
                t.add([c.id, c.state.rawValue, device.map { "\($0.aor ?? "?") \($0.media.map { "\($0)" } ?? "")" } ?? "-",
                       remote?.media.map { "\($0)" } ?? remote?.peer ?? "-", "\(c.anchor)", "\(c.switches)",
                       c.toDevice.map { "\($0)" } ?? "-", c.toRemote.map { "\($0)" } ?? "-"])
            }
            t.print()
        }
    }

    struct Call: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one call: its legs (dialogs), media anchors and counters, and its timeline.")
        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The call's ID, as `sip calls` shows it.", valueName: "id"))
        var id: String

        func validate() throws {
            guard (1...16).contains(id.count), id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw ValidationError("invalid call ID '\(id)': expected 1-16 lowercase hex digits")
            }
        }

        func run() throws {
            let c = try withDaemon(daemon) { try $0.sipCall(id) }
            if output.json { return try JSON.print(c) }
            var lines: [(String, String)] = [("id", c.id), ("state", c.state.rawValue), ("anchor", "\(c.anchor) (relay port \(c.relayPort))"),
                                             ("rtp anchor", c.rtpAnchor ?? "-"), ("rtcp anchor", c.rtcpAnchor ?? "-"),
                                             ("switches", "\(c.switches)"), ("created", TransferText.time(c.created))]
            if let e = c.ended { lines.append(("ended", TransferText.time(e))) }
            if let r = c.reason { lines.append(("reason", r)) }
            lines.append(("media", "to device \(c.toDevice.map { "\($0)" } ?? "-"), to remote \(c.toRemote.map { "\($0)" } ?? "-") packets"))
            for (k, v) in lines { print((k + ":").padding(toLength: 13, withPad: " ", startingAt: 0) + v) }
            var legs = Table(["LEG", "CALL-ID", "LOCAL-TAG", "REMOTE-TAG", "PEER", "MEDIA", "USER"])
            for l in c.legs {
                legs.add([l.role.rawValue, l.callID, l.localTag, l.remoteTag ?? "-", l.peer, l.media.map { "\($0)" } ?? "-",
                          l.aor.map { "\($0) \(l.instance ?? "")" } ?? "-"])
            }
            print("")
            legs.print()
            print("")
            let t0 = c.timeline.first?.at ?? c.created
            for e in c.timeline { print(String(format: "%+10.3f ms  ", (e.at - t0) * 1000) + e.event) }
        }
    }
}
