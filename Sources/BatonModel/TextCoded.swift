/// A value that JSON, the API and files carry as its text: an address as "10.0.0.2", a MAC as
/// "02:00:00:00:00:01", a protocol as "udp", a match kind as "any-sport", a role as "tn".
/// Conforming types say how to read and write the text; the coding is written once, here.
/// (Each conformance forwards `init(from:)` and `encode(to:)` to `init(textFrom:)` and
/// `encodeText(to:)`: the compiler would otherwise synthesize an enum's Codable.)
public protocol TextCoded: Codable {
    init?(text: String)
    var text: String { get }
    /// What a valid text looks like, for the decoding error: "an IP address".
    static var expectedText: String { get }
}

extension TextCoded {
    public init(textFrom decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let value = Self(text: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not \(Self.expectedText): \(s)")
        }
        self = value
    }

    public func encodeText(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(text)
    }
}
