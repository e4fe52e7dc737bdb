import BatonNet
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// glibc declares recvmmsg/sendmmsg only with _GNU_SOURCE, which Swift's
/// Glibc module is built without: look them up by name (as BatonNet does for setns).
private enum MMsg {
    typealias RecvFn = @convention(c) (CInt, UnsafeMutableRawPointer?, CUnsignedInt, CInt, UnsafeMutableRawPointer?) -> CInt
    typealias SendFn = @convention(c) (CInt, UnsafeMutableRawPointer?, CUnsignedInt, CInt) -> CInt
    static let recv: RecvFn? = symbol("recvmmsg")
    static let send: SendFn? = symbol("sendmmsg")

    private static func symbol<F>(_ name: String) -> F? {
        guard let handle = dlopen(nil, RTLD_NOW), let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: F.self)
    }
}

/// struct mmsghdr: a msghdr and the byte count the kernel fills in (64 bytes on LP64).
private struct MMsgHdr {
    var hdr = msghdr()
    var len: CUnsignedInt = 0
}

// Linux socket constants Swift does not import reliably (some are macros
// that depend on the time64 ABI); these values are the same on x86_64 and arm64.
private let sockDgram: CInt = 2         // SOCK_DGRAM
private let soRcvTimeo: CInt = 20       // SO_RCVTIMEO (timeval)
private let soRcvBufForce: CInt = 33    // SO_RCVBUFFORCE
private let msgWaitForOne: CInt = 0x10000

/// A userspace UDP relay in one network namespace: receives on `listen` and
/// sends every datagram on to `destination`, batched with recvmmsg/sendmmsg
/// (recvfrom/send if those are missing). Its thread runs until `stop()`.
final class Relay: @unchecked Sendable {
    let listen: SocketAddress
    let destination: SocketAddress
    let batched: Bool
    private let rx: CInt
    private let tx: CInt
    private let stopFlag = Atomic<Bool>(false)
    private let relayedCount = Atomic<UInt64>(0)
    private let sendFailures = Atomic<UInt64>(0)
    private let done = DispatchSemaphore(value: 0)
    private var failure: String?

    static let batch = 64
    static let bufferSize = 2048

    /// Makes both sockets inside `namespace`; the thread itself needs no namespace.
    init(in namespace: NetworkNamespace, listen: SocketAddress, destination: SocketAddress) throws {
        self.listen = listen
        self.destination = destination
        batched = MMsg.recv != nil && MMsg.send != nil
        (rx, tx) = try namespace.run { () throws -> (CInt, CInt) in
            let rx = try Self.socket()
            let tx = try Self.socket()
            var one: CInt = 4 << 20
            setsockopt(rx, SOL_SOCKET, soRcvBufForce, &one, socklen_t(MemoryLayout<CInt>.size))
            var tv = timeval(tv_sec: 0, tv_usec: 100_000) // wake up to notice stop()
            setsockopt(rx, SOL_SOCKET, soRcvTimeo, &tv, socklen_t(MemoryLayout<timeval>.size))
            try Self.withAddress(listen) { sa, len in
                if bind(rx, sa, len) != 0 { throw BrokenSetup("relay: bind \(listen): \(String(cString: strerror(errno)))") }
            }
            try Self.withAddress(destination) { sa, len in
                if connect(tx, sa, len) != 0 { throw BrokenSetup("relay: connect \(destination): \(String(cString: strerror(errno)))") }
            }
            return (rx, tx)
        }
    }

    deinit {
        close(rx)
        close(tx)
    }

    var relayed: UInt64 { relayedCount.load(ordering: .relaxed) }
    var failedSends: UInt64 { sendFailures.load(ordering: .relaxed) }

    func start() {
        let thread = Thread { [self] in
            if batched { runBatched() } else { runSimple() }
            done.signal()
        }
        thread.name = "baton-relay"
        thread.start()
    }

    /// Stops the thread and waits for it; returns its error, if it failed.
    func stop() -> String? {
        stopFlag.store(true, ordering: .relaxed)
        done.wait()
        return failure
    }

    private func runBatched() {
        let n = Self.batch
        let buffers = UnsafeMutableRawPointer.allocate(byteCount: n * Self.bufferSize, alignment: 64)
        let rxIov = UnsafeMutablePointer<iovec>.allocate(capacity: n)
        let txIov = UnsafeMutablePointer<iovec>.allocate(capacity: n)
        let rxMsgs = UnsafeMutablePointer<MMsgHdr>.allocate(capacity: n)
        let txMsgs = UnsafeMutablePointer<MMsgHdr>.allocate(capacity: n)
        defer {
            buffers.deallocate(); rxIov.deallocate(); txIov.deallocate(); rxMsgs.deallocate(); txMsgs.deallocate()
        }
        for i in 0..<n {
            rxIov[i] = iovec(iov_base: buffers + i * Self.bufferSize, iov_len: Self.bufferSize)
            txIov[i] = iovec(iov_base: buffers + i * Self.bufferSize, iov_len: 0)
            rxMsgs[i] = MMsgHdr()
            rxMsgs[i].hdr.msg_iov = rxIov + i
            rxMsgs[i].hdr.msg_iovlen = 1
            txMsgs[i] = MMsgHdr()
            txMsgs[i].hdr.msg_iov = txIov + i
            txMsgs[i].hdr.msg_iovlen = 1
        }
        let recv = MMsg.recv!, send = MMsg.send!
        while !stopFlag.load(ordering: .relaxed) {
            let got = recv(rx, rxMsgs, CUnsignedInt(n), msgWaitForOne, nil)
            if got < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { continue }
                failure = "recvmmsg: \(String(cString: strerror(e)))"
                return
            }
            let count = Int(got)
            for i in 0..<count { txIov[i].iov_len = Int(rxMsgs[i].len) }
            var sent = 0
            while sent < count {
                let r = send(tx, txMsgs + sent, CUnsignedInt(count - sent), 0)
                if r < 0 {
                    let e = errno
                    if e == EINTR { continue }
                    // ENOBUFS and the like: this batch is lost; keep relaying.
                    sendFailures.add(UInt64(count - sent), ordering: .relaxed)
                    break
                }
                sent += Int(r)
            }
            relayedCount.add(UInt64(sent), ordering: .relaxed)
        }
    }

    private func runSimple() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.bufferSize, alignment: 64)
        defer { buffer.deallocate() }
        while !stopFlag.load(ordering: .relaxed) {
            let got = Glibc.recv(rx, buffer, Self.bufferSize, 0)
            if got < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { continue }
                failure = "recv: \(String(cString: strerror(e)))"
                return
            }
            if Glibc.send(tx, buffer, got, 0) < 0 {
                sendFailures.add(1, ordering: .relaxed)
            } else {
                relayedCount.add(1, ordering: .relaxed)
            }
        }
    }

    private static func socket() throws -> CInt {
        let fd = Glibc.socket(AF_INET, sockDgram, 0)
        if fd < 0 { throw BrokenSetup("relay: socket: \(String(cString: strerror(errno)))") }
        return fd
    }

    private static func withAddress<R>(_ a: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) throws -> R {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = a.port.bigEndian
        let b = a.address.wireBytes
        sin.sin_addr.s_addr = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
        return try withUnsafePointer(to: &sin) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}
