import BatonAPI
import BatonDataPlane
import BatonModel
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import OpenAPIHummingbird
import OpenAPIRuntime
import ServiceLifecycle
import Synchronization

/// What a role answers through the API (docs/api.md, docs/openapi.json). The operations of
/// the other role throw `NotServedHere` by default; the answer says whose they are.
public protocol APIHandler: Sendable {
    var apiRole: DaemonRole { get }
    func status() throws -> DaemonStatus
    func listTransfers() throws -> [TransferInfo]
    func showTransfer(_ id: String) throws -> TransferInfo
    /// `force`: see docs/api.md (the TN reclaims with the agent silent; the agent clears now).
    func endTransfer(_ id: String, force: Bool) throws -> TransferInfo
    func startTransfer(_ request: TransferRequest) throws -> TransferInfo
    func register(_ batch: RegistrationBatch) throws -> RegistrationResults
    func listDevices() throws -> [Device]
    func device(_ name: String) throws -> Device
    func addDevice(_ device: Device) throws -> Device
    func deleteDevice(_ name: String) throws
    func listPolicies() throws -> [Policy]
    func addPolicy(_ policy: Policy) throws -> Policy
    func deletePolicy(_ id: Int) throws
    func listAnchors() throws -> [AnchorInfo]
    func createAnchor(_ request: AnchorRequest) throws -> AnchorInfo
    func showAnchor(_ id: String) throws -> AnchorInfo
    func moveAnchor(_ id: String, _ move: AnchorMove) throws -> AnchorInfo
    func endAnchor(_ id: String) throws -> AnchorInfo
    func listSIPUsers() throws -> [SIPUser]
    func addSIPUser(_ request: SIPUserRequest) throws -> SIPUser
    func deleteSIPUser(_ username: String) throws
    func listSIPRegistrations() throws -> [SIPRegistration]
    func listSIPCalls() throws -> [SIPCall]
    func showSIPCall(_ id: String) throws -> SIPCall
    /// The Prometheus text exposition.
    func metricsExposition() throws -> String
}

/// An operation of the other role (the document's x-baton-role): 404, naming who serves it.
struct NotServedHere: Error {
    let servedBy: DaemonRole
}

extension APIHandler {
    var notHere: NotServedHere { NotServedHere(servedBy: apiRole == .agent ? .node : .agent) }
    public func startTransfer(_ request: TransferRequest) throws -> TransferInfo { throw notHere }
    public func register(_ batch: RegistrationBatch) throws -> RegistrationResults { throw notHere }
    public func listDevices() throws -> [Device] { throw notHere }
    public func device(_ name: String) throws -> Device { throw notHere }
    public func addDevice(_ device: Device) throws -> Device { throw notHere }
    public func deleteDevice(_ name: String) throws { throw notHere }
    public func listPolicies() throws -> [Policy] { throw notHere }
    public func addPolicy(_ policy: Policy) throws -> Policy { throw notHere }
    public func deletePolicy(_ id: Int) throws { throw notHere }
    public func listAnchors() throws -> [AnchorInfo] { throw notHere }
    public func createAnchor(_ request: AnchorRequest) throws -> AnchorInfo { throw notHere }
    public func showAnchor(_ id: String) throws -> AnchorInfo { throw notHere }
    public func moveAnchor(_ id: String, _ move: AnchorMove) throws -> AnchorInfo { throw notHere }
    public func endAnchor(_ id: String) throws -> AnchorInfo { throw notHere }
    public func listSIPUsers() throws -> [SIPUser] { throw notHere }
    public func addSIPUser(_ request: SIPUserRequest) throws -> SIPUser { throw notHere }
    public func deleteSIPUser(_ username: String) throws { throw notHere }
    public func listSIPRegistrations() throws -> [SIPRegistration] { throw notHere }
    public func listSIPCalls() throws -> [SIPCall] { throw notHere }
    public func showSIPCall(_ id: String) throws -> SIPCall { throw notHere }
}

/// The TCP listener's TLS: the daemon's certificate and key, and the CA whose client
/// certificates it accepts (mutual TLS: the TCP API has no other authentication).
public struct ServerTLS: Sendable {
    public var certificate: String
    public var key: String
    public var clientCA: String

