import BatonNet
import Glibc
import Testing

extension KernelTests {
    @Suite struct Namespaces {
        @Test func createRunDelete() throws {
            let name = uniqueNamespaceName("ns")
            let namespace = try NetworkNamespace.create(name: name)
            defer { try? namespace.delete() }

            #expect(NetworkNamespace.list().contains(name))
            #expect(NetworkNamespace.exists(name: name))
            #expect(try NetworkNamespace.open(name: name) == namespace)

            // The body runs in the namespace, returns its value, and the caller stays outside.
            let outside = try NetworkNamespace.currentIdentity()
            let inside = try namespace.run { try NetworkNamespace.currentIdentity() }
            #expect(inside == (try namespace.identity()))
            #expect(inside != outside)
            #expect(try NetworkNamespace.currentIdentity() == outside)
            #expect(try namespace.run { try NetworkNamespace.host.identity() } == outside)

            // A fresh namespace has only lo, down.
            let links = try namespace.run { try Netlink().links() }
            #expect(links.map(\.name) == ["lo"])
            #expect(links.first?.isUp == false)

            try namespace.delete()
            #expect(!NetworkNamespace.list().contains(name))
            #expect(!NetworkNamespace.exists(name: name))
            try namespace.delete()  // idempotent
        }

        @Test func runEntersOnlyTheNetworkNamespace() throws {
            try withNamespaces("only") { namespaces in
                let namespace = namespaces[0]
                // Same mount namespace and the same /sys: bpffs pins stay reachable (unlike `ip netns exec`).
                func look() -> [String] {
                    ["/proc/thread-self/ns/mnt", "/sys", "/sys/fs/bpf"].map { path in
                        var info = stat()
                        return stat(path, &info) == 0 ? "\(info.st_dev):\(info.st_ino)" : "missing \(path)"
                    }
                }
                let seenInside = try namespace.run(look)
                #expect(seenInside == look())
            }
        }

        @Test func runRethrowsAndPropagatesResults() throws {
            try withNamespaces("run") { namespaces in
                #expect(throws: Boom.self) { try namespaces[0].run { throw Boom() } }
                let answer = try namespaces[0].run { 42 }
                #expect(answer == 42)
            }
        }

        @Test func createTwiceFailsWithEEXIST() throws {
            try withNamespaces("dup") { namespaces in
                let error = #expect(throws: NetError.self) { try NetworkNamespace.create(name: namespaces[0].name!) }
                #expect(error?.errno == EEXIST)
                #expect(error?.description.hasPrefix("netns: create \(namespaces[0].name!): File exists (EEXIST)") == true)
                // The failed attempt must not have damaged the existing namespace.
                #expect(NetworkNamespace.exists(name: namespaces[0].name!))
            }
        }

        @Test func openUnknownFails() throws {
            let error = #expect(throws: NetError.self) { try NetworkNamespace.open(name: uniqueNamespaceName("none")) }
            #expect(error?.errno == ENOENT)
            #expect(throws: NetError.self) { try NetworkNamespace.create(name: "a/b") }
        }

        @Test func deleteCleansUpAHalfCreatedNamespace() throws {
            // What a crash between "create the file" and "bind-mount" leaves behind: a plain file.
            let name = uniqueNamespaceName("half")
            let path = NetworkNamespace.runDirectory + "/" + name
            let fd = open(path, O_RDONLY | O_CREAT | O_EXCL, 0)
            #expect(fd >= 0)
            close(fd)
            #expect(NetworkNamespace.list().contains(name))
            #expect(!NetworkNamespace.exists(name: name))
            #expect(throws: NetError.self) { try NetworkNamespace.open(name: name) }
            try NetworkNamespace.delete(name: name)
            #expect(!NetworkNamespace.list().contains(name))
        }

        @Test func sysctlFromANamespaceThreadIsThatNamespaces() throws {
            let key = "net.ipv4.ip_forward"
            let hostValue = try Sysctl.readInt(key)
            try withNamespaces("sa", "sb") { namespaces in
                let (a, b) = (namespaces[0], namespaces[1])
                let flipped = hostValue == 0 ? 1 : 0
                try Sysctl.write(key, flipped, in: a)
                let inA = try Sysctl.readInt(key, in: a)
                let inAByRun = try a.run { try Sysctl.readInt(key) }
                let inB = try Sysctl.readInt(key, in: b)
                let inHost = try Sysctl.readInt(key)
                #expect(inA == flipped)
                #expect(inAByRun == flipped)
                #expect(inB == 0)  // a new namespace starts with the default
                #expect(inHost == hostValue)  // and the host did not change
            }
        }

        /// A VLAN-style interface name ("v0.100") in a sysctl path: the dotted key would name
        /// "conf/v0/100/…", which does not exist; `Sysctl.interfaceKey` keeps the name whole.
        @Test func sysctlOfAnInterfaceWithADotInItsName() throws {
            try withNamespaces("dot") { namespaces in
                let ns = namespaces[0]
                let netlink = try Netlink(in: ns)
                try netlink.createVeth("v0.100", peer: "v1.100")
                let key = Sysctl.interfaceKey("v0.100", "promote_secondaries", family: .v4)
                #expect(key == "net/ipv4/conf/v0.100/promote_secondaries")
                try Sysctl.write(key, 1, in: ns)
                #expect(try Sysctl.readInt(key, in: ns) == 1)
                try Sysctl.write(key, 0, in: ns)
                #expect(try Sysctl.readInt(key, in: ns) == 0)
                #expect(try Sysctl.readInt(Sysctl.interfaceKey("v1.100", "accept_ra", family: .v6), in: ns) >= 0)
                #expect(throws: NetError.self) { try Sysctl.read("net.ipv4.conf.v0.100.promote_secondaries", in: ns) }
            }
        }

        @Test func sysctlErrorsNameTheKey() throws {
            let error = #expect(throws: NetError.self) { try Sysctl.read("net.ipv4.no_such_key") }
            #expect(error?.errno == ENOENT)
            #expect(error?.description.hasPrefix("sysctl: read net.ipv4.no_such_key: No such file or directory (ENOENT)") == true)
        }
    }
}
