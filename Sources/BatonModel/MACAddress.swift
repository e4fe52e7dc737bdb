/// A 48-bit Ethernet address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public static let zero = MACAddress(unchecked: [0, 0, 0, 0, 0, 0])
    public static let broadcast = MACAddress(unchecked: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 6 else { return nil }
        self.bytes = Array(bytes)
    }

    private init(unchecked: [UInt8]) { bytes = unchecked }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).count == 6
            ? text.split(separator: ":", omittingEmptySubsequences: false)
            : text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard p.count == 2, p.allSatisfy(\.isHexDigit), let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        bytes = out
    }

    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }
    public var isMulticast: Bool { bytes[0] & 1 == 1 }

    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

}

extension MACAddress: TextCoded {
    public init?(text: String) { self.init(text) }
    public var text: String { description }
    public static var expectedText: String { "a MAC address" }
    public init(from decoder: Decoder) throws { try self.init(textFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeText(to: encoder) }
}
