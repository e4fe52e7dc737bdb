#if canImport(Glibc)
import Glibc
#endif

/// A failed kernel or library call, with errno: the one error type of the layers that talk to
/// the kernel (BatonBPF as `BPFError`, BatonNet as `NetError`).
///
/// `description` reads `netlink: add address 10.0.0.1/24 on veth0: File exists (EEXIST)`,
/// followed by `[detail]` (the failing system call, or the kernel's extended ACK), or for
/// BPF by libbpf's log (the verifier's explanation) on the lines after.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// "bpf", "netlink", "netns", "sysctl", "ethtool" or "socket".
    public let subsystem: String
    /// What was being done, in the words of `ip` or `bpftool`: "add address 10.0.0.1/24 on veth0".
    public let operation: String
    public let errno: Int32
    /// Extra context on the same line: the failing system call, or netlink's extended-ACK message.
    public let detail: String?
    /// Extra lines: the tail of libbpf's log for a program load.
    public let log: String

    public init(subsystem: String, operation: String, errno: Int32, detail: String? = nil, log: String = "") {
        self.subsystem = subsystem
        self.operation = operation
        self.errno = errno
        self.detail = detail
        self.log = log
    }

    /// A BPF failure (libbpf or the bpf syscall).
    public init(_ operation: String, errno: Int32, log: String = "") {
        self.init(subsystem: "bpf", operation: operation, errno: errno, log: log)
    }

    /// The symbolic errno, e.g. "EEXIST".
    public var errnoName: String { Self.name(of: errno) }

    public var description: String {
        var s = "\(subsystem): \(operation): \(String(cString: strerror(errno))) (\(errnoName))"
        if let detail { s += " [\(detail)]" }
        if subsystem == "bpf", errno == EPERM || errno == EACCES, log.isEmpty {
            s += "; BPF needs root (CAP_BPF and CAP_NET_ADMIN)"
        }
        if !log.isEmpty { s += "\n" + log }
        return s
    }

    /// "EEXIST" for EEXIST: glibc's strerrorname_np, looked up by name because Swift imports
    /// glibc without _GNU_SOURCE.
    public static func name(of code: Int32) -> String {
        if let name = strerrorname, let text = name(code) { return String(cString: text) }
        return "errno \(code)"
    }

    private typealias NameFunction = @convention(c) (CInt) -> UnsafePointer<CChar>?
    private static let strerrorname: NameFunction? = {
        guard let handle = dlopen(nil, RTLD_NOW), let address = dlsym(handle, "strerrorname_np") else { return nil }
        return unsafeBitCast(address, to: NameFunction.self)
    }()
}
