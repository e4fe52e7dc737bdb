/// A value that the domain cannot hold: a rule the data plane cannot look up, a forwarding
/// without its MACs, a takeover of a multicast address. The message names what to fix.
/// Layers below turn it into their own errors (`DataPlaneError.invalid`, an API 400).
public enum ModelError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let s): return s
        }
    }
}
