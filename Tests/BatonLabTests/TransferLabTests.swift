import BatonLab
import BatonModel
import BatonNet
import Foundation
import Glibc
import Testing

extension KernelTests {
    @Suite struct TransferLabs {
        /// Sends one UDP datagram from `sender` (bound to `source`, default its own address) to
        /// `receiver` and checks it arrives with that source.
        func expectDatagram(from sender: LabHost, source: IPAddress? = nil, to receiver: LabHost,
                            _ family: IPAddress.Family) throws {
            let server = try receiver.udpSocket(family)
            let client = try sender.udpSocket(family, address: source)
            let message = payload("\(sender.name)→\(receiver.name)")
            try client.send(message, to: receiver.address(family), port: try server.localAddress().port)
            let datagram = try #require(try server.receive(timeout: .seconds(3)),
                                        "no \(family) datagram \(sender.name) (\(source ?? sender.address(family))) → \(receiver.name)")
            #expect(datagram.payload == message)
            #expect(datagram.source.address == source ?? sender.address(family))
        }

        @Test func l2LayoutIsOneSegmentWithTheRoles() throws {
            try Lab.withTransfer(.l2, correspondents: ["cn", "cn2"]) { lab in
                #expect(lab.hosts.map(\.name) == ["cn", "cn2", "sa", "tn", "target"])
                #expect(lab.segments.count == 1)
                #expect(lab.layout == .l2)
                #expect(lab.correspondents.map(\.name) == ["cn", "cn2"])
                #expect(lab.hosts.allSatisfy { $0.interfaces.count == 1 && lab.segments[0].ipv4.contains($0.ipv4) })
                try expectDatagram(from: lab["cn"], to: lab["target"], .v4)
                try expectDatagram(from: lab["cn2"], to: lab["tn"], .v6)
            }
        }

        @Test func l3LayoutPutsTheTargetBehindTheRouter() throws {
            try Lab.withTransfer(.l3) { lab in
                #expect(lab.layout == .l3)
                #expect(lab.hosts.map(\.name) == ["cn", "tn", "sa", "rt", "target"])
                #expect(lab.correspondents.map(\.name) == ["cn"])
                let (seg0, seg1) = (lab.segments[0], lab.segments[1])
                for name in ["cn", "tn", "sa"] {
                    #expect(lab[name].interfaces.map(\.segment) == ["seg"])
                    #expect(seg0.ipv4.contains(lab[name].ipv4) && seg0.ipv6.contains(lab[name].ipv6))
                }
                #expect(lab["target"].interfaces.map(\.segment) == ["seg1"])
                #expect(seg1.ipv4.contains(lab["target"].ipv4))
                #expect(lab["rt"].interfaces.map(\.segment) == ["seg", "seg1"])

                let rt = lab["rt"]
                for key in ["all", "default", "eth0", "eth1"] {
                    #expect(try rt.sysctl("net.ipv4.conf.\(key).rp_filter") == "0")
                }
                try expectDatagram(from: lab["cn"], to: lab["target"], .v4)
                try expectDatagram(from: lab["target"], to: lab["cn"], .v6)
                // The correspondent reaches the target only through rt.
                #expect(try lab["cn"].neighbour(lab["target"].ipv4) == nil)
            }
        }

        @Test(arguments: [IPAddress.Family.v4, .v6])
        func routerForwardsTheTargetsAnswersFromTheOriginalAddress(family: IPAddress.Family) throws {
            // Direct server return in L3: the target answers from the TN's address, a segment-0
            // address it holds on lo, out of segment 1. rt must forward it (no rp_filter drop).
            try Lab.withTransfer(.l3) { lab in
                let (cn, target) = (lab["cn"], lab["target"])
                let network = family == .v4 ? lab.segments[0].ipv4 : lab.segments[0].ipv6
                let original = try #require(network.address(at: 200))
                #expect(!lab.hosts.contains { $0.address(family) == original })
                try target.addNonARPAddress(original)
                try expectDatagram(from: target, source: original, to: cn, family)
            }
        }

        @Test func badCorrespondentNamesAreRefused() throws {
            let before = NetworkNamespace.list()
            #expect(throws: LabError.self) { try Lab.transfer(.l2, correspondents: ["sa"]) }
            #expect(throws: LabError.self) { try Lab.transfer(.l3, correspondents: ["rt"]) }
            #expect(throws: LabError.self) { try Lab.transfer(.l2, correspondents: []) }
            #expect(NetworkNamespace.list() == before)
        }

        @Test(arguments: LabLayout.allCases)
        func aLabIsReadBackFromTheKernel(layout: LabLayout) throws {
            try Lab.withTransfer(layout) { lab in
                #expect(Lab.presentPrefixes().contains(lab.prefix))
                #expect(Lab.exists(prefix: lab.prefix))
                let opened = try Lab.open(prefix: lab.prefix)
                #expect(opened.prefix == lab.prefix)
                #expect(opened.layout == layout)
                #expect(opened.segments.map(\.name) == lab.segments.map(\.name))
                #expect(opened.segments.map(\.ipv4) == lab.segments.map(\.ipv4))
                #expect(opened.hosts.map(\.name) == lab.hosts.map(\.name))
                for host in lab.hosts {
                    let other = try #require(opened.host(host.name))
                    #expect(other.namespace == host.namespace)
                    #expect(other.interfaces.map(\.name) == host.interfaces.map(\.name))
                    #expect(other.interfaces.map(\.mac) == host.interfaces.map(\.mac))
                    #expect(other.interfaces.map(\.ipv4) == host.interfaces.map(\.ipv4))
                    #expect(other.interfaces.map(\.ipv6) == host.interfaces.map(\.ipv6))
                    #expect(other.interfaces.map(\.index) == host.interfaces.map(\.index))
                    #expect(other.interfaces.map(\.segment) == host.interfaces.map(\.segment))
                    #expect(other.interfaces.map(\.bridgePort) == host.interfaces.map(\.bridgePort))
                    #expect(other.interfaces.map(\.bridgePortIndex) == host.interfaces.map(\.bridgePortIndex))
                }
            }
            #expect(throws: LabError.self) { try Lab.open(prefix: "btnone0") }
        }

