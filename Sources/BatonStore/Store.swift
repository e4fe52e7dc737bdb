import BatonModel
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Why a store call failed, by what the caller does about it: `notFound`
/// and `conflict` become 404 / 409 in the API, `invalid` a 400, `io` a 500.
public struct StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case notFound, conflict, invalid, io }

    public var kind: Kind
    public var description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// The daemon's state across restarts, in SQLite: enrolled devices, the
/// policies between them, and the agent's transfers with their session
/// rules. The pinned BPF maps are a cache of it (`DataPlane.reconcile`).
///
/// Durability: WAL with synchronous=NORMAL, checkpointed in the background
/// (`Checkpointer`), so a commit does not wait for the disk. A committed transaction
/// survives the process being killed at any point (it is in the WAL file,
/// which the OS has); one in progress is rolled back at the next open.
/// Only a power loss or kernel crash may lose the last few commits, never
/// the file's consistency: for the maps that is harmless, since reconcile
/// makes them match whatever the store says.
///
/// Thread-safe: every call is one SQLite transaction; writes are
/// serialized, reads run beside them on a snapshot (GRDB's DatabasePool).
/// Calls block: from async code, call them off the cooperative pool if a
/// large one (1M rules) would stall it.
public final class Store: Sendable {
    /// The database file, for logs and operators.
    public let path: String
    private let pool: DatabasePool
    private let checkpointer: Checkpointer

    private init(path: String, pool: DatabasePool, checkpointer: Checkpointer) {
        self.path = path
        self.pool = pool
        self.checkpointer = checkpointer
    }

    /// How often the WAL is copied back into the database file, beside the writer.
    static let checkpointInterval: Duration = .milliseconds(50)
    /// The writer's own checkpoint, for when the background one falls behind: 64 MB of WAL.
    static let autocheckpointPages = 16384

