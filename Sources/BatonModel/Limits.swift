/// The ranges every number from outside (a flag, a file, the API, the protocol) is checked
/// against where it enters, with an error that names the field and the range. One table, so
/// that batond's flags, the API and the protocol agree.
public enum Limits {
    /// A transfer's idle timeout and the agent's default (seconds): a tenth of a second to a day.
    public static let idleTimeout: ClosedRange<Double> = 0.1...86_400
    /// The agent's linger after a wake-up is confirmed (seconds).
    public static let linger: ClosedRange<Double> = 0...60
    /// How long the agent waits for the TN to confirm a wake-up before it lets go (seconds).
    public static let maxWaking: ClosedRange<Double> = 1...3600
    /// Announcements per burst, the gap between them (milliseconds), the refresh (seconds; 0 is off).
    public static let announceCount: ClosedRange<Int> = 1...100
    public static let announceInterval: ClosedRange<Int> = 0...10_000
    public static let announceRefresh: ClosedRange<Double> = 0...3600
    /// The data plane's capacities (a rule map of 4M entries takes about a gigabyte of kernel memory).
    public static let maxRules: ClosedRange<Int> = 1...4_194_304
    public static let maxTakeovers: ClosedRange<Int> = 1...1_048_576
    /// Registrations per second, and the burst, of a device.
    public static let rateLimit: ClosedRange<Double> = 0.001...1_000_000
    public static let rateBurst: ClosedRange<Double> = 1...1_000_000
    /// Sealed messages a second (with a valid mac1) past which the agent asks for cookies; 0: always.
    public static let cookieThreshold: ClosedRange<Int> = 0...10_000_000
    /// The API: seconds a connection may sit idle (TLS handshake included), and connections open at once per listener.
    public static let apiIdleTimeout: ClosedRange<Double> = 0.1...3600
    public static let apiMaxConnections: ClosedRange<Int> = 1...65_536

    /// `value` if it is in `range` (and finite); otherwise `ModelError.invalid` naming `field`.
    @discardableResult
    public static func check(_ value: Double, _ range: ClosedRange<Double>, _ field: String, unit: String = "") throws(ModelError) -> Double {
        guard value.isFinite, range.contains(value) else {
            throw .invalid("invalid \(field) \(value): expected \(format(range.lowerBound))-\(format(range.upperBound))\(unit.isEmpty ? "" : " " + unit)")
        }
        return value
    }

    @discardableResult
    public static func check(_ value: Int, _ range: ClosedRange<Int>, _ field: String, unit: String = "") throws(ModelError) -> Int {
        guard range.contains(value) else {
            throw .invalid("invalid \(field) \(value): expected \(range.lowerBound)-\(range.upperBound)\(unit.isEmpty ? "" : " " + unit)")
        }
        return value
    }

    /// 0.1 → "0.1", 60 → "60".
    private static func format(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x)
    }
}
