import BatonAPI
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation

// Who may move what where (seed 001: devices registered, transfer authorized). A device is
// enrolled with its public key and the prefixes it owns; a registration is accepted only from
// an enrolled device, for an original address it owns, to an enrolled target a policy allows,
// and at most at the device's rate.

extension Agent {
    /// The TN's device name if `register` from `key` may go ahead; otherwise throws a
    /// forbidden or rate-limited error (counted as a rejection by its reason).
    func authorize(_ register: Register, from key: PublicKey, source: String) throws -> String {
        func refuse(_ reason: String, _ error: ControlError) -> ControlError {
            rejections.record(reason, from: source, error.description)
            return error
        }
        guard let tn = try store.device(publicKey: "\(key)") else {
            throw refuse("unenrolled", .forbidden("the sender's key \(key) is not an enrolled device"))
        }
        guard limiter.take(tn.name, rate: tn.rateLimit) else {
            throw refuse("rate-limited", .rateLimited("device \(tn.name) is over its rate of \(tn.rateLimit ?? configuration.rateLimit) registrations/s"))
        }
        guard Self.owns(tn, register.original) else {
            throw refuse("not-owner", .forbidden("device \(tn.name) does not own \(register.original) (it owns \(tn.addresses.joined(separator: ", ")))"))
        }
        guard let target = try store.devices().first(where: { Self.owns($0, register.targetAddress) }) else {
            throw refuse("unenrolled-target", .forbidden("the target \(register.targetAddress) is not an address of any enrolled device"))
        }
        guard try store.allows(from: tn.name, to: target.name) else {
            throw refuse("not-allowed", .forbidden("no policy allows transfers from \(tn.name) to \(target.name) (batonctl policy add)"))
        }
        return tn.name
    }

    static func owns(_ device: Store.DeviceRecord, _ address: IPAddress) -> Bool {
        device.addresses.contains { IPPrefix($0)?.contains(address) == true }
    }

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
        if let r = d.rateLimit, !(r > 0 && r.isFinite) { throw ControlError.invalid("invalid rate limit \(r): expected a positive number") }
        guard key != configuration.identity.publicKey else { throw ControlError.invalid("that is the agent's own key") }
        let record = Store.DeviceRecord(name: d.name, publicKey: "\(key)",
                                        addresses: d.addresses.map { IPPrefix($0)!.description },
                                        rateLimit: d.rateLimit, enrolled: Date().timeIntervalSince1970)
        do {
            try store.addDevice(record)
        } catch let e as StoreError where e.kind == .conflict {
            throw ControlError.conflict(e.description)
        }
        logger.info("enrolled device \(d.name) (\(key)) owning \(record.addresses.joined(separator: ", "))")
        return Self.device(record)
    }

    public func deleteDevice(_ name: String) throws {
        guard try store.deleteDevice(named: name) else { throw ControlError.notFound("no device \(name)") }
        logger.info("device \(name) removed; its transfers in progress go on until they end")
    }

    public func listPolicies() throws -> [Policy] { try store.policies().map(Self.policy) }

    public func addPolicy(_ p: Policy) throws -> Policy {
        for side in [p.from, p.to] where side != "*" && !Device.validName(side) {
            throw ControlError.invalid("invalid policy side '\(side)': a device name or *")
        }
        do {
            let r = try store.addPolicy(from: p.from, to: p.to)
            logger.info("policy \(r.id): \(p.from) → \(p.to)")
            return Self.policy(r)
        } catch let e as StoreError where e.kind == .conflict {
            throw ControlError.conflict(e.description)
        }
    }

    public func deletePolicy(_ id: Int) throws {
        guard try store.deletePolicy(id: Int64(id)) else { throw ControlError.notFound("no policy \(id)") }
    }

    static func device(_ r: Store.DeviceRecord) -> Device {
        Device(name: r.name, publicKey: r.publicKey, addresses: r.addresses, rateLimit: r.rateLimit, enrolled: r.enrolled)
    }

    static func policy(_ r: Store.PolicyRecord) -> Policy { Policy(id: Int(r.id), from: r.from, to: r.to) }
}

/// Token buckets per device: `rate` per second, up to `burst` at once.
final class RateLimiter: @unchecked Sendable {
    private let lock = NSLock()
    private let rate: Double
    private let burst: Double
    private var buckets: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = max(burst, 1)
    }

    /// One token for `key`, if it has one; `rate` overrides the default for this key.
    func take(_ key: String, rate override: Double? = nil) -> Bool {
        let rate = override ?? self.rate
        let burst = override.map { max($0 * self.burst / max(self.rate, 1e-9), 1) } ?? self.burst
        let now = ContinuousClock.now
        return lock.withLock {
            var b = buckets[key] ?? (burst, now)
            let elapsed = Double((now - b.at).components.seconds) + Double((now - b.at).components.attoseconds) / 1e18
            b.tokens = min(burst, b.tokens + elapsed * rate)
            b.at = now
            let ok = b.tokens >= 1
            if ok { b.tokens -= 1 }
            buckets[key] = b
            return ok
        }
    }
}