    /// Opens (creating if needed) `<directory>/batond.sqlite`. The directory
    /// is created mode 0700 if missing and the file is made 0600 before
    /// SQLite touches it (its -wal and -shm files take the same mode): it
    /// holds session keys.
    public static func open(directory: String) throws -> Store {
        let path = directory + "/batond.sqlite"
        do {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } else if !isDir.boolValue {
                throw StoreError(.io, "\(directory) is not a directory")
            }
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "cannot create \(directory): \(error.localizedDescription)")
        }
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        let chmodFailed = fchmod(fd, 0o600) != 0
        Glibc.close(fd)
        if chmodFailed { throw StoreError(.io, "cannot chmod \(path): \(String(cString: strerror(errno)))") }

        var config = Configuration()
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(10)
        config.label = "batond.store"
        config.prepareDatabase { db in
            // WAL (DatabasePool's own choice) + NORMAL: commits don't wait
            // for fsync, and still survive the process dying (type comment).
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // Checkpoints (and their fsyncs) run in the background (Checkpointer).
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(autocheckpointPages)")
        }
        return try wrap("open \(path)") {
            let pool = try DatabasePool(path: path, configuration: config)
            try migrator.migrate(pool)
            return Store(path: path, pool: pool, checkpointer: try Checkpointer(path: path, every: checkpointInterval))
        }
    }

    /// Closes the database (also done when the store is released); any
    /// later call fails with `.io`.
    public func close() throws {
        try Self.wrap("close") {
            try checkpointer.close()
            try pool.close()
        }
    }

    /// The schema, one migration per change, so an older file is upgraded
    /// in place at open.
    private static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE device (
                    name TEXT PRIMARY KEY NOT NULL,
                    publicKey TEXT NOT NULL UNIQUE,
                    addresses TEXT NOT NULL,            -- JSON array of prefixes
                    rateLimit REAL,
                    enrolled REAL NOT NULL
                );
                CREATE TABLE policy (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    "from" TEXT NOT NULL,
                    "to" TEXT NOT NULL,
                    UNIQUE ("from", "to")
                );
                -- seq: the small key the rule sets refer to (cheaper than the id text).
                CREATE TABLE transfer (
                    seq INTEGER PRIMARY KEY,
                    id TEXT NOT NULL UNIQUE,
                    device TEXT NOT NULL,
                    state TEXT NOT NULL,
                    original TEXT NOT NULL,
                    register BLOB NOT NULL,             -- Register.storedBytes (JSON in older rows)
                    sessionKey BLOB NOT NULL,
                    highestTN INTEGER,
                    takeover TEXT NOT NULL,             -- RuleCodec bytes of Takeover (JSON text in older rows)
                    reason TEXT,
                    started REAL NOT NULL,
                    ended REAL,
                    milestones TEXT NOT NULL            -- JSON object
                );
                CREATE INDEX transfer_state ON transfer(state);
                CREATE INDEX transfer_started ON transfer(started);
                -- One row per transfer: all its rules, RuleCodec-encoded.
                CREATE TABLE ruleset (
                    transfer INTEGER PRIMARY KEY NOT NULL REFERENCES transfer(seq) ON DELETE CASCADE,
                    count INTEGER NOT NULL,
                    data BLOB NOT NULL
                );
                """)
        }
        // The node role's transfers (TN and target), so that a node restarted mid-transfer
        // still answers the wake-up and the release.
        m.registerMigration("v2-node") { db in
            try db.execute(sql: """
                CREATE TABLE node_transfer (
                    id TEXT PRIMARY KEY NOT NULL,
                    role TEXT NOT NULL,                 -- tn | target
                    state TEXT NOT NULL,
                    sessionKey BLOB NOT NULL,
                    highest TEXT NOT NULL,              -- JSON: sender role -> highest counter accepted
                    body BLOB NOT NULL,                 -- the node's own record of the transfer
                    started REAL NOT NULL,
                    ended REAL
                );
                CREATE INDEX node_transfer_started ON node_transfer(started);
                """)
        }
        // Small values of the daemon itself (the send counters' reservation).
        m.registerMigration("v3-meta") { db in
            try db.execute(sql: """
                CREATE TABLE meta (
                    name TEXT PRIMARY KEY NOT NULL,
                    value INTEGER NOT NULL              -- stored as the signed bit pattern of a UInt64
                );
                """)
        }
        // Anchored sessions (the agent's relays): the session as JSON, its rules as RuleCodec bytes.
        m.registerMigration("v4-anchor") { db in
            try db.execute(sql: """
                CREATE TABLE anchor (
                    id TEXT PRIMARY KEY NOT NULL,
                    state TEXT NOT NULL,                -- active | ended
                    body TEXT NOT NULL,                 -- JSON of AnchoredSession
                    rules BLOB NOT NULL,                -- RuleCodec bytes: the rules the session has in the maps
                    created REAL NOT NULL,
                    ended REAL
                );
                CREATE INDEX anchor_state ON anchor(state);
                """)
        }
        // SIP users (docs/sip.md): digest HA1 per algorithm, never the password.
        m.registerMigration("v5-sip-user") { db in
            try db.execute(sql: """
                CREATE TABLE sip_user (
                    username TEXT PRIMARY KEY NOT NULL,
                    realm TEXT NOT NULL,
                    ha1 TEXT NOT NULL,                  -- JSON: {"MD5": hex, "SHA-256": hex}
                    created REAL NOT NULL
                );
                """)
        }
        return m
    }

    // MARK: counters

    /// The send counters reserved by the last run (0 if none): the next run counts above it.
    public func counterReservation() throws -> UInt64 {
        try read("counter reservation") { db in
            try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'counterReservation'").map { UInt64(bitPattern: $0) } ?? 0
        }
    }

    /// Stores this run's reservation durably, before anything is sealed under it: with
    /// synchronous=FULL for this one commit (the store's NORMAL may lose the last commits to a
    /// power loss, and a reboot is when a clock steps back).
    public func setCounterReservation(_ value: UInt64) throws {
        try write("counter reservation", durable: true) { db in
            try db.execute(sql: "INSERT INTO meta (name, value) VALUES ('counterReservation', ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                           arguments: [Int64(bitPattern: value)])
        }
    }

    // MARK: devices

    /// An enrolled device: who may register, under which key, for which addresses.
    public struct DeviceRecord: Codable, Sendable, Equatable {
        /// Unique; letters, digits, '.', '_' and '-', at most 63 ('*' is the policies' wildcard).
        public var name: String
        /// The device's public key, 43 characters of base64url; unique.
        public var publicKey: String
        /// Prefixes it may hand over, e.g. "10.0.0.3/32".
        public var addresses: [String]
        /// Its rate limit, if any (the daemon's unit); nil: none.
        public var rateLimit: Double?
        /// Unix time of enrolment.
        public var enrolled: Double

        public init(name: String, publicKey: String, addresses: [String], rateLimit: Double? = nil, enrolled: Double) {
            self.name = name
            self.publicKey = publicKey
            self.addresses = addresses
            self.rateLimit = rateLimit
            self.enrolled = enrolled
        }

        func validate() throws(StoreError) {
            try Store.validateName(name, what: "device name")
            let key = publicKey.utf8
            guard key.count == 43, key.allSatisfy({ Store.isBase64URL($0) }) else {
                throw StoreError(.invalid, "public key must be 43 characters of base64url")
            }
            for a in addresses { try Store.validatePrefix(a) }
            if let r = rateLimit, !(r.isFinite && r > 0) { throw StoreError(.invalid, "rate limit must be a positive number") }
            guard enrolled.isFinite else { throw StoreError(.invalid, "enrolment time must be finite") }
        }
    }

    /// Every device, sorted by name.
    public func devices() throws -> [DeviceRecord] {
        try read("list devices") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM device ORDER BY name").map(Self.device)
        }
    }

    /// The device called `name`, if enrolled.
    public func device(named name: String) throws -> DeviceRecord? {
        try read("look up device") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM device WHERE name = ?", arguments: [name]).map(Self.device)
        }
    }

    /// The device with `publicKey`: who sealed a message.
    public func device(publicKey: String) throws -> DeviceRecord? {
        try read("look up device") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM device WHERE publicKey = ?", arguments: [publicKey]).map(Self.device)
        }
    }

    /// Enrols a device; `.conflict` if its name or key is taken.
    public func addDevice(_ d: DeviceRecord) throws {
        try d.validate()
        let addresses = try Self.json(d.addresses)
        try write("add device \(d.name)") { db in
            try db.execute(sql: "INSERT INTO device (name, publicKey, addresses, rateLimit, enrolled) VALUES (?, ?, ?, ?, ?)",
                           arguments: [d.name, d.publicKey, addresses, d.rateLimit, d.enrolled])
        }
    }

    /// Forgets a device (its policies stay); false if there was none.
    public func deleteDevice(named name: String) throws -> Bool {
        try write("delete device \(name)") { db in
            try db.execute(sql: "DELETE FROM device WHERE name = ?", arguments: [name])
            return db.changesCount > 0
        }
    }

    private static func device(_ row: Row) throws -> DeviceRecord {
        DeviceRecord(name: row["name"], publicKey: row["publicKey"],
                     addresses: try unjson([String].self, row["addresses"]),
                     rateLimit: row["rateLimit"], enrolled: row["enrolled"])
    }

    // MARK: policies

    /// "Devices `from` may transfer to `to`": names, or "*" for any.
    public struct PolicyRecord: Codable, Sendable, Equatable {
        public var id: Int64
        public var from: String
        public var to: String

        public init(id: Int64, from: String, to: String) {
            self.id = id
            self.from = from
            self.to = to
        }
    }

    /// Every policy, oldest first.
    public func policies() throws -> [PolicyRecord] {
        try read("list policies") { db in
            try Row.fetchAll(db, sql: #"SELECT id, "from", "to" FROM policy ORDER BY id"#).map {
                PolicyRecord(id: $0["id"], from: $0["from"], to: $0["to"])
            }
        }
    }

    /// Adds a policy (the devices need not be enrolled yet); `.conflict` if
    /// the pair exists.
    public func addPolicy(from: String, to: String) throws -> PolicyRecord {
        for n in [from, to] where n != "*" { try Self.validateName(n, what: "policy side") }
        return try write("add policy \(from) -> \(to)") { db in
            try db.execute(sql: #"INSERT INTO policy ("from", "to") VALUES (?, ?)"#, arguments: [from, to])
            return PolicyRecord(id: db.lastInsertedRowID, from: from, to: to)
        }
    }

    /// Removes a policy; false if there was none.
    public func deletePolicy(id: Int64) throws -> Bool {
        try write("delete policy \(id)") { db in
            try db.execute(sql: "DELETE FROM policy WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    /// Whether a policy lets `from` transfer to `to`: the exact pair, or "*"
    /// on either side.
    public func allows(from: String, to: String) throws -> Bool {
        try read("check policy") { db in
            try Bool.fetchOne(db, sql: #"""
                SELECT EXISTS (SELECT 1 FROM policy
                               WHERE ("from" = ? OR "from" = '*') AND ("to" = ? OR "to" = '*'))
                """#, arguments: [from, to]) ?? false
        }
    }

    // MARK: transfers

    /// A transfer as the agent keeps it: enough to reconcile the maps and to
    /// go on (wake the TN up, refuse replays) after a restart.
    public struct TransferRecord: Codable, Sendable, Equatable {
        /// The transfer ID: 16 lowercase hex digits.
        public var id: String
        /// The TN's device name.
        public var device: String
        /// One of `TransferRecord.states`.
        public var state: String
        /// The taken-over address, as text.
        public var original: String
        /// The register message that was admitted, as the agent encodes it (opaque here).
        public var register: Data
        /// The transfer's session key (32 bytes): to open and seal its later messages.
        public var sessionKey: Data
        /// Replay high-water mark of the TN's message counters.
        public var highestTN: Int64?
        /// The takeover entry the maps hold for it.
        public var takeover: Takeover
        /// Why it ended or failed.
        public var reason: String?
        /// Unix times.
        public var started: Double
        public var ended: Double?
        /// Milestone name → milliseconds since `started`.
        public var milestones: [String: Double]

        public init(id: String, device: String, state: String, original: String, register: Data, sessionKey: Data,
                    highestTN: Int64? = nil, takeover: Takeover, reason: String? = nil, started: Double,
                    ended: Double? = nil, milestones: [String: Double] = [:]) {
            self.id = id
            self.device = device
            self.state = state
            self.original = original
            self.register = register
            self.sessionKey = sessionKey
            self.highestTN = highestTN
            self.takeover = takeover
            self.reason = reason
            self.started = started
            self.ended = ended
            self.milestones = milestones
        }

        /// Every state a transfer may be in.
        public static let states: Set<String> = ["stored", "active", "waking", "lingering", "ended", "failed"]
        /// States whose transfers are over: `prune` deletes among these.
        public static let finishedStates: Set<String> = ["ended", "failed"]

        func validate() throws(StoreError) {
            let u = id.utf8
            guard u.count == 16, u.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw StoreError(.invalid, "transfer id must be 16 lowercase hex digits, not \(id)")
            }
            guard Self.states.contains(state) else { throw StoreError(.invalid, "unknown transfer state \(state)") }
            guard sessionKey.count == 32 else { throw StoreError(.invalid, "session key must be 32 bytes") }
            guard IPAddress(original) != nil else { throw StoreError(.invalid, "original \(original) is not an address") }
            guard started.isFinite, ended?.isFinite ?? true else { throw StoreError(.invalid, "times must be finite") }
        }
    }

    /// Stores a transfer and its rules in one transaction.
    public func insert(_ t: TransferRecord, rules: [SessionRule]) throws {
        try insert([(t, rules)])
    }

    /// Stores many transfers and their rules in one transaction (one commit
    /// for a burst of registrations). `.conflict` if an id exists (then
    /// nothing is stored); `.invalid` for a bad record or rule, or a match
    /// given twice within a transfer. Matches are not checked across
    /// transfers: one transfer per original address keeps them apart.
    public func insert(_ batch: [(TransferRecord, [SessionRule])]) throws {
        try insert(batch.map { try PreparedTransfer($0.0, rules: $0.1) })
    }

    /// A transfer checked and encoded for `insert`, ahead of the transaction: the encoding
    /// is most of an insert's cost, and needs no lock of the caller's.
    public struct PreparedTransfer: Sendable {
        public let id: String
        fileprivate let arguments: StatementArguments
        fileprivate let ruleCount: Int
        fileprivate let rules: Data

        public init(_ t: TransferRecord, rules: [SessionRule]) throws {
            try t.validate()
            var seen = Set<SessionMatch>(minimumCapacity: rules.count)
            for r in rules {
                do { try r.validate() } catch { throw StoreError(.invalid, "transfer \(t.id): \(error)") }
                guard seen.insert(r.match).inserted else { throw StoreError(.invalid, "transfer \(t.id): \(r.match) is given twice") }
            }
            id = t.id
            arguments = try Store.arguments(t)
            ruleCount = rules.count
            self.rules = Data(RuleCodec.encode(rules))
        }
    }

    /// Stores prepared transfers in one transaction; `.conflict` (and nothing stored) if an
    /// id exists.
    public func insert(_ batch: [PreparedTransfer]) throws {
        try write("store \(batch.count == 1 ? "transfer \(batch[0].id)" : "\(batch.count) transfers")") { db in
            let transfer = try db.cachedStatement(sql: """
                INSERT INTO transfer (id, device, state, original, register, sessionKey, highestTN, takeover, reason,
                                      started, ended, milestones)
                VALUES (:id, :device, :state, :original, :register, :sessionKey, :highestTN, :takeover, :reason,
                        :started, :ended, :milestones)
                """)
            let ruleset = try db.cachedStatement(sql: "INSERT INTO ruleset (transfer, count, data) VALUES (?, ?, ?)")
            for t in batch {
                try transfer.execute(arguments: t.arguments)
                if t.ruleCount > 0 { try ruleset.execute(arguments: [db.lastInsertedRowID, t.ruleCount, t.rules]) }
            }
        }
    }

    /// A transfer's new state and milestones, for `update(states:)`.
    public struct StateChange: Sendable {
        public var id: String
        public var state: String
        public var milestones: [String: Double]

        public init(id: String, state: String, milestones: [String: Double]) {
            self.id = id
            self.state = state
            self.milestones = milestones
        }
    }

    /// Rewrites only the state and milestones of many transfers, in one transaction: the
    /// step of a registration from stored to active, without encoding the rest again.
    /// `.notFound` (and nothing written) if one of them is not stored.
    ///
    /// `durable`: this commit (and every one before it) survives a power loss before it
    /// returns: synchronous=FULL for it. The agent's commit before `registered` goes out is
    /// one: a TN told "registered" must find the transfer after any restart.
    public func update(states batch: [StateChange], durable: Bool = false) throws {
        let rows: [StatementArguments] = try batch.map { c in
            guard TransferRecord.states.contains(c.state) else { throw StoreError(.invalid, "unknown transfer state \(c.state)") }
            return [c.state, try Self.json(milestones: c.milestones), c.id]
        }
        try write(batch.count == 1 ? "update transfer \(batch[0].id)" : "update \(batch.count) transfers", durable: durable) { db in
            let statement = try db.cachedStatement(sql: "UPDATE transfer SET state = ?, milestones = ? WHERE id = ?")
            for (c, args) in zip(batch, rows) {
                try statement.execute(arguments: args)
                if db.changesCount == 0 { throw StoreError(.notFound, "no transfer \(c.id)") }
            }
        }
    }

    /// Rewrites a transfer's fields (not its rules, which never change);
    /// `.notFound` if there is none with its id.
    public func update(_ t: TransferRecord) throws {
        try update([t])
    }

    /// Rewrites many transfers in one transaction; `.notFound` (and nothing
    /// written) if one of them is not stored.
    public func update(_ batch: [TransferRecord]) throws {
        let rows = try batch.map { t in
            try t.validate()
            return try Self.arguments(t)
        }
        let label = batch.count == 1 ? "update transfer \(batch[0].id)" : "update \(batch.count) transfers"
        try write(label) { db in
            let statement = try db.cachedStatement(sql: """
                UPDATE transfer SET device = :device, state = :state, original = :original, register = :register,
                    sessionKey = :sessionKey, highestTN = :highestTN, takeover = :takeover, reason = :reason,
                    started = :started, ended = :ended, milestones = :milestones
                WHERE id = :id
                """)
            for (t, args) in zip(batch, rows) {
                try statement.execute(arguments: args)
                // Thrown inside the transaction: it rolls back, nothing is written.
                if db.changesCount == 0 { throw StoreError(.notFound, "no transfer \(t.id)") }
            }
        }
    }

    /// The transfer with `id`, if stored.
    public func transfer(id: String) throws -> TransferRecord? {
        try read("look up transfer") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM transfer WHERE id = ?", arguments: [id]).map(Self.transfer)
        }
    }

    /// Transfers in `states` (all when nil), oldest first.
    public func transfers(states: Set<String>? = nil) throws -> [TransferRecord] {
        let (filter, args) = Self.stateFilter(states, column: "state")
        return try read("list transfers") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM transfer \(filter) ORDER BY started, seq", arguments: args).map(Self.transfer)
        }
    }

    /// The rules stored with transfer `id`, in the order given; `.notFound`
    /// if there is no such transfer.
    public func rules(transfer id: String) throws -> [SessionRule] {
        let found = try read("read rules of \(id)") { db -> [SessionRule]? in
            guard let seq = try Int64.fetchOne(db, sql: "SELECT seq FROM transfer WHERE id = ?", arguments: [id]) else { return nil }
            var out: [SessionRule] = []
            let rows = try Row.fetchCursor(db, sql: "SELECT data FROM ruleset WHERE transfer = ?", arguments: [seq])
            while let row = try rows.next() { try Self.decodeRules(row, into: &out) }
            return out
        }
        guard let found else { throw StoreError(.notFound, "no transfer \(id)") }
        return found
    }

    /// Every rule of the transfers in `states`, for reconcile: transfer by
    /// transfer in the order stored, each transfer's in its own order. One
    /// read of compact blobs; no JSON.
    public func rules(states: Set<String>) throws -> [SessionRule] {
        let (filter, args) = Self.stateFilter(states, column: "t.state")
        return try read("read rules") { db in
            let total = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(r.count), 0) FROM ruleset r JOIN transfer t ON t.seq = r.transfer \(filter)",
                                         arguments: args) ?? 0
            var out: [SessionRule] = []
            out.reserveCapacity(total)
            let rows = try Row.fetchCursor(db, sql: "SELECT r.data FROM ruleset r JOIN transfer t ON t.seq = r.transfer \(filter) ORDER BY r.transfer",
                                           arguments: args)
            while let row = try rows.next() { try Self.decodeRules(row, into: &out) }
            return out
        }
    }

    /// Rules stored in all, of every transfer.
    public func ruleCount() throws -> Int {
        try read("count rules") { db in try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(count), 0) FROM ruleset") ?? 0 }
    }

    /// Deletes ended and failed transfers (with their rules) beyond the
    /// newest `keep` of them (by end time, else start), so the history the
    /// daemon shows stays bounded.
    public func prune(keep: Int) throws {
        guard keep >= 0 else { throw StoreError(.invalid, "keep must not be negative") }
        try write("prune transfers") { db in
            try db.execute(sql: """
                DELETE FROM transfer WHERE state IN ('ended', 'failed') AND seq NOT IN (
                    SELECT seq FROM transfer WHERE state IN ('ended', 'failed')
                    ORDER BY COALESCE(ended, started) DESC, seq DESC LIMIT ?)
                """, arguments: [keep])
        }
    }

    private static func decodeRules(_ row: Row, into out: inout [SessionRule]) throws {
        try row.withUnsafeData(atIndex: 0) { data in
            guard let data else { throw StoreError(.io, "stored rules are missing") }
            try data.withUnsafeBytes { raw in try RuleCodec.decode(raw, into: &out) }
        }
    }

    fileprivate static func arguments(_ t: TransferRecord) throws -> StatementArguments {
        [
            "id": t.id, "device": t.device, "state": t.state, "original": t.original,
            "register": t.register, "sessionKey": t.sessionKey, "highestTN": t.highestTN,
            "takeover": Data(RuleCodec.encode(t.takeover)), "reason": t.reason, "started": t.started, "ended": t.ended,
            "milestones": try json(milestones: t.milestones),
        ]
    }

    private static func transfer(_ row: Row) throws -> TransferRecord {
        TransferRecord(id: row["id"], device: row["device"], state: row["state"], original: row["original"],
                       register: row["register"], sessionKey: row["sessionKey"], highestTN: row["highestTN"],
                       takeover: try takeover(row["takeover"]), reason: row["reason"],
                       started: row["started"], ended: row["ended"],
                       milestones: try unjson([String: Double].self, row["milestones"]))
    }

    /// The takeover column: RuleCodec bytes, or the JSON a store written before that holds.
    private static func takeover(_ value: DatabaseValue) throws -> Takeover {
        switch value.storage {
        case .string(let json): return try unjson(Takeover.self, json)
        case .blob(let data): return try data.withUnsafeBytes { raw in try RuleCodec.decodeTakeover(raw) }
        default: throw StoreError(.io, "a stored takeover is missing")
        }
    }

    /// `WHERE <column> IN (?, ...)`, or nothing for nil.
    private static func stateFilter(_ states: Set<String>?, column: String) -> (String, StatementArguments) {
        guard let states else { return ("", []) }
        let sorted = states.sorted()
        if sorted.isEmpty { return ("WHERE 0", []) }
        return ("WHERE \(column) IN (\(sorted.map { _ in "?" }.joined(separator: ", ")))", StatementArguments(sorted))
    }

    // MARK: plumbing

    func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        try Self.wrap(what) { try pool.read(body) }
    }

    func write<T>(_ what: String, durable: Bool = false, _ body: (Database) throws -> T) throws -> T {
        guard durable else { return try Self.wrap(what) { try pool.write(body) } }
        // synchronous=FULL for this one commit: the WAL is synced before it returns (NORMAL
        // leaves the last commits to the next checkpoint, which a power loss may never see).
        return try Self.wrap(what) {
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                defer { try? db.execute(sql: "PRAGMA synchronous = NORMAL") }
                var result: T?
                try db.inTransaction {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        }
    }

    /// Turns SQLite's errors into StoreError: a constraint is a conflict,
    /// anything else I/O.
    static func wrap<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as StoreError {
            throw e
        } catch let e as DatabaseError where e.resultCode == .SQLITE_CONSTRAINT {
            throw StoreError(.conflict, "\(what): already exists (\(e.message ?? "constraint"))")
        } catch let e as DatabaseError {
            throw StoreError(.io, "\(what): \(e.message ?? "\(e.resultCode)")")
        } catch {
            throw StoreError(.io, "\(what): \(error)")
        }
    }

    static func json(_ value: some Encodable) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        do { return String(decoding: try e.encode(value), as: UTF8.self) } catch {
            throw StoreError(.invalid, "cannot encode \(type(of: value)): \(error)")
        }
    }

    /// Milestones as a JSON object (keys sorted, as `json` writes them), by hand: Foundation's
    /// encoder was 3% of a registration's cost. Read back with `unjson`.
    static func json(milestones: [String: Double]) throws -> String {
        var out = "{", first = true
        for key in milestones.keys.sorted() {
            let value = milestones[key]!
            guard value.isFinite else { throw StoreError(.invalid, "milestone \(key) is \(value), not a finite number") }
            if !first { out += "," }
            first = false
            out += jsonString(key)
            out += ":"
            out += "\(value)"
        }
        return out + "}"
    }

    /// A JSON string literal (RFC 8259 §7): quote, backslash and control characters escaped.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += "\\u00" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    static func unjson<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(text.utf8)) } catch {
            throw StoreError(.io, "stored \(type) is corrupt: \(error)")
        }
    }

    static func validateName(_ name: String, what: String) throws(StoreError) {
        let u = name.utf8
        guard !u.isEmpty, u.count <= 63,
              u.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5a).contains($0) || (0x61...0x7a).contains($0)
                  || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }) else {
            throw StoreError(.invalid, "\(what) must be 1-63 letters, digits, '.', '_' or '-', not \(name)")
        }
    }

    static func isBase64URL(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
    }

    /// "address/length", the length within the family's bits.
    static func validatePrefix(_ p: String) throws(StoreError) {
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = IPAddress(String(parts[0])), let n = Int(parts[1]),
              n >= 0, n <= (a.family == .v4 ? 32 : 128) else {
            throw StoreError(.invalid, "\(p) is not a prefix like 10.0.0.3/32 or fd00::3/128")
        }
    }
}