    public init(certificate: String, key: String, clientCA: String) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
    }

    func configuration() throws -> TLSConfiguration {
        do {
            var c = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(clientCA))
            c.certificateVerification = .noHostnameVerification
            return c
        } catch {
            throw ControlError.invalid("cannot load the TLS files (--tls-cert \(certificate), --tls-key \(key), --tls-client-ca \(clientCA)): \(error)")
        }
    }
}

/// Where the API listens: the Unix socket always, HTTPS on `listen` when given.
public struct APIListeners: Sendable {
    public var control: String
    public var listen: (host: String, port: Int)?
    public var tls: ServerTLS?
    /// Seconds a connection may sit idle (a TLS handshake included) before it is closed.
    public var idleTimeout: Double = 30
    /// Connections each listener serves at once; more are closed as they come.
    public var maxConnections = 256
    /// The HTTPS listener's client certificates: roles and revocations.
    public var clients = ClientCertificatePolicy()

    public init(control: String, listen: (host: String, port: Int)? = nil, tls: ServerTLS? = nil) {
        self.control = control
        self.listen = listen
        self.tls = tls
    }
}

/// batond's HTTP/JSON API (Hummingbird): one router, served on the Unix socket (mode 0600:
/// root only) and, optionally, over TCP with mutual TLS. Handlers block (they take the role's
/// lock, write maps and the store, and a transfer start waits for its peers), so they run on a
/// thread pool of their own, never on the event loops.
public final class APIServer: Sendable {
    /// Request bodies are small; this bounds what a client can make us buffer.
    public static let maximumBody = 8 << 20

    let handler: any APIHandler
    let listeners: APIListeners
    let logger: Logger
    let pool = NIOThreadPool(numberOfThreads: 8)
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    /// Starts listening; returns when every listener is bound (or throws why one is not).
    /// `services` run in the same service group (the agent's sweep) and stop with it.
    public init(handler: any APIHandler, listeners: APIListeners, logger: Logger, services extra: [any Service] = []) throws {
        self.handler = handler
        self.listeners = listeners
        self.logger = logger
        pool.start()
        let ready = ReadyLatch(count: listeners.listen == nil ? 1 : 2)
        var services: [any Service] = []
        let router = try Self.router(handler: handler, pool: pool, logger: logger)
        let control = listeners.control
        try? FileManager.default.createDirectory(atPath: (control as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        // Each listener: connections idle past the timeout closed, and at most maxConnections.
        func http1(gate: ClientCertificatePolicy? = nil) -> HTTPServerBuilder {
            let idle = TimeAmount.milliseconds(Int64(listeners.idleTimeout * 1000))
            let cap = ConnectionCap(maximum: listeners.maxConnections, logger: logger)
            let logger = logger
            return .http1(configuration: .init(
                additionalChannelHandlers: [cap.handler()] + (gate.map { [ClientCertificateGate(policy: $0, logger: logger)] } ?? []),
                idleTimeout: idle))
        }
        services.append(Application(
            router: router,
            server: http1(),
            configuration: .init(address: .unixDomainSocket(path: control), serverName: "batond"),
            onServerRunning: { _ in
                chmod(control, 0o600)
                ready.arrive()
            },
            logger: quiet))
        if let listen = listeners.listen {
            guard let tls = listeners.tls else { throw ControlError.invalid("--listen needs --tls-cert, --tls-key and --tls-client-ca") }
            services.append(Application(
                router: router,
                server: try .tls(http1(gate: listeners.clients), tlsConfiguration: try tls.configuration()),
                configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "batond"),
                onServerRunning: { _ in ready.arrive() },
                logger: quiet))
        }
        let group = ServiceGroup(configuration: .init(services: services + extra, logger: quiet))
        self.group = group
        task = Task {
            do {
                try await group.run()
            } catch {
                ready.fail(error)
                throw error
            }
        }
        if let error = ready.wait(seconds: 20) {
            stop()
            throw ControlError("cannot serve the API (\(control)\(listeners.listen.map { ", \($0.host):\($0.port)" } ?? "")): \(error)")
        }
        logger.info("API on \(control)\(listeners.listen.map { " and https://\($0.host):\($0.port) (client certificates required)" } ?? "")")
    }

    /// Stops accepting, lets requests in flight finish, and returns.
    public func stop() {
        let done = DispatchSemaphore(value: 0)
        let group = group, task = task
        Task {
            await group.triggerGracefulShutdown()
            _ = await task.result
            done.signal()
        }
        _ = done.wait(timeout: .now() + 10)
        try? pool.syncShutdownGracefully()
    }

    // MARK: - Routes

    /// The generated routes (docs/openapi.json) on a Hummingbird router, behind the body cap
    /// and the answers for what no operation matches.
    static func router(handler: any APIHandler, pool: NIOThreadPool, logger: Logger) throws -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let routes = RouteTable()
        router.add(middleware: RequestMiddleware(logger: logger, routes: routes))
        try APIService(handler: handler, pool: pool)
            .registerHandlers(on: RecordingTransport(router: router, routes: routes),
                              configuration: Configuration(jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes]),
                              middlewares: [ErrorAnswers(logger: logger, role: handler.apiRole)])
        return router
    }

