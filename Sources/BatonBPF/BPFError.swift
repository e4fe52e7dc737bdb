import CLibbpf
#if canImport(Glibc)
import Glibc
#endif

/// A failed libbpf or kernel call: what was being done, errno, and for
/// program loads the tail of libbpf's log (the verifier's explanation).
public struct BPFError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Int32
    public let log: String

    public init(_ operation: String, errno: Int32, log: String = "") {
        self.operation = operation
        self.errno = errno
        self.log = log
    }

    /// For libbpf calls that return a negative error code.
    static func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws {
        if rc < 0 { throw BPFError(operation(), errno: -rc == 0 ? Glibc.errno : -rc) }
    }

    public var description: String {
        var s = "\(operation): \(String(cString: strerror(errno))) (\(errnoName(errno)))"
        if (errno == EPERM || errno == EACCES) && log.isEmpty {
            s += "; BPF needs root (CAP_BPF and CAP_NET_ADMIN)"
        }
        if !log.isEmpty { s += "\n" + log }
        return s
    }
}

func errnoName(_ e: Int32) -> String {
    switch e {
    case EPERM: return "EPERM"
    case ENOENT: return "ENOENT"
    case EINVAL: return "EINVAL"
    case EEXIST: return "EEXIST"
    case E2BIG: return "E2BIG"
    case ENOMEM: return "ENOMEM"
    case EBUSY: return "EBUSY"
    case EACCES: return "EACCES"
    case ENODEV: return "ENODEV"
    case EOPNOTSUPP: return "EOPNOTSUPP"
    case ENOSPC: return "ENOSPC"
    default: return "errno \(e)"
    }
}

/// libbpf prints through one global callback; keep the recent lines so an
/// error can carry them. `@convention(c)`: no captured context allowed.
enum LibbpfLog {
    nonisolated(unsafe) private static var lines: [String] = []
    private static let lock = NSLockish()
    nonisolated(unsafe) static var echo = false

    static func install() {
        _ = installed
    }

    private static let installed: Bool = {
        libbpf_set_print { level, format, args in
            guard let format else { return 0 }
            var buf = [CChar](repeating: 0, count: 4096)
            guard let args else { return 0 }
            let n = vsnprintf(&buf, buf.count, format, args)
            let text = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            LibbpfLog.append(text)
            if LibbpfLog.echo { _ = text.withCString { write(2, $0, strlen($0)) } }
            return n
        }
        return true
    }()

    static func append(_ text: String) {
        lock.withLock {
            lines.append(contentsOf: text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init))
            if lines.count > 400 { lines.removeFirst(lines.count - 400) }
        }
    }

    /// Lines logged since `mark()`.
    static func mark() -> Int { lock.withLock { lines.count } }
    static func since(_ mark: Int, last n: Int = 40) -> String {
        lock.withLock {
            let from = min(mark, lines.count)
            return lines[from...].suffix(n).joined(separator: "\n")
        }
    }
}

/// A pthread mutex; Foundation-free so this module stays thin.
final class NSLockish: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}
