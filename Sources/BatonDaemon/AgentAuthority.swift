import BatonAPI
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation
import Synchronization

// Who may move what where (seed 001: devices registered, transfer authorized). A device is
// enrolled with its public key and the prefixes it owns; a registration is accepted only from
// an enrolled device, for an original address it owns, to an enrolled target a policy allows,
// and at most at the device's rate.

extension Admission {
    /// The TN's device name if `register` from `key` may go ahead; otherwise throws a
    /// forbidden or rate-limited error (counted as a rejection by its reason). Needs no lock
    /// of the table's: it reads the enrolments from memory.
    func authorize(_ register: Register, from key: PublicKey, source: String) throws -> String {
        func refuse(_ reason: String, _ error: ControlError) -> ControlError {
            rejections.record(reason, from: source, error.description)
            return error
        }
        let enrolled = try enrolments.current()
        guard let tn = enrolled.device(publicKey: "\(key)") else {
            throw refuse("unenrolled", .forbidden("the sender's key \(key) is not an enrolled device"))
        }
        guard limiter.take(tn.record.name, rate: tn.record.rateLimit) else {
            throw refuse("rate-limited", .rateLimited("device \(tn.record.name) is over its rate of \(tn.record.rateLimit ?? configuration.rateLimit) registrations/s"))
        }
        // The original, and the addresses the agent will send to for the TN: its temporary
        // address (tunnels, wake-ups) and its control endpoint.
        for (what, address) in [("", register.original), ("the temporary address ", register.temporary),
                                ("the control address ", register.control.address)] where !tn.owns(address) {
            throw refuse("not-owner", .forbidden("device \(tn.record.name) does not own \(what)\(address) (it owns \(tn.record.addresses.joined(separator: ", ")))"))
        }
        guard let target = enrolled.owner(of: register.targetAddress) else {
            throw refuse("unenrolled-target", .forbidden("the target \(register.targetAddress) is not an address of any enrolled device"))
        }
        guard enrolled.allows(from: tn.record.name, to: target.record.name) else {
            throw refuse("not-allowed", .forbidden("no policy allows transfers from \(tn.record.name) to \(target.record.name) (batonctl policy add)"))
        }
        return tn.record.name
    }
}

extension Agent {
    // MARK: - Devices and policies (API)

    public func listDevices() throws -> [Device] { try store.devices().map(Self.device) }

    public func device(_ name: String) throws -> Device {
        guard let d = try store.device(named: name) else { throw ControlError.notFound("no device \(name)") }
        return Self.device(d)
    }

    public func addDevice(_ d: Device) throws -> Device {
        guard Device.validName(d.name) else {
            throw ControlError.invalid("invalid device name '\(d.name)': 1-63 letters, digits, '-', '_' or '.'")
        }
        guard let key = PublicKey(d.publicKey) else {
            throw ControlError.invalid("invalid public key '\(d.publicKey)': expected 43 base64url characters, as `batond key` prints")
        }
        guard !d.addresses.isEmpty else { throw ControlError.invalid("a device needs at least one address prefix") }
        for a in d.addresses where IPPrefix(a) == nil {
            throw ControlError.invalid("invalid address prefix '\(a)': expected ADDRESS/LENGTH, like 10.0.0.3/32")
        }
        if let r = d.rateLimit {
            do { try Limits.check(r, Limits.rateLimit, "rateLimit", unit: "registrations/s") } catch { throw ControlError.invalid(error.description) }
        }
        guard key != configuration.identity.publicKey else { throw ControlError.invalid("that is the agent's own key") }
        // The same prefix twice (10.0.0.3 and 10.0.0.3/32) is stored once.
        var prefixes: [IPPrefix] = []
        for a in d.addresses { let p = IPPrefix(a)!; if !prefixes.contains(p) { prefixes.append(p) } }
        try checkPrefixes(prefixes, of: d.name)
        let record = Store.DeviceRecord(name: d.name, publicKey: "\(key)",
                                        addresses: prefixes.map(\.description),
                                        rateLimit: d.rateLimit, enrolled: Date().timeIntervalSince1970)
        do {
            try store.addDevice(record)
        } catch let e as StoreError where e.kind == .conflict {
            throw ControlError.conflict(e.description)
        }
        enrolments.invalidate()
        logger.info("enrolled device \(d.name) (\(key)) owning \(record.addresses.joined(separator: ", "))")
        return Self.device(record)
    }

