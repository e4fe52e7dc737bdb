import BatonAPI
import BatonBPF
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Testing

/// Seed 002 through batond's SIP server with real peers (sipp) in a lab: "sa" runs the agent
/// with --sip-domain example.com; "cn" is the remote party (carol@remote.test), "tn" device 1
/// and "target" device 2 of alice@example.com. Media is RTP from the tests' own sockets at
/// 50 packets a second each way, counted at every host.
@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported() && Sipp.available, "needs root, XDP and sipp (sip-tester)"))
struct SIPTests {
    static let domain = "example.com", password = "wonderland-42"
    static let instance1 = "urn:uuid:00000000-0000-4000-8000-00000000d001"
    static let instance2 = "urn:uuid:00000000-0000-4000-8000-00000000d002"
    static let rtpPort: UInt16 = 16000, remoteRTP: UInt16 = 40000   // sipp holds 6000 (its -mp) itself
    static var options: LabDaemons.Options {
        var o = LabDaemons.Options()
        // sipp answers the first challenge whatever its algorithm, and knows only MD5.
        o.agentArguments = ["--sip-domain", domain, "--sip-digest", "MD5,SHA-256"]
        return o
    }

    /// A device registers alice with its instance; sipp checks the 200's GRUUs.
    @discardableResult
    func register(_ rig: Rig, _ host: LabHost, instance: String, contactPort: UInt16, name: String, expires: Int = 3600,
                  password: String = SIPTests.password, expectSuccess: Bool = true, tcp: Bool = false) throws -> Sipp {
        let reg = try Sipp(name, host: host, family: .v4, port: 5070, scenario: "register.xml",
                           server: Endpoint(address: rig.sa.ipv4, port: 5060),
                           keys: ["user": "alice", "domain": Self.domain, "instance": instance, "contact_port": "\(contactPort)",
                                  "expires": "\(expires)"],
                           auth: ("alice", password), directory: rig.daemons.directory, tcp: tcp)
        let status = reg.wait(timeout: 15)
        if expectSuccess { #expect(status == 0, "\(name): \(reg.log)\n\(reg.messages)\n\(reg.errors)") }
        return reg
    }

    /// A second, independent client (baresip 1.0.0, Debian's baresip-core) registers alice with
    /// its instance, answers the digest challenge and gets a public and a temporary GRUU; on
    /// quitting it unregisters. baresip's digest code gives up on a 401 that offers any
    /// algorithm it lacks, even beside MD5, so the agent offers MD5 alone here (docs/sip.md).
    @Test(.enabled(if: Baresip.available, "needs baresip (baresip-core)"))
    func anIndependentClientRegistersWithGRUU() throws {
        var options = LabDaemons.Options()
        options.agentArguments = ["--sip-domain", Self.domain, "--sip-digest", "MD5"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = rig.agentControl
            _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: Self.password))
            let uuid = "00000000-0000-4000-8000-0000000ba2e5"
            let client = try Baresip("baresip", host: rig.target, port: 5080, account: "alice@\(Self.domain)", password: Self.password,
                                     proxy: Endpoint(address: rig.sa.ipv4, port: 5060), instance: uuid, seconds: 3,
                                     directory: rig.daemons.directory)
            defer { client.stop() }
            var binding: SIPRegistration?
            try rig.wait(3, "baresip's registration") {
                binding = try api.sipRegistrations().first { $0.instance == "urn:uuid:\(uuid)" }
                return binding != nil
            }
            #expect(binding?.publicGRUU == "sip:alice@\(Self.domain);gr=urn:uuid:\(uuid)", "\(String(describing: binding))")
            #expect(binding?.temporaryGRUUs == 1 && binding?.contact.hasSuffix("@\(rig.target.ipv4):5080") == true, "\(String(describing: binding))")
            client.wait(timeout: 10)
            let log = client.log
            #expect(log.contains("Authorization: Digest username=\"alice\""), "\(log)")
            #expect(log.contains("pub-gruu=\"sip:alice@\(Self.domain);gr=urn:uuid:\(uuid)\"") && log.contains("temp-gruu=\"sip:tgruu."), "\(log)")
            // Quitting, it unregisters (expires=0): the binding is gone.
            try rig.wait(3, "baresip's binding to go") { try api.sipRegistrations().isEmpty }
        }
    }

    /// A third, independent SIP stack as device 2: linphonec (liblinphone 5.1, belle-sip)
    /// registers alice with its instance and GRUU, then takes device 1's call with an INVITE
    /// carrying Replaces (dialled as `?Replaces=`, which it turns into the header field) and
    /// answering the digest challenge. The anchor moves to linphone's media, device 1 gets its
    /// BYE, the remote's trace is INVITE, ACK, BYE, and the remote's media reaches linphone's
    /// host after the switch.
    @Test(.enabled(if: Linphone.available, "needs linphonec (linphone-cli)"))
    func anIndependentClientTakesTheCallWithReplaces() throws {
        try Rig.with(.l2, family: .v4, options: Self.options) { rig in
            let api = rig.agentControl
            _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: Self.password))
            let dir = rig.daemons.directory
            let server = Endpoint(address: rig.sa.ipv4, port: 5060)
            try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-1")
            let device1 = try Sipp("device-1", host: rig.tn, family: .v4, port: 5062, scenario: "device-answer.xml", server: server,
                                   keys: ["rtp_port": "\(Self.rtpPort)"], directory: dir)
            defer { device1.stop() }
            usleep(300_000)
            let (remote, c) = try call(rig, hold: 8000)
            defer { remote.stop() }
            let remoteSocket = try rig.cn.udpSocket(.v4, port: Self.remoteRTP)
            let toDevice = SequenceSender(socket: remoteSocket, to: SocketAddress(c.anchor.address, port: c.anchor.port), flow: 7, perSecond: 50)
            defer { _ = toDevice.stop() }

            // linphone registers after the call is up (a call goes to the device registered last).
            let uuid = "00000000-0000-4000-8000-00000000a1e5"
            let linphone = try Linphone("linphone", host: rig.target, port: 5064, rtpPort: 17078, account: "alice@\(Self.domain)",
                                        password: Self.password, proxy: server, instance: "urn:uuid:\(uuid)", directory: dir)
            defer { linphone.stop() }
            var binding: SIPRegistration?
            do {
                try rig.wait(10, "linphone's registration") {
                    binding = try api.sipRegistrations().first { $0.instance == "urn:uuid:\(uuid)" }
                    return binding != nil
                }
            } catch {
                Issue.record("linphone did not register: \(try api.sipRegistrations()) \(linphone.log.suffix(3000))")
                throw error
            }
            #expect(binding?.publicGRUU == "sip:alice@\(Self.domain);gr=urn:uuid:\(uuid)", "\(String(describing: binding))")

            let leg = try #require(c.legs.first { $0.role == .device })
            let replaces = "\(leg.callID);to-tag=\(leg.localTag);from-tag=\(leg.remoteTag ?? "")"
            let escaped = replaces.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.!~*'()")))!
            linphone.command("call sip:alice@\(Self.domain)?Replaces=\(escaped)")
            do {
                try rig.wait(10, "linphone's switch") { try api.sipCall(c.id).switches == 1 }
            } catch {
                Issue.record("no switch: \(linphone.log.suffix(6000))")
                throw error
            }
            let after = try api.sipCall(c.id)
            let device = try #require(after.legs.first { $0.role == .device })
            #expect(device.instance == "urn:uuid:\(uuid)" && device.media == Endpoint(address: rig.target.ipv4, port: 17078), "\(after.legs)")
            let log = linphone.log
            #expect(log.contains("Replaces: \(replaces)") || log.contains("Replaces: \(replaces.lowercased())"), "linphone sent no Replaces header field")
            // The remote's media now goes to linphone's host (its RTP port: counted by the anchor).
            let moved = try #require(try api.anchors().first { $0.id == after.rtpAnchor })
            #expect(moved.device == Endpoint(address: rig.target.ipv4, port: 17078), "\(moved)")
            let relayed = after.toDevice ?? 0
            try rig.wait(3, "media toward linphone") { (try api.sipCall(c.id).toDevice ?? 0) > relayed + 10 }

            #expect(device1.wait(timeout: 5) == 0, "device 1: \(device1.log)\n\(device1.errors)")
            #expect(device1.received.contains { $0.hasPrefix("BYE ") }, "\(device1.received)")
            #expect(remote.wait(timeout: 15) == 0, "remote: \(remote.log)\n\(remote.errors)")
            #expect(remote.sent.map { String($0.prefix { $0 != " " }) } == ["INVITE", "ACK", "BYE"], "\(remote.sent)")
            #expect(remote.received.allSatisfy { $0.hasPrefix("SIP/2.0 ") }, "requests reached the remote: \(remote.received)")
            linphone.command("quit")
        }
    }

    /// Registration against real clients: a wrong password is 403 and binds nothing; a
    /// binding lives as long as its Expires, a refresh extends it, and once it is gone a call
    /// to the user finds no one (480).
    @Test func registrationsExpireUnlessRefreshed() throws {
        var options = Self.options
        options.agentArguments += ["--sip-expires", "1-7200"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = rig.agentControl
            _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: Self.password))
            let wrong = try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-wrong",
                                     password: "not-" + Self.password, expectSuccess: false)
            #expect(wrong.received.contains { $0.hasPrefix("SIP/2.0 403") }, "a wrong password: \(wrong.received)")
            #expect(try api.sipRegistrations().isEmpty)

            // Device 1 for 3 s, refreshed after 1.5 s (a new registration of the same
            // instance); device 2 for 3 s and never refreshed.
            try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-1", expires: 3)
            try register(rig, rig.target, instance: Self.instance2, contactPort: 5064, name: "register-2", expires: 3)
            #expect(Set(try api.sipRegistrations().compactMap(\.instance)) == [Self.instance1, Self.instance2])
            usleep(1_500_000)
            try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-1-again", expires: 3)
            // Device 2's binding ends 3 s after its registration (the registrar sweeps each second).
            try rig.wait(4, "device 2's binding to expire") { try api.sipRegistrations().compactMap(\.instance) == [Self.instance1] }
            // Device 1's, 3 s after its refresh.
            try rig.wait(5, "device 1's binding to expire") { try api.sipRegistrations().isEmpty }

            let remote = try Sipp("remote", host: rig.cn, family: .v4, port: 5060, scenario: "remote-call.xml",
                                  server: Endpoint(address: rig.sa.ipv4, port: 5060),
                                  keys: ["callee": "alice@\(Self.domain)", "rtp_port": "\(Self.remoteRTP)"],
                                  directory: rig.daemons.directory, timeout: 10)
            _ = remote.wait(timeout: 10)   // the scenario fails: it wants a 200
            #expect(remote.received.contains { $0.hasPrefix("SIP/2.0 480") }, "a call to no one: \(remote.received)")
            let metrics = try api.metrics()
            #expect(metrics.contains("baton_sip_refusals_total{status=\"403\"} 1"), "\(metrics)")
        }
    }

    /// The remote party (cn) calls alice, holding the call `hold` ms; the call once confirmed.
    func call(_ rig: Rig, hold: Int) throws -> (Sipp, SIPCall) {
        let remote = try Sipp("remote", host: rig.cn, family: .v4, port: 5060, scenario: "remote-call.xml",
                              server: Endpoint(address: rig.sa.ipv4, port: 5060),
                              keys: ["callee": "alice@\(Self.domain)", "rtp_port": "\(Self.remoteRTP)"], pause: hold,
                              directory: rig.daemons.directory, timeout: 60)
        var call: SIPCall?
        try rig.wait(5, "the call to be confirmed") {
            call = try rig.agentControl.sipCalls().first { $0.state == .confirmed }
            return call != nil
        }
        guard let call else {
            remote.stop()
            Issue.record("no confirmed call: \(remote.log)")
            throw CancellationError()
        }
        return (remote, call)
    }

    /// A call from the remote party to alice on device 1 is switched to device 2 by INVITE
    /// with Replaces: 0 RTP lost either way, the remote's SIP trace is INVITE, ACK, BYE and
    /// their answers only, its media peer is one address and port throughout, it hears one
    /// SSRC with contiguous numbers, and device 2 has its 200 before device 1 its BYE. The
    /// devices talk SIP over UDP, then over TCP (the remote party over UDP in both), media
    /// relayed in XDP; then over UDP with the media relayed in userspace (--sip-media).
    @Test(arguments: zip(["udp", "tcp", "udp"], ["xdp", "xdp", "userspace"]))
    func aCallMovesToTheUsersOtherDevice(devicesOver transport: String, media: String) throws {
        let tcp = transport == "tcp"
        var options = Self.options
        options.agentArguments += ["--sip-media", media]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = rig.agentControl
            _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: Self.password))
            let dir = rig.daemons.directory
            let server = Endpoint(address: rig.sa.ipv4, port: 5060)
            try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-1", tcp: tcp)

            // Device 1 answers; the remote calls alice and holds the call 6 s.
            let device1 = try Sipp("device-1", host: rig.tn, family: .v4, port: 5062, scenario: "device-answer.xml", server: server,
                                   keys: ["rtp_port": "\(Self.rtpPort)"], directory: dir, tcp: tcp)
            defer { device1.stop() }
            usleep(300_000)
            let (remote, c) = try call(rig, hold: 6000)
            defer { remote.stop() }
            #expect(c.rtpAnchor != nil && c.legs.count == 2)
            // XDP: the call's RTP and RTCP are two anchored sessions; userspace: none, the relays are batond's.
            #expect(try api.anchors().filter { $0.state == .active }.count == (media == "xdp" ? 2 : 0))
            let anchor = SocketAddress(c.anchor.address, port: c.anchor.port)
            let relay = SocketAddress(c.anchor.address, port: UInt16(c.relayPort))

            // Media, symmetric as RTP is: each side sends from the port its SDP names and
            // hears there. The remote's stream is sequence-numbered (every packet accounted for
            // at the devices); the devices' are RTP, for the continuity the remote must see.
            let remoteSocket = try rig.cn.udpSocket(.v4, port: Self.remoteRTP)
            let deviceSockets = try [rig.tn, rig.target].map { try $0.udpSocket(.v4, port: Self.rtpPort) }
            let atRemote = RTPReceiver(socket: remoteSocket)
            let atDevice = [SequenceReceiver(host: "device1", socket: deviceSockets[0]),
                            SequenceReceiver(host: "device2", socket: deviceSockets[1])]
            let toDevice = SequenceSender(socket: remoteSocket, to: anchor, flow: 7, perSecond: 50)
            let fromDevice1 = RTPSender(socket: deviceSockets[0], to: relay, ssrc: 0xd1d1_d1d1, firstSequence: 65_500, firstTimestamp: 1000)
            usleep(1_000_000)

            // Device 2 comes up (a call goes to the device registered last: it registers now) and
            // replaces device 1's leg.
            try register(rig, rig.target, instance: Self.instance2, contactPort: 5064, name: "register-2", tcp: tcp)
            let regs = try api.sipRegistrations()
            #expect(Set(regs.compactMap(\.instance)) == [Self.instance1, Self.instance2], "\(regs)")
            let leg = try #require(c.legs.first { $0.role == .device })
            let replaces = "\(leg.callID);to-tag=\(leg.localTag);from-tag=\(leg.remoteTag ?? "")"
            let gruu = "sip:alice@\(Self.domain);gr=\(Self.instance2)"
            let device2 = try Sipp("device-2", host: rig.target, family: .v4, port: 5064, scenario: "device-replace.xml", server: server,
                                   keys: ["user": "alice", "domain": Self.domain, "gruu": gruu, "replaces": replaces,
                                          "rtp_port": "\(Self.rtpPort)"],
                                   auth: ("alice", Self.password), directory: dir, tcp: tcp)
            defer { device2.stop() }
            try rig.wait(5, "the switch") { try api.sipCall(c.id).switches == 1 }
            let sentByDevice1 = fromDevice1.stop()
            let fromDevice2 = RTPSender(socket: deviceSockets[1], to: relay, ssrc: 0xd2d2_d2d2, firstSequence: 100, firstTimestamp: 777_000)
            usleep(1_000_000)
            let sentByDevice2 = fromDevice2.stop()
            let sentToDevices = toDevice.stop()

            #expect(remote.wait(timeout: 15) == 0, "remote: \(remote.log)\n\(remote.errors)")
            #expect(device1.wait(timeout: 5) == 0, "device 1: \(device1.log)\n\(device1.errors)")
            #expect(device2.wait(timeout: 5) == 0, "device 2: \(device2.log)\n\(device2.errors)")

            // The remote's trace: its INVITE, ACK and BYE, and nothing asked of it.
            #expect(remote.sent.map { String($0.prefix { $0 != " " }) } == ["INVITE", "ACK", "BYE"], "\(remote.sent)")
            #expect(remote.received.allSatisfy { $0.hasPrefix("SIP/2.0 ") }, "requests reached the remote: \(remote.received)")
            // Device 2's 200 before device 1's BYE.
            let ok2 = try #require(device2.time(of: "SIP/2.0 200", "received"))
            let bye1 = try #require(device1.time(of: "BYE", "received"))
            #expect(ok2 <= bye1, "device 2's 200 at \(ok2), device 1's BYE at \(bye1)")
            // The BYE is the dialog's next request: its CSeq above the INVITE's 1.
            #expect(device1.messages.contains("CSeq: 2 BYE"), "\(device1.messages)")
            // Each device heard the server over its own transport only.
            for d in [device1, device2] {
                #expect(d.messages.contains("SIP/2.0/\(transport.uppercased()) ") && !d.messages.contains("SIP/2.0/\(tcp ? "UDP" : "TCP") "),
                        "\(d.name): \(d.messages)")
            }

            // Media: nothing lost either way; the remote hears one stream from one peer.
            let arrivals = atDevice.flatMap { $0.stop() }
            let report = FlowReport(flow: 7, sent: sentToDevices, arrivals: arrivals)
            #expect(report.lost == 0 && report.duplicates == 0 && report.reordered == 0, "\(report)")
            #expect(report.ranges["device1"]?.count == 1 && report.ranges["device2"]?.count == 1, "\(report.ranges)")
            let heard = RTPReceiver.Report(atRemote.stop())
            #expect(heard.packets == sentByDevice1 + sentByDevice2, "\(heard); sent \(sentByDevice1) + \(sentByDevice2)")
            #expect(heard.ssrcs == [0xd1d1_d1d1] && heard.sources == ["\(anchor)"], "\(heard)")
            #expect(heard.sequenceBreaks == 0 && heard.timestampRegressions == 0, "\(heard)")

            let shown = try api.sipCalls().first { $0.id == c.id }
            #expect(shown?.state == .ended && shown?.switches == 1, "\(String(describing: shown))")
            let metrics = try api.metrics()
            #expect(metrics.contains("baton_sip_switches_total 1"), "\(metrics)")
        }
    }

    /// A relay port pool of four ports holds one call (RTP and RTCP, two ports each): three
    /// calls one after the other all go through only if each call's ports come back when it
    /// ends, with the media in XDP (anchored sessions) and in userspace.
    @Test(arguments: ["xdp", "userspace"]) func aCallsPortsComeBackWhenItEnds(media: String) throws {
        var options = Self.options
        options.agentArguments += ["--sip-media", media, "--relay-ports", "30000-30003"]
        try Rig.with(.l2, family: .v4, options: options) { rig in
            let api = rig.agentControl
            _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: Self.password))
            let server = Endpoint(address: rig.sa.ipv4, port: 5060)
            try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-1")
            let device = try Sipp("device-1", host: rig.tn, family: .v4, port: 5062, scenario: "device-answer.xml", server: server,
                                  keys: ["rtp_port": "\(Self.rtpPort)"], directory: rig.daemons.directory, calls: 3)
            defer { device.stop() }
            usleep(300_000)
            let remote = try Sipp("remote", host: rig.cn, family: .v4, port: 5060, scenario: "remote-call.xml", server: server,
                                  keys: ["callee": "alice@\(Self.domain)", "rtp_port": "\(Self.remoteRTP)"], pause: 300,
                                  directory: rig.daemons.directory, calls: 3, rate: 2, limit: 1)
            #expect(remote.wait(timeout: 20) == 0, "remote: \(remote.log)\n\(remote.errors)")
            #expect(device.wait(timeout: 5) == 0, "device: \(device.log)\n\(device.errors)")
            let metrics = try api.metrics()
            #expect(metrics.contains("baton_sip_calls_ended_total{reason=\"bye from remote\"} 3"), "\(metrics)")
            #expect(!metrics.contains("baton_sip_refusals_total{status=\"503\"}"), "\(metrics)")
        }
    }

    /// SIP over TCP from a raw socket: a ping before a request split across two writes, then
    /// the request answered on the same connection; a request without Content-Length (its
    /// framing lost) answered 400 and the connection closed; a header that never ends closed
    /// unanswered; the server still serving afterwards.
    @Test func tcpStreamsAreFramedAndBrokenOnesClosed() throws {
        try Rig.with(.l2, family: .v4, options: Self.options) { rig in
            let server = SocketAddress(rig.sa.ipv4, port: 5060)
            func options(_ cseq: Int, contentLength: Bool = true) -> [UInt8] {
                Array(("OPTIONS sip:\(rig.sa.ipv4):5060 SIP/2.0\r\nVia: SIP/2.0/TCP \(rig.cn.ipv4):5099;branch=z9hG4bK-t\(cseq)\r\n"
                       + "From: <sip:probe@\(rig.cn.ipv4)>;tag=p\(cseq)\r\nTo: <sip:\(rig.sa.ipv4)>\r\nCall-ID: tcp-\(cseq)@probe\r\n"
                       + "CSeq: \(cseq) OPTIONS\r\n" + (contentLength ? "Content-Length: 0\r\n" : "") + "\r\n").utf8)
            }
            /// What arrives until `predicate` holds or the stream ends (nil; a reset too: the
            /// server closing with our bytes unread resets the connection).
            func read(_ c: TCPConnection, until predicate: (String) -> Bool) throws -> String? {
                var got = ""
                while !predicate(got) {
                    let chunk: [UInt8]
                    do { chunk = try c.receive(timeout: .seconds(5)) } catch let e as SystemError where e.errno == ECONNRESET { return nil }
                    if chunk.isEmpty { return nil }
                    got += String(decoding: chunk, as: UTF8.self)
                }
                return got
            }

            let c = try rig.cn.connectTCP(to: server)
            let first = options(1)
            try c.send(Array("\r\n\r\n".utf8) + first.prefix(40))
            usleep(100_000)
            try c.send(Array(first.dropFirst(40)))
            let answer = try #require(try read(c) { $0.contains("\r\n\r\n") && $0.contains("CSeq") })
            #expect(answer.hasPrefix("\r\nSIP/2.0 200 OK\r\n"), "\(answer)")
            #expect(answer.contains("CSeq: 1 OPTIONS") && answer.contains("Via: SIP/2.0/TCP \(rig.cn.ipv4):5099"), "\(answer)")

            try c.send(options(2, contentLength: false))
            let refused = try read(c) { $0.contains("Content-Length") && $0.hasSuffix("\r\n\r\n") }
            #expect(refused?.hasPrefix("SIP/2.0 400 Bad Request - no Content-Length on a stream") == true, "\(refused ?? "closed")")
            #expect(try read(c) { _ in false } == nil, "the connection stays open after losing its framing")

            let endless = try rig.cn.connectTCP(to: server)
            try endless.send(Array("OPTIONS sip:x SIP/2.0\r\nX: ".utf8) + [UInt8](repeating: 0x61, count: 70_000))
            #expect(try read(endless) { _ in false } == nil, "an endless header left open")

            let again = try rig.cn.connectTCP(to: server)
            try again.send(options(3))
            #expect(try read(again) { $0.contains("CSeq: 3") }?.hasPrefix("SIP/2.0 200") == true)
            let metrics = try rig.agentControl.metrics()
            #expect(metrics.contains("baton_sip_refusals_total{status=\"400\"} 1") && metrics.contains("baton_sip_refusals_total{status=\"413\"} 1"),
                    "\(metrics)")
        }
    }

    /// Replaces of the early dialog the server initiated (RFC 3891 3): device 1 rings and does
    /// not answer, device 2 picks the call up with INVITE/Replaces. The remote gets its 200 with
    /// the anchor's address, device 2 its 200, device 1 a CANCEL (and answers 487); media from
    /// the remote reaches device 2, none device 1; the remote's trace is INVITE, ACK, BYE.
    @Test func aRingingCallIsPickedUpByTheUsersOtherDevice() throws {
        try Rig.with(.l2, family: .v4, options: Self.options) { rig in
            let api = rig.agentControl
            _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: Self.password))
            let dir = rig.daemons.directory
            let server = Endpoint(address: rig.sa.ipv4, port: 5060)
            try register(rig, rig.target, instance: Self.instance2, contactPort: 5064, name: "register-2")
            try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-1")   // last: it rings
            let device1 = try Sipp("device-1", host: rig.tn, family: .v4, port: 5062, scenario: "device-ring.xml", server: server, directory: dir)
            defer { device1.stop() }
            usleep(300_000)
            let remote = try Sipp("remote", host: rig.cn, family: .v4, port: 5060, scenario: "remote-call.xml", server: server,
                                  keys: ["callee": "alice@\(Self.domain)", "rtp_port": "\(Self.remoteRTP)"], pause: 3000,
                                  directory: dir, timeout: 60)
            defer { remote.stop() }
            var ringing: SIPCall?
            try rig.wait(5, "device 1 to ring") {
                ringing = try api.sipCalls().first { $0.state == .setup && $0.legs.contains { $0.role == .device && $0.remoteTag != nil } }
                return ringing != nil
            }
            let leg = try #require(ringing?.legs.first { $0.role == .device })
            let replaces = "\(leg.callID);to-tag=\(leg.localTag);from-tag=\(leg.remoteTag ?? "");early-only"
            let device2 = try Sipp("device-2", host: rig.target, family: .v4, port: 5064, scenario: "device-replace.xml", server: server,
                                   keys: ["user": "alice", "domain": Self.domain, "gruu": "sip:alice@\(Self.domain);gr=\(Self.instance2)",
                                          "replaces": replaces, "rtp_port": "\(Self.rtpPort)"],
                                   auth: ("alice", Self.password), directory: dir)
            defer { device2.stop() }
            var call: SIPCall?
            try rig.wait(5, "the call to be confirmed with device 2") {
                call = try api.sipCalls().first { $0.state == .confirmed }
                return call != nil
            }
            let c = try #require(call)
            #expect(c.switches == 1 && c.legs.first { $0.role == .device }?.instance == Self.instance2, "\(c)")
            let atDevice = try [rig.tn, rig.target].enumerated().map { i, h in
                SequenceReceiver(host: "device\(i + 1)", socket: try h.udpSocket(.v4, port: Self.rtpPort))
            }
            let toDevice = SequenceSender(socket: try rig.cn.udpSocket(.v4, port: Self.remoteRTP),
                                          to: SocketAddress(c.anchor.address, port: c.anchor.port), flow: 7, perSecond: 50)
            usleep(1_000_000)
            let sent = toDevice.stop()
            let report = FlowReport(flow: 7, sent: sent, arrivals: atDevice.flatMap { $0.stop() })
            #expect(report.lost == 0 && report.perHost["device1"] == nil && (report.perHost["device2"] ?? 0) == sent, "\(report)")

            #expect(device1.wait(timeout: 10) == 0, "device 1: \(device1.log)\n\(device1.errors)")
            #expect(device1.received.map { String($0.prefix { $0 != " " }) } == ["INVITE", "CANCEL", "ACK"], "\(device1.received)")
            #expect(remote.wait(timeout: 15) == 0, "remote: \(remote.log)\n\(remote.errors)")
            #expect(device2.wait(timeout: 5) == 0, "device 2: \(device2.log)\n\(device2.errors)")
            #expect(remote.sent.map { String($0.prefix { $0 != " " }) } == ["INVITE", "ACK", "BYE"], "\(remote.sent)")
        }
    }

    /// Every Replaces the server must refuse, sent by a real device while the call's media
    /// flows: each answered with its status (RFC 3891's 400, 481, 486, 603 and seed 002's
    /// same-user rule, 403), leg A
    /// and its media exactly as they were (the anchor's device unchanged, packets still
    /// relayed to device 1). After the call ends, a Replaces for it is 603.
    @Test func refusedReplacesLeaveTheCallAsItWas() throws {
        try Rig.with(.l2, family: .v4, options: Self.options) { rig in
            let api = rig.agentControl
            _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: Self.password))
            _ = try api.addSIPUser(SIPUserRequest(username: "bob", password: Self.password))
            let dir = rig.daemons.directory
            let server = Endpoint(address: rig.sa.ipv4, port: 5060)
            try register(rig, rig.tn, instance: Self.instance1, contactPort: 5062, name: "register-1")
            let device1 = try Sipp("device-1", host: rig.tn, family: .v4, port: 5062, scenario: "device-answer.xml", server: server,
                                   keys: ["rtp_port": "\(Self.rtpPort)"], directory: dir, timeout: 60)
            defer { device1.stop() }
            usleep(300_000)
            let (remote, c) = try call(rig, hold: 20_000)
            defer { remote.stop() }
            try register(rig, rig.target, instance: Self.instance2, contactPort: 5064, name: "register-2")
            let anchor = SocketAddress(c.anchor.address, port: c.anchor.port)
            let remoteSocket = try rig.cn.udpSocket(.v4, port: Self.remoteRTP)
            let atDevice1 = SequenceReceiver(host: "device1", socket: try rig.tn.udpSocket(.v4, port: Self.rtpPort))
            let toDevice = SequenceSender(socket: remoteSocket, to: anchor, flow: 7, perSecond: 50)
            defer { _ = toDevice.stop() }
            try rig.wait(3, "media at device 1") { atDevice1.count(flow: 7) > 5 }

            let leg = try #require(c.legs.first { $0.role == .device })
            let good = "\(leg.callID);to-tag=\(leg.localTag);from-tag=\(leg.remoteTag ?? "")"
            let gruu2 = "sip:alice@\(Self.domain);gr=\(Self.instance2)"
            let cases: [(String, [String: String], (String, String), Int)] = [
                ("no such dialog", ["replaces": "nobody@x;to-tag=\(leg.localTag);from-tag=\(leg.remoteTag ?? "")", "gruu": gruu2], ("alice", Self.password), 481),
                ("tags swapped", ["replaces": "\(leg.callID);to-tag=\(leg.remoteTag ?? "");from-tag=\(leg.localTag)", "gruu": gruu2], ("alice", Self.password), 481),
                ("early-only on a confirmed dialog", ["replaces": good + ";early-only", "gruu": gruu2], ("alice", Self.password), 486),
                ("another user's device", ["replaces": good, "gruu": gruu2], ("bob", Self.password), 403),
                ("an unknown temporary GRUU", ["replaces": good, "gruu": "sip:tgruu.0123456789abcdef@\(Self.domain);gr"], ("alice", Self.password), 403),
                ("the same device's GRUU", ["replaces": good, "gruu": "sip:alice@\(Self.domain);gr=\(Self.instance1)"], ("alice", Self.password), 403),
                ("two Replaces", ["replaces": good + "\r\nReplaces: " + good, "gruu": gruu2], ("alice", Self.password), 400),
                ("Replaces beside Join", ["replaces": good + "\r\nJoin: " + good, "gruu": gruu2], ("alice", Self.password), 400),
                ("an unreadable Replaces", ["replaces": "\(leg.callID);to-tag", "gruu": gruu2], ("alice", Self.password), 400),
            ]
            for (i, (what, keys, auth, status)) in cases.enumerated() {
                let before = atDevice1.count(flow: 7)
                let refused = try Sipp("refused-\(i)", host: rig.target, family: .v4, port: 5066, scenario: "device-replace-refused.xml",
                                       server: server, keys: keys.merging(["user": "alice", "domain": Self.domain, "rtp_port": "\(Self.rtpPort)"]) { a, _ in a },
                                       auth: auth, directory: dir)
                #expect(refused.wait(timeout: 10) == 0, "\(what): \(refused.log)\n\(refused.errors)")
                #expect(refused.received.contains { $0.hasPrefix("SIP/2.0 \(status) ") },
                        "\(what): answered \(refused.received)")
                try rig.wait(2, "media still at device 1 after: \(what)") { atDevice1.count(flow: 7) > before + 5 }
                let now = try api.sipCall(c.id)
                #expect(now.state == .confirmed && now.switches == 0, "\(what): \(now)")
                let anchorNow = try api.anchor(try #require(c.rtpAnchor))
                #expect(anchorNow.device.address == rig.tn.ipv4 && anchorNow.moves == 0, "\(what): \(anchorNow)")
            }
            // Replaces on a request other than INVITE.
            let before = atDevice1.count(flow: 7)
            let options = try Sipp("refused-options", host: rig.target, family: .v4, port: 5066, scenario: "options-replaces.xml",
                                   server: server, keys: ["replaces": good, "user": "alice", "domain": Self.domain], directory: dir)
            #expect(options.wait(timeout: 10) == 0, "OPTIONS with Replaces: \(options.log)\n\(options.errors)")
            try rig.wait(2, "media still at device 1 after OPTIONS with Replaces") { atDevice1.count(flow: 7) > before + 5 }
            #expect(try api.sipCall(c.id).switches == 0)

            let sent = toDevice.stop()
            let report = FlowReport(flow: 7, sent: sent, arrivals: atDevice1.stop())
            #expect(report.lost == 0 && report.duplicates == 0, "\(report)")

            // The remote hangs up (20 s after its ACK); a Replaces for the ended dialog is 603.
            #expect(remote.wait(timeout: 30) == 0, "remote: \(remote.log)\n\(remote.errors)")
            #expect(device1.wait(timeout: 5) == 0, "device 1: \(device1.log)\n\(device1.errors)")
            #expect(remote.sent.map { String($0.prefix { $0 != " " }) } == ["INVITE", "ACK", "BYE"], "\(remote.sent)")
            let late = try Sipp("refused-ended", host: rig.target, family: .v4, port: 5066, scenario: "device-replace-refused.xml",
                                server: server, keys: ["replaces": good, "gruu": gruu2, "user": "alice", "domain": Self.domain,
                                                       "rtp_port": "\(Self.rtpPort)"],
                                auth: ("alice", Self.password), directory: dir)
            #expect(late.wait(timeout: 10) == 0, "ended: \(late.log)\n\(late.errors)")
            #expect(late.received.contains { $0.hasPrefix("SIP/2.0 603") }, "ended: answered \(late.received)")
        }
    }
}
