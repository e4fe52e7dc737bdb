import BatonAPI
import BatonDataPlane
import BatonModel
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// What a role answers through the API (docs/api.md). The routes of the other role answer
/// not-found by default, saying whose they are.
public protocol APIHandler: Sendable {
    var apiRole: APIRoute.Role { get }
    func status() throws -> DaemonStatus
    func listTransfers() throws -> [TransferInfo]
    func showTransfer(_ id: String) throws -> TransferInfo
    func endTransfer(_ id: String) throws -> TransferInfo
    func startTransfer(_ request: TransferRequest) throws -> TransferInfo
    func register(_ batch: RegistrationBatch) throws -> RegistrationResults
    func listDevices() throws -> [Device]
    func device(_ name: String) throws -> Device
    func addDevice(_ device: Device) throws -> Device
    func deleteDevice(_ name: String) throws
    func listPolicies() throws -> [Policy]
    func addPolicy(_ policy: Policy) throws -> Policy
    func deletePolicy(_ id: Int) throws
    /// The Prometheus text exposition.
    func metricsExposition() throws -> String
}

extension APIHandler {
    func notHere(_ route: APIRoute) -> ControlError {
        switch route.role {
        case .agent: .notFound("\(route.method.rawValue) \(route.path) is served by the agent (batond agent), not by a node")
        case .node: .notFound("\(route.method.rawValue) \(route.path) is served by a node (batond node), not by the agent")
        case .both: .notFound("\(route.method.rawValue) \(route.path) is not served here")
        }
    }
    public func startTransfer(_ request: TransferRequest) throws -> TransferInfo { throw notHere(.startTransfer) }
    public func register(_ batch: RegistrationBatch) throws -> RegistrationResults { throw notHere(.register) }
    public func listDevices() throws -> [Device] { throw notHere(.listDevices) }
    public func device(_ name: String) throws -> Device { throw notHere(.showDevice) }
    public func addDevice(_ device: Device) throws -> Device { throw notHere(.addDevice) }
    public func deleteDevice(_ name: String) throws { throw notHere(.deleteDevice) }
    public func listPolicies() throws -> [Policy] { throw notHere(.listPolicies) }
    public func addPolicy(_ policy: Policy) throws -> Policy { throw notHere(.addPolicy) }
    public func deletePolicy(_ id: Int) throws { throw notHere(.deletePolicy) }
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
        let router = Self.router(handler: handler, pool: pool, logger: logger)
        let control = listeners.control
        try? FileManager.default.createDirectory(atPath: (control as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        services.append(Application(
            router: router,
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
                server: try .tls(.http1(), tlsConfiguration: try tls.configuration()),
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

    static func router(handler: any APIHandler, pool: NIOThreadPool, logger: Logger) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorMiddleware(logger: logger))
        for route in APIRoute.allCases {
            let path = RouterPath(route.path.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: ""))
            let method: HTTPRequest.Method = switch route.method {
            case .GET: .get
            case .POST: .post
            case .DELETE: .delete
            }
            router.on(path, method: method) { request, context in
                var request = request
                let body = route.method == .POST ? try await request.collectBody(upTo: maximumBody) : nil
                let parameters = context.parameters
                return try await pool.runIfActive {
                    try respond(route, handler: handler, parameter: { parameters.get($0) }, body: body)
                }
            }
        }
        return router
    }

    /// One request, on a pool thread.
    static func respond(_ route: APIRoute, handler: any APIHandler, parameter: (String) -> String?,
                        body: ByteBuffer?) throws -> Response {
        func p(_ name: String) throws -> String {
            guard let raw = parameter(name), let v = raw.removingPercentEncoding, !v.isEmpty else {
                throw ControlError.invalid("missing or malformed path parameter \(name)")
            }
            if name == "name", !Device.validName(v) {
                throw ControlError.invalid("invalid device name '\(v)': 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit")
            }
            return v
        }
        guard handler.apiRole == .both || route.role == .both || route.role == handler.apiRole else {
            throw handler.notHere(route)
        }
        switch route {
        case .status: return try json(handler.status())
        case .metrics:
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: try handler.metricsExposition())))
        case .listTransfers: return try json(TransferList(transfers: handler.listTransfers()))
        case .startTransfer: return try json(handler.startTransfer(decode(body)), status: .created)
        case .showTransfer: return try json(handler.showTransfer(p("id")))
        case .endTransfer: return try json(handler.endTransfer(p("id")))
        case .register: return try json(handler.register(decode(body)))
        case .listDevices: return try json(DeviceList(devices: handler.listDevices()))
        case .addDevice: return try json(handler.addDevice(decode(body)), status: .created)
        case .showDevice: return try json(handler.device(p("name")))
        case .deleteDevice:
            try handler.deleteDevice(p("name"))
            return Response(status: .noContent)
        case .listPolicies: return try json(PolicyList(policies: handler.listPolicies()))
        case .addPolicy: return try json(handler.addPolicy(decode(body)), status: .created)
        case .deletePolicy:
            let text = try p("id")
            guard let id = Int(text), id >= 0 else { throw ControlError.invalid("invalid policy ID '\(text)': expected a number") }
            try handler.deletePolicy(id)
            return Response(status: .noContent)
        }
    }

    static func decode<T: Decodable>(_ body: ByteBuffer?) throws -> T {
        guard let body, body.readableBytes > 0 else { throw ControlError.invalid("the request needs a JSON body") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch let e as DecodingError {
            throw ControlError.invalid("malformed request body: \(e.summary)")
        } catch {
            throw ControlError.invalid("malformed request body: \(error)")
        }
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Every failure becomes `ErrorBody` JSON with the status of its code, unmatched routes
/// included; a failure that is not a ControlError is described as `failed` (never a crash).
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let e = Self.controlError(error, request: request)
            if e.code == .internal { logger.error("API \(request.method) \(request.uri.path): \(e)") }
            // A path we serve asked with a method it does not take: 405 with Allow, as HTTP says.
            if let http = error as? HTTPError, http.status == .notFound {
                let allowed = APIRoute.methods(servingPath: request.uri.path)
                if !allowed.isEmpty {
                    var response = try APIServer.json(
                        ErrorBody(code: ControlError.Code.invalid.rawValue,
                                  error: "\(request.method) is not served on \(request.uri.path); it takes \(allowed.map(\.rawValue).joined(separator: ", "))"),
                        status: .methodNotAllowed)
                    response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
                    return response
                }
            }
            var response = try APIServer.json(ErrorBody(code: e.code.rawValue, error: e.description),
                                              status: .init(code: e.code.httpStatus))
            if let http = error as? HTTPError, http.status == .contentTooLarge { response.status = .contentTooLarge }
            return response
        }
    }

    static func controlError(_ error: any Error, request: Request) -> ControlError {
        switch error {
        case let e as ControlError: return e
        case let e as ModelError: return .invalid(e.description)
        case let e as DataPlaneError:
            switch e {
            case .invalid(let s): return .invalid(s)
            case .notFound(let s): return .notFound(s)
            case .full(let s): return ControlError("map full: \(s)")
            case .notLoaded: return ControlError("the data plane is not loaded")
            }
        case let e as HTTPError:
            switch e.status {
            case .notFound: return .notFound("no route \(request.method) \(request.uri.path)")
            case .contentTooLarge: return .invalid("request body over \(APIServer.maximumBody) bytes")
            case .methodNotAllowed: return .notFound("\(request.method) is not served on \(request.uri.path)")
            default: return .invalid(e.body ?? "\(e.status)")
            }
        case is NIOThreadPoolError.ThreadPoolInactive:
            return .unavailable("batond is shutting down")
        default:
            return ControlError("\(error)")
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
