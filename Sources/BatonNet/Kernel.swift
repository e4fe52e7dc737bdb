// The one place in BatonNet with raw pointers, libmnl and system calls.
// Everything outside this file is safe Swift over the small internal API here.
import CMnl
import Glibc

/// A failed system call: the call's name and errno. Public APIs wrap it in `NetError`.
struct Errno: Error {
    var call: String
    var code: Int32
    init(_ call: String, _ code: Int32 = Glibc.errno) {
        self.call = call
        self.code = code
    }
}

// MARK: - glibc functions hidden behind _GNU_SOURCE

/// Swift imports glibc without _GNU_SOURCE, so these are not declared; look them up by name.
enum GNULibc {
    typealias IntFunction = @convention(c) (CInt) -> CInt
    typealias SetnsFunction = @convention(c) (CInt, CInt) -> CInt

    static let setns: SetnsFunction? = symbol("setns")
    static let unshare: IntFunction? = symbol("unshare")
    // Declared by Glibc only under _GNU_SOURCE, which Swift's import does not set.
    typealias SetAffinityFunction = @convention(c) (pid_t, Int, UnsafeRawPointer) -> CInt
    static let schedSetaffinity: SetAffinityFunction? = symbol("sched_setaffinity")
    typealias GetAffinityFunction = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> CInt
    static let schedGetaffinity: GetAffinityFunction? = symbol("sched_getaffinity")

    private static func symbol<F>(_ name: String) -> F? {
        guard let handle = dlopen(nil, RTLD_NOW), let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: F.self)
    }
}

enum Kernel {
    static let cloneNewNet: CInt = 0x4000_0000  // CLONE_NEWNET

    // MARK: bytes of C structs and integers

    static func bytes<T: BitwiseCopyable>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    /// Reads a `T` from `bytes` at `offset`, nil if too short. Copies, so alignment does not matter.
    static func load<T: BitwiseCopyable>(_ type: T.Type, from bytes: [UInt8], offset: Int = 0) -> T? {
        guard offset >= 0, bytes.count - offset >= MemoryLayout<T>.size else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    static func cString(_ bytes: [UInt8]) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        return String(decoding: bytes[..<end], as: UTF8.self)
    }

    // MARK: namespaces, mounts, files

