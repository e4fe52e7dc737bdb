import BatonModel
import BatonSIP
import Foundation
import Logging
import NIOCore
import NIOPosix

public struct SIPServerConfiguration: Sendable {
    /// The SIP domains served: their users register here and are called here.
    public var domains: Set<String>
    /// The address and port the server listens on, UDP and TCP (its Contact and Via).
    public var listen: Endpoint
    /// The digest realm (default: the first domain, sorted).
    public var realm: String
    /// Next hops for other domains: INVITEs to `sip:x@domain` go to `routes[domain]`.
    public var routes: [String: Endpoint] = [:]
    public var timers = TransactionTimers()
    /// Registrations: shortest and longest expiry granted (seconds).
    public var minExpires: UInt32 = 60
    public var maxExpires: UInt32 = 7200
    /// Digest algorithms, challenged in this order (default SHA-256, then MD5 for older clients).
    public var digestAlgorithms: [DigestAlgorithm] = [.sha256, .md5]
    /// RTP continuity on every anchored call (docs/anchors.md): the remote sees one stream.
    public var rtpContinuity = true
    /// After a switch, the replaced device's media is dropped this long (nil: relayed for the
    /// anchor's grace period).
    public var lockout: Double? = nil

    public init(domains: Set<String>, listen: Endpoint) {
        self.domains = Set(domains.map { $0.lowercased() })
        self.listen = listen
        self.realm = domains.sorted().first ?? "baton"
    }
}

/// The SIP server (docs/sip.md): a registrar with GRUU and a B2BUA whose calls' media is
/// anchored in XDP, over UDP and TCP. Every piece of its state lives on one event loop: the transport's
/// handler, the transactions' timers and the API's reads all run there, so nothing is locked.
/// (`@unchecked Sendable` for that reason: each entry point hops onto `loop` first.)
public final class SIPServer: @unchecked Sendable {
    public let configuration: SIPServerConfiguration
    let loop: EventLoop
    let group: MultiThreadedEventLoopGroup
    let anchors: MediaAnchors
    let credentials: SIPCredentials
    let metrics: SIPMetrics?
    let logger: Logger
    var datagrams: Channel?
    var listener: Channel?

    // State, on `loop` only.
    var registrations: Registrations
    let digest: DigestVerifier
    var servers: [ServerTransactionKey: ServerEntry] = [:]
    var clients: [ClientTransactionKey: ClientEntry] = [:]
    var timers: [TimerKey: Scheduled<Void>] = [:]
    var calls: [String: Call] = [:]
    var endedCalls: [CallInfo] = []
    let started = Date()
    /// TCP connections by their remote address, and messages waiting for one being opened.
    var connections: [SocketAddress: Channel] = [:]
    var pendingConnections: [SocketAddress: [ByteBuffer]] = [:]

    struct ServerEntry {
        var tx: ServerTransaction
        var peer: SIPPeer
    }

    enum ClientEvent {
        case response(SIPMessage)
        case timeout
    }

    struct ClientEntry {
        var tx: ClientTransaction
        var peer: SIPPeer
        var handler: (ClientEvent) -> Void
    }

    enum TimerKey: Hashable {
        case server(ServerTransactionKey, TransactionTimer)
        case client(ClientTransactionKey, TransactionTimer)
        case call(String, String)
    }

    public init(_ configuration: SIPServerConfiguration, anchors: MediaAnchors, credentials: SIPCredentials,
                metrics: SIPMetrics? = nil, logger: Logger) {
        self.configuration = configuration
        self.anchors = anchors
        self.credentials = credentials
        self.metrics = metrics
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        registrations = Registrations(domains: configuration.domains, minExpires: configuration.minExpires,
                                      maxExpires: configuration.maxExpires)
        digest = DigestVerifier(realm: configuration.realm, algorithms: configuration.digestAlgorithms)
    }

