import BatonAPI
import BatonModel
import BatonNet
import BatonPacket
import BatonSIPServer
import Foundation
import Glibc
import NIOCore
import NIOPosix
import Synchronization

/// Where the SIP server's call media is relayed (`batond agent --sip-media`).
public enum SIPMedia: String, Sendable, CaseIterable {
    /// In XDP: each call's media is an anchored session (docs/anchors.md).
    case xdp
    /// In this process, through sockets: the baseline the benchmark measures XDP against, and
    /// a relay that works where no XDP program can be attached.
    case userspace
}

/// `MediaAnchors` relayed in userspace: two UDP sockets per anchored stream on one event loop
/// (one thread, one core at most), the remote side at `anchor:port` and the device side at
/// `anchor:relayPort`, with the same rules as the data plane's relay: only the remote's packets
/// go to the device, only the device's (and, for the grace period after a move, the earlier
/// device's) to the remote, everything else dropped; RTP continuity the same as
/// bpf/include/rtp.h (`RTPContinuity`). Ports come from the agent's relay port pool. Not stored
/// and not in `anchor list`: a restart ends the relays, and a relay lives until its call ends.
final class UserspaceMediaAnchors: MediaAnchors {
    let pool: AnchorTable
    let grace: Double
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let relays = Mutex<[String: StreamRelay]>([:])

    init(pool: AnchorTable, grace: Double) {
        self.pool = pool
        self.grace = grace
    }

    func reserve(family: IPAddress.Family) throws -> MediaReservation { try pool.reserveMedia(family: family) }

    func release(_ r: MediaReservation) { pool.releaseMedia(r) }

    func connect(_ r: MediaReservation, remote: Endpoint, device: Endpoint, rtpContinuity: Bool) throws -> String {
        let relay = try StreamRelay(reservation: r, remote: remote, device: device, rtpContinuity: rtpContinuity, loop: group.next())
        let id = "u" + String(UInt64.random(in: 1...UInt64.max), radix: 16)
        relays.withLock { $0[id] = relay }
        return id
    }

    func move(_ id: String, to device: Endpoint, lockout: Double?) throws {
        guard let relay = relays.withLock({ $0[id] }) else { throw ControlError.notFound("no userspace relay \(id)") }
        try relay.move(to: device, keepOld: lockout ?? grace, lockout: lockout != nil)
    }

    func end(_ id: String, reason: String) throws {
        guard let relay = relays.withLock({ $0.removeValue(forKey: id) }) else { throw ControlError.notFound("no userspace relay \(id)") }
        let pool = self.pool, r = relay.reservation
        relay.close { pool.releaseMedia(r) }
    }

    func counters(_ id: String) -> (toDevice: UInt64, toRemote: UInt64)? {
        relays.withLock { $0[id] }.map { ($0.toDevice.load(ordering: .relaxed), $0.toRemote.load(ordering: .relaxed)) }
    }

    func stop() {
        for relay in relays.withLock({ $0.values }) { relay.close {} }
        try? group.syncShutdownGracefully()
    }
}

/// One stream's two sockets and its rules. The sockets are bound on the caller's thread (a
/// taken port fails the connect there) and adopted by the loop; the route (where the device
/// is) sits under a lock, so a move takes effect before `move` returns, as the data plane's
/// does; the rest is the loop's.
final class StreamRelay: @unchecked Sendable {
    typealias Address = NIOCore.SocketAddress
    struct Route {
        var device: Address
        /// The device before the last move: relayed until `until` (monotonic ns), dropped
        /// from the move on if `lockout`.
        var previous: (address: Address, until: UInt64, lockout: Bool)?
    }

    let reservation: MediaReservation
    let remote: Address
    let route: Mutex<Route>
    let toDevice = Atomic<UInt64>(0), toRemote = Atomic<UInt64>(0)
    let loop: EventLoop
    // The loop's.
    var continuity: RTPContinuity?
    var remoteSide: Channel?
    var deviceSide: Channel?
    /// Sockets not yet adopted by the loop, and what to call once both are closed.
    var adopting = 2
    var closed = false
    var whenClosed: (@Sendable () -> Void)?

