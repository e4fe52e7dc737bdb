import BatonSIP
import NIOCore
import NIOPosix

/// How a message reaches a peer: UDP, or TCP (RFC 3261 18).
public enum SIPTransport: String, Sendable, CaseIterable {
    case udp = "UDP", tcp = "TCP"
}

/// A peer as the server reaches it: the transport and the address. On TCP, a peer that
/// connected to us is its connection's remote address, and answers go on that connection.
struct SIPPeer: Hashable, CustomStringConvertible {
    var transport: SIPTransport
    var address: SocketAddress
    var reliable: Bool { transport == .tcp }
    var description: String { "\(transport.rawValue.lowercased()) \(address)" }
}

extension SIPServer {
    /// TCP connections open at once; more are closed as they arrive.
    static let maxConnections = 1024
    /// A connection with no traffic either way this long is closed.
    static let idleConnection = TimeAmount.minutes(5)

    /// Binds UDP and TCP at the listen address (the same port), on the server's loop.
    func bindTransports() throws {
        let server = self
        let address = try SocketAddress(ipAddress: "\(configuration.listen.address)", port: Int(configuration.listen.port))
        datagrams = try DatagramBootstrap(group: group)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DatagramInbound(server: server)) }
            }
            .bind(to: address).wait()
        listener = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in server.streamPipeline(channel) }
            .bind(to: address).wait()
    }

    func closeTransports() {
        try? datagrams?.close().wait()
        try? listener?.close().wait()
        for c in (try? loop.submit { Array(self.connections.values) }.wait()) ?? [] { try? c.close().wait() }
    }

    @Sendable func streamPipeline(_ channel: Channel) -> EventLoopFuture<Void> {
        let server = self
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: Self.idleConnection))
            try channel.pipeline.syncOperations.addHandler(StreamInbound(server: server))
        }
    }

    final class DatagramInbound: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let server: SIPServer
        init(server: SIPServer) { self.server = server }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let bytes = Array(envelope.data.readableBytesView)
            // Keep-alives (RFC 5626 double CRLF) are not messages.
            if bytes.allSatisfy({ $0 == 0x0d || $0 == 0x0a }) { return }
            server.received(Result { () throws(SIPParseError) in try SIPParser.parse(datagram: bytes) },
                            from: SIPPeer(transport: .udp, address: envelope.remoteAddress))
        }
    }

    /// One TCP connection, either way: its bytes cut into messages by Content-Length. A stream
    /// whose framing is lost (no or bad Content-Length, an endless header) is answered when it
    /// can be and closed.
    final class StreamInbound: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let server: SIPServer
        var buffer: [UInt8] = []
        /// How much of `buffer` holds no header end (see `SIPParser.frame`).
        var searched = 0
        init(server: SIPServer) { self.server = server }

        func channelActive(context: ChannelHandlerContext) {
            if !server.connected(context.channel) { context.close(promise: nil) }
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            server.disconnected(context.channel)
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let remote = context.channel.remoteAddress else { return }
            buffer += unwrapInboundIn(data).readableBytesView
            let peer = SIPPeer(transport: .tcp, address: remote)
            do throws(SIPParseError) {
                while let frame = try SIPParser.frame(stream: buffer, searched: &searched) {
                    searched = 0
                    switch frame {
                    case .message(let n):
                        let bytes = Array(buffer.prefix(n))
                        buffer.removeFirst(n)
                        server.received(Result { () throws(SIPParseError) in try SIPParser.parse(datagram: bytes) }, from: peer)
                    case .ping:
                        buffer.removeFirst(4)
                        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [0x0d, 0x0a])), promise: nil)
                    case .pong:
                        buffer.removeFirst(2)
                    }
                }
            } catch {
                server.received(.failure(error), from: peer)
                buffer = []
                context.close(promise: nil)
            }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            server.logger.debug("sip: tcp \(context.channel.remoteAddress.map { "\($0)" } ?? "?"): \(error)")
            context.close(promise: nil)
        }
    }

    /// A connection up (accepted or ours); false when there are too many.
    func connected(_ channel: Channel) -> Bool {
        guard let remote = channel.remoteAddress else { return false }
        if connections[remote] == nil, connections.count >= Self.maxConnections {
            logger.warning("sip: tcp \(remote) refused: \(Self.maxConnections) connections open")
            return false
        }
        connections[remote] = channel
        return true
    }

    func disconnected(_ channel: Channel) {
        guard let remote = channel.remoteAddress, connections[remote] === channel else { return }
        connections[remote] = nil
    }

    /// Sends `m` to `peer`: on UDP a datagram; on TCP over the open connection to it, or over
    /// a new one (its messages queued while it connects; dropped if it fails, for the
    /// transaction's timer to notice).
    func send(_ m: SIPMessage, to peer: SIPPeer) {
        let bytes = ByteBuffer(bytes: m.bytes)
        switch peer.transport {
        case .udp:
            datagrams?.writeAndFlush(AddressedEnvelope(remoteAddress: peer.address, data: bytes), promise: nil)
        case .tcp:
            if let c = connections[peer.address] {
                c.writeAndFlush(bytes, promise: nil)
            } else if pendingConnections[peer.address] != nil {
                pendingConnections[peer.address]!.append(bytes)
            } else {
                connect(peer.address, first: bytes)
            }
        }
    }

    func connect(_ address: SocketAddress, first: ByteBuffer) {
        pendingConnections[address] = [first]
        let server = self
        var bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(5))
            .channelInitializer { channel in server.streamPipeline(channel) }
        // From the listen address, as our Via and Contact say.
        if let local = try? SocketAddress(ipAddress: "\(configuration.listen.address)", port: 0) { bootstrap = bootstrap.bind(to: local) }
        bootstrap.connect(to: address).hop(to: loop).whenComplete { result in
            let queued = server.pendingConnections.removeValue(forKey: address) ?? []
            switch result {
            case .success(let channel):
                // Closed already when it was one too many (`connected` refused it).
                guard channel.isActive else {
                    server.logger.info("sip: tcp \(address): closed at once; \(queued.count) message(s) dropped")
                    return
                }
                if server.connections[address] == nil { server.connections[address] = channel }
                for b in queued { channel.write(b, promise: nil) }
                channel.flush()
            case .failure(let error):
                server.logger.info("sip: tcp \(address): \(error); \(queued.count) message(s) dropped")
            }
        }
    }
}
