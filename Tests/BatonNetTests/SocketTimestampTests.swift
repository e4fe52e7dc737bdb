import BatonModel
import BatonNet
import Foundation
import Testing

extension KernelTests {
    /// SO_TIMESTAMPNS through `recvmsg`: the bench's arrival times come from it.
    @Suite struct KernelReceiveTimes {
        @Test func aDatagramCarriesItsAgeOnlyWhenAsked() throws {
            try withNamespaces("ts") { namespaces in
                let ns = namespaces[0]
                try Netlink(in: ns).setUp("lo")
                let loopback = IPAddress("127.0.0.1")!
                let stamped = try UDPSocket(in: ns, family: .v4, address: loopback, port: 5008)
                let plain = try UDPSocket(in: ns, family: .v4, address: loopback, port: 5009)
                let sender = try UDPSocket(in: ns, family: .v4, address: loopback)
                defer { stamped.close(); plain.close(); sender.close() }
                try stamped.recordKernelTimes()
                // The first socket that asks turns the kernel's receive stamps on through a
                // deferred static key: a datagram that arrives before that is stamped only when
                // read (age ~0). One datagram, read, lets it settle.
                try sender.send([0], to: loopback, port: 5008)
                _ = try stamped.receive(timeout: .seconds(1))
                Thread.sleep(forTimeInterval: 0.05)
                try sender.send([1, 2, 3], to: loopback, port: 5008)
                try sender.send([4, 5, 6], to: loopback, port: 5009)
                // Read well after the kernel stamped it: the age covers the wait.
                Thread.sleep(forTimeInterval: 0.2)
                let withStamp = try #require(try stamped.receive(timeout: .seconds(1)))
                #expect(withStamp.payload == [1, 2, 3])
                let age = try #require(withStamp.age, "SO_TIMESTAMPNS was asked for")
                #expect(age >= 150_000_000, "read 0.2 s after it arrived, yet aged \(age) ns")
                let withoutStamp = try #require(try plain.receive(timeout: .seconds(1)))
                #expect(withoutStamp.payload == [4, 5, 6])
                #expect(withoutStamp.age == nil)
                #expect(withoutStamp.source.address == loopback)
            }
        }
    }
}
