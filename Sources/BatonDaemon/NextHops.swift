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
    /// One netlink socket and the interface's ifindex, kept: an anchored call asks for four
    /// next hops, and opening a socket and looking the link up each time cost more than the
    /// answers (issue 14's benchmark).
    private let kept = Mutex<(netlink: Netlink?, index: Int?)>((nil, nil))

    init(interface: String, messenger: Messenger) {
        self.interface = interface
        self.messenger = messenger
    }

    private func netlink() throws -> Netlink {
        try kept.withLock { k in
            if let n = k.netlink { return n }
            let n = try Netlink()
            k.netlink = n
            return n
        }
    }

    /// The interface's ifindex; `fresh` looks it up again (the link may have been re-created).
    private func interfaceIndex(fresh: Bool = false) throws -> Int {
        if !fresh, let i = kept.withLock({ $0.index }) { return i }
        let i = try netlink().link(named: interface).index
        kept.withLock { $0.index = i }
        return i
    }

    /// What a relay needs towards `destination`, with one route lookup: refused (`.forbidden`)
    /// when the kernel routes it nowhere or out of another interface than ours (a relay sends
    /// back out of the interface the packet came in on); else the next hop's MAC, resolved
    /// if need be (up to 2 s).
    func relayMAC(toward destination: IPAddress) throws -> MACAddress {
        let route = try netlink().routes(family: destination.family)
            .filter { $0.type == .unicast && $0.destination.contains(destination) }
            .max { $0.destination.length < $1.destination.length }
        guard let route else { throw ControlError.forbidden("no route to \(destination)") }
        if route.interfaceIndex != (try interfaceIndex()), route.interfaceIndex != (try interfaceIndex(fresh: true)) {
            throw ControlError.forbidden("\(destination) is routed out of another interface than \(interface) (\(route))")
        }
        return try neighbourMAC(route.gateway ?? destination, towards: destination, wait: true)
    }

    /// The MAC of the next hop towards `destination`, resolving it if the kernel has none yet.
    func mac(toward destination: IPAddress, wait: Bool) throws -> MACAddress {
        let routes = try netlink().routes(family: destination.family)
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
        let netlink = try netlink()
        let index = try interfaceIndex()
        func known() throws -> MACAddress? {
            guard let n = try netlink.neighbour(hop, interfaceIndex: index), let mac = n.mac,
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
