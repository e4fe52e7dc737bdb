import BatonAPI
import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import NIOSSL

/// What a client certificate may do on the HTTPS listener. The role is the certificate's
/// subject OU (`OU=operator` or `OU=registrar`): a certificate that names neither may do
/// nothing, so a CA that also signs other certificates does not make them all administrators.
/// The Unix socket (root only) is the operator's and has no certificate.
public enum ClientRole: String, Sendable, CaseIterable {
    /// Every operation.
    case `operator`
    /// Enrolment only: list, show and add devices (a provisioning system), nothing else.
    case registrar

    /// Whether this role may call `method` on `path` (the path without its query).
    func allows(_ method: HTTPRequest.Method, _ path: Substring) -> Bool {
        switch self {
        case .operator: return true
        case .registrar:
            if path == "/v1/devices" { return method == .get || method == .post }
            return method == .get && path.hasPrefix("/v1/devices/") && !path.dropFirst("/v1/devices/".count).contains("/")
        }
    }
}

/// Which client certificates the HTTPS listener takes, beyond the CA's signature: their roles,
/// and the serial numbers revoked (`--tls-revoked`: one hexadecimal serial a line, `#`
/// comments; read at start).
public struct ClientCertificatePolicy: Sendable {
    public var revoked: Set<[UInt8]>

    public init(revoked: Set<[UInt8]> = []) { self.revoked = revoked }

    /// Reads a revocation file; throws what is wrong with it, by line.
    public static func load(revokedFile path: String) throws -> ClientCertificatePolicy {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ControlError.invalid("cannot read --tls-revoked \(path): \(error.localizedDescription)")
        }
        var revoked = Set<[UInt8]>()
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .trimmingCharacters(in: .whitespaces).replacingOccurrences(of: ":", with: "").lowercased()
            guard !line.isEmpty else { continue }
            guard let serial = serialBytes(line) else {
                throw ControlError.invalid("--tls-revoked \(path) line \(n + 1): '\(raw)' is not a hexadecimal serial number")
            }
            revoked.insert(serial)
        }
        return ClientCertificatePolicy(revoked: revoked)
    }

    /// A serial number's bytes, leading zeros dropped (as NIOSSL reports them); nil unless hex.
    static func serialBytes(_ hex: String) -> [UInt8]? {
        guard !hex.isEmpty, hex.count <= 64, hex.allSatisfy(\.isHexDigit) else { return nil }
        let even = hex.count % 2 == 0 ? hex : "0" + hex
        var bytes: [UInt8] = []
        var i = even.startIndex
        while i < even.endIndex {
            let j = even.index(i, offsetBy: 2)
            bytes.append(UInt8(even[i..<j], radix: 16)!)
            i = j
        }
        return Array(bytes.drop { $0 == 0 })
    }

    /// The certificate's role, or why it has none here.
    func role(of certificate: NIOSSLCertificate?) -> Result<ClientRole, Refusal> {
        guard let certificate else { return .failure(Refusal(reason: "no client certificate", close: true)) }
        if revoked.contains(Array(certificate.serialNumber.drop { $0 == 0 })) {
            let serial = certificate.serialNumber.map { String(format: "%02x", $0) }.joined()
            return .failure(Refusal(reason: "the client certificate (serial \(serial)) is revoked", close: true))
        }
        let units = certificate.subjectName.filter { $0.type == .organizationalUnit }.map(\.value)
        let roles = units.compactMap(ClientRole.init(rawValue:))
        guard roles.count == 1 else {
            return .failure(Refusal(reason: roles.isEmpty
                ? "the client certificate names no role: its subject needs OU=operator or OU=registrar"
                : "the client certificate names more than one role (\(roles.map(\.rawValue).joined(separator: ", ")))", close: false))
        }
        return .success(roles[0])
    }

    struct Refusal: Error {
        var reason: String
        /// Close the connection after answering (a revoked certificate gets nothing more).
        var close: Bool
    }
}

/// Sits after the HTTP codec on each HTTPS connection: learns the peer certificate's role once,
/// then answers 403 to every request the role may not make (its body dropped) and passes the
/// others on. A revoked certificate is answered once and the connection closed.
final class ClientCertificateGate: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let policy: ClientCertificatePolicy
    private let logger: Logger
    private var role: Result<ClientRole, ClientCertificatePolicy.Refusal>?
    /// The request being refused: its body and end are dropped.
    private var refusing = false

    init(policy: ClientCertificatePolicy, logger: Logger) {
        self.policy = policy
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard case .head(let request) = part else {
            if refusing {
                if case .end = part { refusing = false }
                return
            }
            context.fireChannelRead(data)
            return
        }
        if role == nil {
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self).peerCertificate
            role = policy.role(of: peer)
        }
        let path = (request.path ?? "/").split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        switch role! {
        case .success(let r) where r.allows(request.method, path):
            context.fireChannelRead(data)
        case .success(let r):
            refuse(context, "a \(r.rawValue) certificate may not \(request.method) \(path)", close: false)
        case .failure(let refusal):
            logger.warning("API: refused a request over HTTPS: \(refusal.reason)")
            refuse(context, refusal.reason, close: refusal.close)
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ reason: String, close: Bool) {
        refusing = true
        let body = (try? JSONEncoder().encode(ErrorBody(code: .forbidden, error: reason))) ?? Data()
        var head = HTTPResponse(status: .forbidden)
        head.headerFields[.contentType] = "application/json"
        head.headerFields[.contentLength] = "\(body.count)"
        if close { head.headerFields[.connection] = "close" }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(bytes: body))), promise: nil)
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if close {
            let channel = context.channel
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