    static func enterNetworkNamespace(path: String) throws(Errno) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno("open \(path)") }
        defer { close(fd) }
        guard let setns = GNULibc.setns else { throw Errno("setns", ENOSYS) }
        guard setns(fd, cloneNewNet) == 0 else { throw Errno("setns") }
    }

    static func unshareNetworkNamespace() throws(Errno) {
        guard let unshare = GNULibc.unshare else { throw Errno("unshare", ENOSYS) }
        guard unshare(cloneNewNet) == 0 else { throw Errno("unshare(CLONE_NEWNET)") }
    }

    static func makeDirectory(_ path: String, mode: mode_t) throws(Errno) {
        guard mkdir(path, mode) == 0 || errno == EEXIST else { throw Errno("mkdir \(path)") }
    }

    /// `mount --make-rshared path`, first turning `path` into a mount point if it is not one (as iproute2 does).
    static func makeSharedMountPoint(_ path: String) throws(Errno) {
        var madeMountPoint = false
        while mount("", path, "none", UInt(MS_SHARED | MS_REC), nil) != 0 {
            guard errno == EINVAL, !madeMountPoint else { throw Errno("mount --make-rshared \(path)") }
            guard mount(path, path, "none", UInt(MS_BIND | MS_REC), nil) == 0 else {
                throw Errno("mount --rbind \(path) \(path)")
            }
            madeMountPoint = true
        }
    }

    static func bindMount(_ source: String, on target: String) throws(Errno) {
        guard mount(source, target, "none", UInt(MS_BIND), nil) == 0 else {
            throw Errno("mount --bind \(source) \(target)")
        }
    }

    /// Detaching unmount; "not mounted" and "does not exist" are not errors.
    static func detach(_ path: String) throws(Errno) {
        guard umount2(path, CInt(MNT_DETACH)) == 0 || errno == EINVAL || errno == ENOENT else {
            throw Errno("umount \(path)")
        }
    }

    static func createExclusiveFile(_ path: String) throws(Errno) {
        let fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0)
        guard fd >= 0 else { throw Errno("create \(path)") }
        close(fd)
    }

    /// Unlinks `path`; a missing file is not an error.
    static func removeFile(_ path: String) throws(Errno) {
        guard unlink(path) == 0 || errno == ENOENT else { throw Errno("unlink \(path)") }
    }

    static func fileExists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// True if `path` is on nsfs, i.e. a mounted namespace (compared by device with our own
    /// namespace file, as statfs is not imported).
    static func isNamespaceFile(_ path: String) -> Bool {
        guard let own = try? identity(of: "/proc/thread-self/ns/net"), let other = try? identity(of: path) else {
            return false
        }
        return own.device == other.device
    }

    /// Device and inode of a file: for a namespace file, the namespace's identity.
    static func identity(of path: String) throws(Errno) -> (device: UInt64, inode: UInt64) {
        var info = stat()
        guard stat(path, &info) == 0 else { throw Errno("stat \(path)") }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    static func directoryEntries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func readFile(_ path: String) throws(Errno) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno("open \(path)") }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Errno("read \(path)")
            }
            if count == 0 { return result }
            result += chunk[..<count]
        }
    }

    /// One write(2) of the whole value: /proc/sys parses each write on its own.
    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(Errno) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno("open \(path)") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw Errno("write \(path)", written < 0 ? errno : EIO) }
    }

    // MARK: ethtool

    /// SIOCETHTOOL with a `struct ethtool_value`; returns the value the kernel leaves in it.
    static func ethtoolValue(interface: String, command: UInt32, data: UInt32 = 0) throws(Errno) -> UInt32 {
        // Any socket works as a handle; its namespace picks the interface.
        let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Errno("socket") }
        defer { close(fd) }
        var value = ethtool_value(cmd: command, data: data)
        var request = ifreq()
        let name = Array(interface.utf8.prefix(Int(IFNAMSIZ) - 1))
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            for (index, byte) in name.enumerated() { raw[index] = byte }
        }
        let result = withUnsafeMutablePointer(to: &value) { pointer in
            request.ifr_ifru.ifru_data = UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: CChar.self)
            return ioctl(fd, UInt(SIOCETHTOOL), &request)
        }
        guard result == 0 else { throw Errno("ioctl(SIOCETHTOOL)") }
        return value.data
    }

    // MARK: sockets

    static func socket(family: CInt, type: CInt) throws(Errno) -> CInt {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = Glibc.socket(family, type | flags, 0)
        guard fd >= 0 else { throw Errno("socket") }
        return fd
    }

    static func setOption(_ fd: CInt, level: CInt, name: CInt, value: CInt) throws(Errno) {
        var value = value
        guard setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<CInt>.size)) == 0 else {
            throw Errno("setsockopt")
        }
    }

    static func option(_ fd: CInt, level: CInt, name: CInt) throws(Errno) -> CInt {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(fd, level, name, &value, &length) == 0 else { throw Errno("getsockopt") }
        return value
    }

    private static func withSockaddr<R>(
        _ address: [UInt8], port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) -> R {
        if address.count == 4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: address) }
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: address) }
        return withUnsafePointer(to: &sin6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }

    private static func decode(_ storage: sockaddr_storage) -> (address: [UInt8], port: UInt16)? {
        let family = CInt(storage.ss_family)
        return withUnsafeBytes(of: storage) { raw -> ([UInt8], UInt16)? in
            switch family {
            case AF_INET:
                let sin = raw.loadUnaligned(as: sockaddr_in.self)
                return (bytes(of: sin.sin_addr), UInt16(bigEndian: sin.sin_port))
            case AF_INET6:
                let sin6 = raw.loadUnaligned(as: sockaddr_in6.self)
                return (withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }, UInt16(bigEndian: sin6.sin6_port))
            default:
                return nil
            }
        }
    }

    static func bind(_ fd: CInt, address: [UInt8], port: UInt16) throws(Errno) {
        let result = withSockaddr(address, port: port) { Glibc.bind(fd, $0, $1) }
        guard result == 0 else { throw Errno("bind") }
    }

    /// Starts a non-blocking connect; true if it completed at once.
    static func startConnect(_ fd: CInt, address: [UInt8], port: UInt16) throws(Errno) -> Bool {
        let result = withSockaddr(address, port: port) { Glibc.connect(fd, $0, $1) }
        if result == 0 { return true }
        guard errno == EINPROGRESS else { throw Errno("connect") }
        return false
    }

    static func listen(_ fd: CInt, backlog: CInt) throws(Errno) {
        guard Glibc.listen(fd, backlog) == 0 else { throw Errno("listen") }
    }

    /// nil when no connection is pending (EAGAIN).
    static func accept(_ fd: CInt) throws(Errno) -> CInt? {
        // accept4 is hidden behind _GNU_SOURCE; send/recv below pass MSG_DONTWAIT instead.
        let client = Glibc.accept(fd, nil, nil)
        if client >= 0 { return client }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
        throw Errno("accept")
    }

    static func localAddress(_ fd: CInt) throws(Errno) -> (address: [UInt8], port: UInt16) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0, let decoded = decode(storage) else { throw Errno("getsockname") }
        return decoded
    }

    static func remoteAddress(_ fd: CInt) throws(Errno) -> (address: [UInt8], port: UInt16) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard result == 0, let decoded = decode(storage) else { throw Errno("getpeername") }
        return decoded
    }

    static func sendTo(_ fd: CInt, _ payload: [UInt8], address: [UInt8], port: UInt16) throws(Errno) {
        let sent = payload.withUnsafeBytes { buffer in
            withSockaddr(address, port: port) { sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, $1) }
        }
        guard sent >= 0 else { throw Errno("sendto") }
    }

    /// nil when nothing is waiting (EAGAIN).
    /// SO_TIMESTAMPNS (SO_TIMESTAMPNS_OLD on 64-bit glibc: a plain `struct timespec`).
    static let timestampOption: CInt = 35

    /// `kernelTime`: when the kernel received it (CLOCK_REALTIME, nanoseconds), if the socket
    /// has SO_TIMESTAMPNS on (`UDPSocket.recordKernelTimes`).
    static func receiveFrom(_ fd: CInt, maximum: Int) throws(Errno)
        -> (payload: [UInt8], address: [UInt8], port: UInt16, kernelTime: UInt64?)? {
        var storage = sockaddr_storage()
        // cmsghdr (16 bytes on 64-bit) + one timespec, with room to spare.
        var control = [UInt64](repeating: 0, count: 8)
        var result = 0, controlLength = 0
        // Not zeroed first: a 64 KB memset per datagram was most of a lab receiver's CPU.
        let payload = [UInt8](unsafeUninitializedCapacity: maximum) { raw, initialized in
            control.withUnsafeMutableBytes { controlBytes in
                withUnsafeMutablePointer(to: &storage) { address in
                    var vector = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                    withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr(msg_name: UnsafeMutableRawPointer(address),
                                             msg_namelen: socklen_t(MemoryLayout<sockaddr_storage>.size),
                                             msg_iov: vectorPointer, msg_iovlen: 1,
                                             msg_control: controlBytes.baseAddress, msg_controllen: controlBytes.count, msg_flags: 0)
                        result = recvmsg(fd, &message, Int32(MSG_DONTWAIT))
                        controlLength = Int(message.msg_controllen)
                    }
                }
            }
            initialized = max(0, result)
        }
        if result < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw Errno("recvmsg")
        }
        guard let source = decode(storage) else { throw Errno("recvmsg", EAFNOSUPPORT) }
        // Only the first control message is read (the only one asked for): control[0] is its
        // cmsg_len, control[1] level | type << 32, control[2...3] the timespec.
        var kernelTime: UInt64?
        if controlLength >= 32, control[0] >= 32, control[1] & 0xffff_ffff == UInt64(SOL_SOCKET),
           control[1] >> 32 == UInt64(timestampOption) {
            kernelTime = control[2] &* 1_000_000_000 &+ control[3]
        }
        // Copied out at its size: the 64 KB buffer is not kept for a 60-byte datagram.
        return (payload.withUnsafeBufferPointer { Array($0) }, source.address, source.port, kernelTime)
    }

    /// CLOCK_REALTIME now, in nanoseconds (to age a kernel receive time).
    static func realtimeNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Bytes sent, or 0 when the socket buffer is full (EAGAIN).
    static func send(_ fd: CInt, _ bytes: ArraySlice<UInt8>) throws(Errno) -> Int {
        let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if sent >= 0 { return sent }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
        throw Errno("send")
    }

    /// nil when nothing is waiting (EAGAIN); empty at end of stream.
    static func receive(_ fd: CInt, maximum: Int) throws(Errno) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw Errno("recv")
        }
        return Array(buffer[..<count])
    }

    /// Waits for `events` on `fd`; false on timeout.
    static func wait(_ fd: CInt, events: Int16, milliseconds: Int) throws(Errno) -> Bool {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let result = poll(&entry, 1, CInt(clamping: milliseconds))
            if result > 0 { return true }
            if result == 0 { return false }
            if errno != EINTR { throw Errno("poll") }
        }
    }
}

