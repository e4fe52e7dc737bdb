import BatonAPI
import BatonLab
import BatonModel
import BatonNet
import Foundation

// The SIP scenario (`baton-demo --scenario sip`, `make demo DEMO=sip`; docs/sip.md): batond's
// SIP server on sa serves example.com. alice registers two devices (sipp on tn and target);
// carol, the remote party (sipp on cn), calls alice; device 1 answers and media flows at 50
// packets/s each way through the call's anchor. Device 2 takes the call over with an INVITE
// carrying Replaces: the server checks it is alice on another device, answers it, moves the
// anchor on its ACK and sends device 1 its BYE. carol's side sees nothing but its media.

private let domain = "example.com", password = "wonderland-42"
private let instances = ["urn:uuid:00000000-0000-4000-8000-00000000d001", "urn:uuid:00000000-0000-4000-8000-00000000d002"]
private let devicePorts: [UInt16] = [5062, 5064]
private let deviceRTP: UInt16 = 16000, remoteRTP: UInt16 = 40000

func sipDemo(_ settings: Settings) throws -> Bool {
    guard Sipp.available else { throw DemoFailure(description: "the SIP scenario needs sipp: apt-get install sip-tester (make setup)") }
    print("building the lab: cn (carol, the remote party), sa (batond agent: SIP server for \(domain) and the anchor), tn (alice's device 1), target (alice's device 2) …")
    let lab = try Lab.transfer(.l2, correspondents: ["cn"])
    let teardown = SignalCleanup.shared.add(lab)
    defer {
        SignalCleanup.shared.run(teardown)
        print("lab \(lab.prefix) torn down")
    }
    var options = LabDaemons.Options()
    // sipp answers only MD5 digest challenges, and the first one it gets.
    options.agentArguments = ["--sip-domain", domain, "--sip-digest", "MD5,SHA-256"]
    let daemons = try LabDaemons.start(lab, batond: settings.batond, options: options)
    var keepLogs = true
    defer { daemons.stop(keepLogs: keepLogs) }
    var peers: [Sipp] = []
    defer { for p in peers { p.stop() } }
    let api = Control(path: daemons.agent.control)
    let cn = lab["cn"], sa = lab["sa"], devices = [lab["tn"], lab["target"]]
    let server = Endpoint(address: sa.ipv4, port: 5060)
    let dir = daemons.directory
    _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: password))
    print("batond agent on sa: SIP at \(server); user alice added (batonctl sip user add alice)")

    func register(_ d: Int) throws {
        let reg = try Sipp("register-\(d + 1)", host: devices[d], family: .v4, port: 5070, scenario: "register.xml", server: server,
                           keys: ["user": "alice", "domain": domain, "instance": instances[d], "contact_port": "\(devicePorts[d])",
                                  "expires": "3600"],
                           auth: ("alice", password), directory: dir)
        guard reg.wait(timeout: 15) == 0 else { throw DemoFailure(description: "device \(d + 1) did not register: \(reg.log)") }
        let binding = try api.sipRegistrations().first { $0.instance == instances[d] }
        print("device \(d + 1) (\(devices[d].name)) registered alice: GRUU \(binding?.publicGRUU ?? "?")")
    }
    try register(0)
    let device1 = try Sipp("device-1", host: devices[0], family: .v4, port: devicePorts[0], scenario: "device-answer.xml", server: server,
                           keys: ["rtp_port": "\(deviceRTP)"], directory: dir, timeout: 60)
    peers.append(device1)
    usleep(300_000)
    // carol holds the call 7 s after her ACK, then hangs up.
    let remote = try Sipp("remote", host: cn, family: .v4, port: 5060, scenario: "remote-call.xml", server: server,
                          keys: ["callee": "alice@\(domain)", "rtp_port": "\(remoteRTP)"], pause: 7000, directory: dir, timeout: 60)
    peers.append(remote)
    var found: SIPCall?
    for _ in 0..<50 where found == nil {
        found = try api.sipCalls().first { $0.state == .confirmed }
        if found == nil { usleep(100_000) }
    }
    guard let call = found else { throw DemoFailure(description: "the call was not answered: \(remote.log)") }
    let anchor = SocketAddress(call.anchor.address, port: call.anchor.port), relay = SocketAddress(call.anchor.address, port: UInt16(call.relayPort))
    print("carol (cn) called alice; device 1 answered: call \(call.id)")
    print("  carol's media ↔ \(call.anchor) (the anchor) | relay port \(call.relayPort) ↔ device 1's media")

    // Media at 50 packets/s each way: carol's stream sequence-numbered (every packet counted
    // at the devices), the devices' RTP each with its own SSRC and numbers.
    let remoteSocket = try cn.udpSocket(.v4, port: remoteRTP)
    let deviceSockets = try devices.map { try $0.udpSocket(.v4, port: deviceRTP) }
    let atRemote = RTPReceiver(socket: remoteSocket)
    let atDevice = deviceSockets.enumerated().map { i, s in SequenceReceiver(host: "device \(i + 1)", socket: s) }
    let wallToMonotonic = Double(monotonicNanoseconds()) - Date().timeIntervalSince1970 * 1e9
    let t0 = monotonicNanoseconds()
    let toDevice = SequenceSender(socket: remoteSocket, to: anchor, flow: 7, perSecond: 50)
    var fromDevice = RTPSender(socket: deviceSockets[0], to: relay, ssrc: 0xd1d1_d1d1, firstSequence: 65_500, firstTimestamp: 1000)
    var sentByDevices = 0
    var steps: [Timeline.Step] = [.init(time: t0, label: "media starts")]

    var step = "talking on device 1"
    var printed = 0
    print("")
    print("   t(s)  step                     carol sent  at device 1  at device 2  RTP at carol")
    func show() throws {
        print(String(format: "  %5.2f  %@  %10d  %11d  %11d  %12d", seconds(monotonicNanoseconds(), from: t0),
                     step.padding(toLength: 23, withPad: " ", startingAt: 0), toDevice.sent, atDevice[0].count(flow: 7),
                     atDevice[1].count(flow: 7), atRemote.count))
        // The server's own account of the call, as it happens.
        let timeline = try api.sipCall(call.id).timeline
        for e in timeline.dropFirst(printed) {
            print("         server: \(e.event)")
        }
        printed = max(printed, timeline.count)
    }
    func tick(_ n: Int) throws { for _ in 0..<n { usleep(250_000); try show() } }

    try tick(6)
    step = "device 2 comes in"
    try register(1)
    let leg = try api.sipCall(call.id).legs.first { $0.role == .device }
    let replaces = "\(call.legs.first { $0.role == .device }!.callID);to-tag=\(leg?.localTag ?? "");from-tag=\(leg?.remoteTag ?? "")"
    print("         device 2 sends INVITE sip:alice@\(domain) with Replaces: \(replaces)")
    steps.append(.init(time: monotonicNanoseconds(), label: "device 2: INVITE/Replaces (401, then with digest)"))
    let device2 = try Sipp("device-2", host: devices[1], family: .v4, port: devicePorts[1], scenario: "device-replace.xml", server: server,
                           keys: ["user": "alice", "domain": domain, "gruu": "sip:alice@\(domain);gr=\(instances[1])", "replaces": replaces,
                                  "rtp_port": "\(deviceRTP)"],
                           auth: ("alice", password), directory: dir)
    peers.append(device2)
    for _ in 0..<50 {
        if try api.sipCall(call.id).switches == 1 { break }
        usleep(20_000)
    }
    guard try api.sipCall(call.id).switches == 1 else { throw DemoFailure(description: "the switch did not happen: \(device2.log)") }
    // Device 2 talks from now on; device 1 got its BYE.
    sentByDevices += fromDevice.stop()
    fromDevice = RTPSender(socket: deviceSockets[1], to: relay, ssrc: 0xd2d2_d2d2, firstSequence: 100, firstTimestamp: 777_000)
    step = "talking on device 2"
    try show()
    try tick(8)
    sentByDevices += fromDevice.stop()
    let sent = toDevice.stop()
    let stopped = monotonicNanoseconds()
    let arrivals = atDevice.flatMap { $0.stop() }
    let heard = RTPReceiver.Report(atRemote.stop())
    print("         media stopped; carol hangs up 7 s after her ACK …")
    let remoteStatus = remote.wait(timeout: 15)
    let device1Status = device1.wait(timeout: 5), device2Status = device2.wait(timeout: 5)

    let final = try api.sipCall(call.id)
    let events = final.timeline
    func mono(_ unix: Double) -> UInt64 { UInt64(max(0, unix * 1e9 + wallToMonotonic)) }
    let received = events.first { $0.event == "replaces received" }
    let firstAtDevice2 = arrivals.filter { $0.host == "device 2" }.map(\.time).min()
    // The switch takes milliseconds: one mark for it, its steps in the label.
    if let r = received, let moved = events.first(where: { $0.event == "media moved" }) {
        let ms = { (name: String) in events.first { $0.event == name }.map { String(format: "%.1f", ($0.at - r.at) * 1000) } ?? "?" }
        steps.append(.init(time: mono(moved.at), label: "switch: 200 +\(ms("200 sent to the new device")), ACK +\(ms("ack from the new device")), media moved +\(ms("media moved")) ms"))
    }
    steps.append(.init(time: stopped, label: "media stops"))
    let report = FlowReport(flow: 7, sent: sent, arrivals: arrivals)

    print("")
    print("the switch, as the server saw it (ms after the INVITE with Replaces arrived)")
    // The server's events and, from the devices' side, the first packet relayed to device 2.
    var lines = events.map { ($0.at, $0.event) }
    if let f = firstAtDevice2 {
        lines.append(((Double(f) - wallToMonotonic) / 1e9, "first packet of carol's media at device 2 (device 2's clock)"))
    }
    for (at, event) in lines.sorted(by: { $0.0 < $1.0 }) {
        let offset = received.map { String(format: "%+9.2f", (at - $0.at) * 1000) } ?? "        ?"
        print("  \(offset)  \(event)")
    }
    print("")
    print("summary")
    print("  carol → alice: sent \(report.sent), received \(report.received) (device 1 \(report.perHost["device 1"] ?? 0), device 2 \(report.perHost["device 2"] ?? 0)), lost \(report.lost), reordered \(report.reordered)")
    print("  alice → carol: \(heard.packets) of \(sentByDevices) RTP packets, from \(heard.sources.sorted().joined(separator: ", ")); SSRC \(heard.ssrcs.map { String(format: "%08x", $0) }.sorted().joined(separator: ", ")); \(heard.sequenceBreaks) sequence break(s)")
    let trace = remote.sent.map { String($0.prefix { $0 != " " }) }
    let requestsToCarol = remote.received.filter { !$0.hasPrefix("SIP/2.0 ") }
    print("  carol's SIP: sent \(trace.joined(separator: ", ")); requests received: \(requestsToCarol.isEmpty ? "none" : requestsToCarol.joined(separator: ", "))")
    let ok2 = device2.time(of: "SIP/2.0 200", "received"), bye1 = device1.time(of: "BYE", "received")
    if let ok2, let bye1 {
        print(String(format: "  device 2's 200 came %.2f ms before device 1's BYE", (bye1 - ok2) * 1000))
    }

    let picture = Timeline(start: t0, end: stopped + 200_000_000, arrivals: arrivals, steps: steps,
                           title: "baton-demo: carol's call moved from alice's device 1 to device 2 by INVITE/Replaces (50 packets/s)",
                           bucketMilliseconds: 100)
    try picture.svg().write(toFile: settings.output, atomically: true, encoding: .utf8)
    print("  timeline: \(settings.output)")

    let ok = report.lost == 0 && report.reordered == 0 && (report.perHost["device 2"] ?? 0) > 0
        && heard.packets == sentByDevices && heard.ssrcs.count == 1 && heard.sources.count == 1 && heard.sequenceBreaks == 0
        && trace == ["INVITE", "ACK", "BYE"] && requestsToCarol.isEmpty && final.switches == 1
        && remoteStatus == 0 && device1Status == 0 && device2Status == 0 && (ok2 ?? .infinity) <= (bye1 ?? 0)
    print(ok ? "OK: the call moved to alice's other device; carol saw one address, one RTP stream and no request, nothing lost"
             : "FAILED: see the figures above")
    keepLogs = !ok
    if !ok { print("daemon and sipp logs: \(dir)") }
    return ok
}
