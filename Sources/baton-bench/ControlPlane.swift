import BatonAPI
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation
import Synchronization

/// Part 5: the control plane. (a) Registrations per second through the agent's API (sealed
/// `register` messages posted to POST /v1/registrations, answered after the store and the maps
/// are written), one per request and 256 per request, beside a trivial API call's rate with the
/// same concurrency. (b) The agent's start with 1M stored rules: reconcile time when the maps
/// are right, and when 1% are missing and 0.5% stale, beside a plain read of the same maps.
struct ControlPlaneResult {
    var registrations: Int
    var concurrency: Int
    /// Requests/s of GET /v1/policies (the baseline).
    var trivialPerSecond: Double?
    /// Registrations/s with one per request, and with `batch` per request.
    var singlePerSecond: Double?
    var batchPerSecond: Double?
    /// One per request while junk sealed-flag datagrams flood the agent's protocol port, and
    /// how many junk datagrams a second were sent meanwhile.
    var floodedPerSecond: Double?
    var floodedRegistrations = 0
    var junkPerSecond: Double?
    var batch: Int
    /// Sealed registrations opened per second on one thread of this process (X25519, HKDF,
    /// ChaCha20-Poly1305 and the JSON body, as the agent does first): the floor of what a
    /// registration costs, whatever the API and the store do.
    var openPerSecond: Double?
    var refused: Int
    var rules: Int
    /// Seconds: reading every rule from the maps (the baseline).
    var mapRead: Double?
    /// Seconds, from the agent's own report.
    var reconcileClean: Double?
    var reconcileDamaged: Double?
    /// What the damaged reconcile found.
    var damaged: ReconcileSummary?
    var failures: [String] = []
}

let goalRegistrationsPerSecond = 10_000.0

extension ControlPlaneResult {
    /// Registrations sealed at a time in part 5 (each slice is posted before the next is sealed).
    static let slice = 10_000
}