    /// Binds the UDP and TCP port and serves until `stop()`.
    public func start() throws {
        let server = self
        try bindTransports()
        loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            server.registrations.expire(now: server.now)
        }
        logger.info("sip: \(configuration.domains.sorted().joined(separator: ", ")) on udp and tcp \(configuration.listen), realm \(configuration.realm)")
    }

    public func stop() {
        closeTransports()
        try? group.syncShutdownGracefully()
    }

    /// Seconds since the server started: the registrar's and the digest's clock.
    var now: Double { Date().timeIntervalSince(started) + 1_000_000 }

    /// Runs `body` on the loop and waits: how the API reads the server's state.
    public func read<T: Sendable>(_ body: @escaping @Sendable (SIPServer) -> T) throws -> T {
        let server = self
        return try loop.submit { body(server) }.wait()
    }

    // MARK: - Messages

    /// A message from `peer` (a datagram, or one cut from a stream): a refusal answered when it
    /// can be, else matched to its transaction or started as a new one.
    func received(_ parsed: Result<SIPMessage, SIPParseError>, from peer: SIPPeer) {
        let m: SIPMessage
        switch parsed {
        case .success(let message): m = message
        case .failure(let error):
            metrics?.refused(status: error.status)
            logger.debug("sip: refused a message from \(peer): \(error)")
            if let answer = error.answer { send(answer, to: peer) }
            return
        }
        if m.isRequest {
            metrics?.message(received: m.method!)
            receivedRequest(m, from: peer)
        } else {
            receivedResponse(m)
        }
    }

    func receivedRequest(_ m: SIPMessage, from peer: SIPPeer) {
        guard let key = ServerTransactionKey(m) else {
            // RFC 2543 branches are not matched; answering is still right for a new request.
            if m.method != "ACK" { send(m.response(400, "Bad Request - Via branch without z9hG4bK"), to: peer) }
            return
        }
        if var e = servers[key] {
            let actions = e.tx.received(m)
            servers[key] = e
            perform(actions, server: key)
            return
        }
        if m.method == "ACK" {
            // The ACK of a 2xx: its own transaction, the dialog's (13.2.2.4).
            ackOf2xx(m, from: peer)
            return
        }
        if m.method == "CANCEL" {
            cancel(m, from: peer)
            return
        }
        let (tx, actions) = ServerTransaction.start(m, reliable: peer.reliable, timers: configuration.timers)
        servers[key] = ServerEntry(tx: tx, peer: peer)
        perform(actions, server: key)
    }

    func receivedResponse(_ m: SIPMessage) {
        // Our own Via first: a response for someone else is dropped (18.1.2).
        guard let key = ClientTransactionKey(m), var e = clients[key] else {
            if m.status.map({ $0 / 100 == 2 }) == true, m.cseq?.method == "INVITE" { retransmitted2xx(m) }
            return
        }
        let actions = e.tx.received(m)
        clients[key] = e
        perform(actions, client: key)
    }

    // MARK: - Transactions

    /// Answers `request` through its server transaction.
    func respond(to request: SIPMessage, _ response: SIPMessage) {
        guard let key = ServerTransactionKey(request), var e = servers[key] else { return }
        if let status = response.status, status >= 300 { metrics?.refused(status: status) }
        let actions = e.tx.respond(response)
        servers[key] = e
        perform(actions, server: key)
    }

    func respond(to request: SIPMessage, _ status: Int, _ reason: String, headers: [SIPHeaderField] = []) {
        var r = request.response(status, reason, toTag: status > 100 ? Self.newTag() : nil)
        for h in headers { r.headers.add(h.name, h.value) }
        respond(to: request, r)
    }

    /// Sends `request` in a new client transaction to `peer`; `handler` gets its responses.
    func start(_ request: SIPMessage, to peer: SIPPeer, handler: @escaping (ClientEvent) -> Void) {
        guard let key = ClientTransactionKey(request) else { return }
        let (tx, actions) = ClientTransaction.start(request, reliable: peer.reliable, timers: configuration.timers)
        clients[key] = ClientEntry(tx: tx, peer: peer, handler: handler)
        perform(actions, client: key)
    }

    func perform(_ actions: [TransactionAction], server key: ServerTransactionKey) {
        for a in actions {
            switch a {
            case .send(let m): if let e = servers[key] { send(m, to: e.peer) }
            case .arm(let t, let after): arm(.server(key, t), after: after) { [self] in
                guard var e = servers[key] else { return }
                let next = e.tx.fire(t)
                servers[key] = e
                perform(next, server: key)
            }
            case .deliver(let m): if let e = servers[key] { dispatch(m, from: e.peer) }
            case .timeout: if let e = servers[key] { transactionTimedOut(e.tx.request) }
            case .terminated:
                servers[key] = nil
                for t in TransactionTimer.allServer { timers.removeValue(forKey: .server(key, t))?.cancel() }
            }
        }
    }

    func perform(_ actions: [TransactionAction], client key: ClientTransactionKey) {
        for a in actions {
            switch a {
            case .send(let m): if let e = clients[key] { send(m, to: e.peer) }
            case .arm(let t, let after): arm(.client(key, t), after: after) { [self] in
                guard var e = clients[key] else { return }
                let next = e.tx.fire(t)
                clients[key] = e
                perform(next, client: key)
            }
            case .deliver(let m): clients[key]?.handler(.response(m))
            case .timeout: clients[key]?.handler(.timeout)
            case .terminated:
                clients[key] = nil
                for t in TransactionTimer.allClient { timers.removeValue(forKey: .client(key, t))?.cancel() }
            }
        }
    }

    func arm(_ key: TimerKey, after seconds: Double, _ body: @escaping () -> Void) {
        timers[key]?.cancel()
        let server = self
        nonisolated(unsafe) let fire = body
        timers[key] = loop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
            server.timers[key] = nil
            fire()
        }
    }

    func disarm(_ key: TimerKey) { timers.removeValue(forKey: key)?.cancel() }

    // MARK: - Requests

    /// A new request handed up by its transaction.
    func dispatch(_ m: SIPMessage, from peer: SIPPeer) {
        // Replaces belongs on an INVITE only (RFC 3891 3); anywhere else the request is refused
        // whole rather than served with the header ignored. (ACK and CANCEL get no answer.)
        if m.method != "INVITE", m.method != "ACK", m.method != "CANCEL", !m.headers.values("replaces").isEmpty {
            respond(to: m, 400, "Bad Request - Replaces on \(m.method!)")
            return
        }
        switch m.method! {
        case "REGISTER": register(m)
        case "INVITE": invite(m, from: peer)
        case "BYE": bye(m)
        case "OPTIONS":
            var r = m.response(200, "OK", toTag: Self.newTag())
            r.headers.add("Allow", Self.allow)
            r.headers.add("Supported", "gruu, replaces")
            respond(to: m, r)
        case "ACK", "CANCEL": break
        default:
            respond(to: m, 501, "Not Implemented", headers: [SIPHeaderField("Allow", Self.allow)])
        }
    }

    static let allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"

    func transactionTimedOut(_ request: SIPMessage) {
        logger.debug("sip: no ACK for the answer to \(request.method ?? "?") \(request.callID ?? "")")
    }

    // MARK: - Authentication

    /// The user the request's credentials prove, or nil after answering 401 (a challenge, or
    /// stale=true) or 403.
    func authenticate(_ m: SIPMessage) -> String? {
        let now = self.now
        let values = m.headers.values("authorization")
        for v in values {
            guard let c = try? DigestCredentials(parsing: v), c.realm == digest.realm else { continue }
            switch digest.verify(c, method: m.method!, now: now, lookup: { credentials.credential(username: $0) }) {
            case .accepted(let user): return user
            case .stale:
                challenge(m, stale: true)
                return nil
            case .rejected(let why):
                logger.info("sip: \(m.method!) from \(c.username): \(why)")
                respond(to: m, 403, "Forbidden")
                return nil
            }
        }
        challenge(m, stale: false)
        return nil
    }

    func challenge(_ m: SIPMessage, stale: Bool) {
        let headers = digest.challenges(now: now, stale: stale).map { SIPHeaderField("WWW-Authenticate", $0.headerValue) }
        respond(to: m, 401, "Unauthorized", headers: headers)
    }

    // MARK: - Registrar

    func register(_ m: SIPMessage) {
        guard let to = m.to?.uri.sipURI, case .name(let domain) = to.host, configuration.domains.contains(domain) else {
            respond(to: m, 404, "Not Found")
            return
        }
        guard let user = authenticate(m) else { return }
        guard to.user == user else {
            respond(to: m, 403, "Forbidden - \(user) may not register \(to.addressOfRecord)")
            return
        }
        do {
            let outcome = try registrations.register(m, now: now)
            respond(to: m, Registrations.okResponse(to: m, outcome: outcome, now: now, toTag: Self.newTag()))
        } catch {
            respond(to: m, error.status, error.reason, headers: error.headers)
        }
    }

    // MARK: - Helpers

    static func newTag() -> String { String(UInt64.random(in: 1...UInt64.max), radix: 36) }
    static func newBranch() -> String { "z9hG4bK" + String(UInt64.random(in: 1...UInt64.max), radix: 36) }

    /// Our Contact toward a peer on `transport` (a request's top Via names the transport it came on).
    func contact(_ transport: SIPTransport) -> String {
        "<sip:\(sentBy)" + (transport == .tcp ? ";transport=tcp>" : ">")
    }

    func contact(answering m: SIPMessage) -> String { contact(m.vias.first?.transport == "TCP" ? .tcp : .udp) }

    /// Our host:port, as Via and Contact name it.
    var sentBy: String { "\(hostText(configuration.listen.address)):\(configuration.listen.port)" }

    /// Our Via on a request sent over `transport`, with a new branch.
    static func via(_ transport: SIPTransport, sentBy: String) -> String {
        "SIP/2.0/\(transport.rawValue) \(sentBy);branch=\(newBranch())" + (transport == .udp ? ";rport" : "")
    }

    func hostText(_ a: IPAddress) -> String { a.family == .v6 ? "[\(a)]" : "\(a)" }

    /// Where a SIP URI is reached: its address, port and transport (no DNS here).
    static func peer(_ uri: SIPURI) -> SIPPeer? {
        guard case .address(let a) = uri.host, let address = try? SocketAddress(ipAddress: "\(a)", port: Int(uri.port ?? 5060)) else { return nil }
        return SIPPeer(transport: uri.parameters[parameter: "transport"]?.lowercased() == "tcp" ? .tcp : .udp, address: address)
    }
}

extension TransactionTimer {
    static let allServer: [TransactionTimer] = [.g, .h, .i, .j, .l]
    static let allClient: [TransactionTimer] = [.a, .b, .d, .e, .f, .k, .m]
}
