import Foundation
import GRDB

/// A SIP user as stored: the digest realm and H(user:realm:password) per algorithm.
public struct StoredSIPUser: Sendable, Equatable, Codable {
    public var username: String
    public var realm: String
    /// Algorithm name ("MD5", "SHA-256") → lowercase hex HA1.
    public var ha1: [String: String]
    public var created: Double

    public init(username: String, realm: String, ha1: [String: String], created: Double) {
        self.username = username
        self.realm = realm
        self.ha1 = ha1
        self.created = created
    }
}

extension Store {
    /// Adds a user; false when one of that name exists.
    public func addSIPUser(_ u: StoredSIPUser) throws -> Bool {
        let ha1 = try Self.json(u.ha1)
        return try write("add sip user \(u.username)") { db in
            try db.execute(sql: "INSERT OR IGNORE INTO sip_user (username, realm, ha1, created) VALUES (?, ?, ?, ?)",
                           arguments: [u.username, u.realm, ha1, u.created])
            return db.changesCount == 1
        }
    }

    /// Deletes a user; false when there was none.
    public func deleteSIPUser(_ username: String) throws -> Bool {
        try write("delete sip user \(username)") { db in
            try db.execute(sql: "DELETE FROM sip_user WHERE username = ?", arguments: [username])
            return db.changesCount == 1
        }
    }

    /// One user (every challenged request asks for one), nil when there is none.
    public func sipUser(_ username: String) throws -> StoredSIPUser? {
        try read("sip user \(username)") { db in
            try Row.fetchOne(db, sql: "SELECT username, realm, ha1, created FROM sip_user WHERE username = ?", arguments: [username]).map(Self.sipUser)
        }
    }

    static func sipUser(_ row: Row) throws -> StoredSIPUser {
        StoredSIPUser(username: row["username"], realm: row["realm"],
                      ha1: try unjson([String: String].self, row["ha1"]), created: row["created"])
    }

    /// Every user, by name.
    public func sipUsers() throws -> [StoredSIPUser] {
        try read("list sip users") { db in
            try Row.fetchAll(db, sql: "SELECT username, realm, ha1, created FROM sip_user ORDER BY username").map(Self.sipUser)
        }
    }
}
