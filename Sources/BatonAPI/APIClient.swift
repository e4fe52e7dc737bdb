import AsyncHTTPClient
import BatonModel
import Foundation
import HTTPTypes
import NIOCore
import NIOSSL
import OpenAPIRuntime

/// Where a batond API listens: its Unix socket (local, root only), or HTTPS with client
/// certificates (remote).
public enum APIEndpoint: Sendable, CustomStringConvertible {
    case unix(path: String)
    /// `base` like "https://10.0.0.2:7391".
    case https(base: String, tls: ClientTLS)

    public var description: String {
        switch self {
        case .unix(let path): path
        case .https(let base, _): base
        }
    }
}

/// The files a remote client presents and trusts (PEM).
public struct ClientTLS: Sendable {
    /// The CA that signed the daemon's certificate.
    public var ca: String
    /// This client's certificate and key (the daemon's --tls-client-ca signed them).
    public var certificate: String?
    public var key: String?

    public init(ca: String, certificate: String? = nil, key: String? = nil) {
        self.ca = ca
        self.certificate = certificate
        self.key = key
    }

    func configuration() throws -> TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        do {
            c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            if let certificate, let key {
                c.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                c.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            }
        } catch {
            throw ControlError.invalid("cannot read the TLS files (\(ca)\(certificate.map { ", \($0)" } ?? "")): \(error)")
        }
        return c
    }
}

/// A client of one daemon's API: the generated `Client` (docs/openapi.json) over
/// AsyncHTTPClient (`FutureTransport`), with calls that block for batonctl and the tests. `perform` is the async
/// way in for callers that keep many requests in flight (the benchmark). Every failure is a
/// ControlError: the daemon's own (its code from the ErrorBody), `.unavailable` when nothing
/// answers, `._internal` when the answer is not understood.
public struct Control: Sendable {
    public let endpoint: APIEndpoint
    public let timeout: Double

    public init(path: String, timeout: Double = 30) {
        self.init(endpoint: .unix(path: path), timeout: timeout)
    }

