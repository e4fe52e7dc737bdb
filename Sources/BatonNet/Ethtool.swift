import CMnl

/// Offload settings through the SIOCETHTOOL ioctl (the legacy per-feature commands).
///
/// Test hosts need two of them on veth: TX checksumming off, because a veth sender leaves a
/// partial checksum that a frame bounced with XDP_TX then carries as a bad one; and GRO on
/// the peer of an interface that receives XDP_TX'd or redirected frames, because veth only
/// delivers those when the peer has GRO or an XDP program.
///
/// The interface is looked up in the calling thread's namespace, or in `namespace`.
public enum Ethtool {
    /// `ethtool -K IF tx on|off`. Turning it off also turns off what depends on it (TSO, …).
    public static func setTxChecksum(_ enabled: Bool, interface: String, in namespace: NetworkNamespace? = nil) throws {
        try set(ETHTOOL_STXCSUM, enabled, interface, "tx", namespace)
    }

    public static func txChecksum(interface: String, in namespace: NetworkNamespace? = nil) throws -> Bool {
        try get(ETHTOOL_GTXCSUM, interface, "tx", namespace)
    }

    /// `ethtool -K IF rx on|off`.
    public static func setRxChecksum(_ enabled: Bool, interface: String, in namespace: NetworkNamespace? = nil) throws {
        try set(ETHTOOL_SRXCSUM, enabled, interface, "rx", namespace)
    }

    public static func rxChecksum(interface: String, in namespace: NetworkNamespace? = nil) throws -> Bool {
        try get(ETHTOOL_GRXCSUM, interface, "rx", namespace)
    }

    /// `ethtool -K IF gro on|off`.
    public static func setGRO(_ enabled: Bool, interface: String, in namespace: NetworkNamespace? = nil) throws {
        try set(ETHTOOL_SGRO, enabled, interface, "gro", namespace)
    }

    public static func gro(interface: String, in namespace: NetworkNamespace? = nil) throws -> Bool {
        try get(ETHTOOL_GGRO, interface, "gro", namespace)
    }

    private static func set(_ command: Int32, _ enabled: Bool, _ interface: String, _ feature: String,
                            _ namespace: NetworkNamespace?) throws {
        try NetworkNamespace.within(namespace) {
            _ = try NetError.wrap("ethtool", "-K \(interface) \(feature) \(enabled ? "on" : "off")") {
                try Kernel.ethtoolValue(interface: interface, command: UInt32(command), data: enabled ? 1 : 0)
            }
        }
    }

    private static func get(_ command: Int32, _ interface: String, _ feature: String,
                            _ namespace: NetworkNamespace?) throws -> Bool {
        try NetworkNamespace.within(namespace) {
            try NetError.wrap("ethtool", "-k \(interface) \(feature)") {
                try Kernel.ethtoolValue(interface: interface, command: UInt32(command)) != 0
            }
        }
    }
}
