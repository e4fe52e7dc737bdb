import BatonOpenAPI

/// An API error: a code that says what kind of failure it is (and so the HTTP status and
/// batonctl's exit status) and one line for people.
public struct ControlError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The document's ErrorCode: what kind of failure it is.
    public typealias Code = Components.Schemas.ErrorCode

    public let code: Code
    public let description: String

    public init(_ description: String, code: Code = .failed) {
        self.code = code
        self.description = description
    }

    public static func invalid(_ s: String) -> ControlError { ControlError(s, code: .invalid) }
    public static func forbidden(_ s: String) -> ControlError { ControlError(s, code: .forbidden) }
    public static func notFound(_ s: String) -> ControlError { ControlError(s, code: .notFound) }
    public static func conflict(_ s: String) -> ControlError { ControlError(s, code: .conflict) }
    public static func rateLimited(_ s: String) -> ControlError { ControlError(s, code: .rateLimited) }
    public static func unavailable(_ s: String) -> ControlError { ControlError(s, code: .unavailable) }
}

extension Components.Schemas.ErrorCode {
    /// The HTTP status of each code (the document pairs them the same way; a test checks it).
    /// invalid: the request is malformed or names something malformed. forbidden: unenrolled
    /// device, address not owned, no policy. notFound: what it names does not exist. conflict:
    /// already enrolled, address already taken over. failed: understood and allowed, but a peer
    /// did not answer or the kernel refused. rateLimited: too many requests from this device.
    /// unavailable: the daemon cannot be reached or is shutting down (batonctl exits 69).
    /// internal: a bug.
    public var httpStatus: Int {
        switch self {
        case .invalid: 400
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .failed: 422
        case .rateLimited: 429
        case .unavailable: 503
        case ._internal: 500
        }
    }
}
