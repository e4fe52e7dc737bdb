import BatonBPF
import BatonCLI
import BatonDataPlane
import Glibc

/// What Baton pinned at one root, as `unload` and `teardown` find and remove it: the steering
/// data plane (DataPlane: maps/, progs/, links/) and a node's decapsulator (Decapsulator:
/// decap/maps/, decap/progs/, decap/links/).
struct PinRoot: Encodable {
    /// What a Baton pin root may hold; anything else means it is not one.
    static let entries = ["maps", "progs", "links", "decap"]

    var root: String
    /// Whether anything is at the root.
    var exists: Bool
    /// Interfaces (pin names) with a baton_steer link under links/.
    var links: [String]
    /// Interfaces with a baton_decap link under decap/links/.
    var decapLinks: [String]
    /// Pinned maps: "baton_rules4", …, "decap/baton_decap_accept", ….
    var maps: [String]
    /// Pinned programs: "baton_steer", "baton_clock", "decap/baton_decap".
    var programs: [String]
    /// Entries at the root that are not Baton's.
    var foreign: [String]

    /// Reads what is pinned at `root`; changes nothing.
    static func inspect(_ root: String) -> PinRoot {
        guard BPFFS.exists(root) else {
            return PinRoot(root: root, exists: false, links: [], decapLinks: [], maps: [], programs: [], foreign: [])
        }
        let decap = Decapsulator.pinDirectory(root: root)
        let decapPrefix = String(decap.dropFirst(root.count + 1)) + "/"
        return PinRoot(
            root: root, exists: true,
            links: BPFFS.list(root + "/links"),
            decapLinks: BPFFS.list(decap + "/links"),
            maps: BPFFS.list(root + "/maps") + BPFFS.list(decap + "/maps").map { decapPrefix + $0 },
            programs: BPFFS.list(root + "/progs") + BPFFS.list(decap + "/progs").map { decapPrefix + $0 },
            foreign: BPFFS.list(root).filter { !entries.contains($0) })
    }

    /// Refuses a root holding anything Baton does not pin there, so a mistyped --root cannot
    /// remove someone else's pins.
    func checkIsBaton() throws {
        guard foreign.isEmpty else {
            throw CLIError("\(root) holds \(foreign.joined(separator: ", ")) besides \(Self.entries.map { $0 + "/" }.joined(separator: ", ")); not a Baton pin root, refusing to remove it")
        }
    }

    /// Detaches every pinned link (decap first, then steering) and removes the root with its
    /// maps and programs: Decapsulator.unload, then DataPlane.unload.
    func remove() throws {
        try checkIsBaton()
        try Decapsulator.unload(root: root)
        try DataPlane.unload(root: root)
        if BPFFS.exists(root) { throw CLIError("could not remove \(root)") }
    }

    /// Directories below `parent` (a bpffs mount) whose name begins with "baton": every pin
    /// root batond, batonctl and the tests use.
    static func discover(under parent: String = BPFFS.defaultRoot) -> [String] {
        BPFFS.list(parent).filter { name in
            guard name.hasPrefix("baton") else { return false }
            var st = stat()
            return lstat(parent + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        }.map { parent + "/" + $0 }
    }
}
