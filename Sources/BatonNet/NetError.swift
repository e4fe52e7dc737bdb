import Glibc

/// A failed kernel operation: which subsystem, what we were doing, and errno.
///
/// `description` reads like `netlink: add address 10.0.0.1/24 on veth0: File exists (EEXIST)`,
/// followed by the kernel's own explanation when netlink sent one (extended ACK).
public struct NetError: Error, Equatable, Sendable, CustomStringConvertible {
    /// "netlink", "netns", "sysctl", "ethtool" or "socket".
    public let subsystem: String
    /// What was being done, in the words of `ip`: "add address 10.0.0.1/24 on veth0".
    public let operation: String
    public let errno: Int32
    /// Extra context: the failing system call, or the kernel's extended-ACK message.
    public let detail: String?

    public init(subsystem: String, operation: String, errno: Int32, detail: String? = nil) {
        self.subsystem = subsystem
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    /// The symbolic errno, e.g. "EEXIST".
    public var errnoName: String { Kernel.errnoName(errno) }

    public var description: String {
        let base = "\(subsystem): \(operation): \(Kernel.errnoMessage(errno)) (\(errnoName))"
        return detail.map { "\(base) [\($0)]" } ?? base
    }
}

extension NetError {
    init(_ subsystem: String, _ operation: String, _ failure: Errno) {
        self.init(subsystem: subsystem, operation: operation, errno: failure.code, detail: failure.call)
    }

    init(_ subsystem: String, _ operation: String, _ failure: NetlinkFailure) {
        self.init(subsystem: subsystem, operation: operation, errno: failure.code, detail: failure.message)
    }

    /// Runs `body`, turning the internal error types into a `NetError` about `operation`.
    static func wrap<T>(_ subsystem: String, _ operation: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let failure as Errno {
            throw NetError(subsystem, operation(), failure)
        } catch let failure as NetlinkFailure {
            throw NetError(subsystem, operation(), failure)
        }
    }
}
