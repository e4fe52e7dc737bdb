import ArgumentParser
import BatonBPF
import BatonDaemon
import BatonModel
import BatonNet
import BatonProtocol
import Foundation

struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a node: transfer sessions away (TN) and accept transferred sessions (target).",
        discussion: """
        Peers are given as NAME,KEY,ADDRESS[,ADDRESS]: a name for `batonctl transfer start --to`, \
        the peer's public key (`batond key` on that host) and its IPv4 and/or IPv6 address. \
        Peers are also trusted to offer sessions to this node. --agent takes KEY,ADDRESS[,ADDRESS].
        """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: ArgumentHelp("The session agent: KEY,ADDRESS[,ADDRESS].", valueName: "key,addr"))
    var agent: String?

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp(
        "A target this node may transfer to, trusted to offer sessions too: NAME,KEY,ADDRESS[,ADDRESS] (repeat).",
        valueName: "name,key,addr"))
    var peer: [String] = []

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp(
        "A block temporary addresses are picked from, e.g. 10.0.0.200/29 (repeat; one per family).", valueName: "prefix"))
    var temporaryPool: [String] = []

    @Option(name: .long, help: ArgumentHelp("Where baton_decap (L3 mode) is pinned on bpffs.", valueName: "path"))
    var decapRoot: String = DefaultPaths.decapRoot

    @Option(name: .long, help: ArgumentHelp("Announcements (gratuitous ARP / unsolicited NA) when reclaiming an address.", valueName: "n"))
    var announceCount: Int = 3

    @Option(name: .long, help: ArgumentHelp("Milliseconds between those announcements.", valueName: "ms"))
    var announceInterval: Int = 100

    func validate() throws {
        do {
            try Limits.check(announceCount, Limits.announceCount, "--announce-count")
            try Limits.check(announceInterval, Limits.announceInterval, "--announce-interval", unit: "ms")
        } catch {
            throw ValidationError(error.description)
        }
        if let agent { _ = try Self.parsePeer("agent," + agent, "--agent") }
        for p in peer { _ = try Self.parsePeer(p, "--peer") }
        for p in temporaryPool where IPPrefix(p) == nil {
            throw ValidationError("invalid prefix '\(p)' (--temporary-pool): expected ADDRESS/LENGTH")
        }
    }

    static func parsePeer(_ text: String, _ flag: String) throws -> Peer {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, !parts[0].isEmpty else {
            throw ValidationError("invalid \(flag) '\(text)': expected \(flag == "--agent" ? "KEY,ADDRESS[,ADDRESS]" : "NAME,KEY,ADDRESS[,ADDRESS]")")
        }
        guard let key = PublicKey(parts[1]) else {
            throw ValidationError("invalid public key '\(parts[1])' (\(flag)): expected 43 base64url characters, as `batond key` prints")
        }
        let addresses = try parts[2...].map { a -> IPAddress in
            guard let address = IPAddress(a) else { throw ValidationError("invalid address '\(a)' (\(flag))") }
            return address
        }
        return Peer(name: parts[0], addresses: addresses, key: key)
    }

    func run() throws {
        let logger = try daemon.prepare("batond.node")
        var c = NodeConfiguration(interface: daemon.interface, identity: try daemon.identity())
        c.port = UInt16(daemon.port)
        c.listeners = try daemon.listeners()
        c.xdpMode = XDPMode(rawValue: daemon.xdpMode)!
        c.decapRoot = decapRoot
        c.stateDirectory = daemon.stateDir
        c.agent = try agent.map { var p = try Self.parsePeer("agent," + $0, "--agent"); p.port = c.port; return p }
        c.peers = try peer.map { var p = try Self.parsePeer($0, "--peer"); p.port = c.port; return p }
        c.temporaryPool = temporaryPool.compactMap(IPPrefix.init)
        c.announcements = AnnouncementPolicy(count: announceCount, interval: .milliseconds(announceInterval), refresh: nil)
        let node: Node
        do {
            node = try Node(c, logger: logger)
        } catch {
            throw DaemonFailure("cannot start the node: \(error)")
        }
        try serve(run: { try node.run() }, stop: { node.stop() })
    }
}
