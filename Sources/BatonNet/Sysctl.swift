import BatonModel
import Glibc

/// Kernel parameters under /proc/sys.
///
/// The net.* subtree is per network namespace, and the kernel resolves it by the namespace of
/// the *thread* that opens the file (current->nsproxy), not by the mount of /proc. So reading or
/// writing from inside `NetworkNamespace.run` (or with `in:`) affects only that namespace; the
/// tests check this. Other subtrees (kernel.*, vm.*) are global.
public enum Sysctl {
    /// "net.ipv4.ip_forward" → "/proc/sys/net/ipv4/ip_forward". Keys containing "/" are taken as
    /// paths below /proc/sys, which is the way to name interfaces with dots ("net/ipv4/conf/eth0.5/…").
    public static func path(for key: String) -> String {
        "/proc/sys/" + (key.contains("/") ? key : key.replacingDots())
    }

    /// The key of a per-interface parameter, as a path: interface names may hold dots (VLAN
    /// subinterfaces like "eth0.100"), which the dotted form would split.
    /// `interfaceKey("eth0.100", "promote_secondaries", family: .v4)` is
    /// "net/ipv4/conf/eth0.100/promote_secondaries".
    public static func interfaceKey(_ interface: String, _ parameter: String, family: IPAddress.Family,
                                    subtree: String = "conf") -> String {
        "net/\(family == .v4 ? "ipv4" : "ipv6")/\(subtree)/\(interface)/\(parameter)"
    }

    /// The value, without the trailing newline.
    public static func read(_ key: String, in namespace: NetworkNamespace? = nil) throws -> String {
        try NetworkNamespace.within(namespace) {
            let bytes = try NetError.wrap("sysctl", "read \(key)") { try Kernel.readFile(path(for: key)) }
            var text = String(decoding: bytes, as: UTF8.self)
            while text.last == "\n" { text.removeLast() }
            return text
        }
    }

    public static func readInt(_ key: String, in namespace: NetworkNamespace? = nil) throws -> Int {
        let text = try read(key, in: namespace)
        guard let value = Int(text.trimmingSpaces()) else {
            throw NetError(subsystem: "sysctl", operation: "read \(key)", errno: EINVAL, detail: "not a number: \(text)")
        }
        return value
    }

    public static func write(_ key: String, _ value: String, in namespace: NetworkNamespace? = nil) throws {
        try NetworkNamespace.within(namespace) {
            try NetError.wrap("sysctl", "set \(key)=\(value)") { try Kernel.writeFile(path(for: key), Array(value.utf8)) }
        }
    }

    public static func write(_ key: String, _ value: Int, in namespace: NetworkNamespace? = nil) throws {
        try write(key, String(value), in: namespace)
    }

}

/// SNMP counters of a network namespace (/proc/net/snmp and snmp6), e.g. "Udp.InCsumErrors"
/// or "Udp6InCsumErrors".
///
/// Read through /proc/thread-self/net: /proc/net is /proc/self/net, the *main* thread's
/// namespace, which is wrong on a namespace thread.
public enum SNMPCounters {
    public static func read(in namespace: NetworkNamespace? = nil) throws -> [String: Int64] {
        try NetworkNamespace.within(namespace) {
            var counters: [String: Int64] = [:]
            let snmp = try NetError.wrap("sysctl", "read snmp") { try Kernel.readFile("/proc/thread-self/net/snmp") }
            // Pairs of lines: "Udp: InDatagrams NoPorts …" then "Udp: 10 0 …".
            let lines = String(decoding: snmp, as: UTF8.self).split(separator: "\n")
            for pair in stride(from: 0, to: lines.count - 1, by: 2) {
                let names = lines[pair].split(separator: " ")
                let values = lines[pair + 1].split(separator: " ")
                guard let section = names.first?.dropLast(), names.count == values.count else { continue }
                for (name, value) in zip(names.dropFirst(), values.dropFirst()) {
                    counters["\(section).\(name)"] = Int64(value)
                }
            }
            // snmp6 is "Name value" per line; absent when IPv6 is disabled.
            if let snmp6 = try? Kernel.readFile("/proc/thread-self/net/snmp6") {
                for line in String(decoding: snmp6, as: UTF8.self).split(separator: "\n") {
                    let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                    if fields.count == 2 { counters[String(fields[0])] = Int64(fields[1]) }
                }
            }
            return counters
        }
    }
}

extension String {
    fileprivate func replacingDots() -> String {
        String(map { $0 == "." ? "/" : $0 })
    }

    fileprivate func trimmingSpaces() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
