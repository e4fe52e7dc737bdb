import BatonModel
import CMnl
import Glibc
import Synchronization

/// The state of one TCP socket of this host's network namespace, through NETLINK_SOCK_DIAG
/// (what `ss` reads): an exact lookup by the socket's four addresses and ports, not a dump.
public final class SocketDiagnostics: Sendable {
    /// The kernel's TCP states (include/net/tcp_states.h).
    public enum TCPState: UInt8, Sendable, CustomStringConvertible {
        case established = 1, synSent, synReceived, finWait1, finWait2, timeWait, close, closeWait, lastAck, listen,
             closing, newSynReceived

        /// Both sides have sent their FIN (or the connection was reset): nothing more of it
        /// will be delivered.
        public var isOver: Bool { [.timeWait, .close, .lastAck, .closing].contains(self) }

        public var description: String {
            switch self {
            case .established: "ESTABLISHED"
            case .synSent: "SYN-SENT"
            case .synReceived: "SYN-RECV"
            case .finWait1: "FIN-WAIT-1"
            case .finWait2: "FIN-WAIT-2"
            case .timeWait: "TIME-WAIT"
            case .close: "CLOSE"
            case .closeWait: "CLOSE-WAIT"
            case .lastAck: "LAST-ACK"
            case .listen: "LISTEN"
            case .closing: "CLOSING"
            case .newSynReceived: "NEW-SYN-RECV"
            }
        }
    }

    private let socket: Mutex<NetlinkSocket>

    /// A NETLINK_SOCK_DIAG socket in the calling thread's network namespace.
    public init() throws {
        let socket = try NetError.wrap("sock_diag", "open socket") { try NetlinkSocket(protocol: NETLINK_SOCK_DIAG) }
        self.socket = Mutex(socket)
    }

    /// The state of the TCP socket from `local` to `remote`; nil when there is none (a
    /// listener on the local port is not one).
    public func tcpState(local: SocketAddress, remote: SocketAddress) throws -> TCPState? {
        precondition(local.address.family == remote.address.family, "one family")
        var request = inet_diag_req_v2()
        request.sdiag_family = UInt8(local.address.family == .v4 ? AF_INET : AF_INET6)
        request.sdiag_protocol = UInt8(IPPROTO_TCP)
        request.idiag_states = ~0
        request.id.idiag_sport = local.port.bigEndian
        request.id.idiag_dport = remote.port.bigEndian
        withUnsafeMutableBytes(of: &request.id.idiag_src) { $0.copyBytes(from: padded(local.address)) }
        withUnsafeMutableBytes(of: &request.id.idiag_dst) { $0.copyBytes(from: padded(remote.address)) }
        // Any socket of these addresses and ports, whatever its cookie.
        request.id.idiag_cookie = (UInt32.max, UInt32.max)
        let message = NetlinkRequest(type: UInt16(SOCK_DIAG_BY_FAMILY), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK),
                                     header: Kernel.bytes(of: request))
        do {
            let replies = try socket.withLock { try $0.transact(message) }
            guard let reply = replies.first(where: { $0.type == UInt16(SOCK_DIAG_BY_FAMILY) }),
                  let diag = reply.header(inet_diag_msg.self) else { return nil }
            // The kernel's lookup falls back to the listening socket of the local port: that
            // one is not the connection's.
            guard diag.id.idiag_dport == remote.port.bigEndian, diag.idiag_state != TCPState.listen.rawValue else { return nil }
            return TCPState(rawValue: diag.idiag_state)
        } catch let failure as NetlinkFailure where failure.code == ENOENT {
            return nil
        } catch let failure as NetlinkFailure {
            throw NetError("sock_diag", "look up \(local) → \(remote)", failure)
        }
    }

    /// The address as inet_diag_sockid holds it: 16 bytes, IPv4 in the first four.
    private func padded(_ a: IPAddress) -> [UInt8] {
        let wire = a.wireBytes
        return wire + [UInt8](repeating: 0, count: 16 - wire.count)
    }
}
