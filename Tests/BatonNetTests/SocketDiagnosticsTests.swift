import BatonModel
import BatonNet
import Foundation
import Glibc
import Testing

extension KernelTests {
    /// NETLINK_SOCK_DIAG's exact lookup, against real TCP sockets on a namespace's loopback.
    @Suite struct SocketDiagnosticsLookups {
        @Test func statesOfAConnectionAsItCloses() throws {
            try withNamespaces("sd") { namespaces in
                let ns = namespaces[0]
                try Netlink(in: ns).setUp("lo")
                let loopback = IPAddress("127.0.0.1")!
                let listener = try TCPListener(in: ns, family: .v4, address: loopback, port: 5006)
                let client = try TCPConnection.connect(in: ns, to: SocketAddress(loopback, port: 5006), from: 41006)
                let server = try #require(try listener.accept(timeout: .seconds(2)))
                defer { listener.close(); client.close(); server.close() }
                let clientEnd = SocketAddress(loopback, port: 41006), serverEnd = SocketAddress(loopback, port: 5006)
                let diagnostics = try ns.run { try SocketDiagnostics() }
                func state(_ local: SocketAddress, _ remote: SocketAddress) throws -> SocketDiagnostics.TCPState? {
                    try diagnostics.tcpState(local: local, remote: remote)
                }
                #expect(try state(serverEnd, clientEnd) == .established)
                #expect(try state(clientEnd, serverEnd) == .established)
                #expect(try state(serverEnd, SocketAddress(loopback, port: 41007)) == nil, "no such socket")

                try client.shutdownWrite()
                Thread.sleep(forTimeInterval: 0.1)
                #expect(try state(serverEnd, clientEnd) == .closeWait, "one FIN: half-closed")
                #expect(try state(serverEnd, clientEnd)?.isOver == false)
                #expect(try state(clientEnd, serverEnd) == .finWait2)

                server.close()
                Thread.sleep(forTimeInterval: 0.1)
                let after = try state(serverEnd, clientEnd)
                #expect(after == nil || after?.isOver == true, "both FINs: over (\(String(describing: after)))")
                #expect(try state(clientEnd, serverEnd) == .timeWait)
            }
        }
    }
}
