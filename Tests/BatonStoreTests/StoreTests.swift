import BatonModel
@testable import BatonStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A store in a fresh directory, removed afterwards.
final class Scratch {
    let directory: String
    init() {
        directory = NSTemporaryDirectory() + "baton-store-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }
    func open() throws -> Store { try Store.open(directory: directory) }
    deinit { try? FileManager.default.removeItem(atPath: directory) }
}

enum Sample {
    static let key = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde" // 43
    static let saMAC = MACAddress("02:00:00:00:00:0a")!

    static func device(_ name: String, key: String = Sample.key) -> Store.DeviceRecord {
        Store.DeviceRecord(name: name, publicKey: key, addresses: ["10.0.0.3/32", "fd00::3/128"], rateLimit: 1500.5,
                           enrolled: 1_700_000_000.25)
    }

    static func id(_ n: Int) -> String {
        let s = String(n, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    static func original(_ n: Int) -> IPAddress { .v4(0x0a00_0000 | UInt32(n & 0xffffff)) }

    static func transfer(_ n: Int, state: String = "active", started: Double? = nil) -> Store.TransferRecord {
        let original = original(n)
        return Store.TransferRecord(
            id: id(n), device: "tn", state: state, original: original.description,
            register: Data(#"{"sessions":["udp/192.0.2.7:40000/\#(original):5004"]}"#.utf8),
            sessionKey: Data((0..<32).map { UInt8(truncatingIfNeeded: $0 &+ n) }), highestTN: Int64(n),
            takeover: Takeover(address: original, defaultForward: .encap(to: IPAddress("10.0.0.200")!, from: IPAddress("10.0.0.1")!,
                                                                        nextHop: MACAddress("02:00:00:00:00:02")!, sourceMAC: saMAC),
                               agentMAC: saMAC),
            reason: nil, started: started ?? Double(n), ended: nil, milestones: ["steering": Double(n) + 0.001])
    }

    /// `count` sessions of a transfer to `original`, one forwarding for all.
    static func rules(_ original: IPAddress, count: Int) -> [SessionRule] {
        let cn = IPAddress("192.0.2.7")!
        let fwd = Forwarding.l2(to: MACAddress("02:00:00:00:00:03")!, from: saMAC)
        return (0..<count).map { i in
            SessionRule(match: SessionMatch(proto: .udp, source: cn, sourcePort: UInt16(1024 + i), destination: original,
                                            destinationPort: 5004),
                        forward: fwd)
        }
    }

    /// Every shape the codec must carry: both families, every wildcard
    /// kind, ICMP, every action, tunnels of both families, a large ifindex.
    static var oddRules: [SessionRule] {
        let d4 = IPAddress("10.0.0.2")!, d6 = IPAddress("2001:db8::2")!
        let s4 = IPAddress("192.0.2.7")!, s6 = IPAddress("2001:db8:ffff::7")!
        let mac = MACAddress("02:00:00:00:00:03")!
        let encap4 = Forwarding.encap(to: IPAddress("198.51.100.3")!, from: IPAddress("10.0.0.1")!, nextHop: mac,
                                      sourceMAC: saMAC, ifindex: 0xfedc_ba98)
        let encap6 = Forwarding.encap(to: IPAddress("2001:db8:1::3")!, from: IPAddress("2001:db8::1")!, nextHop: mac,
                                      sourceMAC: saMAC, ifindex: 7)
        return [
            SessionRule(match: SessionMatch(proto: .tcp, source: s4, sourcePort: 65535, destination: d4, destinationPort: 0), forward: .pass),
            SessionRule(match: SessionMatch(proto: .udp, source: s4, sourcePort: nil, destination: d4, destinationPort: 53), forward: .drop),
            SessionRule(match: SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: d4, destinationPort: 5004),
                        forward: .l2(to: mac, from: saMAC, ifindex: 3)),
            SessionRule(match: SessionMatch(proto: .tcp, source: nil, sourcePort: nil, destination: d4, destinationPort: nil), forward: encap4),
            SessionRule(match: SessionMatch(proto: .icmp, source: s4, sourcePort: 77, destination: d4, destinationPort: nil), forward: encap4),
            SessionRule(match: SessionMatch(proto: .tcp, source: s6, sourcePort: 1, destination: d6, destinationPort: 443), forward: encap6),
            SessionRule(match: SessionMatch(proto: .icmpv6, source: nil, sourcePort: nil, destination: d6, destinationPort: nil), forward: .drop),
            SessionRule(match: SessionMatch(proto: .udp, source: s6, sourcePort: nil, destination: d6, destinationPort: 5060),
                        forward: .l2(to: mac, from: saMAC)),
            // A lockout, its end in all eight bytes.
            SessionRule(match: SessionMatch(proto: .udp, source: s4, sourcePort: 6000, destination: d4, destinationPort: 30000),
                        forward: .drop(until: 0x0123_4567_89ab_cdef)),
            // Anchored sessions: both families' relays, ports at the edges.
            SessionRule(match: SessionMatch(proto: .udp, source: s4, sourcePort: 40000, destination: d4, destinationPort: 5004),
                        forward: .relay(.init(source: d4, sourcePort: 65535, destination: IPAddress("10.0.0.9")!, destinationPort: 1),
                                        nextHop: mac, sourceMAC: saMAC, ifindex: 4)),
            SessionRule(match: SessionMatch(proto: .tcp, source: s6, sourcePort: 2, destination: d6, destinationPort: 30000),
                        forward: .relay(.init(source: d6, sourcePort: 443, destination: s6, destinationPort: 2), nextHop: mac, sourceMAC: saMAC)),
            // RTP continuity toward the remote.
            SessionRule(match: SessionMatch(proto: .udp, source: s4, sourcePort: 6000, destination: d4, destinationPort: 30001),
                        forward: .relay(.init(source: d4, sourcePort: 30000, destination: s4, destinationPort: 40000, rtp: true),
                                        nextHop: mac, sourceMAC: saMAC)),
        ]
    }
}

@Suite(.serialized)
struct StoreTests {
    @Test func devicesRoundTripAndConflict() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        let tn = Sample.device("tn")
        var target = Sample.device("target", key: String(repeating: "A", count: 43))
        target.rateLimit = nil
        target.addresses = []
        try store.addDevice(tn)
        try store.addDevice(target)
        #expect(try store.devices() == [target, tn])
        #expect(try store.device(named: "tn") == tn)
        #expect(try store.device(publicKey: Sample.key) == tn)
        #expect(try store.device(named: "nobody") == nil)
        #expect(try store.device(publicKey: String(repeating: "B", count: 43)) == nil)

        let sameName = #expect(throws: StoreError.self) { try store.addDevice(Sample.device("tn", key: String(repeating: "C", count: 43))) }
        #expect(sameName?.kind == .conflict)
        let sameKey = #expect(throws: StoreError.self) { try store.addDevice(Sample.device("other")) }
        #expect(sameKey?.kind == .conflict)
        for bad in [Sample.device("*"), Sample.device(""), Sample.device("a b"), Sample.device("x", key: "short"),
                    Sample.device("x", key: String(repeating: "+", count: 43))] {
            let e = #expect(throws: StoreError.self) { try store.addDevice(bad) }
            #expect(e?.kind == .invalid, "\(bad)")
        }
        var badPrefix = Sample.device("x", key: String(repeating: "D", count: 43))
        for p in ["10.0.0.3", "10.0.0.3/33", "fd00::/129", "nope/8"] {
            badPrefix.addresses = [p]
            #expect((#expect(throws: StoreError.self) { try store.addDevice(badPrefix) })?.kind == .invalid, "\(p)")
        }

        #expect(try store.deleteDevice(named: "tn"))
        #expect(try !store.deleteDevice(named: "tn"))
        #expect(try store.devices() == [target])
        try store.addDevice(tn) // name and key free again
    }

    @Test func policiesAndWildcards() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        let p1 = try store.addPolicy(from: "tn", to: "target")
        let p2 = try store.addPolicy(from: "*", to: "spare")
        let p3 = try store.addPolicy(from: "laptop", to: "*")
        #expect(try store.policies() == [p1, p2, p3])
        #expect(p1.id < p2.id && p2.id < p3.id)
        #expect((#expect(throws: StoreError.self) { try store.addPolicy(from: "tn", to: "target") })?.kind == .conflict)
        #expect((#expect(throws: StoreError.self) { try store.addPolicy(from: "", to: "x") })?.kind == .invalid)

        #expect(try store.allows(from: "tn", to: "target"))
        #expect(try !store.allows(from: "target", to: "tn"), "a policy has a direction")
        #expect(try store.allows(from: "anyone", to: "spare"))
        #expect(try store.allows(from: "laptop", to: "anything"))
        #expect(try !store.allows(from: "tn", to: "laptop"))

        #expect(try store.deletePolicy(id: p2.id))
        #expect(try !store.deletePolicy(id: p2.id))
        #expect(try !store.allows(from: "anyone", to: "spare"))
        _ = try store.addPolicy(from: "*", to: "*")
        #expect(try store.allows(from: "a", to: "b"))
        let p4 = try store.addPolicy(from: "*", to: "spare")
        #expect(p4.id > p3.id, "ids are not reused")
    }