    /// An address has one owner. A device's prefixes must name addresses a device can hold
    /// and nobody else holds: refused are a prefix of all addresses or holding the unspecified
    /// address, link-local, multicast or broadcast addresses, the agent's own addresses, its
    /// segment's network and broadcast addresses and its gateways (taking one over would cut
    /// the segment off), and overlaps with another prefix of this device or of another device.
    /// All are conflicts (409): the request is well-formed, the addresses are taken. The
    /// caller has removed exact duplicates.
    func checkPrefixes(_ prefixes: [IPPrefix], of name: String) throws {
        let netlink = try? Netlink()
        let segment = ((try? netlink?.addresses(interface: configuration.interface)) ?? []).map(\.prefix)
        var gateways: [IPAddress] = []
        for family in [IPAddress.Family.v4, .v6] {
            gateways += ((try? netlink?.routes(family: family)) ?? []).compactMap(\.gateway)
        }
        var reserved: [(IPAddress, String)] = []
        for own in segment {
            reserved.append((own.address, "the agent's own address"))
            if own.family == .v4 && own.length < 31 || own.family == .v6 && own.length < 127 {
                reserved.append((own.network.address, "the network address of the agent's segment \(own.network)"))
            }
            if own.family == .v4 && own.length < 31 {
                reserved.append((own.lastAddress, "the broadcast address of the agent's segment \(own.network)"))
            }
        }
        reserved += gateways.map { ($0, "the agent's gateway") }
        let special: [(IPPrefix, String)] = [
            (IPPrefix("169.254.0.0/16")!, "link-local addresses"), (IPPrefix("fe80::/10")!, "link-local addresses"),
            (IPPrefix("224.0.0.0/4")!, "multicast addresses"), (IPPrefix("ff00::/8")!, "multicast addresses"),
            (IPPrefix("255.255.255.255/32")!, "the broadcast address"),
        ]
        for (i, p) in prefixes.enumerated() {
            func refuse(_ why: String) -> ControlError {
                .conflict("prefix \(p) of device \(name) \(why): a device's prefixes name the addresses only it may hand over")
            }
            if p.length == 0 { throw refuse("covers every address") }
            if p.contains(.any(p.family)) { throw refuse("holds the unspecified address \(IPAddress.any(p.family))") }
            for (range, what) in special where p.overlaps(range) { throw refuse("overlaps \(what) (\(range))") }
            for (address, what) in reserved where p.contains(address) { throw refuse("holds \(address), \(what)") }
            for q in prefixes[..<i] where p.overlaps(q) { throw refuse("overlaps its prefix \(q)") }
        }
        for other in try enrolments.current().devices where other.record.name != name {
            for p in prefixes {
                if let q = other.prefixes.first(where: { $0.overlaps(p) }) {
                    throw ControlError.conflict("prefix \(p) of device \(name) overlaps \(q) of device \(other.record.name): an address has one owner")
                }
            }
        }
    }

    public func deleteDevice(_ name: String) throws {
        let key = try store.device(named: name).flatMap { PublicKey($0.publicKey) }
        guard try store.deleteDevice(named: name) else { throw ControlError.notFound("no device \(name)") }
        enrolments.invalidate()
        if let key { staticSecrets.forget(key) }
        logger.info("device \(name) removed; its transfers in progress go on until they end")
    }

    public func listPolicies() throws -> [Policy] { try store.policies().map(Self.policy) }

    public func addPolicy(_ p: Policy) throws -> Policy {
        for side in [p.from, p.to] where side != "*" && !Device.validName(side) {
            throw ControlError.invalid("invalid policy side '\(side)': a device name or *")
        }
        do {
            let r = try store.addPolicy(from: p.from, to: p.to)
            enrolments.invalidate()
            logger.info("policy \(r.id): \(p.from) → \(p.to)")
            return Self.policy(r)
        } catch let e as StoreError where e.kind == .conflict {
            throw ControlError.conflict(e.description)
        }
    }

    public func deletePolicy(_ id: Int) throws {
        guard try store.deletePolicy(id: Int64(id)) else { throw ControlError.notFound("no policy \(id)") }
        enrolments.invalidate()
    }

    static func device(_ r: Store.DeviceRecord) -> Device {
        Device(name: r.name, publicKey: r.publicKey, addresses: r.addresses, rateLimit: r.rateLimit, enrolled: r.enrolled)
    }

