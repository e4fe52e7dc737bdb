import BatonBPF
import BatonModel
import CBatonABI
import CBatonObjects
#if canImport(Glibc)
import Glibc
#endif

/// An inner destination the host decapsulates for, and who may send it.
public struct DecapEntry: Equatable, Hashable, Sendable, Codable {
    /// The original address, which this host (target or TN) now serves.
    public var original: IPAddress
    /// The only outer source accepted; nil accepts any.
    public var agent: IPAddress?

    public init(original: IPAddress, agent: IPAddress?) {
        self.original = original
        self.agent = agent
    }
}

/// baton_decap_stats by reason (BATON_DECAP_STAT_*). Every reason but
/// `decapsulated` leaves the frame unchanged, passed to the stack.
public enum DecapReason: Int, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case decapsulated = 0, notTunnel, notAccepted, malformed, fragment

    public var description: String {
        switch self {
        case .decapsulated: return "decapsulated"
        case .notTunnel: return "not-tunnel"
        case .notAccepted: return "not-accepted"
        case .malformed: return "malformed"
        case .fragment: return "fragment"
        }
    }

    public var meaning: String {
        switch self {
        case .decapsulated: return "outer header removed, inner packet passed up"
        case .notTunnel: return "not IPIP / IPv6-in-IPv6: passed"
        case .notAccepted: return "inner destination not accepted, or not from its agent: passed"
        case .malformed: return "truncated or inconsistent tunnel packet: passed"
        case .fragment: return "outer IPv4 fragment: passed to the stack"
        }
    }
}

/// The L3 mode's receiving side: the baton_decap XDP program and its maps,
/// on the target or the TN. It strips the outer IPIP / IPv6-in-IPv6 header of
/// packets whose inner destination was accepted here, so the stack sees them
/// as if they had arrived directly (this kernel has no tunnel devices).
///
/// Pinned layout under `<root>/decap` (beside, never inside, DataPlane's
/// maps/, progs/ and links/ when both share a root):
///   maps/<map name>   baton_decap_accept, baton_decap_stats
///   progs/baton_decap
///   links/<ifname>    one XDP link per attached interface
public final class Decapsulator {
    /// baton_decap's object.
    public static let spec = CollectionSpec(
        name: "baton_decap", maps: ["baton_decap_accept", "baton_decap_stats"], programs: ["baton_decap"],
        image: { UnsafeRawBufferPointer(start: baton_decap_object(), count: Int(baton_decap_object_size())) })

    /// The directory everything is pinned in for `root`.
    public static func pinDirectory(root: String) -> String { root + "/decap" }

    /// The map, program and links, pinned under `pinDirectory` or private to this process.
    public let collection: PinnedCollection
    /// Where this instance pins; nil when not pinned.
    public var pinDirectory: String? { collection.directory }
    public let program: BPFProgram
    let acceptMap: TypedMap<baton_decap_key, baton_decap>
    let statMap: TypedMap<UInt32, baton_stat>

    /// Maps by name, for status and debugging.
    public var maps: [String: BPFMap] { collection.maps }

    public static func isPinned(root: String) -> Bool {
        PinnedCollection.isPinned(spec, in: pinDirectory(root: root))
    }

    /// Loads baton_decap, or adopts it if already pinned under `root`; root nil = not pinned
    /// (tests). A load reuses maps already pinned, so accepted addresses survive a reload.
    public static func open(root: String?) throws -> Decapsulator {
        guard let root else { return try Decapsulator(PinnedCollection.load(spec, pinnedIn: nil)) }
        try PinnedCollection.requireBPFFS(root)
        return try Decapsulator(PinnedCollection.open(spec, in: pinDirectory(root: root)))
    }

    private init(_ c: PinnedCollection) throws {
        collection = c
        program = try c.program("baton_decap")
        acceptMap = try c.map("baton_decap_accept")
        statMap = try c.map("baton_decap_stats")
    }

    /// Removes the pins under `root`'s decap directory, detaching its XDP
    /// links first (idempotent). Steering pins at the same root stay.
    public static func unload(root: String) throws {
        try PinnedCollection.unload(directory: pinDirectory(root: root))
    }

    // MARK: accepted destinations

