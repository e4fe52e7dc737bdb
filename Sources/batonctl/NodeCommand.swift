import ArgumentParser
import BatonAPI
import BatonCLI
import Foundation

/// `batonctl node …`: a batond itself.
struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Ask batond (agent or node) about itself.",
        discussion: "Talks to batond through its API: the local socket (--control, default \(ControlOptions.defaultPath)) or a remote daemon (--api).",
        subcommands: [Status.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the daemon's role, key, interface, addresses, transfers and rejected messages.",
            discussion: """
            HELD are addresses kept as non-ARP local addresses (originals moved off the wire on a \
            TN, accepted originals on a target); TEMPORARY the temporary addresses in use; \
            TAKEOVERS the addresses an agent has taken over. REJECTED counts the protocol messages \
            the daemon refused since it started, by reason (forged, replayed, stale, misdirected, \
            unknown-transfer, malformed, unexpected; on a node also untrusted; on the agent also \
            unenrolled, not-owner, unenrolled-target, not-allowed, rate-limited). RECONCILE (agent) is what \
            its last start found in the pinned maps and did about it.
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
                ("role", s.role.rawValue),
                ("public key", s.publicKey),
                ("interface", "\(s.interface) (\(s.mac))"),
                // The daemon's "10.0.0.2/24 scope global permanent": the prefix is what people look for.
                ("addresses", list(s.addresses.map { String($0.split(separator: " ").first ?? Substring($0)) })),
                ("port", "\(s.port)/udp"),
                ("transfers", "\(s.activeTransfers) active"),
            ]
            if s.role == .agent {
                lines.append(("takeovers", list(s.takeovers)))
            } else {
                lines.append(("held", list(s.heldAddresses)))
                lines.append(("temporary", list(s.temporaryAddresses)))
            }
            if let r = s.reconcile { lines.append(("reconcile", NodeText.reconcile(r))) }
            lines.append(("rejected", rejected.isEmpty ? "none" : rejected.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
            for (key, value) in lines { print((key + ":").padding(toLength: 12, withPad: " ", startingAt: 0) + value) }
        }
    }
}

enum NodeText {
    /// "rules 3 kept, 1 restored; takeovers 1 kept; transfers 1 resumed (4.2 ms)": the counts
    /// that are not zero.
    static func reconcile(_ r: ReconcileSummary) -> String {
        func part(_ what: String, _ counts: [(String, Int)]) -> String? {
            let nonzero = counts.filter { $0.1 > 0 }
            return nonzero.isEmpty ? nil : what + " " + nonzero.map { "\($0.1) \($0.0)" }.joined(separator: ", ")
        }
        let parts = [
            part("rules", [("kept", r.rulesKept), ("restored", r.rulesRestored), ("rewritten", r.rulesRewritten),
                           ("removed", r.rulesRemoved)]),
            part("takeovers", [("kept", r.takeoversKept), ("restored", r.takeoversRestored),
                               ("rewritten", r.takeoversRewritten), ("removed", r.takeoversRemoved)]),
            part("transfers", [("resumed", r.transfersResumed), ("rolled back", r.transfersRolledBack),
                               ("cleared", r.transfersCleared)]),
        ].compactMap { $0 }
        let time = String(format: "%.1f ms", r.seconds * 1000)
        return (parts.isEmpty ? "nothing to do" : parts.joined(separator: "; ")) + " (\(time))"
    }
}
