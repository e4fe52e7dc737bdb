import BatonModel
import CMnl
import Glibc

/// IFF_* flags of a link.
public struct LinkFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let up = LinkFlags(rawValue: UInt32(IFF_UP))
    public static let broadcast = LinkFlags(rawValue: UInt32(IFF_BROADCAST))
    public static let loopback = LinkFlags(rawValue: UInt32(IFF_LOOPBACK))
    public static let pointToPoint = LinkFlags(rawValue: UInt32(IFF_POINTOPOINT))
    public static let running = LinkFlags(rawValue: UInt32(IFF_RUNNING))
    public static let noARP = LinkFlags(rawValue: UInt32(IFF_NOARP))
    public static let promiscuous = LinkFlags(rawValue: UInt32(IFF_PROMISC))
    public static let multicast = LinkFlags(rawValue: UInt32(IFF_MULTICAST))
    public static let lowerUp = LinkFlags(rawValue: 0x10000)  // IFF_LOWER_UP

    private static let names: [(LinkFlags, String)] = [
        (.up, "UP"), (.broadcast, "BROADCAST"), (.loopback, "LOOPBACK"), (.pointToPoint, "POINTOPOINT"),
        (.running, "RUNNING"), (.noARP, "NOARP"), (.promiscuous, "PROMISC"), (.multicast, "MULTICAST"),
        (.lowerUp, "LOWER_UP"),
    ]

    public var description: String { Self.names.filter { contains($0.0) }.map(\.1).joined(separator: ",") }
}

/// A link's packet counters (struct rtnl_link_stats64). For a veth, `txDropped` counts
/// frames its peer's ring had no room for: they were lost before the peer's XDP saw them.
public struct LinkStatistics: Sendable, Hashable, CustomStringConvertible {
    public var rxPackets: UInt64, txPackets: UInt64
    public var rxDropped: UInt64, txDropped: UInt64
    public var rxErrors: UInt64, txErrors: UInt64

    public init(_ s: rtnl_link_stats64) {
        rxPackets = s.rx_packets; txPackets = s.tx_packets
        rxDropped = s.rx_dropped; txDropped = s.tx_dropped
        rxErrors = s.rx_errors; txErrors = s.tx_errors
    }

    public var description: String {
        "rx \(rxPackets) (dropped \(rxDropped), errors \(rxErrors)), tx \(txPackets) (dropped \(txDropped), errors \(txErrors))"
    }
}

/// RFC 2863 operational state (IFLA_OPERSTATE).
public enum OperationalState: UInt8, Sendable, Hashable {
    case unknown = 0, notPresent, down, lowerLayerDown, testing, dormant, up
}

/// A network interface as netlink reports it.
public struct Link: Sendable, Hashable, CustomStringConvertible {
    public var index: Int
    public var name: String
    /// The hardware address; nil for links without one.
    public var mac: MACAddress?
    public var mtu: Int
    public var flags: LinkFlags
    /// ifindex of the bridge (or bond) this link is enslaved to.
    public var masterIndex: Int?
    /// The rtnetlink kind: "veth", "bridge", "dummy"…; nil for loopback and hardware.
    public var kind: String?
    /// IFLA_LINK: for a veth, its peer's ifindex (in the peer's namespace).
    public var peerIndex: Int?
    public var operationalState: OperationalState
    /// The kernel's counters (IFLA_STATS64); nil when the answer had none.
    public var statistics: LinkStatistics? = nil

    public var isUp: Bool { flags.contains(.up) }

    public var description: String {
        var text = "\(index): \(name) <\(flags)> mtu \(mtu)"
        if let kind { text += " \(kind)" }
        if let mac { text += " link/ether \(mac)" }
        if let masterIndex { text += " master \(masterIndex)" }
        return text
    }
}

/// IFA_F_* address flags. `nodad` and `noPrefixRoute` are the ones one sets; the kernel reports
/// the others.
public struct AddressFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let secondary = AddressFlags(rawValue: UInt32(IFA_F_SECONDARY))
    /// Skip duplicate address detection (IPv6): usable at once.
    public static let nodad = AddressFlags(rawValue: UInt32(IFA_F_NODAD))
    public static let optimistic = AddressFlags(rawValue: UInt32(IFA_F_OPTIMISTIC))
    public static let dadFailed = AddressFlags(rawValue: UInt32(IFA_F_DADFAILED))
    public static let homeAddress = AddressFlags(rawValue: UInt32(IFA_F_HOMEADDRESS))
    public static let deprecated = AddressFlags(rawValue: UInt32(IFA_F_DEPRECATED))
    public static let tentative = AddressFlags(rawValue: UInt32(IFA_F_TENTATIVE))
    public static let permanent = AddressFlags(rawValue: UInt32(IFA_F_PERMANENT))
    public static let manageTemporaryAddresses = AddressFlags(rawValue: UInt32(IFA_F_MANAGETEMPADDR))
    /// Do not add the prefix route for the address's subnet.
    public static let noPrefixRoute = AddressFlags(rawValue: UInt32(IFA_F_NOPREFIXROUTE))

    private static let names: [(AddressFlags, String)] = [
        (.secondary, "secondary"), (.nodad, "nodad"), (.optimistic, "optimistic"), (.dadFailed, "dadfailed"),
        (.homeAddress, "home"), (.deprecated, "deprecated"), (.tentative, "tentative"), (.permanent, "permanent"),
        (.manageTemporaryAddresses, "mngtmpaddr"), (.noPrefixRoute, "noprefixroute"),
    ]

    public var description: String { Self.names.filter { contains($0.0) }.map(\.1).joined(separator: " ") }
}