    /// JSON as the generated code writes it (compact, sorted keys, '/' not escaped), for the
    /// answers made outside it.
    static func json(_ value: some Encodable, status: HTTPResponse.Status) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

/// The generated operations, each run on the API's thread pool (handlers block: they take the
/// role's lock, write maps and the store, and a transfer start waits for its peers).
struct APIService: APIProtocol {
    let handler: any APIHandler
    let pool: NIOThreadPool

    private func run<T: Sendable>(_ work: @escaping @Sendable (any APIHandler) throws -> T) async throws -> T {
        let handler = handler
        return try await pool.runIfActive { try work(handler) }
    }

    /// Path parameters are read as the document's patterns say; the generated code does not
    /// check patterns.
    private static func deviceName(_ name: String) throws -> String {
        guard Device.validName(name) else {
            throw ControlError.invalid("invalid device name '\(name)': 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit")
        }
        return name
    }

    func status(_ input: Operations.Status.Input) async throws -> Operations.Status.Output {
        .ok(.init(body: .json(try await run { try $0.status() })))
    }

    func metrics(_ input: Operations.Metrics.Input) async throws -> Operations.Metrics.Output {
        .ok(.init(body: .plainText(HTTPBody(try await run { try $0.metricsExposition() }))))
    }

    func listTransfers(_ input: Operations.ListTransfers.Input) async throws -> Operations.ListTransfers.Output {
        .ok(.init(body: .json(TransferList(transfers: try await run { try $0.listTransfers() }))))
    }

    func startTransfer(_ input: Operations.StartTransfer.Input) async throws -> Operations.StartTransfer.Output {
        guard case .json(let request) = input.body else { throw ControlError.invalid("the request needs a JSON body") }
        return .created(.init(body: .json(try await run { try $0.startTransfer(request) })))
    }

    func showTransfer(_ input: Operations.ShowTransfer.Input) async throws -> Operations.ShowTransfer.Output {
        let id = input.path.id
        return .ok(.init(body: .json(try await run { try $0.showTransfer(id) })))
    }

    func endTransfer(_ input: Operations.EndTransfer.Input) async throws -> Operations.EndTransfer.Output {
        let id = input.path.id
        let force = input.query.force ?? false
        return .ok(.init(body: .json(try await run { try $0.endTransfer(id, force: force) })))
    }

    func register(_ input: Operations.Register.Input) async throws -> Operations.Register.Output {
        guard case .json(let batch) = input.body else { throw ControlError.invalid("the request needs a JSON body") }
        return .ok(.init(body: .json(try await run { try $0.register(batch) })))
    }

    func listDevices(_ input: Operations.ListDevices.Input) async throws -> Operations.ListDevices.Output {
        .ok(.init(body: .json(DeviceList(devices: try await run { try $0.listDevices() }))))
    }

    func addDevice(_ input: Operations.AddDevice.Input) async throws -> Operations.AddDevice.Output {
        guard case .json(let device) = input.body else { throw ControlError.invalid("the request needs a JSON body") }
        return .created(.init(body: .json(try await run { try $0.addDevice(device) })))
    }

    func showDevice(_ input: Operations.ShowDevice.Input) async throws -> Operations.ShowDevice.Output {
        let name = try Self.deviceName(input.path.name)
        return .ok(.init(body: .json(try await run { try $0.device(name) })))
    }

