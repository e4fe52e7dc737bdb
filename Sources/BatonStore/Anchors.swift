import BatonModel
import Foundation
import GRDB

// The agent's anchored sessions: each with the rules it has in the maps, written before the
// maps (write-ahead, as transfers), so that a restart reconciles the maps to them.

extension Store {
    /// Writes an anchored session and its rules, replacing the one with its id.
    public func save(_ a: AnchoredSession, rules: [SessionRule]) throws {
        do { try a.validate() } catch { throw StoreError(.invalid, "\(error)") }
        let body = try Self.json(a)
        let blob = Data(RuleCodec.encode(rules))
        try write("save anchor \(a.id)") { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO anchor (id, state, body, rules, created, ended) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [a.id, a.state.rawValue, body, blob, a.created, a.ended])
        }
    }

    /// Anchored sessions (only those in `state` when given), oldest first, each with its rules.
    public func anchors(state: AnchoredSession.State? = nil) throws -> [(AnchoredSession, [SessionRule])] {
        let filter = state.map { "WHERE state = '\($0.rawValue)'" } ?? ""
        return try read("list anchors") { db in
            try Row.fetchAll(db, sql: "SELECT body, rules FROM anchor \(filter) ORDER BY created, id").map { row in
                let a = try Self.unjson(AnchoredSession.self, row["body"])
                var rules: [SessionRule] = []
                let data: Data = row["rules"]
                try data.withUnsafeBytes { try RuleCodec.decode($0, into: &rules) }
                return (a, rules)
            }
        }
    }

    /// Deletes all but the newest `keep` ended anchored sessions.
    public func pruneAnchors(keep: Int) throws {
        try write("prune anchors") { db in
            try db.execute(sql: """
                DELETE FROM anchor WHERE state = 'ended' AND id NOT IN
                    (SELECT id FROM anchor WHERE state = 'ended' ORDER BY ended DESC LIMIT ?)
                """, arguments: [max(keep, 0)])
        }
    }
}
