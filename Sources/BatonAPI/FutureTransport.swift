import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import OpenAPIRuntime

/// The generated client's transport: AsyncHTTPClient through its EventLoopFuture API, with the
/// request body buffered. (swift-openapi-async-http-client's transport uses AsyncHTTPClient's
/// async API, which streams a request body from a task of its own on Swift's cooperative pool;
/// `Control.wait` must work while a caller blocks that pool, see BlockingBridge.)
struct FutureTransport: ClientTransport {
    let client: HTTPClient
    let timeout: TimeAmount
    /// The daemon refuses larger request bodies (APIServer.maximumBody).
    static let maximumRequest = 8 << 20

    func send(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String) async throws -> (HTTPResponse, HTTPBody?) {
        guard let url = URL(string: baseURL.absoluteString + (request.path ?? "")) else {
            throw ControlError.invalid("cannot make a URL of \(baseURL) and \(request.path ?? "")")
        }
        var headers = HTTPHeaders()
        for field in request.headerFields { headers.add(name: field.name.canonicalName, value: field.value) }
        var outgoing = try HTTPClient.Request(url: url, method: HTTPMethod(rawValue: request.method.rawValue), headers: headers)
        if let body {
            outgoing.body = .data(try await Data(collecting: body, upTo: Self.maximumRequest))
        }
        let response = try await client.execute(request: outgoing, deadline: .now() + timeout).get()
        var fields = HTTPFields()
        for (name, value) in response.headers {
            if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
        }
        let answer = response.body.map { HTTPBody(Array($0.readableBytesView)) }
        return (HTTPResponse(status: .init(code: Int(response.status.code)), headerFields: fields), answer)
    }
}