/// Scope of an address or route (RT_SCOPE_*).
public struct Scope: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let universe = Scope(rawValue: 0)
    public static let site = Scope(rawValue: 200)
    public static let link = Scope(rawValue: 253)
    public static let host = Scope(rawValue: 254)
    public static let nowhere = Scope(rawValue: 255)

    public var description: String {
        switch self {
        case .universe: return "global"
        case .site: return "site"
        case .link: return "link"
        case .host: return "host"
        case .nowhere: return "nowhere"
        default: return "\(rawValue)"
        }
    }
}

/// An address on an interface.
public struct InterfaceAddress: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: Int
    public var interfaceIndex: Int
    public var flags: AddressFlags
    public var scope: Scope

    public var prefix: IPPrefix { IPPrefix(address, length: prefixLength)! }
    public var description: String { "\(address)/\(prefixLength) scope \(scope) \(flags)" }
}

/// RTN_* route types.
public struct RouteType: RawRepresentable, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let unicast = RouteType(rawValue: UInt8(RTN_UNICAST))
    public static let local = RouteType(rawValue: UInt8(RTN_LOCAL))
    public static let broadcast = RouteType(rawValue: UInt8(RTN_BROADCAST))
    public static let multicast = RouteType(rawValue: UInt8(RTN_MULTICAST))
    public static let blackhole = RouteType(rawValue: UInt8(RTN_BLACKHOLE))
    public static let unreachable = RouteType(rawValue: UInt8(RTN_UNREACHABLE))
}

/// A route from a routing table.
public struct Route: Sendable, Hashable, CustomStringConvertible {
    /// The destination; 0.0.0.0/0 or ::/0 for a default route.
    public var destination: IPPrefix
    public var gateway: IPAddress?
    public var interfaceIndex: Int?
    public var preferredSource: IPAddress?
    public var metric: Int?
    public var table: Int
    public var type: RouteType
    public var scope: Scope

    public var description: String {
        var text = "\(destination)"
        if let gateway { text += " via \(gateway)" }
        if let interfaceIndex { text += " dev #\(interfaceIndex)" }
        if let preferredSource { text += " src \(preferredSource)" }
        if let metric { text += " metric \(metric)" }
        return text + " table \(table)"
    }

    /// The main routing table (RT_TABLE_MAIN).
    public static let mainTable = 254
}

/// NUD_* neighbour states.
public struct NeighbourState: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let incomplete = NeighbourState(rawValue: UInt16(NUD_INCOMPLETE))
    public static let reachable = NeighbourState(rawValue: UInt16(NUD_REACHABLE))
    public static let stale = NeighbourState(rawValue: UInt16(NUD_STALE))
    public static let delay = NeighbourState(rawValue: UInt16(NUD_DELAY))
    public static let probe = NeighbourState(rawValue: UInt16(NUD_PROBE))
    public static let failed = NeighbourState(rawValue: UInt16(NUD_FAILED))
    public static let noARP = NeighbourState(rawValue: UInt16(NUD_NOARP))
    public static let permanent = NeighbourState(rawValue: UInt16(NUD_PERMANENT))

    /// States in which the kernel has a link-layer address it will use.
    public static let valid: NeighbourState = [.reachable, .stale, .delay, .probe, .noARP, .permanent]

    private static let names: [(NeighbourState, String)] = [
        (.incomplete, "INCOMPLETE"), (.reachable, "REACHABLE"), (.stale, "STALE"), (.delay, "DELAY"),
        (.probe, "PROBE"), (.failed, "FAILED"), (.noARP, "NOARP"), (.permanent, "PERMANENT"),
    ]

    public var description: String {
        rawValue == 0 ? "NONE" : Self.names.filter { contains($0.0) }.map(\.1).joined(separator: ",")
    }
}

/// An ARP (IPv4) or NDP (IPv6) neighbour table entry.
public struct Neighbour: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    /// The link-layer address; nil while unresolved (INCOMPLETE, FAILED).
    public var mac: MACAddress?
    public var interfaceIndex: Int
    public var state: NeighbourState
    /// NTF_ROUTER: the neighbour said it is a router (IPv6).
    public var isRouter: Bool

    public var description: String {
        "\(address) dev #\(interfaceIndex)" + (mac.map { " lladdr \($0)" } ?? "") + (isRouter ? " router" : "") + " \(state)"
    }
}
