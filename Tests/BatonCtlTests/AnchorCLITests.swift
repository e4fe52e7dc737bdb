// `batonctl anchor …` against a real batond agent in a transfer lab: every verb with and
// without --json, and the usage errors that never reach the daemon.
import BatonAPI
import BatonBPF
import BatonLab
import BatonModel
import Foundation
import Glibc
import Testing

@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct AnchorCLITests {
    @Test func everyVerbThroughTheCLI() throws {
        try TransferCLITests.withDaemons { lab, daemons in
            let sock = daemons.agent.control
            let remote = "\(lab["cn"].ipv4):40000", dev1 = "\(lab["tn"].ipv4):6000", dev2 = "\(lab["target"].ipv4):6000"
            let created = try TransferCLITests.ok(sock, ["anchor", "create", "--remote", remote, "--device", dev1, "--json"]).json(AnchorInfo.self)
            #expect(created.state == .active && created.device.description == dev1 && created.anchor.address == lab["sa"].ipv4)
            let text = try TransferCLITests.ok(sock, ["anchor", "show", created.id]).stdout
            #expect(text.contains("relay port \(created.relayPort)") && text.contains("to-device") && text.contains("to-remote"))
            let moved = try TransferCLITests.ok(sock, ["anchor", "move", created.id, "--device", dev2, "--lockout", "5", "--json"])
                .json(AnchorInfo.self)
            #expect(moved.moves == 1 && moved.retired.first?.lockedOut == true && moved.retired.first?.device.description == dev1)
            #expect(try TransferCLITests.ok(sock, ["anchor", "show", created.id]).stdout.contains("locked-out"))
            let list = try TransferCLITests.ok(sock, ["anchor", "list"]).stdout
            #expect(list.contains(created.id) && list.contains(dev2))
            #expect(try TransferCLITests.ok(sock, ["anchor", "list", "--json"]).json([AnchorInfo].self).map(\.id) == [created.id])
            #expect(try TransferCLITests.ok(sock, ["anchor", "end", created.id]).stdout == "anchor \(created.id): ended\n")
            // The agent's refusals, with their exit status.
            try TransferCLITests.fails(sock, 1, "has ended", ["anchor", "end", created.id])
            try TransferCLITests.fails(sock, 2, "no anchor 0123456789abcdef", ["anchor", "show", "0123456789abcdef"])
            try TransferCLITests.fails(sock, 77, "is the anchor's own address",
                                       ["anchor", "create", "--remote", remote, "--device", "\(lab["sa"].ipv4):6000"])
            // Usage errors: exit 64, nothing sent.
            for (message, args) in [
                ("invalid endpoint '10.0.0.1'", ["anchor", "create", "--remote", "10.0.0.1", "--device", dev1]),
                ("port 1-65535", ["anchor", "create", "--remote", "\(lab["cn"].ipv4):0", "--device", dev1]),
                ("a relay does not translate families", ["anchor", "create", "--remote", remote, "--device", "[fd00::3]:6000"]),
                ("an anchored session is udp or tcp", ["anchor", "create", "--remote", remote, "--device", dev1, "--proto", "icmp"]),
                ("invalid anchor ID 'xyz'", ["anchor", "show", "xyz"]),
                ("--lockout and --grace exclude each other", ["anchor", "move", created.id, "--device", dev1, "--lockout", "1", "--grace", "1"]),
                ("invalid --lockout 0.0", ["anchor", "move", created.id, "--device", dev1, "--lockout", "0"]),
            ] {
                try TransferCLITests.fails(sock, 64, message, args)
            }
        }
    }
}