    func deleteDevice(_ input: Operations.DeleteDevice.Input) async throws -> Operations.DeleteDevice.Output {
        let name = try Self.deviceName(input.path.name)
        try await run { try $0.deleteDevice(name) }
        return .noContent(.init())
    }

    func listPolicies(_ input: Operations.ListPolicies.Input) async throws -> Operations.ListPolicies.Output {
        .ok(.init(body: .json(PolicyList(policies: try await run { try $0.listPolicies() }))))
    }

    func addPolicy(_ input: Operations.AddPolicy.Input) async throws -> Operations.AddPolicy.Output {
        guard case .json(let policy) = input.body else { throw ControlError.invalid("the request needs a JSON body") }
        return .created(.init(body: .json(try await run { try $0.addPolicy(policy) })))
    }

    func deletePolicy(_ input: Operations.DeletePolicy.Input) async throws -> Operations.DeletePolicy.Output {
        let text = input.path.id
        guard let id = Int(text), id >= 0 else { throw ControlError.invalid("invalid policy ID '\(text)': expected a number") }
        try await run { try $0.deletePolicy(id) }
        return .noContent(.init())
    }
}

extension APIService {
    func listAnchors(_ input: Operations.ListAnchors.Input) async throws -> Operations.ListAnchors.Output {
        .ok(.init(body: .json(AnchorList(anchors: try await run { try $0.listAnchors() }))))
    }

    func createAnchor(_ input: Operations.CreateAnchor.Input) async throws -> Operations.CreateAnchor.Output {
        guard case .json(let request) = input.body else { throw ControlError.invalid("the request needs a JSON body") }
        return .created(.init(body: .json(try await run { try $0.createAnchor(request) })))
    }

    func showAnchor(_ input: Operations.ShowAnchor.Input) async throws -> Operations.ShowAnchor.Output {
        let id = input.path.id
        return .ok(.init(body: .json(try await run { try $0.showAnchor(id) })))
    }

    func moveAnchor(_ input: Operations.MoveAnchor.Input) async throws -> Operations.MoveAnchor.Output {
        guard case .json(let move) = input.body else { throw ControlError.invalid("the request needs a JSON body") }
        let id = input.path.id
        return .ok(.init(body: .json(try await run { try $0.moveAnchor(id, move) })))
    }

    func endAnchor(_ input: Operations.EndAnchor.Input) async throws -> Operations.EndAnchor.Output {
        let id = input.path.id
        return .ok(.init(body: .json(try await run { try $0.endAnchor(id) })))
    }
}

extension APIService {
    func listSIPUsers(_ input: Operations.ListSIPUsers.Input) async throws -> Operations.ListSIPUsers.Output {
        .ok(.init(body: .json(SIPUserList(users: try await run { try $0.listSIPUsers() }))))
    }

    func addSIPUser(_ input: Operations.AddSIPUser.Input) async throws -> Operations.AddSIPUser.Output {
        guard case .json(let request) = input.body else { throw ControlError.invalid("the request needs a JSON body") }
        return .created(.init(body: .json(try await run { try $0.addSIPUser(request) })))
    }

    func deleteSIPUser(_ input: Operations.DeleteSIPUser.Input) async throws -> Operations.DeleteSIPUser.Output {
        let name = input.path.username
        try await run { try $0.deleteSIPUser(name) }
        return .noContent(.init())
    }

    func listSIPRegistrations(_ input: Operations.ListSIPRegistrations.Input) async throws -> Operations.ListSIPRegistrations.Output {
        .ok(.init(body: .json(SIPRegistrationList(registrations: try await run { try $0.listSIPRegistrations() }))))
    }

    func listSIPCalls(_ input: Operations.ListSIPCalls.Input) async throws -> Operations.ListSIPCalls.Output {
        .ok(.init(body: .json(SIPCallList(calls: try await run { try $0.listSIPCalls() }))))
    }

    func showSIPCall(_ input: Operations.ShowSIPCall.Input) async throws -> Operations.ShowSIPCall.Output {
        let id = input.path.id
        return .ok(.init(body: .json(try await run { try $0.showSIPCall(id) })))
    }
}

/// The router as the generated code registers on it, noting each route in `routes`.
struct RecordingTransport: ServerTransport {
    let router: Router<BasicRequestContext>
    let routes: RouteTable

