/// An address and a port: a protocol peer, one end of an anchored session's leg.
public struct Endpoint: Codable, Hashable, Sendable, LosslessStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// "a.b.c.d:port" or "[v6]:port".
    public init?(_ description: String) {
        if description.hasPrefix("[") {
            guard let close = description.firstIndex(of: "]"),
                  description[description.index(after: close)...].hasPrefix(":"),
                  let a = IPAddress(String(description[description.index(after: description.startIndex)..<close])),
                  a.family == .v6,
                  let p = UInt16(description[description.index(close, offsetBy: 2)...]) else { return nil }
            self.init(address: a, port: p)
        } else {
            guard let colon = description.lastIndex(of: ":"),
                  let a = IPAddress(String(description[..<colon])), a.family == .v4,
                  let p = UInt16(description[description.index(after: colon)...]) else { return nil }
            self.init(address: a, port: p)
        }
    }

    public var description: String {
        address.family == .v6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}
