/// Where Baton's pieces meet by default: batond's flags and the tools' options start from these,
/// so that a daemon and a tool run without flags find each other.
public enum DefaultPaths {
    /// The agent's steering data plane on bpffs (batond agent --root; the tools' --root).
    public static let pinRoot = "/sys/fs/bpf/baton"
    /// A node's decapsulator on bpffs (batond node --decap-root).
    public static let decapRoot = "/sys/fs/bpf/baton-node"
    /// batond's API socket (batond --control; batonctl --control).
    public static let controlSocket = "/run/baton/batond.sock"
}