    @Test func transfersRoundTrip() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        let odd = Sample.oddRules
        let t1 = Sample.transfer(1, started: 10)
        var t2 = Sample.transfer(2, state: "waking", started: 5)
        t2.highestTN = nil
        t2.milestones = [:]
        try store.insert(t1, rules: odd)
        try store.insert([(t2, Sample.rules(Sample.original(2), count: 3)), (Sample.transfer(3, state: "ended", started: 20), [])])

        #expect(try store.transfer(id: t1.id) == t1)
        #expect(try store.transfer(id: t2.id) == t2)
        #expect(try store.transfer(id: Sample.id(99)) == nil)
        #expect(try store.transfers().map(\.id) == [t2.id, t1.id, Sample.id(3)], "ordered by start")
        #expect(try store.transfers(states: ["active", "waking"]).map(\.id) == [t2.id, t1.id])
        #expect(try store.transfers(states: []).isEmpty)
        #expect(try store.rules(transfer: t1.id) == odd, "every shape, in order")
        #expect(try store.rules(transfer: Sample.id(3)).isEmpty)
        #expect((#expect(throws: StoreError.self) { try store.rules(transfer: Sample.id(99)) })?.kind == .notFound)
        #expect(try store.rules(states: ["active"]) == odd)
        #expect(try store.rules(states: ["active", "waking"]).count == odd.count + 3)
        #expect(try store.rules(states: ["ended"]).isEmpty)
        #expect(try store.ruleCount() == odd.count + 3)