    func register(_ handler: @Sendable @escaping (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
                  method: HTTPRequest.Method, path: String) throws {
        routes.add(method: method, template: path)
        try router.register(handler, method: method, path: path)
    }
}

/// Which methods each path template takes (for 405 answers), as the generated code registered
/// them: the route table is the document's, never written by hand.
final class RouteTable: Sendable {
    private let templates = Mutex<[(parts: [Substring], method: HTTPRequest.Method)]>([])

    func add(method: HTTPRequest.Method, template: String) {
        templates.withLock { $0.append((template.split(separator: "/", omittingEmptySubsequences: false), method)) }
    }

    /// The methods served on a concrete request path ("/v1/devices/tn" matches "/v1/devices/{name}").
    func methods(servingPath path: String) -> [HTTPRequest.Method] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return templates.withLock { routes in
            var out: [HTTPRequest.Method] = []
            for route in routes where route.parts.count == parts.count
                && zip(route.parts, parts).allSatisfy({ t, p in (t.hasPrefix("{") && !p.isEmpty) || t == p })
                && !out.contains(route.method) {
                out.append(route.method)
            }
            return out
        }
    }
}

/// Another role's operation is refused before the generated code decodes it. Every failure inside an
/// operation becomes `ErrorBody` JSON with the status of its code; a failure that is not a
/// ControlError is described, never a crash.
struct ErrorAnswers: ServerMiddleware {
    let logger: Logger
    let role: DaemonRole

    func intercept(_ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        do {
            if let owner = OperationRoles.servedBy(operationID), owner != role { throw NotServedHere(servedBy: owner) }
            return try await next(request, body, metadata)
        } catch {
            let e = controlError(error, request: request)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var fields = HTTPFields()
            fields[.contentType] = "application/json"
            return (HTTPResponse(status: .init(code: e.code.httpStatus), headerFields: fields),
                    HTTPBody(try encoder.encode(ErrorBody(code: e.code, error: e.description))))
        }
    }

    /// A failure that is not the API's own (SQLite, NIO, a bug): the detail goes to the log,
    /// the client gets a reference to it, never the internal text.
    static func scrubbed(_ error: any Error, logger: Logger) -> ControlError {
        let reference = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        logger.error("API internal error \(reference): \(error)")
        return ControlError("internal error \(reference); the daemon's log has the detail", code: ._internal)
    }

