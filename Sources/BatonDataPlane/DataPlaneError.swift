import BatonModel

/// Errors of the data plane's domain layer; kernel failures stay BPFError.
public enum DataPlaneError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalid(String)
    case notFound(String)
    case full(String)
    case notLoaded(String)

    public var description: String {
        switch self {
        case .invalid(let s): return s
        case .notFound(let s): return s
        case .full(let s): return s
        case .notLoaded(let s): return s
        }
    }

    /// A model value the data plane was handed is invalid.
    init(_ e: ModelError) {
        switch e {
        case .invalid(let s): self = .invalid(s)
        }
    }
}

/// Runs a model validation where data plane errors are thrown.
@inline(__always)
func validated<T>(_ check: () throws(ModelError) -> T) throws(DataPlaneError) -> T {
    do { return try check() } catch { throw DataPlaneError(error) }
}