// MARK: - netlink through libmnl

/// A request described in safe Swift; `NetlinkSocket` serialises it with libmnl.
struct NetlinkRequest: Sendable {
    var type: UInt16
    var flags: UInt16
    var header: [UInt8]
    var attributes: [NetlinkAttribute] = []
}

struct NetlinkAttribute: Sendable {
    enum Value: Sendable {
        case bytes([UInt8])
        /// A nest; `header` is a fixed struct at its start (the veth peer's ifinfomsg).
        case nested(header: [UInt8], [NetlinkAttribute])
    }

    var type: UInt16
    var value: Value

    static func bytes(_ type: some BinaryInteger, _ bytes: [UInt8]) -> Self {
        Self(type: UInt16(type), value: .bytes(bytes))
    }

    static func u8(_ type: some BinaryInteger, _ value: UInt8) -> Self { .bytes(type, [value]) }
    static func u32(_ type: some BinaryInteger, _ value: UInt32) -> Self { .bytes(type, Kernel.bytes(of: value)) }
    static func string(_ type: some BinaryInteger, _ value: String) -> Self { .bytes(type, Array(value.utf8) + [0]) }

    static func nested(_ type: some BinaryInteger, header: [UInt8] = [], _ children: [NetlinkAttribute]) -> Self {
        Self(type: UInt16(type) | UInt16(NLA_F_NESTED), value: .nested(header: header, children))
    }
}

