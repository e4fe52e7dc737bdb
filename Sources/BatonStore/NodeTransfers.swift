import Foundation
import GRDB

// The node role's transfers: what a TN or a target must know again after a restart to finish
// them (the session key and replay marks to open the wake-up or the release, and the node's
// own record: addresses moved, peers). The node's record is opaque here.

extension Store {
    public struct NodeTransferRecord: Codable, Sendable, Equatable {
        /// 16 lowercase hex digits.
        public var id: String
        /// "tn" or "target".
        public var role: String
        public var state: String
        public var sessionKey: Data
        /// The highest message counter accepted from each sender role ("agent", "tn", "target").
        public var highest: [String: Int64]
        public var body: Data
        public var started: Double
        public var ended: Double?

        public init(id: String, role: String, state: String, sessionKey: Data, highest: [String: Int64], body: Data,
                    started: Double, ended: Double?) {
            self.id = id
            self.role = role
            self.state = state
            self.sessionKey = sessionKey
            self.highest = highest
            self.body = body
            self.started = started
            self.ended = ended
        }

        func validate() throws {
            guard id.count == 16, id.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw StoreError(.invalid, "transfer id must be 16 lowercase hex digits, not \(id)")
            }
            guard role == "tn" || role == "target" else { throw StoreError(.invalid, "unknown node role \(role)") }
            guard !state.isEmpty else { throw StoreError(.invalid, "a node transfer needs a state") }
            guard sessionKey.count == 32 else { throw StoreError(.invalid, "session key must be 32 bytes") }
            guard started.isFinite, ended?.isFinite ?? true else { throw StoreError(.invalid, "times must be finite") }
        }
    }

    /// Writes a node transfer, replacing the one with its id.
    public func save(_ t: NodeTransferRecord) throws {
        try t.validate()
        let highest = try Self.json(t.highest)
        try write("save node transfer \(t.id)") { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO node_transfer (id, role, state, sessionKey, highest, body, started, ended)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [t.id, t.role, t.state, t.sessionKey, highest, t.body, t.started, t.ended])
        }
    }

    /// Every node transfer, oldest first.
    public func nodeTransfers() throws -> [NodeTransferRecord] {
        try read("list node transfers") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM node_transfer ORDER BY started, id").map { row in
                NodeTransferRecord(id: row["id"], role: row["role"], state: row["state"], sessionKey: row["sessionKey"],
                                   highest: try Self.unjson([String: Int64].self, row["highest"]), body: row["body"],
                                   started: row["started"], ended: row["ended"])
            }
        }
    }

    /// Deletes all but the newest `keep` ended node transfers (those with an end time).
    public func pruneNodeTransfers(keep: Int) throws {
        try write("prune node transfers") { db in
            try db.execute(sql: """
                DELETE FROM node_transfer WHERE ended IS NOT NULL AND id NOT IN
                    (SELECT id FROM node_transfer WHERE ended IS NOT NULL ORDER BY ended DESC LIMIT ?)
                """, arguments: [max(keep, 0)])
        }
    }
}
