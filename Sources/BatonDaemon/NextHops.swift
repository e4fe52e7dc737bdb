import BatonAPI
import BatonModel
import BatonNet
import BatonProtocol
import Foundation
import Synchronization

/// The MACs of next hops on the agent's interface, from the kernel's neighbour table (the
/// kernel resolves a missing one when a datagram goes its way): what a registration's
/// forwarding and an anchored session's relay send to.
final class NextHops: Sendable {
    let interface: String
    let messenger: Messenger
    /// Next hops being resolved in the background for registrations that came by datagram.
    let resolving = Mutex<Set<IPAddress>>([])

    init(interface: String, messenger: Messenger) {
        self.interface = interface
        self.messenger = messenger
    }

    /// The MAC of the next hop towards `destination`, resolving it if the kernel has none yet.
    /// Refuses at once (`.forbidden`) a destination the kernel routes nowhere, or out of
    /// another interface than ours: a relay sends back out of the interface the packet came in on.
    func checkReachable(_ destination: IPAddress) throws {
        let netlink = try Netlink()
        let ours = try netlink.link(named: interface).index
        let route = try netlink.routes(family: destination.family)
            .filter { $0.type == .unicast && $0.destination.contains(destination) }
            .max { $0.destination.length < $1.destination.length }
        guard let route else { throw ControlError.forbidden("no route to \(destination)") }
        guard route.interfaceIndex == ours else {
            throw ControlError.forbidden("\(destination) is routed out of another interface than \(interface) (\(route))")
        }
    }

    func mac(toward destination: IPAddress, wait: Bool) throws -> MACAddress {
        let netlink = try Netlink()
        let routes = try netlink.routes(family: destination.family)
            .filter { $0.destination.contains(destination) }
            .sorted { $0.destination.length > $1.destination.length }
        return try neighbourMAC(routes.first?.gateway ?? destination, towards: destination, wait: wait)
    }

    /// The MAC of on-link `hop` in the kernel's neighbour table. If there is none yet, a
    /// datagram towards `destination` makes the kernel ask; then it is waited for, up to 2 s
    /// when `wait`, else up to 20 ms and after that looked for again in the background while
    /// `NextHopPending` is thrown: the protocol socket's reader must not stop for long.
    func neighbourMAC(_ hop: IPAddress, towards destination: IPAddress? = nil, wait: Bool) throws -> MACAddress {
        let destination = destination ?? hop
        let netlink = try Netlink()
        func known() throws -> MACAddress? {
            guard let n = try netlink.neighbour(hop, interface: interface), let mac = n.mac,
                  !n.state.intersection(.valid).isEmpty else { return nil }
            return mac
        }
        if let mac = try known() { return mac }
        // Any datagram makes the kernel resolve the next hop.
        try? messenger.send([0], to: SocketAddress(destination, port: 9))
        // A neighbour on the segment answers within a millisecond: the reader waits that
        // long (a retransmission would cost 200 ms), not the 2 s a dead one takes.
        let deadline = ContinuousClock.now + (wait ? .seconds(2) : .milliseconds(20))
        while ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.0005)
            if let mac = try known() { return mac }
        }
        guard wait else {
            if resolving.withLock({ $0.insert(hop).inserted }) {
                Thread.detachNewThread { [self] in
                    defer { _ = resolving.withLock { $0.remove(hop) } }
                    _ = try? neighbourMAC(hop, towards: destination, wait: true)
                }
            }
            throw NextHopPending(hop: hop, destination: destination)
        }
        throw ControlError("cannot resolve the next hop \(hop) towards \(destination)")
    }
}