    init(reservation: MediaReservation, remote: Endpoint, device: Endpoint, rtpContinuity: Bool, loop: EventLoop) throws {
        self.reservation = reservation
        self.remote = try Self.address(remote)
        route = Mutex(Route(device: try Self.address(device)))
        continuity = rtpContinuity ? RTPContinuity() : nil
        self.loop = loop
        let remoteFD = try UDPSocket.boundDescriptor(reservation.anchor.address, port: reservation.anchor.port)
        let deviceFD: CInt
        do { deviceFD = try UDPSocket.boundDescriptor(reservation.anchor.address, port: reservation.relayPort) } catch {
            Glibc.close(remoteFD)
            throw error
        }
        adopt(remoteFD, fromRemote: true)
        adopt(deviceFD, fromRemote: false)
    }

    static func address(_ e: Endpoint) throws -> Address { try Address(ipAddress: "\(e.address)", port: Int(e.port)) }

    private func adopt(_ fd: CInt, fromRemote: Bool) {
        let relay = self
        DatagramBootstrap(group: loop)
            // recvmmsg: up to 16 datagrams a read.
            .channelOption(ChannelOptions.datagramVectorReadMessageCount, value: 16)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Side(relay: relay, fromRemote: fromRemote)) }
            }
            .withBoundSocket(fd)
            .whenComplete { result in
                relay.adopting -= 1
                switch result {
                case .success(let channel):
                    if fromRemote { relay.remoteSide = channel } else { relay.deviceSide = channel }
                case .failure:
                    Glibc.close(fd)
                }
                if relay.closed { relay.closeChannels() }
            }
    }

    func move(to device: Endpoint, keepOld: Double, lockout: Bool) throws {
        let next = try Self.address(device)
        route.withLock { r in
            guard next != r.device else { return }
            r.previous = (r.device, monotonicNanoseconds() + UInt64(keepOld * 1e9), lockout)
            r.device = next
        }
    }

    /// Closes both sockets on the loop, then `done`: the ports are free again (also a socket
    /// the loop had not adopted yet when the call ended: it is closed as it is).
    func close(then done: @escaping @Sendable () -> Void) {
        let relay = self
        loop.execute {
            relay.closed = true
            relay.whenClosed = done
            relay.closeChannels()
        }
    }

    /// On the loop, once closed: closes what is adopted, and calls `whenClosed` when nothing is left.
    private func closeChannels() {
        let channels = [remoteSide, deviceSide].compactMap { $0 }
        remoteSide = nil
        deviceSide = nil
        let relay = self
        EventLoopFuture.andAllComplete(channels.map { $0.close() }, on: loop).whenComplete { _ in
            guard relay.adopting == 0, let done = relay.whenClosed else { return }
            relay.whenClosed = nil
            done()
        }
    }

    /// A datagram on one side: relayed out of the other, or dropped.
    func received(_ envelope: AddressedEnvelope<ByteBuffer>, fromRemote: Bool) {
        if fromRemote {
            guard envelope.remoteAddress == remote, let out = deviceSide else { return }
            out.write(AddressedEnvelope(remoteAddress: route.withLock { $0.device }, data: envelope.data), promise: nil)
            toDevice.add(1, ordering: .relaxed)
            return
        }
        let allowed = route.withLock { r in
            if envelope.remoteAddress == r.device { return true }
            guard let p = r.previous, envelope.remoteAddress == p.address else { return false }
            return !p.lockout && monotonicNanoseconds() < p.until
        }
        guard allowed, let out = remoteSide else { return }
        var data = envelope.data
        if continuity != nil { data.withUnsafeMutableReadableBytes { _ = continuity!.rewrite($0) } }
        out.write(AddressedEnvelope(remoteAddress: remote, data: data), promise: nil)
        toRemote.add(1, ordering: .relaxed)
    }

    final class Side: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let relay: StreamRelay
        let fromRemote: Bool
        init(relay: StreamRelay, fromRemote: Bool) {
            self.relay = relay
            self.fromRemote = fromRemote
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { relay.received(unwrapInboundIn(data), fromRemote: fromRemote) }
        /// One flush per read batch: the writes of a batch go out together (sendmmsg).
        func channelReadComplete(context: ChannelHandlerContext) {
            (fromRemote ? relay.deviceSide : relay.remoteSide)?.flush()
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            // A failed send (an ICMP error for a peer's closed port) must not end the relay.
        }
    }
}
