import ArgumentParser
import BatonDaemon
import Foundation

/// `batonctl node …`: the local batond itself.
struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Ask the local batond (agent or node) about itself.",
        discussion: "Talks to batond over its control socket (--control, default \(ControlOptions.defaultPath)).",
        subcommands: [Status.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the daemon's role, key, interface, addresses, transfers and rejected messages.",
            discussion: """
            HELD are addresses kept as non-ARP local addresses (originals moved off the wire on a \
            TN, accepted originals on a target); TEMPORARY the temporary addresses in use; \
            TAKEOVERS the addresses an agent has taken over. REJECTED counts the protocol messages \
            the daemon refused since it started, by reason (forged, replayed, stale, untrusted, \
            misdirected, unknown-transfer, malformed, unexpected).
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let s = try withDaemon(daemon) { try $0.status() }
            if output.json {
                try JSON.print(s)
                return
            }
            func list(_ items: [String]) -> String { items.isEmpty ? "none" : items.joined(separator: ", ") }
            let rejected = s.rejected.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            var lines: [(String, String)] = [
                ("role", s.role),
                ("public key", s.publicKey),
                ("interface", "\(s.interface) (\(s.mac))"),
                // The daemon's "10.0.0.2/24 scope global permanent": the prefix is what people look for.
                ("addresses", list(s.addresses.map { String($0.split(separator: " ").first ?? Substring($0)) })),
                ("port", "\(s.port)/udp"),
                ("transfers", "\(s.activeTransfers) active"),
            ]
            if s.role == "agent" {
                lines.append(("takeovers", list(s.takeovers)))
            } else {
                lines.append(("held", list(s.heldAddresses)))
                lines.append(("temporary", list(s.temporaryAddresses)))
            }
            lines.append(("rejected", rejected.isEmpty ? "none" : rejected.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
            for (key, value) in lines { print((key + ":").padding(toLength: 12, withPad: " ", startingAt: 0) + value) }
        }
    }
}