        // Update: every field but the rules.
        var u = t1
        u.state = "ended"
        u.reason = "idle"
        u.ended = 30.5
        u.highestTN = 1 << 40
        u.milestones["cleared"] = 30.5
        u.takeover.agentMAC = nil
        u.register = Data([1, 2, 3])
        try store.update(u)
        #expect(try store.transfer(id: u.id) == u)
        #expect(try store.rules(transfer: u.id) == odd)
        #expect(try store.rules(states: ["active"]).isEmpty)
        #expect((#expect(throws: StoreError.self) { try store.update(Sample.transfer(99)) })?.kind == .notFound)
        // A batch is one transaction: one missing transfer writes none of them.
        var v = u
        v.reason = "operator"
        #expect((#expect(throws: StoreError.self) { try store.update([v, Sample.transfer(99)]) })?.kind == .notFound)
        #expect(try store.transfer(id: u.id) == u)
        try store.update([v])
        #expect(try store.transfer(id: u.id) == v)
        try store.update([u])

        // Refused.
        #expect((#expect(throws: StoreError.self) { try store.insert(t2, rules: []) })?.kind == .conflict)
        var bad = Sample.transfer(7)
        for change in [{ (t: inout Store.TransferRecord) in t.id = "ABCDEF0123456789" }, { $0.id = "12" }, { $0.state = "odd" },
                       { $0.sessionKey = Data(count: 31) }, { $0.original = "nowhere" }] {
            bad = Sample.transfer(7)
            change(&bad)
            #expect((#expect(throws: StoreError.self) { try store.insert(bad, rules: []) })?.kind == .invalid)
        }
        let twice = Sample.rules(Sample.original(7), count: 2)
        #expect((#expect(throws: StoreError.self) { try store.insert(Sample.transfer(7), rules: twice + twice[..<1]) })?.kind == .invalid)
        var invalidRule = twice[0]
        invalidRule.match.sourcePort = nil
        invalidRule.match.source = nil
        invalidRule.match.sourcePort = 5
        #expect((#expect(throws: StoreError.self) { try store.insert(Sample.transfer(7), rules: [invalidRule]) })?.kind == .invalid)
        #expect(try store.transfer(id: Sample.id(7)) == nil)
    }

