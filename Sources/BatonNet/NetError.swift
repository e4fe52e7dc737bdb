import BatonModel
import Glibc

/// A failed kernel operation: which subsystem, what we were doing, and errno (BatonBPF's
/// `BPFError` is the same type).
public typealias NetError = SystemError

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