func runControlPlane(_ options: Options) throws -> ControlPlaneResult {
    guard let batond = LabDaemons.findBatond() else { throw BrokenSetup("batond not found next to baton-bench (make bench builds it)") }
    let lab = try Lab.transfer(.l2, correspondents: ["cn"])
    let teardown = SignalCleanup.shared.add(lab)
    defer { SignalCleanup.shared.run(teardown) }
    var result = ControlPlaneResult(registrations: options.registrations, concurrency: 16, batch: 256, refused: 0,
                                    rules: options.reconcileRules)

    // (a) Registration throughput.
    var daemonOptions = LabDaemons.Options()
    daemonOptions.agentArguments = ["--rate-limit", "1000000", "--rate-burst", "1000000", "--announce-count", "1",
                                    "--announce-refresh", "0", "--idle-timeout", "3600", "--max-rules", "262144",
                                    "--max-takeovers", "262144"]
    daemonOptions.logLevel = "error"
    let daemons = try LabDaemons.start(lab, batond: batond, options: daemonOptions)
    do {
        defer { daemons.stop() }
        let agent = daemons.agent.api
        let agentKey = try requireKey(try agent.status().publicKey)
        let device = NodeIdentity.generate()
        // RFC 2544's benchmarking range: made-up originals, nothing real is taken over.
        try agent.addDevice(Device(name: "bench", publicKey: "\(device.publicKey)", addresses: ["198.18.0.0/15"]))
        try agent.addPolicy(Policy(from: "bench", to: "target"))
        let target = lab["target"], tn = lab["tn"]
        // Sealed just before each phase: a registration older than the protocol's 30 s clock
        // skew is refused as stale.
        func envelopes(_ count: Int, from offset: Int) -> [String] {
            (0..<count).map { i -> String in
                let n = UInt32(offset + i)
                let original = IPAddress.v4(0xC612_0000 | (n & 0x1_FFFF))
                // The temporary (and control) address must be the device's too: 198.19.240.0/20,
                // clear of the originals for the largest run (2 × 60000 registrations).
                let temporary = IPAddress.v4(0xC613_F000 | (n & 0xFFF))
                let channel = TransferChannel(transfer: .random(), key: .random(), role: .tn)
                let bytes = try! channel.seal(.register(Register(
                    original: original, temporary: temporary, tnMAC: tn.mac, mode: .l2,
                    sessions: [SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: original, destinationPort: 5004)],
                    targetMAC: target.mac, targetAddress: target.ipv4, control: Endpoint(address: temporary, port: 7390))),
                    sealingKeyFor: agentKey, identity: device)
                return Data(bytes).base64EncodedString()
            }
        }
        result.trivialPerSecond = try rate(requests: options.registrations, concurrency: result.concurrency) { _ in
            _ = try await agent.perform { try await $0.listPolicies().ok }
            return 1
        }
        let refused = Tally()
        @Sendable func post(_ slice: ArraySlice<String>) async throws -> Int {
            let batch = RegistrationBatch(envelopes: Array(slice))
            let results = try await agent.perform { try await $0.register(body: .json(batch)).ok.body.json.results }
            refused.add(results.filter { !$0.accepted }.count)
            return results.count
        }
        // The floor: opening alone, sealed to an identity of our own (the agent's key is its own).
        let floorIdentity = NodeIdentity.generate()
        let floorSecrets = StaticSecrets(identity: floorIdentity)
        let floor = (0..<min(2000, options.registrations)).map { i -> Envelope in
            let original = IPAddress.v4(0xC612_0000 | UInt32(i))
            let channel = TransferChannel(transfer: .random(), key: .random(), role: .tn)
            return try! Envelope.parse(try! channel.seal(.register(Register(
                original: original, temporary: tn.ipv4, tnMAC: tn.mac, mode: .l2,
                sessions: [SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: original, destinationPort: 5004)],
                targetMAC: target.mac, targetAddress: target.ipv4, control: Endpoint(address: tn.ipv4, port: 7390))),
                sealingKeyFor: floorIdentity.publicKey, identity: device))
        }
        let open0 = now()
        for e in floor {
            guard (try? TransferChannel.opening(e, identity: floorIdentity, role: .agent, trusted: { _ in true },
                                                staticSecrets: floorSecrets)) != nil else {
                throw BrokenSetup("a sealed registration did not open")
            }
        }
        result.openPerSecond = Double(floor.count) / seconds(since: open0)
        // Sealed and posted a slice at a time, only the posting timed: a slice must be posted
        // within the 30 s skew of its sealing, which 60000 at one per request would not be.
        func phase(from offset: Int, perRequest: Int, count: Int? = nil) throws -> Double {
            let count = count ?? options.registrations
            var done = 0, elapsed = 0.0
            while done < count {
                let slice = envelopes(min(ControlPlaneResult.slice, count - done), from: offset + done)
                let requests = stride(from: 0, to: slice.count, by: perRequest).map { slice[$0..<min($0 + perRequest, slice.count)] }
                let start = now()
                _ = try rate(requests: requests.count, concurrency: result.concurrency) { i in try await post(requests[i]) }
                elapsed += seconds(since: start)
                done += slice.count
            }
            return Double(done) / elapsed
        }
        Log.info("control plane: \(options.registrations) registrations, one per request")
        result.singlePerSecond = try phase(from: 0, perRequest: 1)
        Log.info("control plane: \(options.registrations) registrations, \(result.batch) per request")
        result.batchPerSecond = try phase(from: options.registrations, perRequest: result.batch)
        // Under a junk flood: the originals left in 198.18.0.0/15 after the two phases.
        result.floodedRegistrations = max(100, min(options.registrations, (1 << 17) - 2 * options.registrations))
        let flooding = Mutex(true)
        let junkSent = Tally()
        let junkSocket = try lab["cn"].udpSocket(.v4, port: 0)
        let agentPort = SocketAddress(lab["sa"].ipv4, port: 7390)
        let flooder = Thread {
            // Well-formed headers with the sealed-key flag, random rest: what an off-path
            // sender can make without the agent's key (as FloodTests sends).
            var junk = [UInt8](repeating: 0, count: 300)
            while flooding.withLock({ $0 }) {
                for i in junk.indices { junk[i] = UInt8.random(in: 0...255) }
                junk.replaceSubrange(0..<8, with: Array("BATN".utf8) + [2, 4, 1, 1])
                var n = 0
                for _ in 0..<64 { if (try? junkSocket.send(junk, to: agentPort)) != nil { n += 1 } }
                junkSent.add(n)
            }
        }
        Log.info("control plane: \(result.floodedRegistrations) registrations, one per request, under a junk flood")
        let floodStart = now()
        flooder.start()
        do {
            defer { flooding.withLock { $0 = false } }
            result.floodedPerSecond = try phase(from: 2 * options.registrations, perRequest: 1, count: result.floodedRegistrations)
        }
        result.junkPerSecond = Double(junkSent.total) / seconds(since: floodStart)
        junkSocket.close()
        result.refused = refused.total
        if result.refused > 0 { result.failures.append("\(result.refused) registrations refused") }
    }

    // (b) Reconcile with 1M stored rules, as the agent's start does it.
    let root = "/sys/fs/bpf/baton-bench-\(getpid())"
    let stateDir = "/tmp/baton-bench-\(getpid())"
    defer {
        try? FileManager.default.removeItem(atPath: root)
        try? FileManager.default.removeItem(atPath: stateDir)
    }
    Log.info("control plane: storing \(options.reconcileRules) rules")
    let sa = lab["sa"]
    let seeded = try seed(rules: options.reconcileRules, root: root, stateDir: stateDir, sa: sa, target: lab["target"])
    let read0 = now()
    let inMaps = try seeded.rules(withCounters: false).count
    result.mapRead = seconds(since: read0)
    guard inMaps == options.reconcileRules else { throw BrokenSetup("seeded \(inMaps) rules, wanted \(options.reconcileRules)") }
    var starts = 0
    func startAgent() throws -> (Process, ReconcileSummary) {
        // A socket path of its own per start: the HTTP client pools connections by path, and
        // one to the killed agent must not be picked up.
        starts += 1
        let socket = "\(stateDir)/agent\(starts).sock"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: batond)
        p.arguments = ["agent", "--netns", sa.namespace.name!, "--interface", sa.interface, "--root", root,
                       "--state-dir", stateDir, "--control", socket, "--log-level", "warning",
                       "--idle-timeout", "3600", "--announce-refresh", "0", "--xdp-mode", "generic"]
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let control = Control(path: socket, timeout: 5)
        let deadline = Date().addingTimeInterval(600)
        while Date() < deadline, p.isRunning {
            if let s = try? control.status(), let r = s.reconcile { return (p, r) }
            usleep(50_000)
        }
        p.terminate()
        throw BrokenSetup("the agent did not start with \(options.reconcileRules) stored rules")
    }
    Log.info("control plane: agent start, maps as stored")
    var (agentProcess, clean) = try startAgent()
    result.reconcileClean = clean.seconds
    if clean.rulesKept != options.reconcileRules { result.failures.append("clean reconcile: \(clean)") }
    kill(agentProcess.processIdentifier, SIGKILL)
    agentProcess.waitUntilExit()
    // Damage while it is down: 1% of the rules gone, 0.5% stale ones added.
    let all = try seeded.rules(withCounters: false).map(\.rule)
    let missing = all.count / 100, stale = all.count / 200
    for r in all.prefix(missing) { _ = try seeded.removeRule(r.match) }
    let forward = all[0].forward
    try seeded.addRules((0..<stale).map { i in
        SessionRule(match: SessionMatch(proto: .udp, source: nil, sourcePort: nil, destination: IPAddress.v4(0xCB00_7100 | UInt32(i % 256)),
                                        destinationPort: UInt16(1 + i / 256)), forward: forward)
    })
    Log.info("control plane: agent start, \(missing) rules missing and \(stale) stale")
    (agentProcess, clean) = try startAgent()
    result.reconcileDamaged = clean.seconds
    result.damaged = clean
    if clean.rulesRestored != missing || clean.rulesRemoved != stale {
        result.failures.append("damaged reconcile: restored \(clean.rulesRestored) of \(missing), removed \(clean.rulesRemoved) of \(stale)")
    }
    if try seeded.ruleCount() != options.reconcileRules { result.failures.append("after the reconcile the maps hold \(try seeded.ruleCount()) rules") }
    agentProcess.terminate()
    agentProcess.waitUntilExit()
    return result
}