    static func policy(_ r: Store.PolicyRecord) -> Policy { Policy(id: Int(r.id), from: r.from, to: r.to) }
}

/// The devices and policies as the store holds them, kept in memory for the registration
/// path (three store reads per registration were a fifth of its cost). The store changes
/// only through this agent's API, which invalidates the copy; the next registration reloads it.
final class Enrolments: Sendable {
    struct Entry: Sendable {
        let record: Store.DeviceRecord
        let prefixes: [IPPrefix]

        func owns(_ address: IPAddress) -> Bool { prefixes.contains { $0.contains(address) } }
    }

    struct Snapshot: Sendable {
        let devices: [Entry]
        let byKey: [String: Entry]
        let policies: Set<Pair>

        struct Pair: Hashable, Sendable {
            let from: String
            let to: String
        }

        func device(publicKey: String) -> Entry? { byKey[publicKey] }
        /// The device with the longest prefix holding `address` (enrolment refuses overlaps; a
        /// store from before that rule may still hold some).
        func owner(of address: IPAddress) -> Entry? {
            var best: (entry: Entry, length: Int)?
            for d in devices {
                for p in d.prefixes where p.contains(address) && p.length > (best?.length ?? -1) { best = (d, p.length) }
            }
            return best?.entry
        }

        /// The exact pair, or "*" on either side (as `Store.allows`).
        func allows(from: String, to: String) -> Bool {
            [Pair(from: from, to: to), Pair(from: "*", to: to), Pair(from: from, to: "*"), Pair(from: "*", to: "*")]
                .contains { policies.contains($0) }
        }
    }

    private let store: Store
    private struct Cache {
        var snapshot: Snapshot?
        /// Bumped by every invalidation: a copy read before one is not kept.
        var generation = 0
    }
    private let cache = Mutex(Cache())

    init(store: Store) { self.store = store }

    func current() throws -> Snapshot {
        let (cached, readAt) = cache.withLock { ($0.snapshot, $0.generation) }
        if let cached { return cached }
        let devices = try store.devices().map { Entry(record: $0, prefixes: $0.addresses.compactMap(IPPrefix.init)) }
        let policies = Set(try store.policies().map { Snapshot.Pair(from: $0.from, to: $0.to) })
        let s = Snapshot(devices: devices, byKey: Dictionary(devices.map { ($0.record.publicKey, $0) }, uniquingKeysWith: { a, _ in a }),
                         policies: policies)
        cache.withLock { if $0.generation == readAt { $0.snapshot = s } }
        return s
    }

    func invalidate() {
        cache.withLock {
            $0.snapshot = nil
            $0.generation += 1
        }
    }
}

/// Token buckets per device: `rate` per second, up to `burst` at once.
final class RateLimiter: Sendable {
    let rate: Double
    private let burst: Double
    private let buckets = Mutex<[String: (tokens: Double, at: ContinuousClock.Instant)]>([:])

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = max(burst, 1)
    }

    /// One token for `key`, if it has one; `rate` overrides the default for this key.
    func take(_ key: String, rate override: Double? = nil) -> Bool {
        let rate = override ?? self.rate
        let burst = override.map { max($0 * self.burst / max(self.rate, 1e-9), 1) } ?? self.burst
        let now = ContinuousClock.now
        return buckets.withLock { buckets in
            var b = buckets[key] ?? (burst, now)
            let elapsed = Double((now - b.at).components.seconds) + Double((now - b.at).components.attoseconds) / 1e18
            b.tokens = min(burst, b.tokens + elapsed * rate)
            b.at = now
            let ok = b.tokens >= 1
            if ok { b.tokens -= 1 }
            buckets[key] = b
            if buckets.count > Self.maximumKeys { prune(&buckets, now: now) }
            return ok
        }
    }

    /// Keys kept at most: the per-source buckets are keyed by whatever address a datagram
    /// claims, so a flood from many sources must not grow them without end.
    static let maximumKeys = 65_536

    /// Drops the buckets that have refilled (the same as absent); if that is not enough, all.
    private func prune(_ buckets: inout [String: (tokens: Double, at: ContinuousClock.Instant)], now: ContinuousClock.Instant) {
        let refill = Duration.seconds(burst / max(rate, 1e-9))
        buckets = buckets.filter { now - $0.value.at < refill }
        if buckets.count > Self.maximumKeys / 2 { buckets = [:] }
    }
}