/// One reply message: its type, flags and payload (family header + attributes).
struct NetlinkMessage: Sendable {
    var type: UInt16
    var flags: UInt16
    var payload: [UInt8]

    func header<T: BitwiseCopyable>(_ type: T.Type) -> T? {
        Kernel.load(type, from: payload)
    }

    func attributes<T>(after headerType: T.Type) -> NetlinkAttributes {
        NetlinkAttributes(parsing: payload, from: NetlinkAttributes.align(MemoryLayout<T>.size))
    }
}

/// Attributes of a message or nest by type (the first of each type).
struct NetlinkAttributes {
    private(set) var values: [UInt16: [UInt8]] = [:]

    static func align(_ length: Int) -> Int { (length + 3) & ~3 }

    init(parsing bytes: [UInt8], from offset: Int = 0) {
        guard offset < bytes.count else { return }
        final class Collector { var values: [UInt16: [UInt8]] = [:] }
        let collector = Collector()
        bytes.withUnsafeBytes { raw in
            let context = Unmanaged.passUnretained(collector).toOpaque()
            _ = mnl_attr_parse_payload(raw.baseAddress! + offset, raw.count - offset, { attribute, data in
                guard let attribute, let data else { return MNL_CB_ERROR }
                let collector = Unmanaged<Collector>.fromOpaque(data).takeUnretainedValue()
                let type = mnl_attr_get_type(attribute)
                let length = Int(mnl_attr_get_payload_len(attribute))
                let start = UnsafeRawPointer(mnl_attr_get_payload(attribute)!)
                if collector.values[type] == nil {
                    collector.values[type] = Array(UnsafeRawBufferPointer(start: start, count: length))
                }
                return MNL_CB_OK
            }, context)
        }
        values = collector.values
    }

