/// An API error: a code that says what kind of failure it is (and so the HTTP status and
/// batonctl's exit status) and one line for people.
public struct ControlError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Codable, Sendable, CaseIterable {
        /// The request is malformed or names something malformed (400).
        case invalid
        /// The caller may not do this: unenrolled device, address not owned, no policy (403).
        case forbidden = "forbidden"
        /// What it names does not exist (404).
        case notFound = "not-found"
        /// It conflicts with what exists: already enrolled, address already taken over (409).
        case conflict
        /// Understood and allowed, but it could not be carried out: a peer did not answer, the
        /// kernel refused (422).
        case failed
        /// Too many requests from this device; try again later (429).
        case rateLimited = "rate-limited"
        /// The daemon cannot be reached, or is shutting down (503; batonctl exits 69).
        case unavailable
        /// A bug: the daemon could not answer (500).
        case `internal`

        public var httpStatus: Int {
            switch self {
            case .invalid: 400
            case .forbidden: 403
            case .notFound: 404
            case .conflict: 409
            case .failed: 422
            case .rateLimited: 429
            case .unavailable: 503
            case .internal: 500
            }
        }
    }

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
