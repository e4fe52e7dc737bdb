import BatonBPF
@testable import BatonDataPlane
import BatonModel
import BatonNet
import BatonPacket
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The test hosts' addresses and MACs, for both families.
enum World {
    static let cnMAC = MACAddress("02:00:00:00:00:01")!
    static let tnMAC = MACAddress("02:00:00:00:00:02")!
    static let targetMAC = MACAddress("02:00:00:00:00:03")!
    static let routerMAC = MACAddress("02:00:00:00:00:04")!
    static let saMAC = MACAddress("02:00:00:00:00:0a")!

    enum Role: String { case cn = "1", cn2 = "9", tn = "2", temp = "20", target = "3", sa = "10", other = "99" }

    static func ip(_ family: IPAddress.Family, _ role: Role) -> IPAddress {
        family == .v4 ? IPAddress("192.0.2.\(role.rawValue)")! : IPAddress("2001:db8::\(role.rawValue)")!
    }

    /// The takeover of the TN's address: default to the TN at L2, answering ARP/NDP.
    static func takeover(_ family: IPAddress.Family, router: Bool = false, answer: Bool = true) -> Takeover {
        Takeover(address: ip(family, .tn), defaultForward: .l2(to: tnMAC, from: saMAC),
                 agentMAC: answer ? saMAC : nil, router: router)
    }
}

/// A private network namespace with a veth pair (a redirect target), and a
/// data plane loaded without pins. Everything that touches the kernel runs on
/// the namespace's thread, so ifindexes and the test runs' loopback are its own.
final class KernelRig {
    let namespace: NetworkNamespace
    /// ifindex of a veth in the namespace: rules may redirect to it.
    private(set) var redirectIfindex: UInt32 = 0
    private var dataPlane: DataPlane?

    init() throws {
        namespace = try NetworkNamespace.create(name: "btfx-\(getpid())-\(UInt32.random(in: 0...0xffffff))")
        do {
            try namespace.run {
                let nl = try Netlink()
                try nl.createVeth("rdr0", peer: "rdr1")
                try nl.setUp("rdr0")
                try nl.setUp("rdr1")
                self.redirectIfindex = UInt32(try nl.link(named: "rdr0").index)
                self.dataPlane = try DataPlane.load(.init(pinRoot: nil, maxRules: 4096, maxTakeovers: 256))
            }
        } catch {
            try? namespace.delete()
            throw error
        }
    }

    /// Runs `body` with the data plane, inside the namespace.
    func run<T>(_ body: (DataPlane) throws -> T) throws -> T {
        try namespace.run { try body(self.dataPlane!) }
    }

    func teardown() {
        _ = try? namespace.run { self.dataPlane = nil }
        try? namespace.delete()
    }

    static var supported: Bool { geteuid() == 0 && xdpSupported() }
}

/// One packet through the kernel: verdict, output and which statistics moved.
struct KernelResult {
    var verdict: UInt32
    var output: [UInt8]
    var reasons: [StatReason]
}

extension DataPlane {
    /// One test run, and which statistics it moved. Hits are counted on the
    /// hit entry's counter only, so `expectedHit` (the model's prediction)
    /// names the counter to watch: it must move by one, and then the hit's
    /// reason is reported. A hit on any other entry leaves that reason out,
    /// so the comparison with the model fails.
    func runCounting(_ frame: [UInt8], expectedHit: ReferenceModel.Hit? = nil) throws -> KernelResult {
        func hitCount() throws -> UInt64 {
            switch expectedHit {
            case .rule(let k)?: return try rule(k.sessionMatch)?.counter.packets ?? 0
            case .takeover(let a)?: return try takeover(IPAddress(bytes16: a))?.counter.packets ?? 0
            case nil: return 0
            }
        }
        let before = try programStats(), hitsBefore = try hitCount()
        let r = try steerProgram.testRun(frame)
        let after = try programStats(), hitsAfter = try hitCount()
        var moved = StatReason.allCases.filter { after[$0]!.packets != before[$0]!.packets }
        if hitsAfter == hitsBefore + 1, let hit = expectedHit {
            if case .rule = hit { moved.insert(.ruleHit, at: 0) } else { moved.insert(.defaultHit, at: 0) }
        }
        return KernelResult(verdict: r.retval, output: r.output, reasons: moved)
    }
}

extension ReferenceModel.RuleKey {
    var sessionMatch: SessionMatch {
        let src = src == zero16 ? nil : IPAddress(bytes16: src)
        let icmp = proto == IPProtocol.icmp.rawValue || proto == IPProtocol.icmpv6.rawValue
        return SessionMatch(proto: IPProtocol(rawValue: proto)!,
                            source: kind == .exact || kind == .anySourcePort ? src : nil,
                            sourcePort: kind == .exact ? sport : nil,
                            destination: IPAddress(bytes16: dst),
                            destinationPort: kind == .anyPeer || icmp ? nil : dport)
    }
}

/// Frames compare equal except for an outer IPv6 flow label (the program's
/// flow hash, which the expectations do not model).
func sameFrame(_ a: [UInt8], _ b: [UInt8], maskFlowLabelAt l3: Int?) -> Bool {
    guard a.count == b.count else { return false }
    guard let l3, a.count >= l3 + 4 else { return a == b }
    var x = a, y = b
    for i in [l3 + 1, l3 + 2, l3 + 3] {
        x[i] &= i == l3 + 1 ? 0xf0 : 0
        y[i] &= i == l3 + 1 ? 0xf0 : 0
    }
    return x == y
}

func hex(_ b: [UInt8]) -> String {
    b.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined()
}
