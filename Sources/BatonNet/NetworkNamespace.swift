import Dispatch
import Foundation

/// A network namespace, named (a bind mount under /var/run/netns, exactly as `ip netns add`
/// makes it) or reached through a /proc path (`host`).
///
/// Only the network namespace is ever entered: code in `run` still sees the host's mounts,
/// /sys and bpffs at /sys/fs/bpf (unlike `ip netns exec`, which remounts /sys).
public struct NetworkNamespace: Sendable, Hashable, CustomStringConvertible {
    /// Where named namespaces live, as in iproute2.
    public static let runDirectory = "/var/run/netns"

    /// The name under `runDirectory`; nil for namespaces reached by a /proc path.
    public let name: String?
    /// The file that opens the namespace.
    public let path: String

    init(name: String?, path: String) {
        self.name = name
        self.path = path
    }

    /// An unnamed namespace reached through a path, e.g. "/proc/PID/ns/net".
    public init(path: String) {
        self.init(name: nil, path: path)
    }

    /// The namespace this process started in (its main thread's), e.g. to move a link back.
    public static let host = NetworkNamespace(name: nil, path: "/proc/self/ns/net")

    public var description: String { name ?? path }

    /// Makes a new, empty named namespace, like `ip netns add NAME`: makes /var/run/netns a
    /// shared mount point if needed, creates the file, and bind-mounts a fresh namespace on it.
    /// Only a helper thread ever enters the new namespace.
    public static func create(name: String) throws -> NetworkNamespace {
        let operation = "create \(name)"
        try validate(name, operation)
        let namespace = NetworkNamespace(name: name, path: runDirectory + "/" + name)
        try NetError.wrap("netns", operation) {
            try Kernel.makeDirectory(runDirectory, mode: 0o755)
            // Shared, so unmounting in one mount namespace frees the netns in all (iproute2's reason).
            try Kernel.makeSharedMountPoint(runDirectory)
            try Kernel.createExclusiveFile(namespace.path)
        }
        do {
            try onDedicatedThread {
                try NetError.wrap("netns", operation) {
                    try Kernel.unshareNetworkNamespace()
                    // thread-self, not self: /proc/self/ns/net is the main thread's namespace.
                    try Kernel.bindMount("/proc/thread-self/ns/net", on: namespace.path)
                }
            }
        } catch {
            try? namespace.delete()
            throw error
        }
        return namespace
    }

    /// The existing namespace `name`; throws ENOENT if there is none.
    public static func open(name: String) throws -> NetworkNamespace {
        let operation = "open \(name)"
        try validate(name, operation)
        let path = runDirectory + "/" + name
        guard Kernel.isNamespaceFile(path) else {
            throw NetError(subsystem: "netns", operation: operation, errno: ENOENT,
                           detail: Kernel.fileExists(path) ? "\(path) is not a mounted namespace" : nil)
        }
        return NetworkNamespace(name: name, path: path)
    }

    /// Whether a mounted namespace called `name` exists.
    public static func exists(name: String) -> Bool {
        Kernel.isNamespaceFile(runDirectory + "/" + name)
    }

    /// Names under /var/run/netns, sorted (what `ip netns list` shows).
    public static func list() -> [String] {
        Kernel.directoryEntries(runDirectory).sorted()
    }

    /// Unmounts and unlinks the namespace file, like `ip netns delete`. Succeeds when the file is
    /// not mounted or already gone, so it also cleans up after a half-finished `create`.
    /// The namespace (and the interfaces in it) goes away once nothing else holds it: open
    /// sockets made inside it keep it alive until they are closed.
    public func delete() throws {
        guard let name else {
            throw NetError(subsystem: "netns", operation: "delete \(path)", errno: EINVAL,
                           detail: "only named namespaces can be deleted")
        }
        try Self.delete(name: name)
    }

    /// Deletes the namespace `name` (see `delete()`).
    public static func delete(name: String) throws {
        let operation = "delete \(name)"
        try validate(name, operation)
        let path = runDirectory + "/" + name
        try NetError.wrap("netns", operation) {
            try Kernel.detach(path)
            try Kernel.removeFile(path)
        }
    }

    /// Runs `body` on a new thread that has entered only this network namespace, waits for it,
    /// and returns its result or rethrows its error. Netlink and other sockets opened in `body`
    /// stay in this namespace and may be used from any thread afterwards; /proc/sys/net and
    /// /proc/thread-self/net read in `body` are this namespace's.
    ///
    /// The calling thread blocks (it is not a Task), so keep bodies short when called from
    /// Swift concurrency. Do not start threads or dispatch work from `body`: a new thread
    /// inherits the namespace, and a pool thread made there would keep it for unrelated work.
    public func run<T>(_ body: () throws -> T) throws -> T {
        let path = self.path
        return try Self.onDedicatedThread {
            try NetError.wrap("netns", "enter \(description)") {
                try Kernel.enterNetworkNamespace(path: path)
            }
            return try body()
        }
    }

    /// The namespace's identity (device and inode of its nsfs file).
    public func identity() throws -> NamespaceIdentity {
        try NetError.wrap("netns", "identify \(description)") {
            let (device, inode) = try Kernel.identity(of: path)
            return NamespaceIdentity(device: device, inode: inode)
        }
    }

    /// The identity of the network namespace the calling thread is in.
    public static func currentIdentity() throws -> NamespaceIdentity {
        try NetworkNamespace(name: nil, path: "/proc/thread-self/ns/net").identity()
    }

    private static func validate(_ name: String, _ operation: String) throws {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), name.utf8.count <= 255 else {
            throw NetError(subsystem: "netns", operation: operation, errno: EINVAL, detail: "invalid namespace name")
        }
    }

    /// Runs `body` in `namespace`, or right here (the caller's namespace) when it is nil.
    static func within<T>(_ namespace: NetworkNamespace?, _ body: () throws -> T) throws -> T {
        guard let namespace else { return try body() }
        return try namespace.run(body)
    }

    /// Runs `body` on a fresh thread and waits: namespace changes die with that thread.
    static func onDedicatedThread<T>(_ body: () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            let job = ThreadJob(body)
            let finished = DispatchSemaphore(value: 0)
            let thread = Thread {
                job.execute()
                finished.signal()
            }
            thread.name = "baton-netns"
            thread.start()
            finished.wait()
            return try job.result!.get()
        }
    }
}

/// Identifies a namespace: two paths or threads are in the same namespace when these match.
public struct NamespaceIdentity: Sendable, Hashable, CustomStringConvertible {
    public let device: UInt64
    public let inode: UInt64
    public var description: String { "net:[\(inode)]" }
}

/// Carries a closure and its result across to the helper thread. Only one thread touches it
/// at a time (the caller waits on a semaphore), hence unchecked.
private final class ThreadJob<T>: @unchecked Sendable {
    private var body: (() throws -> T)?
    var result: Result<T, any Error>?

    init(_ body: @escaping () throws -> T) {
        self.body = body
    }

    func execute() {
        result = Result { try body!() }
        body = nil  // release it before the caller's withoutActuallyEscaping checks
    }
}

extension NetworkNamespace {
    /// Moves the calling thread into this network namespace for good. For a process that
    /// lives in one namespace (`batond --netns`): call it first thing in `main`, before any
    /// other thread exists, so that every later thread inherits the namespace.
    public func enterOnCurrentThread() throws {
        try NetError.wrap("netns", "enter \(description)") {
            try Kernel.enterNetworkNamespace(path: path)
        }
    }
}