    func controlError(_ error: any Error, request: HTTPRequest) -> ControlError {
        // The generated code wraps everything in ServerError: the handler's own error, or why
        // the request was not understood (a malformed body, a missing parameter).
        let server = error as? ServerError
        switch server?.underlyingError ?? error {
        case let e as ControlError:
            // (What is not a ControlError is logged by `scrubbed`.)
            if e.code == ._internal { logger.error("API \(request.method) \(request.path ?? ""): \(e)") }
            return e
        case let e as ModelError: return .invalid(e.description)
        case let e as NotServedHere:
            let what = "\(request.method) \(request.path.map { $0.split(separator: "?").first.map(String.init) ?? $0 } ?? "")"
            return .notFound(e.servedBy == .agent ? "\(what) is served by the agent (batond agent), not by a node"
                                                  : "\(what) is served by a node (batond node), not by the agent")
        case let e as DataPlaneError:
            switch e {
            case .invalid(let s): return .invalid(s)
            case .notFound(let s): return .notFound(s)
            case .full(let s): return ControlError("map full: \(s)")
            case .notLoaded: return ControlError("the data plane is not loaded")
            }
        case let e as DecodingError: return .invalid("malformed request body: \(e.summary)")
        case is NIOThreadPoolError.ThreadPoolInactive: return .unavailable("batond is shutting down")
        case let underlying:
            if let server, (400..<500).contains(server.httpStatus.code) {
                let cause = server.causeDescription, detail = "\(underlying)"
                return .invalid(detail.contains(cause) ? detail : "\(cause): \(detail)")
            }
            return Self.scrubbed(underlying, logger: logger)
        }
    }
}

/// Before any operation: the body cap, and JSON answers for what no operation matches (404,
/// or 405 with Allow for a path served with other methods).
struct RequestMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            var request = request
            if request.method == .post || request.method == .put {
                // Buffers the body (or refuses it past the cap) before the generated code reads it.
                _ = try await request.collectBody(upTo: APIServer.maximumBody)
            }
            return try await next(request, context)
        } catch is NIOTooManyBytesError {
            return try APIServer.json(ErrorBody(code: .invalid, error: "request body over \(APIServer.maximumBody) bytes"),
                                      status: .contentTooLarge)
        } catch let http as HTTPError {
            switch http.status {
            case .notFound:
                let allowed = routes.methods(servingPath: request.uri.path)
                if !allowed.isEmpty {
                    let list = allowed.map(\.rawValue).joined(separator: ", ")
                    var response = try APIServer.json(
                        ErrorBody(code: .invalid, error: "\(request.method) is not served on \(request.uri.path); it takes \(list)"),
                        status: .methodNotAllowed)
                    response.headers[.allow] = list
                    return response
                }
                return try APIServer.json(ErrorBody(code: .notFound, error: "no route \(request.method) \(request.uri.path)"),
                                          status: .notFound)
            case .contentTooLarge:
                return try APIServer.json(ErrorBody(code: .invalid, error: "request body over \(APIServer.maximumBody) bytes"),
                                          status: .contentTooLarge)
            default:
                return try APIServer.json(ErrorBody(code: .invalid, error: http.body ?? "\(http.status)"),
                                          status: .init(code: ControlError.Code.invalid.httpStatus))
            }
        } catch {
            let e = ErrorAnswers.scrubbed(error, logger: logger)
            return try APIServer.json(ErrorBody(code: ._internal, error: e.description), status: .internalServerError)
        }
    }
}

/// Start-up handshake between the listeners and `APIServer.init`.
final class ReadyLatch: Sendable {
    private struct State {
        var remaining: Int
        var error: (any Error)?
    }
    private let state: Mutex<State>
    private let semaphore = DispatchSemaphore(value: 0)

    init(count: Int) { state = Mutex(State(remaining: count)) }

    func arrive() {
        state.withLock { s in
            s.remaining -= 1
            if s.remaining == 0 { semaphore.signal() }
        }
    }

    func fail(_ e: any Error) {
        state.withLock { s in
            if s.error == nil, s.remaining > 0 {
                s.error = e
                semaphore.signal()
            }
        }
    }

    /// nil when every listener is up.
    func wait(seconds: Int) -> (any Error)? {
        if semaphore.wait(timeout: .now() + .seconds(seconds)) == .timedOut { return ControlError("timed out") }
        return state.withLock { $0.error }
    }
}

/// At most `maximum` connections on one listener at once: one more is closed as it comes, so
/// that a client opening connections without end cannot take the daemon's descriptors.
final class ConnectionCap: Sendable {
    let maximum: Int
    private let open = Mutex(0)
    private let logger: Logger
    private let lastLog = Mutex<ContinuousClock.Instant?>(nil)

    init(maximum: Int, logger: Logger) {
        self.maximum = maximum
        self.logger = logger
    }

    /// The handler for one new connection.
    func handler() -> any RemovableChannelHandler { Counted(cap: self) }

    fileprivate func admit() -> Bool {
        open.withLock { n in
            guard n < maximum else { return false }
            n += 1
            return true
        }
    }

    fileprivate func release() { open.withLock { $0 -= 1 } }

    fileprivate func refused() {
        let now = ContinuousClock.now
        let log = lastLog.withLock { last -> Bool in
            guard last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }
        if log { logger.warning("API: \(maximum) connections open (--api-max-connections); closing new ones") }
    }

    private final class Counted: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        let cap: ConnectionCap
        var counted = false

        init(cap: ConnectionCap) { self.cap = cap }

        func handlerAdded(context: ChannelHandlerContext) {
            counted = cap.admit()
            if !counted {
                cap.refused()
                // After the pipeline is set up: a close from within the setup is not seen.
                let channel = context.channel
                channel.eventLoop.execute { channel.close(promise: nil) }
            }
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            if counted { cap.release() }
            counted = false
        }
    }
}
