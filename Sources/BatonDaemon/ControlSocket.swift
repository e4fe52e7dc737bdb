import Foundation
import Glibc

// The local control channel between batonctl and batond: a Unix stream socket,
// one JSON request per line, one JSON response per line. Access is the
// socket file's permission (0600, root). All system calls of BatonDaemon are
// in this file.

/// Something went wrong on the control socket, as one line.
public struct ControlError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> ControlError {
        ControlError("\(what): \(String(cString: strerror(code)))")
    }
}

private func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) throws -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else {
        throw ControlError("control socket path '\(path)' is empty or longer than \(capacity - 1) bytes")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// One connected stream: reads lines, writes lines.
final class ControlStream: @unchecked Sendable {
    private let fd: CInt
    private var buffer: [UInt8] = []
    private var closed = false
    /// Requests and responses are small; this bounds what a client can make us buffer.
    static let maximumLine = 4 << 20

    init(fd: CInt) { self.fd = fd }
    deinit { close() }

    func close() {
        if !closed { _ = Glibc.close(fd) }
        closed = true
    }

    func setReceiveTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next line without its newline; nil at end of stream.
    func readLine() throws -> [UInt8]? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            guard buffer.count < Self.maximumLine else { throw ControlError("control message longer than \(Self.maximumLine) bytes") }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { throw ControlError("timed out waiting for the daemon's answer") }
                throw ControlError.errno("read from control socket")
            }
            if n == 0 { return buffer.isEmpty ? nil : { defer { buffer = [] }; return buffer }() }
            buffer += chunk[..<n]
        }
    }

    func writeLine(_ bytes: [UInt8]) throws {
        var data = bytes
        data.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < data.count {
            let n = data[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ControlError.errno("write to control socket")
            }
            offset += n
        }
    }
}

/// Listens on a Unix socket path; each connection is served on its own thread.
public final class ControlListener: @unchecked Sendable {
    public let path: String
    private let fd: CInt
    private let lock = NSLock()
    private var stopped = false

    /// Binds `path` (mode 0600). A stale socket file (no daemon behind it) is replaced; a live
    /// one is an error, so two daemons never share a path.
    public init(path: String) throws {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        if FileManager.default.fileExists(atPath: path) {
            if (try? ControlClient(path: path).close()) != nil {
                throw ControlError("another daemon is serving \(path)")
            }
            unlink(path)
        }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError.errno("socket(AF_UNIX)") }
        let previous = umask(0o177)
        defer { umask(previous) }
        let bound = try withUnixAddress(path) { Glibc.bind(fd, $0, $1) }
        guard bound == 0 else {
            let code = errno
            Glibc.close(fd)
            throw ControlError.errno("bind \(path)", code)
        }
        guard listen(fd, 64) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw ControlError.errno("listen on \(path)", code)
        }
    }

    /// Accepts connections until `stop()`, calling `handle` with each request line on the
    /// connection's thread and writing back what it returns.
    public func serve(_ handle: @escaping @Sendable ([UInt8]) -> [UInt8]) {
        Thread.detachNewThread { [self] in
            while !lock.withLock({ stopped }) {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 200) > 0 else { continue }
                let client = accept(fd, nil, nil)
                guard client >= 0 else { continue }
                Thread.detachNewThread {
                    let stream = ControlStream(fd: client)
                    while let line = try? stream.readLine() {
                        guard (try? stream.writeLine(handle(line))) != nil else { break }
                    }
                    stream.close()
                }
            }
        }
    }

    public func stop() {
        lock.withLock { stopped = true }
        unlink(path)
        Glibc.close(fd)
    }
}

/// A connection to a daemon's control socket.
public final class ControlClient: @unchecked Sendable {
    private let stream: ControlStream

    public init(path: String, timeout: Double = 30) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError.errno("socket(AF_UNIX)") }
        let connected = try withUnixAddress(path) { Glibc.connect(fd, $0, $1) }
        guard connected == 0 else {
            let code = errno
            Glibc.close(fd)
            if code == ENOENT || code == ECONNREFUSED {
                throw ControlError("no daemon at \(path) (\(String(cString: strerror(code)))): is batond running? (--control)")
            }
            throw ControlError.errno("connect to \(path)", code)
        }
        stream = ControlStream(fd: fd)
        stream.setReceiveTimeout(timeout)
    }

    /// Sends one request line and returns the response line.
    public func exchange(_ line: [UInt8]) throws -> [UInt8] {
        try stream.writeLine(line)
        guard let response = try stream.readLine() else { throw ControlError("the daemon closed the connection") }
        return response
    }

    public func close() { stream.close() }
}
