import BatonModel
import CMnl
import Foundation
import Glibc
import Synchronization

/// Owns a socket descriptor; closes it once. Shared by the socket types below.
final class SocketHandle: Sendable {
    /// -1 once closed.
    private let fd: Mutex<CInt>

    init(_ fd: CInt) { self.fd = Mutex(fd) }
    deinit { close() }

    /// The descriptor, or EBADF after `close()`.
    func get(_ operation: String) throws -> CInt {
        let fd = self.fd.withLock { $0 }
        guard fd >= 0 else { throw NetError(subsystem: "socket", operation: operation, errno: EBADF) }
        return fd
    }

    /// The bound address and port.
    func localAddress() throws -> SocketAddress {
        try NetError.wrap("socket", "getsockname") { socketAddress(try Kernel.localAddress(try get("getsockname"))) }
    }

    func close() {
        fd.withLock { fd in
            if fd >= 0 { _ = Glibc.close(fd) }
            fd = -1
        }
    }
}

private func milliseconds(_ duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    return max(0, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
}

private func socketAddress(_ raw: (address: [UInt8], port: UInt16)) -> SocketAddress {
    SocketAddress(IPAddress(wire: raw.address)!, port: raw.port)
}

/// A received datagram.
public struct Datagram: Sendable {
    public var payload: [UInt8]
    public var source: SocketAddress
    /// How long ago (nanoseconds) the kernel received it, measured as it was read; nil unless
    /// the socket records kernel times (`recordKernelTimes`). A receiver's own wake-up delay
    /// is then not counted as the network's.
    public var age: UInt64? = nil
}

/// A UDP socket for tests and benchmarks. It lives in the namespace of the thread that made it
/// (`init(in:…)` picks one) and can then be used from any thread.
public final class UDPSocket: Sendable {
    private let handle: SocketHandle
    public let family: IPAddress.Family

    /// A socket bound to `address` (default: any) and `port` (default: an ephemeral one), in
    /// the calling thread's namespace.
    public init(family: IPAddress.Family, address: IPAddress? = nil, port: UInt16 = 0) throws {
        let bindAddress = address ?? .any(family)
        let operation = "bind UDP \(SocketAddress(bindAddress, port: port))"
        guard bindAddress.family == family else {
            throw NetError(subsystem: "socket", operation: operation, errno: EAFNOSUPPORT)
        }
        self.family = family
        handle = SocketHandle(try NetError.wrap("socket", operation) { try Self.bound(bindAddress, port: port) })
    }

    private static func bound(_ address: IPAddress, port: UInt16) throws(Errno) -> CInt {
        let fd = try Kernel.socket(family: address.family.addressFamily, type: Int32(SOCK_DGRAM.rawValue))
        do {
            if address.family == .v6 { try Kernel.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1) }
            try Kernel.bind(fd, address: address.wireBytes, port: port)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// A UDP socket bound to `address` and `port`, as a bare descriptor for an event loop to
    /// adopt (SwiftNIO's `DatagramBootstrap.withBoundSocket`): the caller owns it. Binding here
    /// rather than in the loop makes a taken port an error at once, on the calling thread.
    public static func boundDescriptor(_ address: IPAddress, port: UInt16) throws -> CInt {
        try NetError.wrap("socket", "bind UDP \(SocketAddress(address, port: port))") { try bound(address, port: port) }
    }

    /// The same, made inside `namespace`.
    public convenience init(in namespace: NetworkNamespace, family: IPAddress.Family, address: IPAddress? = nil, port: UInt16 = 0) throws {
        let handle = try namespace.run { try UDPSocket(family: family, address: address, port: port) }
        self.init(adopting: handle)
    }

    private init(adopting other: UDPSocket) {
        handle = other.handle
        family = other.family
    }

    /// The bound address and port (the port the kernel picked, if 0 was asked).
    public func localAddress() throws -> SocketAddress { try handle.localAddress() }

    public func send(_ payload: [UInt8], to destination: SocketAddress) throws {
        let operation = "send UDP to \(destination)"
        try NetError.wrap("socket", operation) {
            try Kernel.sendTo(try handle.get(operation), payload, address: destination.address.wireBytes, port: destination.port)
        }
    }

    public func send(_ payload: [UInt8], to address: IPAddress, port: UInt16) throws {
        try send(payload, to: SocketAddress(address, port: port))
    }

    /// The next datagram, or nil if none arrives within `timeout`.
    public func receive(timeout: Duration, maximumSize: Int = 65536) throws -> Datagram? {
        let operation = "receive UDP"
        return try NetError.wrap("socket", operation) {
            let fd = try handle.get(operation)
            let deadline = ContinuousClock.now + timeout
            while true {
                if let (payload, address, port, kernelTime) = try Kernel.receiveFrom(fd, maximum: maximumSize) {
                    let age = kernelTime.map { stamp in Kernel.realtimeNanoseconds().subtractingReportingOverflow(stamp) }
                    return Datagram(payload: payload, source: SocketAddress(IPAddress(wire: address)!, port: port),
                                    age: age.map { $0.overflow ? 0 : $0.partialValue })
                }
                let left = deadline - ContinuousClock.now
                if left <= .zero { return nil }
                _ = try Kernel.wait(fd, events: Int16(POLLIN), milliseconds: milliseconds(left) + 1)
            }
        }
    }

    /// Has the kernel stamp each datagram's arrival (SO_TIMESTAMPNS): `Datagram.age`.
    public func recordKernelTimes() throws {
        try NetError.wrap("socket", "set SO_TIMESTAMPNS") {
            try Kernel.setOption(try handle.get("setsockopt"), level: SOL_SOCKET, name: Kernel.timestampOption, value: 1)
        }
    }

    /// SO_RCVBUF (the kernel doubles it and caps it at net.core.rmem_max); with `force`,
    /// SO_RCVBUFFORCE, which root may set past that cap (net.core.rmem_max is not per namespace).
    public func setReceiveBufferSize(_ bytes: Int, force: Bool = false) throws {
        let name = force ? SO_RCVBUFFORCE : SO_RCVBUF
        try NetError.wrap("socket", "set \(force ? "SO_RCVBUFFORCE" : "SO_RCVBUF") \(bytes)") {
            try Kernel.setOption(try handle.get("setsockopt"), level: SOL_SOCKET, name: name, value: CInt(clamping: bytes))
        }
    }

    public func receiveBufferSize() throws -> Int {
        try NetError.wrap("socket", "get SO_RCVBUF") {
            Int(try Kernel.option(try handle.get("getsockopt"), level: SOL_SOCKET, name: SO_RCVBUF))
        }
    }

    public func close() { handle.close() }
}

/// A listening TCP socket (see `UDPSocket` for namespaces).
public final class TCPListener: Sendable {
    private let handle: SocketHandle
    public let family: IPAddress.Family

    public init(family: IPAddress.Family, address: IPAddress? = nil, port: UInt16 = 0, backlog: Int = 16) throws {
        let bindAddress = address ?? .any(family)
        let operation = "listen TCP \(SocketAddress(bindAddress, port: port))"
        self.family = family
        handle = SocketHandle(try NetError.wrap("socket", operation) {
            let fd = try Kernel.socket(family: family.addressFamily, type: Int32(SOCK_STREAM.rawValue))
            do {
                try Kernel.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
                if family == .v6 { try Kernel.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1) }
                try Kernel.bind(fd, address: bindAddress.wireBytes, port: port)
                try Kernel.listen(fd, backlog: CInt(backlog))
            } catch {
                Glibc.close(fd)
                throw error
            }
            return fd
        })
    }

    public convenience init(in namespace: NetworkNamespace, family: IPAddress.Family, address: IPAddress? = nil,
                            port: UInt16 = 0, backlog: Int = 16) throws {
        let listener = try namespace.run {
            try TCPListener(family: family, address: address, port: port, backlog: backlog)
        }
        self.init(adopting: listener)
    }

    private init(adopting other: TCPListener) {
        handle = other.handle
        family = other.family
    }

    public func localAddress() throws -> SocketAddress { try handle.localAddress() }

    /// The next connection, or nil if none comes within `timeout`.
    public func accept(timeout: Duration) throws -> TCPConnection? {
        try NetError.wrap("socket", "accept") {
            let fd = try handle.get("accept")
            let deadline = ContinuousClock.now + timeout
            while true {
                if let client = try Kernel.accept(fd) { return TCPConnection(fd: client) }
                let left = deadline - ContinuousClock.now
                if left <= .zero { return nil }
                _ = try Kernel.wait(fd, events: Int16(POLLIN), milliseconds: milliseconds(left) + 1)
            }
        }
    }

    public func close() { handle.close() }
}

/// A connected TCP socket: enough to stream bytes and check them.
public final class TCPConnection: Sendable {
    private let handle: SocketHandle

    init(fd: CInt) {
        handle = SocketHandle(fd)
    }

    /// Connects from the calling thread's namespace, from `sourcePort` if given (a session
    /// whose ports are known before it exists), else from one the kernel picks.
    public static func connect(to destination: SocketAddress, from sourcePort: UInt16? = nil,
                               timeout: Duration = .seconds(5)) throws -> TCPConnection {
        let operation = "connect TCP \(destination)"
        return try NetError.wrap("socket", operation) {
            let family = destination.address.family
            let fd = try Kernel.socket(family: family.addressFamily, type: Int32(SOCK_STREAM.rawValue))
            let connection = TCPConnection(fd: fd)
            if let sourcePort {
                try Kernel.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
                try Kernel.bind(fd, address: [UInt8](repeating: 0, count: family == .v4 ? 4 : 16), port: sourcePort)
            }
            if try !Kernel.startConnect(fd, address: destination.address.wireBytes, port: destination.port) {
                guard try Kernel.wait(fd, events: Int16(POLLOUT), milliseconds: milliseconds(timeout)) else {
                    throw Errno("connect", ETIMEDOUT)
                }
                let error = try Kernel.option(fd, level: SOL_SOCKET, name: SO_ERROR)
                if error != 0 { throw Errno("connect", error) }
            }
            return connection
        }
    }

    /// Connects from inside `namespace`; the connection can then be used from any thread.
    public static func connect(in namespace: NetworkNamespace, to destination: SocketAddress, from sourcePort: UInt16? = nil,
                               timeout: Duration = .seconds(5)) throws -> TCPConnection {
        try namespace.run { try connect(to: destination, from: sourcePort, timeout: timeout) }
    }

    public func localAddress() throws -> SocketAddress { try handle.localAddress() }

    public func remoteAddress() throws -> SocketAddress {
        try NetError.wrap("socket", "getpeername") { socketAddress(try Kernel.remoteAddress(try handle.get("getpeername"))) }
    }

    /// Sends all of `bytes`, waiting for buffer space up to `timeout` in all.
    public func send(_ bytes: [UInt8], timeout: Duration = .seconds(10)) throws {
        try NetError.wrap("socket", "send TCP") {
            let fd = try handle.get("send TCP")
            let deadline = ContinuousClock.now + timeout
            var offset = 0
            while offset < bytes.count {
                let sent = try Kernel.send(fd, bytes[offset...])
                offset += sent
                if sent == 0 {
                    let left = deadline - ContinuousClock.now
                    guard left > .zero else { throw Errno("send", ETIMEDOUT) }
                    _ = try Kernel.wait(fd, events: Int16(POLLOUT), milliseconds: milliseconds(left) + 1)
                }
            }
        }
    }

    /// Up to `maximum` bytes; empty at end of stream. Throws ETIMEDOUT if nothing comes in time.
    public func receive(upTo maximum: Int = 65536, timeout: Duration = .seconds(10)) throws -> [UInt8] {
        try NetError.wrap("socket", "receive TCP") {
            let fd = try handle.get("receive TCP")
            let deadline = ContinuousClock.now + timeout
            while true {
                if let bytes = try Kernel.receive(fd, maximum: maximum) { return bytes }
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw Errno("recv", ETIMEDOUT) }
                _ = try Kernel.wait(fd, events: Int16(POLLIN), milliseconds: milliseconds(left) + 1)
            }
        }
    }

    /// Exactly `count` bytes (fewer only if the stream ends first), within `timeout` in all.
    public func receive(exactly count: Int, timeout: Duration = .seconds(10)) throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        var result: [UInt8] = []
        while result.count < count {
            let chunk = try receive(upTo: min(count - result.count, 65536), timeout: max(.zero, deadline - ContinuousClock.now))
            if chunk.isEmpty { break }
            result += chunk
        }
        return result
    }

    /// Sends FIN (the peer then reads end of stream); receiving still works.
    public func shutdownWrite() throws {
        try NetError.wrap("socket", "shutdown TCP") {
            guard shutdown(try handle.get("shutdown"), Int32(SHUT_WR)) == 0 else { throw Errno("shutdown") }
        }
    }

    public func close() { handle.close() }
}