    public init(endpoint: APIEndpoint, timeout: Double = 30) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    /// Runs `call` with a generated client for this endpoint.
    public func perform<T: Sendable>(_ call: @Sendable (Client) async throws -> T) async throws -> T {
        let timeout = TimeAmount.milliseconds(Int64(self.timeout * 1000))
        let http: HTTPClient, owned: Bool, serverURL: URL
        switch endpoint {
        case .unix(let socket):
            // "http+unix://%2Frun%2Fbaton%2Fbatond.sock": the socket path as the host, with no
            // trailing '/' (the generated client appends "/v1/...").
            guard !socket.isEmpty, let host = socket.addingPercentEncoding(withAllowedCharacters: .urlHostAllowed),
                  let url = URL(string: "http+unix://" + host) else {
                throw ControlError.invalid("invalid control socket path '\(socket)'")
            }
            (http, owned, serverURL) = (.shared, false, url)
        case .https(let base, let tls):
            guard let url = URL(string: base), url.scheme == "https", url.host != nil else {
                throw ControlError.invalid("invalid API address '\(base)': expected https://HOST:PORT")
            }
            // A TLS configuration is per client in AsyncHTTPClient: one for this call.
            http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: try tls.configuration()))
            (owned, serverURL) = (true, url)
        }
        let client = Client(serverURL: serverURL,
                            transport: FutureTransport(client: http, timeout: timeout),
                            middlewares: [DaemonErrors()])
        do {
            let value = try await call(client)
            if owned { try? await http.shutdown() }
            return value
        } catch {
            if owned { try? await http.shutdown() }
            throw describe(error)
        }
    }

    /// `perform`, waited for: for batonctl's commands and for tests, which are not async.
    public func wait<T: Sendable>(_ call: @escaping @Sendable (Client) async throws -> T) throws -> T {
        let control = self
        return try BlockingBridge.run { try await control.perform(call) }
    }

    private func describe(_ error: any Error) -> ControlError {
        let underlying = (error as? ClientError)?.underlyingError ?? error
        switch underlying {
        case let e as ControlError: return e
        case is DecodingError: return ControlError("the daemon's answer is not understood: \(underlying)", code: ._internal)
        default: break
        }
        if case .unix(let path) = endpoint, !FileManager.default.fileExists(atPath: path) {
            return .unavailable("no daemon at \(path): is batond running? (--control)")
        }
        return .unavailable("no answer from batond at \(endpoint): \(underlying)")
    }

    /// The daemon's error answer as a ControlError.
    static func error(status: Int, body: Data) -> ControlError {
        if let e = try? JSONDecoder().decode(ErrorBody.self, from: body) { return ControlError(e.error, code: e.code) }
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        return ControlError("HTTP \(status): \(text)", code: status >= 500 ? ._internal : .invalid)
    }

    // MARK: - Typed calls

    public func status() throws -> DaemonStatus { try wait { try await $0.status().ok.body.json } }

    public func start(_ request: TransferRequest) throws -> TransferInfo {
        try wait { try await $0.startTransfer(body: .json(request)).created.body.json }
    }

    public func list() throws -> [TransferInfo] { try wait { try await $0.listTransfers().ok.body.json.transfers } }

    public func show(_ id: String) throws -> TransferInfo {
        try wait { try await $0.showTransfer(path: .init(id: id)).ok.body.json }
    }

    @discardableResult
    public func end(_ id: String, force: Bool = false) throws -> TransferInfo {
        try wait { try await $0.endTransfer(path: .init(id: id), query: .init(force: force ? true : nil)).ok.body.json }
    }

    public func devices() throws -> [Device] { try wait { try await $0.listDevices().ok.body.json.devices } }

    public func device(_ name: String) throws -> Device {
        try wait { try await $0.showDevice(path: .init(name: name)).ok.body.json }
    }

    @discardableResult
    public func addDevice(_ device: Device) throws -> Device {
        try wait { try await $0.addDevice(body: .json(device)).created.body.json }
    }

    public func deleteDevice(_ name: String) throws {
        try wait { _ = try await $0.deleteDevice(path: .init(name: name)).noContent }
    }

    public func policies() throws -> [Policy] { try wait { try await $0.listPolicies().ok.body.json.policies } }

    @discardableResult
    public func addPolicy(_ policy: Policy) throws -> Policy {
        try wait { try await $0.addPolicy(body: .json(policy)).created.body.json }
    }

    public func deletePolicy(_ id: Int) throws {
        try wait { _ = try await $0.deletePolicy(path: .init(id: String(id))).noContent }
    }

    public func register(_ batch: RegistrationBatch) throws -> [RegistrationResult] {
        try wait { try await $0.register(body: .json(batch)).ok.body.json.results }
    }

    public func anchors() throws -> [AnchorInfo] { try wait { try await $0.listAnchors().ok.body.json.anchors } }

    public func createAnchor(_ request: AnchorRequest) throws -> AnchorInfo {
        try wait { try await $0.createAnchor(body: .json(request)).created.body.json }
    }

    public func anchor(_ id: String) throws -> AnchorInfo {
        try wait { try await $0.showAnchor(path: .init(id: id)).ok.body.json }
    }

    public func moveAnchor(_ id: String, _ move: AnchorMove) throws -> AnchorInfo {
        try wait { try await $0.moveAnchor(path: .init(id: id), body: .json(move)).ok.body.json }
    }

    @discardableResult
    public func endAnchor(_ id: String) throws -> AnchorInfo {
        try wait { try await $0.endAnchor(path: .init(id: id)).ok.body.json }
    }

    public func sipUsers() throws -> [SIPUser] { try wait { try await $0.listSIPUsers().ok.body.json.users } }

    public func addSIPUser(_ request: SIPUserRequest) throws -> SIPUser {
        try wait { try await $0.addSIPUser(body: .json(request)).created.body.json }
    }

    public func deleteSIPUser(_ username: String) throws {
        try wait { _ = try await $0.deleteSIPUser(path: .init(username: username)).noContent }
    }

    public func sipRegistrations() throws -> [SIPRegistration] {
        try wait { try await $0.listSIPRegistrations().ok.body.json.registrations }
    }

    public func sipCalls() throws -> [SIPCall] { try wait { try await $0.listSIPCalls().ok.body.json.calls } }

    public func sipCall(_ id: String) throws -> SIPCall { try wait { try await $0.showSIPCall(path: .init(id: id)).ok.body.json } }

    /// The Prometheus text exposition.
    public func metrics() throws -> String {
        try wait { try await String(collecting: $0.metrics().ok.body.plainText, upTo: 64 << 20) }
    }
}

/// Every answer that is not 2xx becomes the daemon's ControlError here, before the generated
/// code looks at it (each operation's output would otherwise spell the same errors out again).
struct DaemonErrors: ClientMiddleware {
    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, answer) = try await next(request, body, baseURL)
        guard response.status.kind != .successful else { return (response, answer) }
        var data = Data()
        if let answer { data = try await Data(collecting: answer, upTo: 1 << 20) }
        throw Control.error(status: response.status.code, body: data)
    }
}
