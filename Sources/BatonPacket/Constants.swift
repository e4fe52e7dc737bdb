/// EtherType values the builder and parser know by name.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let ipv6: UInt16 = 0x86dd
    /// 802.1Q customer tag.
    public static let vlan: UInt16 = 0x8100
    /// 802.1ad service tag (QinQ outer tag).
    public static let qinq: UInt16 = 0x88a8
    /// Pre-standard QinQ tag; the parser accepts it as a VLAN tag too.
    public static let qinqLegacy: UInt16 = 0x9100

    static let vlanTPIDs: Set<UInt16> = [vlan, qinq, qinqLegacy]
}

/// IP protocol / IPv6 next-header numbers (IANA).
public enum IPProtocolNumber {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let ipip: UInt8 = 4
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let ipv6: UInt8 = 41
    public static let routing: UInt8 = 43
    public static let fragment: UInt8 = 44
    public static let esp: UInt8 = 50
    public static let authentication: UInt8 = 51
    public static let icmpv6: UInt8 = 58
    public static let noNextHeader: UInt8 = 59
    public static let destinationOptions: UInt8 = 60
    public static let mobility: UInt8 = 135
    public static let hip: UInt8 = 139
    public static let shim6: UInt8 = 140

    /// Next-header values that are IPv6 extension headers the parser walks
    /// (RFC 8200 §4 and the IANA list; 253/254 are the experimental values).
    public static let ipv6Extensions: Set<UInt8> = [0, 43, 44, 51, 60, 135, 139, 140, 253, 254]
}