    subscript(_ type: some BinaryInteger) -> [UInt8]? { values[UInt16(type)] }
    func u8(_ type: some BinaryInteger) -> UInt8? { self[type]?.first }
    func u32(_ type: some BinaryInteger) -> UInt32? { self[type].flatMap { Kernel.load(UInt32.self, from: $0) } }
    func s32(_ type: some BinaryInteger) -> Int32? { self[type].flatMap { Kernel.load(Int32.self, from: $0) } }
    func string(_ type: some BinaryInteger) -> String? { self[type].map(Kernel.cString) }
    func nested(_ type: some BinaryInteger) -> NetlinkAttributes? { self[type].map { NetlinkAttributes(parsing: $0) } }
}

/// The kernel's answer to a failed request: errno and, with extended ACKs, its message.
struct NetlinkFailure: Error {
    var code: Int32
    var message: String?
}

/// A netlink socket (NETLINK_ROUTE unless told) in the namespace of the thread that opened it.
/// Not thread-safe.
final class NetlinkSocket {
    private let socket: OpaquePointer
    private let portID: UInt32
    private var sequence: UInt32
    private static let sendSize = 16 * 1024
    // Dump replies come in skbs of up to 32 KiB; a smaller buffer would truncate them.
    private static let receiveSize = 64 * 1024
    private let sendBuffer = UnsafeMutableRawPointer.allocate(byteCount: sendSize, alignment: 8)
    private let receiveBuffer = UnsafeMutableRawPointer.allocate(byteCount: receiveSize, alignment: 8)

