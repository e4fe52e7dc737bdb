#if canImport(Glibc)
import Glibc
#endif

/// What an object is made of, for `PinnedCollection`: the embedded ELF image, and the maps
/// and programs the caller will use, by name. Like cilium/ebpf's CollectionSpec: every name
/// listed is checked when the collection is loaded or adopted, so a missing map is an error
/// at open, not a crash at first use.
public struct CollectionSpec: Sendable {
    public let name: String
    /// The ELF image (CBatonObjects' embedded bytes); must outlive every `load`.
    public let image: @Sendable () -> UnsafeRawBufferPointer
    public let maps: [String]
    public let programs: [String]

    public init(name: String, maps: [String], programs: [String], image: @escaping @Sendable () -> UnsafeRawBufferPointer) {
        precondition(!programs.isEmpty, "a collection has at least one program")
        self.name = name
        self.image = image
        self.maps = maps
        self.programs = programs
    }
}

/// An object's maps, programs and XDP links under one pin directory:
///
///     <directory>/maps/<map>      every map of the spec, so state survives the process
///     <directory>/progs/<program> every program of the spec
///     <directory>/links/<ifname>  one XDP link per attached interface
///
/// `load` opens the image and pins (maps already pinned are reused, so their entries survive
/// a reload; programs are pinned anew); `adopt` opens what an earlier process pinned; `unload`
/// detaches the links and removes the directory. Without a directory nothing is pinned (tests,
/// the benchmark). Handles are typed and looked up by name once, at open.
public final class PinnedCollection: Sendable {
    public let spec: CollectionSpec
    /// Where it is pinned; nil when private to this process.
    public let directory: String?
    public let maps: [String: BPFMap]
    public let programs: [String: BPFProgram]

    private init(spec: CollectionSpec, directory: String?, maps: [String: BPFMap], programs: [String: BPFProgram]) {
        self.spec = spec
        self.directory = directory
        self.maps = maps
        self.programs = programs
    }

    /// The spec's first program is pinned in `directory`.
    public static func isPinned(_ spec: CollectionSpec, in directory: String) -> Bool {
        BPFFS.exists(directory + "/progs/" + spec.programs[0])
    }

    /// Adopts what is pinned in `directory` if its first program is there, else loads.
    public static func open(_ spec: CollectionSpec, in directory: String,
                            configure: (BPFObject) throws -> Void = { _ in }) throws -> PinnedCollection {
        if isPinned(spec, in: directory) { return try adopt(spec, in: directory) }
        return try load(spec, pinnedIn: directory, configure: configure)
    }

    /// Opens the image, lets `configure` size its maps, loads it; with a directory, maps
    /// already pinned there are reused (libbpf checks they are compatible) and the rest are
    /// created and pinned, and the programs are pinned, replacing older pins.
    public static func load(_ spec: CollectionSpec, pinnedIn directory: String?,
                            configure: (BPFObject) throws -> Void = { _ in }) throws -> PinnedCollection {
        let object = try BPFObject(bytes: spec.image(), name: spec.name)
        try configure(object)
        if let directory {
            try requireBPFFS(directory)
            for sub in ["maps", "progs", "links"] { try BPFFS.makeDirectories(directory + "/" + sub) }
            for name in spec.maps { try object.setPinPath(name, directory + "/maps/" + name) }
        }
        try object.load()
        var maps: [String: BPFMap] = [:]
        for name in spec.maps { maps[name] = try object.loadedMap(name) }
        var programs: [String: BPFProgram] = [:]
        for name in spec.programs { programs[name] = try object.loadedProgram(name) }
        if let directory {
            for (name, program) in programs {
                let path = directory + "/progs/" + name
                try? BPFFS.remove(path) // a new load replaces the pinned program
                try program.pin(at: path)
            }
        }
        return PinnedCollection(spec: spec, directory: directory, maps: maps, programs: programs)
    }

    /// Opens every map and program of `spec` pinned in `directory`, as a restarted daemon does.
    public static func adopt(_ spec: CollectionSpec, in directory: String) throws -> PinnedCollection {
        try requireBPFFS(directory)
        var maps: [String: BPFMap] = [:]
        for name in spec.maps { maps[name] = try BPFMap.pinned(at: directory + "/maps/" + name) }
        var programs: [String: BPFProgram] = [:]
        for name in spec.programs { programs[name] = try BPFProgram.pinned(at: directory + "/progs/" + name) }
        return PinnedCollection(spec: spec, directory: directory, maps: maps, programs: programs)
    }

    /// Detaches the links pinned under `directory` and removes everything pinned there (maps
    /// and programs live on only while someone still holds them). Idempotent.
    public static func unload(directory: String) throws {
        for name in BPFFS.list(directory + "/links") {
            if let link = try? XDPLink.pinned(at: directory + "/links/" + name) { try? link.detach() }
        }
        if BPFFS.exists(directory) { try BPFFS.removeTree(directory) }
    }

    /// Pins live only on bpffs: `path` (or its nearest existing parent) must be on one.
    public static func requireBPFFS(_ path: String) throws {
        guard BPFFS.isBPFFS(path) else {
            throw BPFError("\(path) is not on a BPF filesystem; mount one with: mount -t bpf bpf /sys/fs/bpf", errno: ENOENT)
        }
    }

    // MARK: handles

    /// The map `name` with its key and value checked against `Key` and `Value`.
    public func map<Key: BitwiseCopyable, Value: BitwiseCopyable>(_ name: String, as: (Key, Value).Type = (Key, Value).self)
        throws -> TypedMap<Key, Value> {
        try TypedMap(rawMap(name))
    }

    public func rawMap(_ name: String) throws -> BPFMap {
        guard let m = maps[name] else { throw BPFError("\(spec.name) has no map \(name) in its spec", errno: ENOENT) }
        return m
    }

    public func program(_ name: String) throws -> BPFProgram {
        guard let p = programs[name] else { throw BPFError("\(spec.name) has no program \(name) in its spec", errno: ENOENT) }
        return p
    }

    // MARK: links

    /// Where the link for interface `name` is pinned; nil when the collection is not pinned.
    public func linkPath(_ interface: String) -> String? {
        directory.map { $0 + "/links/" + interface }
    }

    /// `program` attached to `ifindex` (named `interface`, in the caller's network namespace),
    /// pinned under links/ when the collection is pinned. A pinned link there already is an
    /// error: detach it first.
    public func attach(_ program: String, interface: String, ifindex: UInt32, mode: XDPMode) throws -> XDPLink {
        let path = linkPath(interface)
        if let path, BPFFS.exists(path) {
            throw BPFError("\(interface) already has a link pinned at \(path); detach it first", errno: EEXIST)
        }
        let link = try XDPLink.attach(try self.program(program), ifindex: ifindex, mode: mode)
        if let path {
            do {
                try link.pin(at: path)
            } catch {
                try? link.detach()
                throw error
            }
        }
        return link
    }

    /// The link an earlier run pinned for `interface` if it is still attached to `ifindex` (a
    /// restarted daemon adopts it), or `program` attached anew. Unpinned collections always
    /// attach.
    public func adoptOrAttach(_ program: String, interface: String, ifindex: UInt32,
                              mode: XDPMode) throws -> (link: XDPLink, adopted: Bool) {
        guard let path = linkPath(interface) else {
            return (try XDPLink.attach(try self.program(program), ifindex: ifindex, mode: mode), false)
        }
        return try XDPLink.adoptOrAttach(try self.program(program), ifindex: ifindex, mode: mode, pinnedAt: path)
    }
}
