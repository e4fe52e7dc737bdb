// The HTTP edges of the generated API against a real agent, with curl over the Unix socket:
// what no operation matches, what the generated code cannot read, and bodies past the cap.
// Each answer is an ErrorBody with the code of its status (docs/api.md).

import BatonAPI
import BatonLab
import Foundation
import Glibc
import Testing

@Suite("API edges", .serialized)
struct APIEdgeTests {
    struct Answer {
        var status: Int
        var headers: [String: String]
        var error: ErrorBody?
    }

    /// One request with curl: the status, the headers (lowercased names) and the error body.
    static func curl(_ socket: String, _ method: String, _ path: String, contentType: String? = nil,
                     body: Data? = nil) throws -> Answer {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("api-edge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var arguments = ["-s", "-o", dir.appendingPathComponent("body").path, "-D", dir.appendingPathComponent("headers").path,
                         "--unix-socket", socket, "-X", method, "http://localhost\(path)"]
        if let contentType { arguments += ["-H", "Content-Type: \(contentType)"] }
        if let body {
            try body.write(to: dir.appendingPathComponent("request"))
            arguments += ["--data-binary", "@" + dir.appendingPathComponent("request").path]
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = arguments
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "curl \(arguments) exited \(p.terminationStatus)")
        let lines = try String(contentsOf: dir.appendingPathComponent("headers"), encoding: .utf8)
            .split(whereSeparator: \.isNewline)
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let data = (try? Data(contentsOf: dir.appendingPathComponent("body"))) ?? Data()
        return Answer(status: status, headers: headers, error: try? JSONDecoder().decode(ErrorBody.self, from: data))
    }

    @Test func answersWhatNoOperationMatchesWithErrorBodies() throws {
        try TransferCLITests.withDaemons { _, daemons in
            let agent = daemons.agent.control, node = daemons.tn.control
            func expectError(_ a: Answer, _ status: Int, _ code: ControlError.Code, _ text: String,
                             sourceLocation: SourceLocation = #_sourceLocation) {
                #expect(a.status == status, "status \(a.status)", sourceLocation: sourceLocation)
                #expect(a.error?.code == code, "code \(String(describing: a.error?.code))", sourceLocation: sourceLocation)
                #expect(a.error?.error.contains(text) == true, "error \(a.error?.error ?? "none")", sourceLocation: sourceLocation)
                #expect(a.headers["content-type"]?.hasPrefix("application/json") == true, sourceLocation: sourceLocation)
            }
            expectError(try Self.curl(agent, "GET", "/nope"), 404, .notFound, "no route GET /nope")
            // A served path with another method: 405 and Allow, from the generated route table.
            let wrongMethod = try Self.curl(agent, "DELETE", "/v1/transfers")
            expectError(wrongMethod, 405, .invalid, "it takes")
            #expect(Set((wrongMethod.headers["allow"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                    == ["GET", "POST"])
            #expect(try Self.curl(agent, "PUT", "/v1/devices/tn").headers["allow"].map { Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) } == ["GET", "DELETE"])
            // The other role's operation: 404 naming who serves it.
            expectError(try Self.curl(node, "GET", "/v1/devices"), 404, .notFound, "is served by the agent (batond agent), not by a node")
            expectError(try Self.curl(agent, "POST", "/v1/transfers", contentType: "application/json", body: Data("{}".utf8)),
                        404, .notFound, "is served by a node (batond node), not by the agent")
            // Bodies the generated code cannot read.
            expectError(try Self.curl(agent, "POST", "/v1/devices", contentType: "application/json", body: Data(#"{"name": 3}"#.utf8)),
                        400, .invalid, "name: expected String")
            expectError(try Self.curl(agent, "POST", "/v1/devices", contentType: "text/plain", body: Data("hello".utf8)),
                        400, .invalid, "content type")
            expectError(try Self.curl(agent, "POST", "/v1/policies", contentType: "application/json", body: Data("{".utf8)),
                        400, .invalid, "malformed request body")
            // Past the cap: 413, and the daemon goes on.
            expectError(try Self.curl(agent, "POST", "/v1/registrations", contentType: "application/json",
                                      body: Data(count: (8 << 20) + 1)),
                        413, .invalid, "request body over")
            // Path parameters the document's patterns refuse.
            expectError(try Self.curl(agent, "GET", "/v1/devices/bad%2Fname"), 400, .invalid, "invalid device name")
            expectError(try Self.curl(agent, "GET", "/v1/transfers/zz"), 400, .invalid, "invalid transfer ID")
            expectError(try Self.curl(agent, "DELETE", "/v1/policies/abc"), 400, .invalid, "invalid policy ID")
            #expect(try Self.curl(agent, "GET", "/v1/status").status == 200)
        }
    }
}

extension APIEdgeTests {
    /// A connection to the Unix socket; nil when it cannot connect.
    static func connect(_ path: String) -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { close(fd); return nil }
        return fd
    }

    /// Whether the daemon closes `fd` within `seconds` (a read returns end of file).
    static func closedByPeer(_ fd: Int32, within seconds: Double) -> Bool {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        let n = read(fd, &byte, 1)
        // End of file, or the daemon reset it.
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }

    /// Issue 12 item 9: idle connections are closed after --api-idle-timeout, and past
    /// --api-max-connections a new connection is closed as it comes; the API goes on serving.
    @Test func idleConnectionsAndTooManyAreClosed() throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--api-idle-timeout", "2", "--api-max-connections", "3"]
        try TransferCLITests.withDaemons(options: options) { _, daemons in
            let socket = daemons.agent.control
            let idle = try #require(Self.connect(socket))
            defer { close(idle) }
            #expect(Self.closedByPeer(idle, within: 6), "an idle connection stayed open")
            // More than the cap held open (this process's own client may hold one more):
            // those past it are closed at once, and the agent says why, once.
            let opened = (0..<5).compactMap { _ in Self.connect(socket) }
            #expect(opened.count == 5)
            // (All five checked well within the idle timeout, so only the cap closes any.)
            let closed = opened.filter { Self.closedByPeer($0, within: 0.2) }.count
            #expect(closed >= 2, "connections past the cap were served (\(closed) of 5 closed)")
            #expect(daemons.agent.logText().contains("3 connections open (--api-max-connections); closing new ones"))
            opened.forEach { close($0) }
            Thread.sleep(forTimeInterval: 0.2)
            #expect(try Self.curl(socket, "GET", "/v1/status").status == 200, "the API serves again once they are gone")
        }
    }
}