    init(protocol: Int32 = NETLINK_ROUTE) throws(Errno) {
        let name = `protocol` == NETLINK_ROUTE ? "NETLINK_ROUTE" : "netlink protocol \(`protocol`)"
        guard let socket = mnl_socket_open2(`protocol`, Int32(SOCK_CLOEXEC.rawValue)) else {
            sendBuffer.deallocate()
            receiveBuffer.deallocate()
            throw Errno("socket(\(name))")
        }
        // Ask for the kernel's error text (extended ACK) and for short ACKs; both are optional.
        var on: CInt = 1
        _ = mnl_socket_setsockopt(socket, NETLINK_EXT_ACK, &on, socklen_t(MemoryLayout<CInt>.size))
        _ = mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &on, socklen_t(MemoryLayout<CInt>.size))
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let failure = Errno("bind(\(name))")
            mnl_socket_close(socket)
            sendBuffer.deallocate()
            receiveBuffer.deallocate()
            throw failure
        }
        self.socket = socket
        portID = mnl_socket_get_portid(socket)
        sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit {
        mnl_socket_close(socket)
        sendBuffer.deallocate()
        receiveBuffer.deallocate()
    }

    /// Sends `request` and collects the replies until the ACK or the end of the dump.
    func transact(_ request: NetlinkRequest) throws -> [NetlinkMessage] {
        let isDump = request.flags & UInt16(NLM_F_DUMP) == UInt16(NLM_F_DUMP)
        var attempts = 0
        while true {
            do {
                return try exchange(request)
            } catch let failure as NetlinkFailure where isDump && failure.code == EINTR && attempts < 5 {
                attempts += 1  // the dump changed under us (NLM_F_DUMP_INTR): ask again
            }
        }
    }

    private final class Collector {
        var messages: [NetlinkMessage] = []
        var failure: NetlinkFailure?
    }

    private func exchange(_ request: NetlinkRequest) throws -> [NetlinkMessage] {
        sequence &+= 1
        let header = serialise(request, sequence: sequence)
        guard mnl_socket_sendto(socket, header, Int(header.pointee.nlmsg_len)) >= 0 else {
            throw NetlinkFailure(code: errno, message: nil)
        }

        let collector = Collector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        var controls = [mnl_cb_t?](repeating: nil, count: Int(NLMSG_MIN_TYPE))
        controls[Int(NLMSG_NOOP)] = { _, _ in MNL_CB_OK }
        controls[Int(NLMSG_ERROR)] = { header, data in NetlinkSocket.handleError(header!, data!) }
        controls[Int(NLMSG_DONE)] = { header, data in NetlinkSocket.handleDone(header!, data!) }
        controls[Int(NLMSG_OVERRUN)] = { _, data in
            Unmanaged<Collector>.fromOpaque(data!).takeUnretainedValue().failure = NetlinkFailure(code: ENOBUFS, message: nil)
            return MNL_CB_ERROR
        }

        var status = MNL_CB_OK
        while status > MNL_CB_STOP {
            let count = mnl_socket_recvfrom(socket, receiveBuffer, Self.receiveSize)
            if count < 0 {
                if errno == EINTR { continue }
                throw NetlinkFailure(code: errno, message: nil)
            }
            status = controls.withUnsafeMutableBufferPointer { table in
                mnl_cb_run2(receiveBuffer, count, sequence, portID, { header, data in
                    guard let header, let data else { return MNL_CB_ERROR }
                    let payload = UnsafeRawBufferPointer(
                        start: mnl_nlmsg_get_payload(header), count: mnl_nlmsg_get_payload_len(header))
                    Unmanaged<Collector>.fromOpaque(data).takeUnretainedValue().messages.append(
                        NetlinkMessage(type: header.pointee.nlmsg_type, flags: header.pointee.nlmsg_flags,
                                       payload: Array(payload)))
                    return MNL_CB_OK
                }, context, table.baseAddress, UInt32(table.count))
            }
            if status < MNL_CB_STOP {
                throw collector.failure ?? NetlinkFailure(code: errno, message: nil)
            }
        }
        return collector.messages
    }

    private static func handleError(_ header: UnsafePointer<nlmsghdr>, _ data: UnsafeMutableRawPointer) -> CInt {
        let collector = Unmanaged<Collector>.fromOpaque(data).takeUnretainedValue()
        guard mnl_nlmsg_get_payload_len(header) >= MemoryLayout<nlmsgerr>.size else {
            collector.failure = NetlinkFailure(code: EBADMSG, message: nil)
            return MNL_CB_ERROR
        }
        let error = mnl_nlmsg_get_payload(header)!.loadUnaligned(as: nlmsgerr.self)
        if error.error == 0 { return MNL_CB_STOP }  // the ACK
        collector.failure = NetlinkFailure(code: -error.error, message: extendedAckMessage(header, error))
        return MNL_CB_ERROR
    }

    private static func handleDone(_ header: UnsafePointer<nlmsghdr>, _ data: UnsafeMutableRawPointer) -> CInt {
        // A dump that failed half-way reports the error in NLMSG_DONE's payload.
        guard mnl_nlmsg_get_payload_len(header) >= MemoryLayout<CInt>.size else { return MNL_CB_STOP }
        let code = mnl_nlmsg_get_payload(header)!.loadUnaligned(as: CInt.self)
        if code >= 0 { return MNL_CB_STOP }
        Unmanaged<Collector>.fromOpaque(data).takeUnretainedValue().failure = NetlinkFailure(code: -code, message: nil)
        return MNL_CB_ERROR
    }

    private static func extendedAckMessage(_ header: UnsafePointer<nlmsghdr>, _ error: nlmsgerr) -> String? {
        guard header.pointee.nlmsg_flags & UInt16(NLM_F_ACK_TLVS) != 0 else { return nil }
        var offset = MemoryLayout<nlmsgerr>.size
        if header.pointee.nlmsg_flags & UInt16(NLM_F_CAPPED) == 0 {
            offset += Int(error.msg.nlmsg_len) - MemoryLayout<nlmsghdr>.size
        }
        let length = Int(mnl_nlmsg_get_payload_len(header))
        guard offset < length else { return nil }
        let payload = UnsafeRawBufferPointer(start: mnl_nlmsg_get_payload(header), count: length)
        let attributes = NetlinkAttributes(parsing: Array(payload), from: NetlinkAttributes.align(offset))
        return attributes.string(NLMSGERR_ATTR_MSG.rawValue).flatMap { $0.isEmpty ? nil : $0 }
    }

    private func serialise(_ request: NetlinkRequest, sequence: UInt32) -> UnsafeMutablePointer<nlmsghdr> {
        memset(sendBuffer, 0, Self.sendSize)
        let header = mnl_nlmsg_put_header(sendBuffer)!
        header.pointee.nlmsg_type = request.type
        header.pointee.nlmsg_flags = request.flags
        header.pointee.nlmsg_seq = sequence
        if !request.header.isEmpty {
            let extra = mnl_nlmsg_put_extra_header(header, request.header.count)!
            request.header.withUnsafeBytes { extra.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        Self.put(request.attributes, into: header)
        precondition(Int(header.pointee.nlmsg_len) <= Self.sendSize, "netlink request larger than its buffer")
        return header
    }

    private static func put(_ attributes: [NetlinkAttribute], into header: UnsafeMutablePointer<nlmsghdr>) {
        for attribute in attributes {
            switch attribute.value {
            case .bytes(let bytes):
                bytes.withUnsafeBytes { mnl_attr_put(header, attribute.type, $0.count, $0.baseAddress) }
            case .nested(let fixed, let children):
                let nest = mnl_attr_nest_start(header, attribute.type & ~UInt16(NLA_F_NESTED))!
                if !fixed.isEmpty {
                    // libmnl has no call for a struct inside a nest: reserve it by hand.
                    let tail = mnl_nlmsg_get_payload_tail(header)!
                    fixed.withUnsafeBytes { tail.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    header.pointee.nlmsg_len += UInt32(NetlinkAttributes.align(fixed.count))
                }
                put(children, into: header)
                mnl_attr_nest_end(header, nest)
            }
        }
    }
}

// MARK: - packet sockets (AF_PACKET, SOCK_RAW)

extension Kernel {
    static let packetOutgoing: UInt8 = 4  // PACKET_OUTGOING

    /// `struct sockaddr_ll` (20 bytes) as bytes: family, protocol (network order), ifindex,
    /// hatype, pkttype, halen, addr[8]. Built by hand: glibc's <netpacket/packet.h> is not imported.
    private static func linkLayerAddress(etherType: UInt16, ifindex: CInt) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: UInt16(AF_PACKET)) { bytes.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: etherType.bigEndian) { bytes.replaceSubrange(2..<4, with: $0) }
        withUnsafeBytes(of: ifindex) { bytes.replaceSubrange(4..<8, with: $0) }
        return bytes
    }

    /// The ifindex of `name` in the calling thread's namespace.
    static func interfaceIndex(_ name: String) throws(Errno) -> CInt {
        let index = if_nametoindex(name)
        guard index != 0 else { throw Errno("if_nametoindex \(name)") }
        return CInt(index)
    }

    /// An AF_PACKET raw socket bound to `ifindex`, receiving frames of `etherType` (host order;
    /// 0: none, ETH_P_ALL = 3: all). Made with protocol 0 and bound with the real one, so it
    /// never sees frames of other interfaces. Non-blocking, close-on-exec.
    static func packetSocket(ifindex: CInt, etherType: UInt16) throws(Errno) -> CInt {
        let fd = try socket(family: AF_PACKET, type: Int32(SOCK_RAW.rawValue))
        let address = linkLayerAddress(etherType: etherType, ifindex: ifindex)
        let result = address.withUnsafeBytes { raw in
            Glibc.bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard result == 0 else {
            let failure = Errno("bind(AF_PACKET)")
            Glibc.close(fd)
            throw failure
        }
        return fd
    }

    /// Sends one whole frame; false when the socket buffer is full (EAGAIN).
    static func sendFrame(_ fd: CInt, _ frame: [UInt8]) throws(Errno) -> Bool {
        let sent = frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if sent >= 0 {
            guard sent == frame.count else { throw Errno("send(AF_PACKET)", EMSGSIZE) }
            return true
        }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS { return false }
        throw Errno("send(AF_PACKET)")
    }

    /// One frame and its packet type (PACKET_HOST, …, PACKET_OUTGOING), or nil when nothing is
    /// waiting (EAGAIN).
    static func receiveFrame(_ fd: CInt, maximum: Int) throws(Errno) -> (frame: [UInt8], packetType: UInt8)? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        var address = [UInt8](repeating: 0, count: 32)
        var length = socklen_t(address.count)
        let count = buffer.withUnsafeMutableBytes { raw in
            address.withUnsafeMutableBytes { from in
                recvfrom(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT),
                         from.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
            }
        }
        if count < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw Errno("recvfrom(AF_PACKET)")
        }
        return (Array(buffer[..<count]), address[10])  // sll_pkttype
    }
}