    /// Decapsulate tunnelled packets whose inner destination is `original`; if `agent` is given
    /// only when the outer source is `agent`. Replaces an entry for `original` in place.
    public func accept(_ original: IPAddress, from agent: IPAddress?) throws {
        guard !original.isUnspecified, !original.isMulticast else {
            throw DataPlaneError.invalid("\(original) cannot be an accepted destination")
        }
        var value = baton_decap()
        if let agent {
            // The agent tunnels IPv4 in IPv4 and IPv6 in IPv6 only.
            guard agent.family == original.family else {
                throw DataPlaneError.invalid("agent \(agent) is not of \(original)'s family (\(original.family.rawValue))")
            }
            // All zero means "any agent" in the map.
            guard !agent.isUnspecified else {
                throw DataPlaneError.invalid("agent address must not be unspecified; leave it out to accept any")
            }
            abiStore(agent.bytes16, into: &value.agent)
        }
        do {
            try acceptMap.update(Self.key(original), value)
        } catch let e as BPFError where e.errno == E2BIG {
            throw DataPlaneError.full("decap table is full (\(acceptMap.map.maxEntries) addresses)")
        }
    }

    @discardableResult
    public func remove(_ original: IPAddress) throws -> Bool {
        try acceptMap.delete(Self.key(original))
    }

    /// Every accepted destination, sorted by address.
    public func accepted() throws -> [DecapEntry] {
        try acceptMap.entries().map { k, v in
            let agent = abiBytes(v.agent)
            return DecapEntry(original: IPAddress(bytes16: abiBytes(k.addr)),
                              agent: agent.allSatisfy { $0 == 0 } ? nil : IPAddress(bytes16: agent))
        }.sorted { $0.original < $1.original }
    }

    public var capacity: Int { acceptMap.map.maxEntries }

    /// Packets and bytes by reason, summed over CPUs.
    public func stats() throws -> [DecapReason: StatValue] {
        var out: [DecapReason: StatValue] = [:]
        for r in DecapReason.allCases {
            let per = try statMap.lookupPerCPU(UInt32(r.rawValue)) ?? []
            out[r] = StatValue(packets: per.reduce(0) { $0 + $1.packets }, bytes: per.reduce(0) { $0 + $1.bytes })
        }
        return out
    }

    // MARK: attaching

    /// The pin path of the link for interface `name`, when pinned.
    public func linkPath(_ name: String) -> String? { collection.linkPath(name) }

    /// Attaches to ifindex (in the caller's network namespace: call inside NetworkNamespace.run
    /// or from a thread in that namespace); pinned under root/decap/links/<ifname> when root is set.
    public func attach(ifindex: UInt32, mode: XDPMode = .native) throws -> XDPLink {
        // The name is needed only for the pin path.
        let name = pinDirectory == nil ? "ifindex \(ifindex)" : try Self.interfaceName(ifindex)
        if let path = linkPath(name), BPFFS.exists(path) {
            throw DataPlaneError.invalid("\(name) already has a decap link pinned at \(path); detach it first")
        }
        return try collection.attach("baton_decap", interface: name, ifindex: ifindex, mode: mode)
    }

    /// The decap link pinned for `ifindex` by an earlier run if it is still attached there
    /// (a restarted node adopts it), or `attach`. Unpinned instances always attach.
    public func adoptOrAttach(ifindex: UInt32, mode: XDPMode = .native) throws -> (link: XDPLink, adopted: Bool) {
        let name = pinDirectory == nil ? "ifindex \(ifindex)" : try Self.interfaceName(ifindex)
        return try collection.adoptOrAttach("baton_decap", interface: name, ifindex: ifindex, mode: mode)
    }

    /// The name of the interface `ifindex` in the calling thread's namespace.
    private static func interfaceName(_ ifindex: UInt32) throws -> String {
        var buf = [CChar](repeating: 0, count: Int(IF_NAMESIZE))
        guard if_indextoname(ifindex, &buf) != nil else {
            throw BPFError("no interface with ifindex \(ifindex) here", errno: Glibc.errno)
        }
        return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func key(_ a: IPAddress) -> baton_decap_key {
        var k = baton_decap_key()
        abiStore(a.bytes16, into: &k.addr)
        return k
    }
}
