import Glibc

/// An AF_PACKET raw socket bound to one interface: sends whole Ethernet frames as given
/// (gratuitous ARP, unsolicited neighbour advertisements) and, if asked, receives the frames
/// that arrive on the interface (tests capture ARP and NDP with it).
///
/// It is made inside `namespace` (or the calling thread's namespace) and can then be used
/// from any thread, like the other sockets here. Needs CAP_NET_RAW.
public final class PacketSocket: Sendable {
    /// ETH_P_ALL: receive every frame.
    public static let allProtocols: UInt16 = 0x0003
    /// Receive nothing: a socket only for sending (an announcer's).
    public static let sendOnly: UInt16 = 0
    public static let arp: UInt16 = 0x0806
    public static let ipv6: UInt16 = 0x86dd

    private let handle: SocketHandle
    /// The interface it is bound to (its name in the namespace it was made in).
    public let interface: String
    /// Its ifindex in that namespace.
    public let ifindex: Int
    /// The EtherType it receives (host order), `allProtocols`, or `sendOnly`.
    public let `protocol`: UInt16

    /// A socket bound to `interface` in `namespace` (nil: the calling thread's namespace),
    /// receiving frames of EtherType `protocol` (default all; `sendOnly` for none).
    public init(interface: String, in namespace: NetworkNamespace? = nil, protocol: UInt16 = PacketSocket.allProtocols) throws {
        let operation = "open packet socket on \(interface)" + (namespace.map { " in \($0)" } ?? "")
        let (fd, index) = try NetworkNamespace.within(namespace) {
            try NetError.wrap("socket", operation) {
                let index = try Kernel.interfaceIndex(interface)
                return (try Kernel.packetSocket(ifindex: index, etherType: `protocol`), Int(index))
            }
        }
        handle = SocketHandle(fd)
        self.interface = interface
        self.ifindex = index
        self.protocol = `protocol`
    }

    /// Sends `frame` (Ethernet header first, no FCS) out of the interface, waiting up to
    /// `timeout` for buffer space.
    public func send(_ frame: [UInt8], timeout: Duration = .seconds(1)) throws {
        let operation = "send frame on \(interface)"
        try NetError.wrap("socket", operation) {
            let fd = try handle.get(operation)
            let deadline = ContinuousClock.now + timeout
            while try !Kernel.sendFrame(fd, frame) {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw Errno("send(AF_PACKET)", ETIMEDOUT) }
                _ = try Kernel.wait(fd, events: Int16(POLLOUT), milliseconds: milliseconds(left) + 1)
            }
        }
    }

    /// The next frame that arrived on the interface, or nil if none comes within `timeout`.
    /// Frames this host sends itself are skipped unless `includeOutgoing`.
    public func receive(timeout: Duration, includeOutgoing: Bool = false, maximumSize: Int = 65536) throws -> [UInt8]? {
        let operation = "receive frame on \(interface)"
        return try NetError.wrap("socket", operation) {
            let fd = try handle.get(operation)
            let deadline = ContinuousClock.now + timeout
            while true {
                while let (frame, type) = try Kernel.receiveFrame(fd, maximum: maximumSize) {
                    if includeOutgoing || type != Kernel.packetOutgoing { return frame }
                }
                let left = deadline - ContinuousClock.now
                if left <= .zero { return nil }
                _ = try Kernel.wait(fd, events: Int16(POLLIN), milliseconds: milliseconds(left) + 1)
            }
        }
    }

    /// Every frame that arrives within `duration` (see `receive`), e.g. to count an announcement burst.
    public func receiveAll(for duration: Duration, includeOutgoing: Bool = false) throws -> [[UInt8]] {
        let deadline = ContinuousClock.now + duration
        var frames: [[UInt8]] = []
        while case let left = deadline - ContinuousClock.now, left > .zero,
              let frame = try receive(timeout: left, includeOutgoing: includeOutgoing) {
            frames.append(frame)
        }
        return frames
    }

    /// Drops whatever is queued now, e.g. before capturing a burst.
    public func drain() throws {
        while try receive(timeout: .zero, includeOutgoing: true) != nil {}
    }

    public func close() { handle.close() }
}

private func milliseconds(_ duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    return max(0, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
}