/// Pins the calling thread to one CPU (best effort: a failure leaves it free). Lab senders
/// use it: a veth delivers into the sending CPU's backlog, so a sender thread that migrates
/// between CPUs would reorder its own flow, which a NIC hashing the flow to one queue never does.
public func pinCurrentThread(toCPU cpu: Int) {
    _ = setCurrentThreadCPUs([cpu])
}

/// Restricts the calling thread to `cpus` (best effort); threads and processes it starts
/// afterwards inherit the set. Returns the set it had, for `setCurrentThreadCPUs` to restore;
/// nil if the set could not be read or changed.
public func setCurrentThreadCPUs(_ cpus: [Int]) -> [Int]? {
    var set = cpu_set_t()
    withUnsafeMutableBytes(of: &set) { raw in
        for cpu in cpus where cpu >= 0 && cpu / 8 < raw.count { raw[cpu / 8] |= UInt8(1 << (cpu % 8)) }
    }
    var old = cpu_set_t()
    guard let getAffinity = GNULibc.schedGetaffinity, let setAffinity = GNULibc.schedSetaffinity,
          withUnsafeMutableBytes(of: &old, { getAffinity(0, $0.count, $0.baseAddress!) }) == 0,
          withUnsafeBytes(of: &set, { setAffinity(0, $0.count, $0.baseAddress!) }) == 0 else { return nil }
    return withUnsafeBytes(of: &old) { raw in
        (0..<(raw.count * 8)).filter { raw[$0 / 8] & UInt8(1 << ($0 % 8)) != 0 }
    }
}