private func requireKey(_ text: String) throws -> PublicKey {
    guard let k = PublicKey(text) else { throw BrokenSetup("the agent's public key '\(text)' is not readable") }
    return k
}

/// Work items 0..<requests, `concurrency` at a time; items per second.
private func rate(requests: Int, concurrency: Int, _ body: @escaping @Sendable (Int) async throws -> Int) throws -> Double {
    let box = ResultBox()
    let done = DispatchSemaphore(value: 0)
    Task {
        let start = now()
        do {
            let items = try await withThrowingTaskGroup(of: Int.self) { group -> Int in
                var next = 0, total = 0
                for _ in 0..<min(concurrency, requests) {
                    let i = next
                    group.addTask { try await body(i) }
                    next += 1
                }
                while let n = try await group.next() {
                    total += n
                    if next < requests {
                        let i = next
                        group.addTask { try await body(i) }
                        next += 1
                    }
                }
                return total
            }
            box.set(.success(Double(items) / seconds(since: start)))
        } catch {
            box.set(.failure(error))
        }
        done.signal()
    }
    done.wait()
    return try box.get()
}

private final class Tally: Sendable {
    private let n = Mutex(0)
    func add(_ k: Int) { n.withLock { $0 += k } }
    var total: Int { n.withLock { $0 } }
}