        // MARK: baton-lab

        @Test(.enabled(if: LabTool.path != nil, "baton-lab not built next to the tests"))
        func labToolUpStatusExecDown() throws {
            let prefix = uniquePrefix()
            defer { _ = try? Lab.removeStale(prefix: prefix) }

            let up = try LabTool.run(["up", "--layout", "l3", "--correspondents", "2", "--prefix", prefix, "--json"])
            #expect(up.status == 0, "\(up)")
            let built = try JSONSerialization.jsonObject(with: Data(up.stdout.utf8)) as? [String: Any]
            #expect(built?["prefix"] as? String == prefix)
            #expect(built?["layout"] as? String == "l3")
            let hosts = (built?["hosts"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(hosts == ["cn1", "cn2", "tn", "sa", "rt", "target"])

            // A fresh process reads the same lab back from the kernel.
            let lab = try Lab.open(prefix: prefix)
            let status = try LabTool.run(["status", prefix, "--json"])
            #expect(status.status == 0, "\(status)")
            let listed = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [[String: Any]]
            #expect(listed?.count == 1)
            let target = (listed?.first?["hosts"] as? [[String: Any]])?.first { $0["name"] as? String == "target" }
            let targetInterface = (target?["interfaces"] as? [[String: Any]])?.first
            #expect(targetInterface?["ipv4"] as? String == "\(lab["target"].ipv4)")
            #expect(targetInterface?["mac"] as? String == "\(lab["target"].mac)")
            let text = try LabTool.run(["status"])
            #expect(text.status == 0 && text.stdout.contains("lab \(prefix) (layout l3)"), "\(text)")

            // exec: in the host's network namespace only; the command's exit status.
            let ip = try LabTool.run(["exec", prefix, "target", "--", "cat", "/proc/thread-self/net/dev"])
            #expect(ip.status == 0 && ip.stdout.contains("eth0:") && !ip.stdout.contains("eth1:"), "\(ip)")
            let namespace = try LabTool.run(["exec", prefix, "rt", "--", "readlink", "/proc/self/ns/net"])
            #expect(namespace.stdout.contains("net:[\(try lab["rt"].namespace.identity().inode)]"), "\(namespace)")
            #expect(try LabTool.run(["exec", prefix, "cn1", "--", "sh", "-c", "exit 7"]).status == 7)
            #expect(try LabTool.run(["exec", prefix, "cn1", "--", "no-such-command-here"]).status == 127)
            let noHost = try LabTool.run(["exec", prefix, "nobody", "--", "true"])
            #expect(noHost.status == 2 && noHost.stderr.contains("no host nobody"), "\(noHost)")

            let down = try LabTool.run(["down", prefix])
            #expect(down.status == 0, "\(down)")
            #expect(!Lab.exists(prefix: prefix))
            let again = try LabTool.run(["down", prefix])
            #expect(again.status == 2, "\(again)")
            #expect(again.stderr.hasPrefix("baton-lab: no lab with prefix \(prefix)") && again.stderr.split(separator: "\n").count == 1)
            let unknown = try LabTool.run(["status", prefix])
            #expect(unknown.status == 2, "\(unknown)")
        }

        @Test(.enabled(if: LabTool.path != nil, "baton-lab not built next to the tests"))
        func labToolRefusesBadArguments() throws {
            // Each `up` names its prefix, so that what it might have built is told apart from
            // the labs other suites build meanwhile.
            let prefix = "bt" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(5))
            for arguments in [["up", "--layout", "l4", "--prefix", prefix], ["up", "--prefix", "NOPE"],
                              ["up", "--correspondents", "sa", "--prefix", prefix], ["up", "--correspondents", "0", "--prefix", prefix],
                              ["down"], ["exec", "btnone0", "cn"]] {
                let result = try LabTool.run(arguments)
                #expect(result.status != 0, "\(arguments): \(result)")
                #expect(!result.stderr.isEmpty)
            }
            let built = NetworkNamespace.list().filter { $0.hasPrefix(prefix + "-") || $0.hasPrefix("NOPE") }
            #expect(built.isEmpty, "a refused baton-lab up built namespaces: \(built)")
        }
    }
}

/// The built `baton-lab`, found as the harness finds batond: next to the test bundle.
enum LabTool {
    static let path: String? = LabDaemons.findExecutable("baton-lab")

    /// Runs baton-lab with `arguments`, output captured, killed after 60 s.
    static func run(_ arguments: [String]) throws -> ToolRun {
        let run = try ToolRun.run(try #require(path), arguments)
        if run.timedOut { Issue.record("baton-lab \(arguments.joined(separator: " ")) timed out") }
        return run
    }
}
