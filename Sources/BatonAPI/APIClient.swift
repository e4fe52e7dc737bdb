import AsyncHTTPClient
import BatonModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

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

/// A client of one daemon's API. Calls block (batonctl, tests); `send(...) async` is for
/// callers that keep many requests in flight (the benchmark). Every failure is a ControlError:
/// the daemon's own (with its code), or `.unavailable` when nothing answers.
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

    /// A request for `path` (starting with '/', query included).
    func request(_ method: APIRoute.Method, _ path: String, body: Data?) throws -> HTTPClient.Request {
        var headers = HTTPHeaders()
        if body != nil { headers.add(name: "Content-Type", value: "application/json") }
        let m = HTTPMethod(rawValue: method.rawValue)
        switch endpoint {
        case .unix(let socket):
            guard !socket.isEmpty, let url = URL(httpURLWithSocketPath: socket, uri: path) else {
                throw ControlError.invalid("invalid control socket path '\(socket)'")
            }
            return try HTTPClient.Request(url: url, method: m, headers: headers, body: body.map { .data($0) })
        case .https(let base, let tls):
            guard let url = URL(string: base + path), url.scheme == "https" else {
                throw ControlError.invalid("invalid API address '\(base)': expected https://HOST:PORT")
            }
            return try HTTPClient.Request(url: url, method: m, headers: headers, body: body.map { .data($0) },
                                          tlsConfiguration: try tls.configuration())
        }
    }

    /// The raw exchange: status and body. Throws only when no answer came.
    public func send(_ method: APIRoute.Method, _ path: String, body: Data? = nil) throws -> (status: Int, body: Data) {
        let r = try request(method, path, body: body)
        do {
            let response = try HTTPClient.shared.execute(request: r, deadline: .now() + .milliseconds(Int64(timeout * 1000))).wait()
            return (Int(response.status.code), response.body.map { Data($0.readableBytesView) } ?? Data())
        } catch {
            throw unreachable(error)
        }
    }

    public func sendAsync(_ method: APIRoute.Method, _ path: String, body: Data? = nil) async throws -> (status: Int, body: Data) {
        let r = try request(method, path, body: body)
        do {
            let response = try await HTTPClient.shared.execute(request: r, deadline: .now() + .milliseconds(Int64(timeout * 1000))).get()
            return (Int(response.status.code), response.body.map { Data($0.readableBytesView) } ?? Data())
        } catch {
            throw unreachable(error)
        }
    }

    private func unreachable(_ error: any Error) -> ControlError {
        if case .unix(let path) = endpoint, !FileManager.default.fileExists(atPath: path) {
            return .unavailable("no daemon at \(path): is batond running? (--control)")
        }
        return .unavailable("no answer from batond at \(endpoint): \(error)")
    }

    /// Decodes a 2xx answer as `T`, or throws the daemon's error.
    public static func decode<T: Decodable>(_ answer: (status: Int, body: Data), as: T.Type) throws -> T {
        guard (200..<300).contains(answer.status) else { throw error(answer) }
        do {
            return try JSONDecoder().decode(T.self, from: answer.body)
        } catch {
            throw ControlError("the daemon's answer is not understood: \(error)", code: .internal)
        }
    }

    /// The daemon's error answer as a ControlError.
    public static func error(_ answer: (status: Int, body: Data)) -> ControlError {
        if let e = try? JSONDecoder().decode(ErrorBody.self, from: answer.body), let code = ControlError.Code(rawValue: e.code) {
            return ControlError(e.error, code: code)
        }
        let text = String(decoding: answer.body.prefix(200), as: UTF8.self)
        return ControlError("HTTP \(answer.status): \(text)", code: answer.status >= 500 ? .internal : .invalid)
    }

    func call<T: Decodable>(_ method: APIRoute.Method, _ path: String, _ body: (some Encodable)? = nil as String?,
                            as: T.Type) throws -> T {
        let data = try body.map { try JSONEncoder().encode($0) }
        return try Self.decode(send(method, path, body: data), as: T.self)
    }

    func call(_ method: APIRoute.Method, _ path: String) throws {
        let answer = try send(method, path)
        guard (200..<300).contains(answer.status) else { throw Self.error(answer) }
    }

    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? segment
    }

    // MARK: - Typed calls

    public func status() throws -> DaemonStatus { try call(.GET, "/v1/status", as: DaemonStatus.self) }

    public func start(_ request: TransferRequest) throws -> TransferInfo {
        try call(.POST, "/v1/transfers", request, as: TransferInfo.self)
    }

    public func list() throws -> [TransferInfo] { try call(.GET, "/v1/transfers", as: TransferList.self).transfers }

    public func show(_ id: String) throws -> TransferInfo {
        try call(.GET, "/v1/transfers/\(Self.escape(id))", as: TransferInfo.self)
    }

    @discardableResult
    public func end(_ id: String) throws -> TransferInfo {
        try call(.POST, "/v1/transfers/\(Self.escape(id))/end", as: TransferInfo.self)
    }

    public func devices() throws -> [Device] { try call(.GET, "/v1/devices", as: DeviceList.self).devices }

    public func device(_ name: String) throws -> Device { try call(.GET, "/v1/devices/\(Self.escape(name))", as: Device.self) }

    @discardableResult
    public func addDevice(_ device: Device) throws -> Device { try call(.POST, "/v1/devices", device, as: Device.self) }

    public func deleteDevice(_ name: String) throws { try call(.DELETE, "/v1/devices/\(Self.escape(name))") }

    public func policies() throws -> [Policy] { try call(.GET, "/v1/policies", as: PolicyList.self).policies }

    @discardableResult
    public func addPolicy(_ policy: Policy) throws -> Policy { try call(.POST, "/v1/policies", policy, as: Policy.self) }

    public func deletePolicy(_ id: Int) throws { try call(.DELETE, "/v1/policies/\(id)") }

    public func register(_ batch: RegistrationBatch) throws -> [RegistrationResult] {
        try call(.POST, "/v1/registrations", batch, as: RegistrationResults.self).results
    }

    /// The Prometheus text exposition.
    public func metrics() throws -> String {
        let answer = try send(.GET, "/metrics")
        guard (200..<300).contains(answer.status) else { throw Self.error(answer) }
        return String(decoding: answer.body, as: UTF8.self)
    }
}