private final class ResultBox: @unchecked Sendable {
    private var result: Result<Double, any Error> = .success(0)
    func set(_ r: Result<Double, any Error>) { result = r }
    func get() throws -> Double { try result.get() }
}

/// A store and pinned maps with `rules` rules in transfers of 1000 sessions each, as an agent
/// would have left them.
private func seed(rules: Int, root: String, stateDir: String, sa: LabHost, target: LabHost) throws -> DataPlane {
    var capacity = 1 << 16
    while capacity < rules + rules / 50 { capacity *= 2 }
    let dp = try DataPlane.load(.init(pinRoot: root, maxRules: capacity))
    let store = try Store.open(directory: stateDir)
    let forward = Forwarding.l2(to: target.mac, from: sa.mac)
    var batch: [(Store.TransferRecord, [SessionRule])] = []
    var all: [SessionRule] = []
    var takeovers: [Takeover] = []
    let perTransfer = 1000
    for t in 0..<(rules + perTransfer - 1) / perTransfer {
        let original = IPAddress.v4(0xC613_0000 | UInt32(t))
        let count = min(perTransfer, rules - t * perTransfer)
        let sessions = (0..<count).map { i in
            SessionMatch(proto: .udp, source: IPAddress.v4(0x0A00_0000 | UInt32(i)), sourcePort: 40000,
                         destination: original, destinationPort: 5004)
        }
        // As the agent stores it: the sessions are the rules (see Register.storedBytes).
        let register = Register(original: original, temporary: sa.ipv4, tnMAC: sa.mac, mode: .l2, sessions: [],
                                targetMAC: target.mac, targetAddress: target.ipv4, control: Endpoint(address: sa.ipv4, port: 7390))
        let takeover = Takeover(address: original, defaultForward: .l2(to: sa.mac, from: sa.mac), agentMAC: sa.mac,
                                temporaryAddress: sa.ipv4)
        let id = TransferID.random()
        let record = Store.TransferRecord(
            id: "\(id)", device: "bench", state: "active", original: "\(original)", register: Data(register.storedBytes),
            sessionKey: Data(SessionKey.random().storedBytes), highestTN: nil, takeover: takeover, reason: nil,
            started: Date().timeIntervalSince1970, ended: nil, milestones: [:])
        let rs = sessions.map { SessionRule(match: $0, forward: forward) }
        batch.append((record, rs))
        all += rs
        takeovers.append(takeover)
    }
    try store.insert(batch)
    try dp.addRules(all)
    for t in takeovers { try dp.setTakeover(t) }
    return dp
}

