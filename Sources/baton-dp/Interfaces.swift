// Interface lookups over netlink (BatonNet) and entering a
// network namespace.
import BatonCLI
import BatonModel
import BatonNet
import Glibc

/// An interface as batonctl needs it.
struct InterfaceInfo: Sendable {
    var name: String
    var ifindex: UInt32
    var mac: MACAddress?
}

/// Interface lookups over netlink in the namespace the command runs in.
final class Interfaces {
    let namespace: String?
    private var socket: Netlink?
    private var byIndex: [UInt32: InterfaceInfo?] = [:]

    init(namespace: String?) { self.namespace = namespace }

    private var whereText: String { namespace.map { " in network namespace \($0)" } ?? "" }

    private func netlink() throws -> Netlink {
        if let socket { return socket }
        do {
            let s = try Netlink()
            socket = s
            return s
        } catch {
            throw CLIError("cannot open a netlink socket: \(error)")
        }
    }

    private static func info(_ l: Link) -> InterfaceInfo {
        InterfaceInfo(name: l.name, ifindex: UInt32(l.index), mac: l.mac)
    }

    /// The interface called `name`, or a not-found error naming it.
    func named(_ name: String, flag: String? = nil) throws -> InterfaceInfo {
        let name = try Parse.interfaceName(name)
        do {
            return Self.info(try netlink().link(named: name))
        } catch let e as NetError where e.errno == ENODEV {
            throw CLIError.notFound("no interface named '\(name)'\(whereText)" + (flag.map { " (\($0))" } ?? ""))
        } catch let e as NetError {
            throw CLIError("cannot look up interface '\(name)': \(e)")
        }
    }

    /// The interface with `ifindex`; nil when there is none (it went away).
    func index(_ ifindex: UInt32) -> InterfaceInfo? {
        guard ifindex != 0 else { return nil }
        if let cached = byIndex[ifindex] { return cached }
        let found = (try? netlink().link(index: Int(ifindex))).map(Self.info)
        byIndex[ifindex] = .some(found)
        return found
    }

    /// "veth0", or "#7" for an ifindex with no interface here.
    func name(_ ifindex: UInt32) -> String {
        index(ifindex)?.name ?? "#\(ifindex)"
    }

    /// Runs `body` in the named network namespace (network namespace only).
    static func inNamespace<T>(_ name: String, _ body: () throws -> T) throws -> T {
        let ns: NetworkNamespace
        do {
            ns = try NetworkNamespace.open(name: name)
        } catch let e as NetError where e.errno == ENOENT {
            throw CLIError.notFound("no network namespace named '\(name)' (see `ip netns list`)")
        } catch let e as NetError where e.errno == EINVAL {
            throw CLIError.usage("invalid network namespace name '\(name)' (--netns)")
        }
        do {
            return try ns.run(body)
        } catch let e as NetError where e.subsystem == "netns" {
            throw CLIError("cannot enter network namespace '\(name)': \(e)")
        }
    }
}
