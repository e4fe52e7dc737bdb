import BatonAPI
import BatonModel
import Foundation

// Parsing of command-line values. Options are declared as strings and parsed
// here, so every malformed value gets the same kind of one-line message:
//   invalid port '70000': expected 0-65535 (--sport)

public enum Parse {
    public static func address(_ text: String, _ flag: String) throws -> IPAddress {
        var t = text
        if t.hasPrefix("["), t.hasSuffix("]") { t = String(t.dropFirst().dropLast()) }
        guard !t.contains("/"), let a = IPAddress(t) else {
            throw CLIError.usage("invalid address '\(text)': expected an IPv4 or IPv6 address (\(flag))")
        }
        return a
    }

    public static func mac(_ text: String, _ flag: String) throws -> MACAddress {
        guard let m = MACAddress(text) else {
            throw CLIError.usage("invalid MAC address '\(text)': expected six hex bytes like 02:00:00:00:00:01 (\(flag))")
        }
        return m
    }

    /// A MAC that frames are sent to or from: unicast, not zero.
    public static func unicastMAC(_ text: String, _ flag: String) throws -> MACAddress {
        let m = try mac(text, flag)
        guard !m.isZero, !m.isMulticast else {
            throw CLIError.usage("invalid MAC address '\(text)': must be a unicast address (\(flag))")
        }
        return m
    }

    public static func port(_ text: String, _ flag: String) throws -> UInt16 {
        guard let n = Int(text), (0...65535).contains(n) else {
            throw CLIError.usage("invalid port '\(text)': expected 0-65535 (\(flag))")
        }
        return UInt16(n)
    }

    public static func proto(_ text: String, _ flag: String = "--proto") throws -> IPProtocol {
        guard let p = IPProtocol(name: text) else {
            throw CLIError.usage("invalid protocol '\(text)': expected tcp, udp, icmp or icmpv6 (\(flag))")
        }
        return p
    }

    public static func action(_ text: String, _ flag: String = "--action") throws -> Forwarding.Action {
        guard let a = Forwarding.Action(rawValue: text.lowercased()) else {
            throw CLIError.usage("invalid action '\(text)': expected l2, encap, pass or drop (\(flag))")
        }
        return a
    }

    /// A takeover's default path: l2 or encap.
    public static func takeoverMode(_ text: String, _ flag: String = "--mode") throws -> Forwarding.Action {
        switch text.lowercased() {
        case "l2": return .l2
        case "encap": return .encap
        default: throw CLIError.usage("invalid mode '\(text)': expected l2 or encap (\(flag))")
        }
    }

    public static func positive(_ text: String, _ flag: String) throws -> Int {
        guard let n = Int(text), n > 0 else {
            throw CLIError.usage("invalid count '\(text)': expected a positive number (\(flag))")
        }
        return n
    }

    public static func interfaceName(_ text: String, _ what: String = "interface") throws -> String {
        // IFNAMSIZ is 16 with the NUL; a pin file name must not contain '/'.
        guard !text.isEmpty, text.utf8.count < 16, !text.contains("/"), text != ".", text != "..",
              !text.contains(where: { $0.isWhitespace }) else {
            throw CLIError.usage("invalid \(what) name '\(text)': expected at most 15 characters, no '/' or spaces")
        }
        return text
    }

    public static func familyName(_ f: IPAddress.Family) -> String { f == .v4 ? "IPv4" : "IPv6" }

    /// "--temporary fd00::2 is IPv6 but 10.0.0.2 is IPv4"
    public static func sameFamily(_ a: IPAddress, _ aFlag: String, as b: IPAddress, _ bWhat: String, why: String = "") throws {
        guard a.family == b.family else {
            throw CLIError.usage("address family mismatch: \(aFlag) \(a) is \(familyName(a.family)) but \(bWhat) \(b) is \(familyName(b.family))" + why)
        }
    }

    // MARK: daemon values

    /// `--api`: https://HOST:PORT (IPv6 in brackets), nothing after the port.
    public static func apiBase(_ text: String) throws -> String {
        var t = text
        while t.hasSuffix("/") { t.removeLast() }
        guard let c = URLComponents(string: t), c.scheme == "https", let host = c.host, !host.isEmpty,
              let port = c.port, (1...65535).contains(port), c.path.isEmpty, c.query == nil, c.fragment == nil,
              c.user == nil, c.password == nil else {
            throw CLIError.usage("invalid --api '\(text)': expected https://HOST:PORT, like https://10.0.0.2:7391 or https://[2001:db8::2]:7391")
        }
        return t
    }

    public static let deviceNameForm = "1-63 letters, digits, '-', '_' or '.'"

    /// A device's name, as the agent accepts it.
    public static func deviceName(_ text: String, _ what: String = "device name") throws -> String {
        guard Device.validName(text) else {
            throw CLIError.usage("invalid \(what) '\(text)': expected \(deviceNameForm)")
        }
        return text
    }

    /// A batond public key: 32 bytes as 43 base64url characters, as `batond key` prints.
    public static func publicKey(_ text: String, _ flag: String = "--key") throws -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        // 43 characters carry 258 bits: the last one's two low bits must be zero (canonical).
        guard text.count == 43, text.allSatisfy({ alphabet.contains($0) }),
              let last = text.last.flatMap({ alphabet.firstIndex(of: $0) }), last % 4 == 0 else {
            throw CLIError.usage("invalid public key '\(text)': expected 43 base64url characters, as `batond key` prints (\(flag); write --key=KEY when it begins with '-')")
        }
        return text
    }

    /// An address prefix a device owns: ADDRESS/LENGTH, or a bare address (a host prefix).
    public static func prefix(_ text: String, _ flag: String = "--address") throws -> String {
        guard let p = IPPrefix(text) else {
            throw CLIError.usage("invalid address prefix '\(text)': expected ADDRESS/LENGTH like 10.0.0.3/32 or 2001:db8::/64 (\(flag))")
        }
        return p.description
    }

    /// One side of a policy: a device's name or `*`.
    public static func policySide(_ text: String, _ flag: String) throws -> String {
        guard text == "*" || Device.validName(text) else {
            throw CLIError.usage("invalid device '\(text)': expected a device name (\(deviceNameForm)) or * for any (\(flag))")
        }
        return text
    }

    /// A policy's ID, as `policy list` shows it.
    public static func policyID(_ text: String) throws -> Int {
        guard let n = Int(text), n >= 0 else {
            throw CLIError.usage("invalid policy ID '\(text)': expected a number, as `batonctl policy list` shows")
        }
        return n
    }

    /// A positive, finite rate (per second).
    /// Registrations per second, in the range the agent takes (`Limits.rateLimit`).
    public static func rate(_ text: String, _ flag: String) throws -> Double {
        guard let r = Double(text), r.isFinite, Limits.rateLimit.contains(r) else {
            throw CLIError.usage("invalid rate '\(text)': expected \(Limits.rateLimit.lowerBound)-\(Int(Limits.rateLimit.upperBound)) per second (\(flag))")
        }
        return r
    }
}
