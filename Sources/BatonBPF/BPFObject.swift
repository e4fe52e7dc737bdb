import CLibbpf
#if canImport(Glibc)
import Glibc
#endif

/// A BPF ELF object opened with libbpf. Configure it (map sizes, pinning),
/// then `load()`. It owns the libbpf object and frees it exactly once, in
/// deinit; the maps and programs it hands out hold their own descriptors
/// and stay usable after it is gone.
public final class BPFObject {
    private let object: OpaquePointer
    public let name: String

    /// Opens an object from memory (an embedded ELF image).
    public init(bytes: UnsafeRawBufferPointer, name: String) throws {
        LibbpfLog.install()
        guard bytes.count > 0, let base = bytes.baseAddress else {
            throw BPFError("open \(name): the object is empty; build it with `make bpf`", errno: ENOENT)
        }
        var opts = bpf_object_open_opts()
        opts.sz = MemoryLayout<bpf_object_open_opts>.size
        let mark = LibbpfLog.mark()
        let obj = name.withCString { cname -> OpaquePointer? in
            opts.object_name = cname
            return bpf_object__open_mem(base, bytes.count, &opts)
        }
        guard let obj else {
            throw BPFError("open \(name)", errno: Glibc.errno, log: LibbpfLog.since(mark))
        }
        object = obj
        self.name = name
    }

    deinit { bpf_object__close(object) }

    private func map(named name: String) throws -> OpaquePointer {
        guard let m = bpf_object__find_map_by_name(object, name) else {
            throw BPFError("\(self.name) has no map \(name)", errno: ENOENT)
        }
        return m
    }

    private func program(named name: String) throws -> OpaquePointer {
        guard let p = bpf_object__find_program_by_name(object, name) else {
            throw BPFError("\(self.name) has no program \(name)", errno: ENOENT)
        }
        return p
    }

    /// Names of the object's maps and programs, in ELF order.
    public var mapNames: [String] {
        var out: [String] = []
        var m = bpf_object__next_map(object, nil)
        while let cur = m {
            out.append(String(cString: bpf_map__name(cur)))
            m = bpf_object__next_map(object, cur)
        }
        return out
    }

    public var programNames: [String] {
        var out: [String] = []
        var p = bpf_object__next_program(object, nil)
        while let cur = p {
            out.append(String(cString: bpf_program__name(cur)))
            p = bpf_object__next_program(object, cur)
        }
        return out
    }

    // MARK: before load

    public func setMaxEntries(_ map: String, _ n: Int) throws {
        try BPFError.check(bpf_map__set_max_entries(try self.map(named: map), UInt32(n)), "set max entries of \(map)")
    }

    /// libbpf reuses the map pinned at `path` when it is compatible, else
    /// creates it and pins it there at load.
    public func setPinPath(_ map: String, _ path: String) throws {
        try BPFError.check(bpf_map__set_pin_path(try self.map(named: map), path), "set pin path of \(map)")
    }

    /// Uses an existing map (by fd) instead of creating one.
    public func reuse(_ map: String, _ existing: BPFMap) throws {
        try BPFError.check(bpf_map__reuse_fd(try self.map(named: map), existing.fd), "reuse map \(map)")
    }

    public func setAutoload(_ program: String, _ on: Bool) throws {
        try BPFError.check(bpf_program__set_autoload(try self.program(named: program), on), "set autoload of \(program)")
    }

    /// Key and value sizes as compiled into the object (checked before load).
    public func mapShape(_ map: String) throws -> (key: Int, value: Int) {
        let m = try self.map(named: map)
        return (Int(bpf_map__key_size(m)), Int(bpf_map__value_size(m)))
    }

    /// Loads every program (the verifier runs here) and creates or reuses maps.
    public func load() throws {
        let mark = LibbpfLog.mark()
        let rc = bpf_object__load(object)
        if rc != 0 {
            let e = rc < 0 ? -rc : Glibc.errno
            throw BPFError("load \(name)", errno: e, log: LibbpfLog.since(mark))
        }
    }

    // MARK: after load

    /// An owned handle on a loaded map.
    public func loadedMap(_ name: String) throws -> BPFMap {
        let fd = bpf_map__fd(try map(named: name))
        if fd < 0 { throw BPFError("map \(name) is not loaded", errno: -fd) }
        return try BPFMap(BPFDescriptor.duplicating(fd, "map \(name)"))
    }

    /// An owned handle on a loaded program.
    public func loadedProgram(_ name: String) throws -> BPFProgram {
        let fd = bpf_program__fd(try program(named: name))
        if fd < 0 { throw BPFError("program \(name) is not loaded", errno: -fd) }
        return try BPFProgram(BPFDescriptor.duplicating(fd, "program \(name)"))
    }
}