extension ControlPlaneResult {
    func printTable() {
        print("")
        print("5. Control plane: registrations through the agent's API (\(concurrency) requests in flight), and the agent's start with \(rules) stored rules.")
        print("   baseline in the same run: GET /v1/policies " + (trivialPerSecond.map { fmt($0, 0) } ?? "n/a") + " requests/s")
        func line(_ name: String, _ v: Double?) {
            let ratio = v.flatMap { v in trivialPerSecond.map { v / $0 } }
            print("   " + name.padding(toLength: 44, withPad: " ", startingAt: 0) + (v.map { fmt($0, 0) } ?? "n/a")
                  + " transfers/s (" + (ratio.map { fmt($0, 2) } ?? "-") + "x trivial requests/s; goal ≥ \(Int(goalRegistrationsPerSecond)))")
        }
        print("   opening a sealed registration alone, 1 thread: " + (openPerSecond.map { fmt($0, 0) } ?? "n/a")
              + "/s (the per-registration floor; this machine has \(ProcessInfo.processInfo.activeProcessorCount) cores)")
        line("registrations, 1 per request", singlePerSecond)
        line("registrations, \(batch) per request", batchPerSecond)
        print("   registrations, 1 per request, junk flood:   " + (floodedPerSecond.map { fmt($0, 0) } ?? "n/a") + " transfers/s ("
              + (floodedPerSecond.flatMap { f in singlePerSecond.map { fmt(f / $0, 2) } } ?? "-") + "x without the flood; "
              + (junkPerSecond.map { fmt($0, 0) } ?? "n/a") + " junk datagrams/s at the agent's port, n=\(floodedRegistrations))")
        print("   reconcile at start, maps as stored:        " + (reconcileClean.map { fmt($0, 2) } ?? "n/a") + " s ("
              + (reconcileClean.flatMap { c in mapRead.map { fmt(c / $0, 1) } } ?? "-") + "x reading the maps, "
              + (mapRead.map { fmt($0, 2) } ?? "n/a") + " s)")
        print("   reconcile at start, 1% missing, 0.5% stale: " + (reconcileDamaged.map { fmt($0, 2) } ?? "n/a") + " s"
              + (damaged.map { " (restored \($0.rulesRestored), removed \($0.rulesRemoved), kept \($0.rulesKept))" } ?? ""))
        if !failures.isEmpty { print("   failures: " + failures.joined(separator: "; ")) }
    }

    func json() -> JSON {
        .object([
            ("registrations", .int(Int64(registrations))),
            ("concurrency", .int(Int64(concurrency))),
            ("trivialRequestsPerSecond", .num(trivialPerSecond, 0)),
            ("registrationsPerSecond", .num(singlePerSecond, 0)),
            ("registrationsPerSecondBatched", .num(batchPerSecond, 0)),
            ("registrationsPerSecondFlooded", .num(floodedPerSecond, 0)),
            ("floodedOverUnflooded", .num(floodedPerSecond.flatMap { f in singlePerSecond.map { f / $0 } }, 3)),
            ("junkPerSecond", .num(junkPerSecond, 0)),
            ("batch", .int(Int64(batch))),
            ("openPerSecondOneThread", .num(openPerSecond, 0)),
            ("registrationsOverTrivial", .num(singlePerSecond.flatMap { v in trivialPerSecond.map { v / $0 } }, 3)),
            ("refused", .int(Int64(refused))),
            ("reconcileRules", .int(Int64(rules))),
            ("mapReadSeconds", .num(mapRead, 3)),
            ("reconcileSeconds", .num(reconcileClean, 3)),
            ("reconcileDamagedSeconds", .num(reconcileDamaged, 3)),
            ("reconcileOverMapRead", .num(reconcileClean.flatMap { c in mapRead.map { c / $0 } }, 2)),
            ("failures", .array(failures.map { .string($0) })),
        ])
    }
}
