import BatonModel
@testable import BatonStore
import Foundation
import GRDB
import Testing

/// The transfer columns the store encodes itself: the takeover (RuleCodec bytes; JSON in stores
/// written before) and the milestones (JSON written by hand).
@Suite(.serialized)
struct EncodingTests {
    static let takeovers: [Takeover] = {
        let mac = MACAddress("02:00:00:00:00:03")!
        return [
            Takeover(address: IPAddress("10.0.0.3")!, defaultForward: .l2(to: mac, from: Sample.saMAC), agentMAC: Sample.saMAC,
                     temporaryAddress: IPAddress("10.0.0.103")!),
            Takeover(address: IPAddress("10.0.0.3")!, defaultForward: .pass),
            Takeover(address: IPAddress("2001:db8::3")!,
                     defaultForward: .encap(to: IPAddress("2001:db8::103")!, from: IPAddress("2001:db8::1")!, nextHop: mac,
                                            sourceMAC: Sample.saMAC, ifindex: 0xfedc_ba98),
                     agentMAC: Sample.saMAC, router: true),
            Takeover(address: IPAddress("2001:db8::3")!, defaultForward: .drop, router: true,
                     temporaryAddress: IPAddress("2001:db8::103")!),
            // An encap forward with the tunnel's MTU (packets too big for it are answered).
            Takeover(address: IPAddress("10.0.0.3")!,
                     defaultForward: .encap(to: IPAddress("10.0.0.103")!, from: IPAddress("10.0.0.1")!, nextHop: mac,
                                            sourceMAC: Sample.saMAC, mtu: 1500),
                     agentMAC: Sample.saMAC, temporaryAddress: IPAddress("10.0.0.103")!),
        ]
    }()

    private func decode(_ b: [UInt8]) throws -> Takeover { try b.withUnsafeBytes { try RuleCodec.decodeTakeover($0) } }

    @Test func takeoverCodec() throws {
        for t in Self.takeovers {
            let bytes = RuleCodec.encode(t)
            #expect(try decode(bytes) == t)
            for n in 0..<bytes.count { #expect(throws: StoreError.self) { try decode(Array(bytes.prefix(n))) } }
            #expect(throws: StoreError.self) { try decode(bytes + [0]) }
            #expect(throws: StoreError.self) { try decode([RuleCodec.version + 1] + bytes.dropFirst()) }
        }
    }

    /// A transfer row from before the binary takeover (JSON text) reads back the same, and is
    /// rewritten in the new encoding by the next update.
    @Test func legacyTakeoverJSON() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        var t = Sample.transfer(1)
        try store.insert(t, rules: Sample.rules(Sample.original(1), count: 2))
        func column() throws -> DatabaseValue {
            try store.read("test") { db in try DatabaseValue.fetchOne(db, sql: "SELECT takeover FROM transfer")! }
        }
        guard case .blob = try column().storage else { Issue.record("takeover not stored as bytes"); return }
        try store.write("test") { db in
            try db.execute(sql: "UPDATE transfer SET takeover = ?", arguments: [try Store.json(t.takeover)])
        }
        guard case .string = try column().storage else { Issue.record("the legacy row is not text"); return }
        #expect(try store.transfer(id: t.id) == t)
        t.state = "ended"
        try store.update(t)
        guard case .blob = try column().storage else { Issue.record("an update keeps the legacy JSON"); return }
        #expect(try store.transfer(id: t.id) == t)
    }

    @Test func milestonesJSON() throws {
        let odd: [String: Double] = [
            "steering": 12, "registered": 0.001, "\"quoted\\": -1.5, "tab\tand\u{1}": 1e300, "ünïcødé ✓": 5e-324,
            "": 0, "neg zero": -0.0,
        ]
        for m in [[:], ["steering": 3.0], odd] {
            let text = try Store.json(milestones: m)
            #expect(try Store.unjson([String: Double].self, text) == m, "\(text)")
        }
        let foundation = try Store.json(["b": 2.5, "a": 1.25])
        #expect(try Store.json(milestones: ["b": 2.5, "a": 1.25]) == foundation, "the same text as Foundation's encoder, keys sorted")
        #expect(throws: StoreError.self) { try Store.json(milestones: ["x": .nan]) }
        #expect(throws: StoreError.self) { try Store.json(milestones: ["x": .infinity]) }
    }

    /// The WAL goes back into the database file without a writer's commit doing it (and
    /// waiting for its fsyncs): the writer's own checkpoint is far beyond what this writes.
    @Test func checkpointsInTheBackground() throws {
        let scratch = Scratch()
        let store = try scratch.open()
        func size(_ path: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0 }
        let before = size(store.path)
        for batch in 0..<10 {
            try store.insert((0..<200).map { i in
                let n = batch * 200 + i
                return (Sample.transfer(n), Sample.rules(Sample.original(n), count: 20))
            })
        }
        #expect(size(store.path + "-wal") < Store.autocheckpointPages * 4096 / 4, "well below the writer's checkpoint")
        let deadline = Date().addingTimeInterval(10)
        while size(store.path) < before + (1 << 20), Date() < deadline { usleep(20_000) }
        #expect(size(store.path) >= before + (1 << 20), "the database file grew from \(before) to \(size(store.path)) bytes")
        try store.close()
    }
}
