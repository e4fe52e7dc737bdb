import CLibbpf
#if canImport(Glibc)
import Glibc
#endif

/// How an XDP program is attached to an interface.
public enum XDPMode: String, Sendable, Codable, CaseIterable {
    /// In the driver: the fast path. veth and most NICs support it.
    case native
    /// In the generic (skb) path: works everywhere, at stack speed.
    case generic

    var flags: UInt32 {
        switch self {
        case .native: return UInt32(XDP_FLAGS_DRV_MODE)
        case .generic: return UInt32(XDP_FLAGS_SKB_MODE)
        }
    }
}

/// An XDP attachment as a BPF link: pinnable, so it outlives the process
/// that made it, and removed only by unpinning and closing it.
public final class XDPLink: @unchecked Sendable {
    public let descriptor: BPFDescriptor
    public let ifindex: UInt32
    public let programID: UInt32
    public let id: UInt32

    init(_ descriptor: BPFDescriptor) throws {
        let info = try descriptor.info(bpf_link_info(), "link")
        self.descriptor = descriptor
        id = info.id
        programID = info.prog_id
        ifindex = info.xdp.ifindex
    }

    /// Attaches `program` to `ifindex` (resolved in the calling thread's
    /// network namespace) in `mode`. Fails with EBUSY-style errors when
    /// another XDP program is attached there.
    public static func attach(_ program: BPFProgram, ifindex: UInt32, mode: XDPMode) throws -> XDPLink {
        var opts = bpf_link_create_opts()
        opts.sz = MemoryLayout<bpf_link_create_opts>.size
        opts.flags = mode.flags
        let fd = bpf_link_create(program.fd, Int32(ifindex), BPF_XDP, &opts)
        if fd < 0 {
            let e = -fd
            var what = "attach \(program.name) to ifindex \(ifindex) in \(mode.rawValue) mode"
            if e == EBUSY || e == EEXIST { what += " (another XDP program is attached there)" }
            if e == EOPNOTSUPP || e == EINVAL && mode == .native { what += " (the driver may lack native XDP; --mode generic works everywhere)" }
            throw BPFError(what, errno: e)
        }
        return try XDPLink(BPFDescriptor(adopting: fd))
    }

    public static func pinned(at path: String) throws -> XDPLink {
        try XDPLink(BPFDescriptor.pinned(at: path))
    }

    public func pin(at path: String) throws { try descriptor.pin(at: path) }

    /// The live link pinned at `path` on `ifindex` if there is one (a daemon's restart adopts
    /// what its last run attached); otherwise `program` attached and pinned there, replacing
    /// a stale pin. `adopted` says which.
    public static func adoptOrAttach(_ program: BPFProgram, ifindex: UInt32, mode: XDPMode,
                                     pinnedAt path: String) throws -> (link: XDPLink, adopted: Bool) {
        if BPFFS.exists(path) {
            if let existing = try? pinned(at: path), !existing.isDefunct, existing.ifindex == ifindex {
                return (existing, true)
            }
            try? BPFFS.remove(path)
        }
        let link = try attach(program, ifindex: ifindex, mode: mode)
        do {
            try link.pin(at: path)
        } catch {
            try? link.detach()
            throw error
        }
        return (link, false)
    }

    /// Detaches now, whoever else holds the link.
    public func detach() throws {
        if bpf_link_detach(descriptor.fd) < 0 {
            throw BPFError("detach link \(id)", errno: Glibc.errno)
        }
    }

    /// The link's interface is gone or it was detached: the kernel reports ifindex 0.
    public var isDefunct: Bool { ifindex == 0 }

    /// Attaches `program` the netlink way (bpf_xdp_attach): no link object,
    /// it stays until the interface goes or `detachFromInterface` is called.
    /// For harness plumbing that lives exactly as long as its interface.
    public static func attachToInterface(_ program: BPFProgram, ifindex: UInt32, mode: XDPMode) throws {
        let rc = bpf_xdp_attach(Int32(ifindex), program.fd, mode.flags, nil)
        if rc < 0 { throw BPFError("attach \(program.name) to ifindex \(ifindex) in \(mode.rawValue) mode", errno: -rc) }
    }

    public static func detachFromInterface(ifindex: UInt32, mode: XDPMode) throws {
        let rc = bpf_xdp_detach(Int32(ifindex), mode.flags, nil)
        if rc < 0 { throw BPFError("detach XDP from ifindex \(ifindex)", errno: -rc) }
    }

    /// XDP program IDs attached to `ifindex` (native, generic), by netlink query.
    public static func attachedPrograms(ifindex: UInt32) -> (native: UInt32, generic: UInt32) {
        var opts = bpf_xdp_query_opts()
        opts.sz = MemoryLayout<bpf_xdp_query_opts>.size
        guard bpf_xdp_query(Int32(ifindex), 0, &opts) == 0 else { return (0, 0) }
        return (opts.drv_prog_id, opts.skb_prog_id)
    }
}