    /// The rule blob: every shape reads back equal; any truncation or an
    /// unknown version is an error, not a crash or a wrong rule.
    @Test func ruleCodec() throws {
        let rules = Sample.oddRules + Sample.rules(IPAddress("10.0.0.9")!, count: 3) + Sample.oddRules.reversed()
        let bytes = RuleCodec.encode(rules)
        func decode(_ b: [UInt8]) throws -> [SessionRule] {
            var out: [SessionRule] = []
            try b.withUnsafeBytes { try RuleCodec.decode($0, into: &out) }
            return out
        }
        #expect(try decode(bytes) == rules)
        #expect(try decode([RuleCodec.version, 0]).isEmpty)
        #expect(RuleCodec.encode(Sample.rules(IPAddress("10.0.0.9")!, count: 101)).count == 2 + 32 + 100 * 10,
                "shared destination and forwarding are written once")
        var cut = 0
        for n in 0..<bytes.count {
            if let prefix = try? decode(Array(bytes.prefix(n))) {
                #expect(prefix == Array(rules.prefix(prefix.count)), "a cut at a rule boundary reads as fewer rules")
            } else {
                cut += 1
            }
        }
        #expect(cut > bytes.count / 2)
        #expect(throws: StoreError.self) { try decode([RuleCodec.version + 1] + bytes.dropFirst()) }
    }

    /// A lockout's end outlives a reboot: read back exactly in the boot that wrote it (the
    /// value the map holds), moved onto the new monotonic clock in a later boot through the
    /// stamp's wall time, long past (1) if it ended before; version 1 as it was.
    @Test func aLockoutsEndCarriesItsBoot() throws {
        let match = SessionMatch(proto: .udp, source: IPAddress("192.0.2.7")!, sourcePort: 6000,
                                 destination: IPAddress("10.0.0.2")!, destinationPort: 30000)
        let end = monotonicNanoseconds() + 5_000_000_000
        let bytes = RuleCodec.encode([SessionRule(match: match, forward: .drop(until: end))])
        #expect(Array(bytes.prefix(2)) == [RuleCodec.version, 1] && Array(bytes[2..<18]) == BootClock.bootID)
        func decode(_ b: [UInt8]) throws -> UInt64? {
            var out: [SessionRule] = []
            try b.withUnsafeBytes { try RuleCodec.decode($0, into: &out) }
            return out.first?.forward.expires
        }
        #expect(try decode(bytes) == end, "the same boot: exact")
        // Written in an earlier boot that began 10 s before this one on the wall clock.
        func stamped(boot: UInt8, wall: UInt64, expires: UInt64) -> [UInt8] {
            var b = Array(bytes.prefix(2)) + [UInt8](repeating: boot, count: 16)
            for shift in stride(from: 56, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: wall >> UInt64(shift))) }
            b += bytes[26..<(bytes.count - 8)]
            for shift in stride(from: 56, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: expires >> UInt64(shift))) }
            return b
        }
        let earlier = BootClock.bootWallNanoseconds - 10_000_000_000
        #expect(try decode(stamped(boot: 0xee, wall: earlier, expires: end + 10_000_000_000)) == end, "moved onto this boot's clock")
        #expect(try decode(stamped(boot: 0xee, wall: earlier, expires: 5_000_000_000)) == 1, "ended before this boot: long past, never 0")
        // This boot, written by an earlier process that read the wall clock before NTP stepped it:
        // the monotonic time stands as it is.
        var sameBoot = stamped(boot: 0, wall: earlier, expires: end)
        sameBoot.replaceSubrange(2..<18, with: BootClock.bootID)
        if BootClock.bootID.contains(where: { $0 != 0 }) { #expect(try decode(sameBoot) == end, "the same boot, another wall offset: exact") }
        let v1 = [UInt8(1)] + bytes[26...]
        #expect(try decode(v1) == end, "version 1 kept monotonic time as it is")
        #expect(RuleCodec.encode([SessionRule(match: match, forward: .drop)]).prefix(2) == [RuleCodec.version, 0], "no lockout, no stamp")
    }

    @Test func prunesOldestFinished() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        var batch: [(Store.TransferRecord, [SessionRule])] = []
        for n in 1...10 {
            var t = Sample.transfer(n, state: n <= 7 ? (n % 2 == 0 ? "ended" : "failed") : "active")
            if t.state == "ended" { t.ended = Double(100 + n) }
            batch.append((t, Sample.rules(t.takeover.address, count: 2)))
        }
        try store.insert(batch)
        try store.prune(keep: 3)
        // Finished: 1..7; the newest three by end (else start) time: 6 (ended 106), 4 (104), 2 (102).
        #expect(Set(try store.transfers().map(\.id)) == Set([2, 4, 6, 8, 9, 10].map(Sample.id)))
        #expect(try store.ruleCount() == 12, "their rules went with them")
        try store.prune(keep: 0)
        #expect(try store.transfers().map(\.id) == [8, 9, 10].map(Sample.id))
        #expect((#expect(throws: StoreError.self) { try store.prune(keep: -1) })?.kind == .invalid)
    }

    @Test func reopenKeepsEverythingWithPrivateModes() throws {
        let scratch = Scratch()
        do {
            let store = try scratch.open()
            try store.addDevice(Sample.device("tn"))
            _ = try store.addPolicy(from: "tn", to: "*")
            try store.insert(Sample.transfer(1), rules: Sample.oddRules)
            let fm = FileManager.default
            #expect(store.path == scratch.directory + "/batond.sqlite")
            #expect((try fm.attributesOfItem(atPath: scratch.directory)[.posixPermissions] as? Int) == 0o700)
            for suffix in ["", "-wal", "-shm"] {
                #expect((try fm.attributesOfItem(atPath: store.path + suffix)[.posixPermissions] as? Int) == 0o600, "\(suffix)")
            }
            try store.close()
            #expect(throws: StoreError.self) { try store.devices() }
        }
        let again = try scratch.open()
        #expect(try again.devices() == [Sample.device("tn")])
        #expect(try again.policies().map(\.to) == ["*"])
        #expect(try again.transfer(id: Sample.id(1)) == Sample.transfer(1))
        #expect(try again.rules(states: ["active"]) == Sample.oddRules)
        // A file made with a looser mode is tightened at open.
        try again.close()
        chmod(again.path, 0o644)
        let third = try scratch.open()
        #expect((try FileManager.default.attributesOfItem(atPath: third.path)[.posixPermissions] as? Int) == 0o600)
    }

    /// A transaction that fails part way (here: the third transfer of a
    /// batch clashes with a stored one) leaves nothing of itself behind.
    @Test func failedBatchLeavesNothing() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        try store.insert(Sample.transfer(3), rules: Sample.rules(Sample.original(3), count: 5))
        let batch = (1...4).map { (Sample.transfer($0), Sample.rules(Sample.original($0), count: 100)) }
        #expect((#expect(throws: StoreError.self) { try store.insert(batch) })?.kind == .conflict)
        #expect(try store.transfers().map(\.id) == [Sample.id(3)])
        #expect(try store.ruleCount() == 5)
        let dupInBatch = [(Sample.transfer(8), [SessionRule]()), (Sample.transfer(8), [])]
        #expect((#expect(throws: StoreError.self) { try store.insert(dupInBatch) })?.kind == .conflict)
        #expect(try store.transfer(id: Sample.id(8)) == nil)
    }

    /// A writer killed (SIGKILL) in the middle of a large transaction: its
    /// work is gone, what it committed before stays, and the store opens
    /// and works. The writer is the sqlite3 shell on the same file, since a
    /// test cannot easily fork a Swift process.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3"), "needs the sqlite3 shell"))
    func killedWriterLosesOnlyItsTransaction() throws {
        let scratch = Scratch()
        let path: String
        do {
            let store = try scratch.open()
            try store.insert(Sample.transfer(1), rules: Sample.rules(Sample.original(1), count: 10))
            path = store.path
            try store.close()
        }
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        shell.arguments = [path]
        let input = Pipe()
        shell.standardInput = input
        shell.standardOutput = FileHandle.nullDevice
        shell.standardError = FileHandle.nullDevice
        try shell.run()
        let script = """
            PRAGMA journal_mode = WAL;
            INSERT INTO policy ("from", "to") VALUES ('committed', 'before');
            BEGIN;
            UPDATE transfer SET state = 'failed';
            INSERT INTO policy ("from", "to")
                WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 100000000)
                SELECT 'p' || x, 'q' FROM n;
            COMMIT;

            """
        input.fileHandleForWriting.write(Data(script.utf8))
        // Wait until the big transaction has spilled into the WAL, then kill it.
        let deadline = Date().addingTimeInterval(20)
        var walSize = 0
        while Date() < deadline {
            walSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            if walSize > 4 << 20 { break }
            usleep(20_000)
        }
        kill(shell.processIdentifier, SIGKILL)
        shell.waitUntilExit()
        #expect(shell.terminationReason == .uncaughtSignal)
        #expect(walSize > 4 << 20, "the writer got into its transaction")

        let store = try scratch.open()
        #expect(try store.policies().map(\.from) == ["committed"])
        #expect(try store.transfer(id: Sample.id(1))?.state == "active")
        #expect(try store.ruleCount() == 10)
        try store.insert(Sample.transfer(2), rules: [])
        #expect(try store.transfers().count == 2)
    }

    /// Many rules through one batch insert and one read, as a registration
    /// burst and a restart's reconcile do. Timings are printed, not asserted.
    @Test func manyRules() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        let transfers = 4000, perTransfer = 250 // 1M; a transfer carries a few hundred sessions at most
        var batch: [(Store.TransferRecord, [SessionRule])] = []
        batch.reserveCapacity(transfers)
        for n in 0..<transfers {
            let t = Sample.transfer(n + 1, state: n % 10 == 9 ? "ended" : "active")
            batch.append((t, Sample.rules(t.takeover.address, count: perTransfer)))
        }
        let total = transfers * perTransfer
        var t0 = Date()
        try store.insert(batch)
        let insert = Date().timeIntervalSince(t0)
        t0 = Date()
        let active = try store.rules(states: ["active", "waking", "lingering"])
        let read = Date().timeIntervalSince(t0)
        t0 = Date()
        let count = try store.ruleCount()
        let counting = Date().timeIntervalSince(t0)
        let size = (try FileManager.default.attributesOfItem(atPath: store.path)[.size] as? Int ?? 0)
            + (try FileManager.default.attributesOfItem(atPath: store.path + "-wal")[.size] as? Int ?? 0)
        print(String(format: "store: insert %d rules in %d transfers %.2f s; read %d active rules %.2f s; count %.3f s; %.1f MB on disk",
                     total, transfers, insert, active.count, read, counting, Double(size) / 1e6))
        #expect(count == total)
        #expect(active.count == total / 10 * 9)
        #expect(active.first == batch[0].1[0])
        #expect(active.last == batch[transfers - 2].1.last)
    }
}

