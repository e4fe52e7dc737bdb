import BatonModel
import CLibbpf
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A failed libbpf or kernel call: what was being done, errno, and for program loads the
/// tail of libbpf's log (the verifier's explanation). BatonNet's `NetError` is the same type.
public typealias BPFError = SystemError

extension SystemError {
    /// For libbpf calls that return a negative error code.
    static func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws {
        if rc < 0 { throw BPFError(operation(), errno: -rc == 0 ? Glibc.errno : -rc) }
    }
}

/// libbpf prints through one global callback; keep the recent lines so an
/// error can carry them. `@convention(c)`: no captured context allowed.
enum LibbpfLog {
    private static let lines = Mutex<[String]>([])
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
        lines.withLock { lines in
            lines.append(contentsOf: text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init))
            if lines.count > 400 { lines.removeFirst(lines.count - 400) }
        }
    }

    /// Lines logged since `mark()`.
    static func mark() -> Int { lines.withLock { $0.count } }
    static func since(_ mark: Int, last n: Int = 40) -> String {
        lines.withLock { lines in
            let from = min(mark, lines.count)
            return lines[from...].suffix(n).joined(separator: "\n")
        }
    }
}
