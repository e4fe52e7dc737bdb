#if canImport(Glibc)
import Glibc
#endif
import CLibbpf

/// Owns one BPF file descriptor (map, program or link) and closes it once.
public final class BPFDescriptor: @unchecked Sendable {
    public let fd: Int32

    init(adopting fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// Opens an object pinned under bpffs.
    public static func pinned(at path: String) throws -> BPFDescriptor {
        let fd = bpf_obj_get(path)
        if fd < 0 {
            let e = Glibc.errno
            throw BPFError("open pinned \(path)", errno: e)
        }
        return BPFDescriptor(adopting: fd)
    }

    /// Duplicates an fd some other owner keeps (a libbpf object's map).
    static func duplicating(_ fd: Int32, _ what: String) throws -> BPFDescriptor {
        let d = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        if d < 0 { throw BPFError("dup \(what)", errno: Glibc.errno) }
        return BPFDescriptor(adopting: d)
    }

    /// The kernel's info on this object (`bpf_map_info`, `bpf_prog_info`, …); `what` names it
    /// in the error.
    func info<Info>(_ empty: Info, _ what: String) throws -> Info {
        var info = empty
        var len = UInt32(MemoryLayout<Info>.size)
        if bpf_obj_get_info_by_fd(fd, &info, &len) < 0 {
            throw BPFError("\(what) info (fd \(fd))", errno: Glibc.errno)
        }
        return info
    }

    /// A NUL-terminated name from an info struct's fixed-size array.
    static func name<Bytes>(_ bytes: Bytes) -> String {
        withUnsafeBytes(of: bytes) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }

    /// Pins this object at `path` (the parent directory must exist on bpffs).
    public func pin(at path: String) throws {
        if bpf_obj_pin(fd, path) < 0 {
            throw BPFError("pin \(path)", errno: Glibc.errno)
        }
    }
}

/// bpffs paths: checks that the mount exists, creates directories.
public enum BPFFS {
    public static let defaultRoot = "/sys/fs/bpf"
    private static let bpffsMagic: Int = 0xcafe4a11

    /// True when `path` (or its nearest existing parent) is on a bpffs mount.
    public static func isBPFFS(_ path: String) -> Bool {
        var p = path
        while !p.isEmpty {
            var st = statfs()
            if statfs(p, &st) == 0 { return Int(st.f_type) == bpffsMagic }
            guard let slash = p.lastIndex(of: "/"), slash != p.startIndex else { p = "/"; continue }
            p = String(p[..<slash])
            if p == "/" { break }
        }
        return false
    }

    /// Creates `path` and its parents (mode 0700), which must be on bpffs.
    public static func makeDirectories(_ path: String) throws {
        guard isBPFFS(path) else {
            throw BPFError("\(path) is not on a BPF filesystem; mount one with: mount -t bpf bpf /sys/fs/bpf", errno: ENOENT)
        }
        var built = ""
        for part in path.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o700) != 0 && Glibc.errno != EEXIST {
                throw BPFError("mkdir \(built)", errno: Glibc.errno)
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Removes a pinned object or an empty directory; missing is fine.
    public static func remove(_ path: String) throws {
        if unlink(path) == 0 || Glibc.errno == ENOENT { return }
        if Glibc.errno == EISDIR || Glibc.errno == EPERM {
            if rmdir(path) == 0 || Glibc.errno == ENOENT { return }
        }
        throw BPFError("remove \(path)", errno: Glibc.errno)
    }

    /// Names in a directory (empty when it does not exist).
    public static func list(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    /// Removes `path` and everything under it.
    public static func removeTree(_ path: String) throws {
        for name in list(path) {
            let child = path + "/" + name
            var st = stat()
            if lstat(child, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                try removeTree(child)
            } else {
                try remove(child)
            }
        }
        try remove(path)
    }
}

/// Whether this kernel and process can load XDP programs at all; tests skip on false.
public func xdpSupported() -> Bool {
    libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_XDP, nil) == 1
}

/// Possible CPUs: the number of values a per-CPU map returns.
public func possibleCPUs() -> Int {
    Int(max(1, libbpf_num_possible_cpus()))
}