/// Anchored sessions in the store: saved with their rules, listed by state, replaced by id,
/// ended ones pruned.
@Suite struct AnchorStoreTests {
    static func session(_ n: Int, remotePort: UInt16 = 40000) -> AnchoredSession {
        AnchoredSession(id: String(format: "%016x", n), proto: .udp, anchor: Endpoint(address: IPAddress("10.0.0.1")!, port: 30000 + UInt16(2 * n)),
                        relayPort: 30001 + UInt16(2 * n), remote: Endpoint(address: IPAddress("192.0.2.7")!, port: remotePort),
                        device: Endpoint(address: IPAddress("10.0.0.3")!, port: 6000), idleTimeout: 60, created: Double(n))
    }

    @Test func savedListedReplacedPruned() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        var a = Self.session(1)
        a.retired = [.init(device: Endpoint(address: IPAddress("10.0.0.4")!, port: 6000), until: 100, lockedOut: true)]
        let rules = a.rules(hop: { _ in Sample.saMAC }, sourceMAC: Sample.saMAC)
        #expect(rules.count == 3 && rules[2].forward.action == .drop && rules[2].forward.expires != nil)
        try store.save(a, rules: rules)
        try store.save(Self.session(2), rules: [])
        let listed = try store.anchors(state: .active)
        #expect(listed.map(\.0) == [a, Self.session(2)])
        #expect(listed[0].1 == rules, "the rules read back as written, lockout end included")
        var ended = Self.session(2)
        ended.state = .ended
        ended.ended = 5
        try store.save(ended, rules: [])
        #expect(try store.anchors(state: .active).map(\.0.id) == [a.id])
        #expect(try store.anchors(state: .ended).map(\.0) == [ended])
        try store.pruneAnchors(keep: 0)
        #expect(try store.anchors().map(\.0.id) == [a.id])
        var bad = Self.session(3)
        bad.id = "nothex"
        #expect(throws: StoreError.self) { try store.save(bad, rules: []) }
    }
}
