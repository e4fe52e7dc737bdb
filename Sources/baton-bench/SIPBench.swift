import BatonAPI
import BatonLab
import BatonModel
import BatonNet
import Foundation

/// Part 6: seed 002 through batond's SIP server (docs/sip.md), sipp as every SIP peer, in the
/// transfer lab (cn the remote party, sa the agent, tn and target alice's two devices).
///
/// - Calls per second: sipp places calls (INVITE, 200, ACK, BYE on both legs; each call's RTP
///   and RTCP anchored in XDP, then ended) at a fixed rate; the figure is calls per second of
///   the agent's CPU time (utime + stime from /proc), i.e. what one core sustains, beside the
///   same for OPTIONS (one transaction, the cheapest request) measured the same way.
/// - Concurrent calls: that many calls held open at once, each with its two anchors.
/// - Switches: one call moved back and forth between the devices by INVITE/Replaces while
///   the remote's media runs at 1000 packets/s: the time from the server receiving the
///   Replaces to the first media packet at the new device (its kernel timestamp), beside a
///   SIP OPTIONS round trip to the same server and the media's own spacing (1 ms).
struct SIPBenchResult {
    /// Where the agent relayed the calls' media: "xdp" or "userspace" (--sip-media).
    var media = "xdp"
    var calls = 0, callRate = 0
    var completedCalls = 0
    var callSeconds: Double?
    var callCPUSeconds: Double?
    var optionsSent = 0, optionsCompleted = 0
    var optionsCPUSeconds: Double?
    var concurrentAsked = 0, concurrentReached = 0
    var anchorsAtPeak: Int?
    var switchesAsked = 0
    /// ms per switch: Replaces received → first media packet at the new device.
    var switchTimes: [Double] = []
    /// ms per switch, the server's own clock: Replaces received → anchor moved.
    var serverSwitchTimes: [Double] = []
    var mediaRate = 1000
    var mediaSent = 0, mediaLost = 0, mediaReordered = 0
    /// ms, SIP OPTIONS cn → agent → cn.
    var optionsRoundTrips: [Double] = []
    var failures: [String] = []
    /// The media phase: `mediaCalls` of the concurrent calls with RTP at 50 packets/s each way
    /// for `mediaSeconds`; packets sent and received in both directions, the agent's CPU and
    /// the whole machine's busy CPU over the phase.
    var mediaCalls = 0
    var mediaSeconds = 0.0
    var mediaLoadSent = 0, mediaLoadReceived = 0
    var mediaAgentCPUSeconds: Double?
    var mediaMachineCPUSeconds: Double?

    var callsPerCore: Double? { callCPUSeconds.flatMap { $0 > 0 ? Double(completedCalls) / $0 : nil } }
    var optionsPerCore: Double? { optionsCPUSeconds.flatMap { $0 > 0 ? Double(optionsCompleted) / $0 : nil } }
    /// Microseconds of CPU per relayed media packet: the agent's, and the whole machine's
    /// (senders, receivers and the stack included: the same in both modes).
    var agentMicrosecondsPerPacket: Double? { mediaAgentCPUSeconds.flatMap { mediaLoadReceived > 0 ? $0 * 1e6 / Double(mediaLoadReceived) : nil } }
    var machineMicrosecondsPerPacket: Double? { mediaMachineCPUSeconds.flatMap { mediaLoadReceived > 0 ? $0 * 1e6 / Double(mediaLoadReceived) : nil } }

    func printTable() {
        let rtt = medianOf(optionsRoundTrips)
        print("   media relayed in \(media == "xdp" ? "XDP (anchored sessions)" : "userspace (--sip-media userspace)"):")
        print("   baseline in the same run: OPTIONS round trip " + (rtt.map { fmt($0, 3) } ?? "n/a") + " ms (median of \(optionsRoundTrips.count)); "
              + (optionsPerCore.map { fmt($0, 0) } ?? "n/a") + " OPTIONS per agent CPU-second")
        let ratio = callsPerCore.flatMap { c in optionsPerCore.map { c / $0 } }
        print("   calls per agent CPU-second (one core): " + (callsPerCore.map { fmt($0, 0) } ?? "n/a")
              + " (" + (ratio.map { fmt($0, 3) } ?? "-") + "x OPTIONS); \(completedCalls) of \(calls) calls offered at \(callRate)/s completed"
              + (callSeconds.map { " in \(fmt($0, 1)) s" } ?? ""))
        print("   concurrent calls held: \(concurrentReached) of \(concurrentAsked)" + (anchorsAtPeak.map { " (\($0) anchored sessions)" } ?? ""))
        let agentUS: String = agentMicrosecondsPerPacket.map { fmt($0, 2) } ?? "n/a"
        let machineUS: String = machineMicrosecondsPerPacket.map { fmt($0, 2) } ?? "n/a"
        print("   media, \(mediaCalls) of them at 50 packets/s each way for \(fmt(mediaSeconds, 1)) s: \(mediaLoadReceived) of \(mediaLoadSent) packets relayed; agent CPU \(agentUS) µs per packet, whole machine \(machineUS) µs per packet")
        let p50 = percentile(switchTimes, 50), p99 = percentile(switchTimes, 99)
        print("   switch, INVITE/Replaces received → first media packet at the new device, \(switchTimes.count) of \(switchesAsked) switches: p50 "
              + (p50.map { fmt($0, 2) } ?? "n/a") + " ms, p99 " + (p99.map { fmt($0, 2) } ?? "n/a") + " ms ("
              + (p50.flatMap { p in rtt.map { fmt(p / $0, 1) } } ?? "-") + "x the OPTIONS round trip; media every \(fmt(1000 / Double(mediaRate), 1)) ms)")
        print("   of which in the server (Replaces received → media moved): p50 " + (percentile(serverSwitchTimes, 50).map { fmt($0, 2) } ?? "n/a")
              + " ms, p99 " + (percentile(serverSwitchTimes, 99).map { fmt($0, 2) } ?? "n/a") + " ms")
        print("   media across the switches: \(mediaSent) sent, \(mediaLost) lost, \(mediaReordered) reordered")
        for f in failures.prefix(5) { print("   failure: \(f)") }
    }

    func json() -> JSON {
        .object([
            ("media", .string(media)),
            ("calls", .int(Int64(calls))), ("callRate", .int(Int64(callRate))), ("completedCalls", .int(Int64(completedCalls))),
            ("callsPerCore", .num(callsPerCore, 0)), ("optionsPerCore", .num(optionsPerCore, 0)),
            ("callsOverOptions", .num(callsPerCore.flatMap { c in optionsPerCore.map { c / $0 } }, 3)),
            ("concurrentAsked", .int(Int64(concurrentAsked))), ("concurrentReached", .int(Int64(concurrentReached))),
            ("switches", .int(Int64(switchTimes.count))),
            ("switchMs", .object([("p50", .num(percentile(switchTimes, 50), 3)), ("p99", .num(percentile(switchTimes, 99), 3))])),
            ("serverSwitchMs", .object([("p50", .num(percentile(serverSwitchTimes, 50), 3)), ("p99", .num(percentile(serverSwitchTimes, 99), 3))])),
            ("optionsRoundTripMs", .num(medianOf(optionsRoundTrips), 3)),
            ("switchOverRoundTrip", .num(percentile(switchTimes, 50).flatMap { p in medianOf(optionsRoundTrips).map { p / $0 } }, 2)),
            ("mediaLost", .int(Int64(mediaLost))), ("mediaReordered", .int(Int64(mediaReordered))),
            ("mediaCalls", .int(Int64(mediaCalls))), ("mediaLoadSent", .int(Int64(mediaLoadSent))),
            ("mediaLoadReceived", .int(Int64(mediaLoadReceived))),
            ("agentMicrosecondsPerPacket", .num(agentMicrosecondsPerPacket, 3)),
            ("machineMicrosecondsPerPacket", .num(machineMicrosecondsPerPacket, 3)),
            ("failures", .array(failures.map { .string($0) })),
        ])
    }
}

/// Part 6 twice: the calls' media in XDP, then the same calls with it in userspace.
struct SIPBench {
    var xdp: SIPBenchResult
    var userspace: SIPBenchResult?
    /// Part 2's figures when it ran: calls at 50 packets/s each way one core relays.
    var anchoredCallsPerCore: Double?
    var relayCallsPerCore: Double?

    func printTable() {
        print("")
        print("6. SIP (seed 002): batond agent --sip-domain with sipp as every peer.")
        xdp.printTable()
        if let u = userspace { u.printTable() }
        if let u = userspace {
            let calls = xdp.callsPerCore.flatMap { x in u.callsPerCore.map { x / $0 } }
            let machine = u.machineMicrosecondsPerPacket.flatMap { us in xdp.machineMicrosecondsPerPacket.map { us / $0 } }
            // The relay alone: the userspace run's agent CPU per packet above the XDP run's (the
            // same calls held, the same SIP work; in XDP the agent does no per-packet work).
            let relay = u.agentMicrosecondsPerPacket.flatMap { us in xdp.agentMicrosecondsPerPacket.map { us - $0 } }
            // 50 packets/s each way: 100 relayed packets a second per call.
            let perCore = relay.flatMap { $0 > 0 ? 1e6 / ($0 * 100) : nil }
            let callsText: String = calls.map { fmt($0, 2) } ?? "-", machineText: String = machine.map { fmt($0, 2) } ?? "-"
            let relayText: String = relay.map { fmt($0, 2) } ?? "n/a", perCoreText: String = perCore.map { fmt($0, 0) } ?? "n/a"
            print("   XDP vs userspace, the same calls: calls set up per agent CPU-second \(callsText)x; whole machine CPU per relayed packet \(machineText)x less in XDP (senders and receivers included)")
            print("   the userspace relay alone: \(relayText) µs of agent CPU per packet (its run's agent CPU per packet less the XDP run's): one core holds \(perCoreText) calls at 50 packets/s each way")
        }
        if anchoredCallsPerCore != nil || relayCallsPerCore != nil {
            let r = anchoredCallsPerCore.flatMap { a in relayCallsPerCore.map { a / $0 } }
            print("   concurrent calls at 50 packets/s each way one core relays (part 2's Mpps): XDP anchor " + (anchoredCallsPerCore.map { fmt($0, 0) } ?? "n/a")
                  + ", userspace relay " + (relayCallsPerCore.map { fmt($0, 0) } ?? "n/a") + " (" + (r.map { fmt($0, 2) } ?? "-") + "x)")
        }
    }

    func json() -> JSON {
        .object([("xdp", xdp.json()), ("userspace", userspace.map { $0.json() } ?? .null),
                 ("anchoredCallsPerCore", .num(anchoredCallsPerCore, 0)), ("relayCallsPerCore", .num(relayCallsPerCore, 0))])
    }
}

private let domain = "example.com", password = "bench-password-1"
private let instances = ["urn:uuid:00000000-0000-4000-8000-0000000be001", "urn:uuid:00000000-0000-4000-8000-0000000be002"]
private let devicePorts: [UInt16] = [5062, 5064]

func runSIP(_ options: Options, media: String) throws -> SIPBenchResult {
    guard Sipp.available else { throw BrokenSetup("part 6 needs sipp (apt-get install sip-tester)") }
    guard let batond = LabDaemons.findBatond() else { throw BrokenSetup("batond not found next to baton-bench (make bench builds it)") }
    let lab = try Lab.transfer(.l2, correspondents: ["cn"])
    let teardown = SignalCleanup.shared.add(lab)
    defer { SignalCleanup.shared.run(teardown) }
    var daemonOptions = LabDaemons.Options()
    // sipp answers only MD5 challenges, the first it gets.
    daemonOptions.agentArguments = ["--sip-domain", domain, "--sip-digest", "MD5,SHA-256", "--sip-media", media]
    daemonOptions.logLevel = "warning"
    let daemons = try LabDaemons.start(lab, batond: batond, options: daemonOptions)
    defer { daemons.stop() }
    let api = Control(path: daemons.agent.control)
    _ = try api.addSIPUser(SIPUserRequest(username: "alice", password: password))
    let cn = lab["cn"], devices = [lab["tn"], lab["target"]]
    let server = Endpoint(address: lab["sa"].ipv4, port: 5060)
    let dir = daemons.directory
    var r = SIPBenchResult()
    r.media = media

    /// Device `d` registers alice: calls go to the device registered last.
    func register(_ d: Int) throws {
        let reg = try Sipp("register-\(d + 1)", host: devices[d], family: .v4, port: 5070, scenario: "register.xml", server: server,
                           keys: ["user": "alice", "domain": domain, "instance": instances[d], "contact_port": "\(devicePorts[d])",
                                  "expires": "3600"],
                           auth: ("alice", password), directory: dir)
        guard reg.wait(timeout: 15) == 0 else { throw BrokenSetup("sip: device \(d + 1) could not register: \(reg.log)") }
    }
    func ended() throws -> Int { try metric(api.metrics(), "baton_sip_calls_ended_total{reason=\"bye from remote\"}") }
    let agentPID = daemons.agent.pid

    // The baseline: OPTIONS round trips, then OPTIONS per CPU-second.
    r.optionsRoundTrips = try optionsRoundTrips(from: cn, to: server, count: options.quick ? 50 : 200)
    r.optionsSent = options.quick ? 2000 : 10_000
    let options0 = try metric(api.metrics(), "baton_sip_requests_total{method=\"OPTIONS\"}")
    let optionsCPU0 = try cpuSeconds(agentPID)
    let optionsLoad = try Sipp("options-load", host: cn, family: .v4, port: 5061, scenario: "options.xml", server: server,
                               directory: dir, timeout: 120, calls: r.optionsSent, rate: 1000, limit: 200, trace: false)
    let optionsStatus = optionsLoad.wait(timeout: 150)
    r.optionsCPUSeconds = try cpuSeconds(agentPID) - optionsCPU0
    r.optionsCompleted = try metric(api.metrics(), "baton_sip_requests_total{method=\"OPTIONS\"}") - options0
    if optionsStatus != 0 { r.failures.append("OPTIONS load: sipp exit \(optionsStatus): \(optionsLoad.errors.prefix(300))") }

    // Calls per CPU-second: device 1 answers every call; the remote places them at a fixed rate.
    try register(0)
    r.calls = options.quick ? 500 : 3000
    r.callRate = 300
    let uas = try Sipp("calls-device", host: devices[0], family: .v4, port: devicePorts[0], scenario: "device-answer.xml", server: server,
                       keys: ["rtp_port": "16000"], directory: dir, timeout: 300, calls: r.calls, trace: false)
    usleep(200_000)
    let ended0 = try ended(), cpu0 = try cpuSeconds(agentPID), t0 = now()
    let uac = try Sipp("calls-remote", host: cn, family: .v4, port: 5060, scenario: "remote-call.xml", server: server,
                       keys: ["callee": "alice@\(domain)", "rtp_port": "40000"], pause: 0, directory: dir, timeout: 300,
                       calls: r.calls, rate: r.callRate, limit: 300, trace: false)
    let uacStatus = uac.wait(timeout: 330)
    r.callSeconds = seconds(since: t0)
    r.callCPUSeconds = try cpuSeconds(agentPID) - cpu0
    r.completedCalls = try ended() - ended0
    if uacStatus != 0 { r.failures.append("call load: sipp exit \(uacStatus): \(uac.errors.prefix(300))") }
    uas.wait(timeout: 10)

    // Concurrent calls: placed at 200/s and each held until all are up and the media phase is over.
    r.concurrentAsked = options.quick ? 200 : 1000
    r.mediaSeconds = options.quick ? 2 : 5
    let hold = (r.concurrentAsked / 200 + 6 + Int(r.mediaSeconds)) * 1000
    let holder = try Sipp("concurrent-device", host: devices[0], family: .v4, port: devicePorts[0], scenario: "device-answer.xml",
                          server: server, keys: ["rtp_port": "16000"], directory: dir, timeout: 300, calls: r.concurrentAsked, trace: false)
    usleep(200_000)
    let caller = try Sipp("concurrent-remote", host: cn, family: .v4, port: 5060, scenario: "remote-call.xml", server: server,
                          keys: ["callee": "alice@\(domain)", "rtp_port": "40000"], pause: hold, directory: dir, timeout: 300,
                          calls: r.concurrentAsked, rate: 200, limit: r.concurrentAsked, trace: false)
    // Until all are up, leaving the media phase its time before the first calls end.
    let deadline = Date().addingTimeInterval(Double(hold) / 1000 - r.mediaSeconds - 3)
    while Date() < deadline {
        let up = try api.sipCalls().filter { $0.state == .confirmed }.count
        if up > r.concurrentReached {
            r.concurrentReached = up
            r.anchorsAtPeak = try metric(api.metrics(), "baton_anchors")
        }
        if up >= r.concurrentAsked { break }
        usleep(200_000)
    }
    try runMedia(&r, api: api, remote: cn, device: devices[0], agentPID: agentPID)
    let callerStatus = caller.wait(timeout: Double(hold) / 1000 + 60)
    if callerStatus != 0 { r.failures.append("concurrent calls: sipp exit \(callerStatus): \(caller.errors.prefix(300))") }
    holder.wait(timeout: 10)

    try runSwitches(&r, options, api: api, lab: lab, server: server, dir: dir, register: register)
    return r
}

/// RTP at 50 packets/s each way on up to 300 of the calls held (the remote's socket sends to
/// each call's anchor port, device 1's to each relay port; both count what comes back), for
/// `r.mediaSeconds`: what the relay costs the agent and the machine per packet. 300 calls keep
/// the senders and receivers (the same in both modes) well inside these 2-CPU machines.
private func runMedia(_ r: inout SIPBenchResult, api: Control, remote: LabHost, device: LabHost, agentPID: Int32) throws {
    let calls = try api.sipCalls().filter { $0.state == .confirmed }.prefix(300)
    r.mediaCalls = calls.count
    guard !calls.isEmpty else { return }
    let remoteSocket = try remote.udpSocket(.v4, port: 40000), deviceSocket = try device.udpSocket(.v4, port: 16000)
    let toDevices = calls.map { SocketAddress($0.anchor.address, port: $0.anchor.port) }
    let toRemote = calls.map { SocketAddress($0.anchor.address, port: UInt16($0.relayPort)) }
    let receivers = [RTPReceiver(socket: remoteSocket), RTPReceiver(socket: deviceSocket)]
    let cpu0 = try cpuSeconds(agentPID), busy0 = try machineBusySeconds()
    let senders = [RTPSender(socket: remoteSocket, to: toDevices, ssrc: 0x5e00_0000, firstSequence: 0, firstTimestamp: 0),
                   RTPSender(socket: deviceSocket, to: toRemote, ssrc: 0xde00_0000, firstSequence: 0, firstTimestamp: 0)]
    usleep(UInt32(r.mediaSeconds * 1e6))
    r.mediaLoadSent = senders.map { $0.stop() }.reduce(0, +)
    usleep(100_000)
    r.mediaAgentCPUSeconds = try cpuSeconds(agentPID) - cpu0
    r.mediaMachineCPUSeconds = try machineBusySeconds() - busy0
    r.mediaLoadReceived = receivers.map { $0.stop().count }.reduce(0, +)
}

/// The CPU time all CPUs spent busy (not idle, not waiting for I/O) since boot, seconds.
private func machineBusySeconds() throws -> Double {
    let stat = try String(contentsOfFile: "/proc/stat", encoding: .utf8)
    guard let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") else { throw BrokenSetup("unreadable /proc/stat") }
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let v = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
    guard v.count == 8 else { throw BrokenSetup("unreadable /proc/stat") }
    return (v.reduce(0, +) - v[3] - v[4]) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// One call, moved device 1 → 2 → 1 … by INVITE/Replaces, each device a fresh sipp per turn.
private func runSwitches(_ r: inout SIPBenchResult, _ options: Options, api: Control, lab: Lab, server: Endpoint, dir: String,
                         register: (Int) throws -> Void) throws {
    let cn = lab["cn"], devices = [lab["tn"], lab["target"]]
    r.switchesAsked = options.quick ? 20 : 100
    try register(1)
    try register(0)   // device 1 last: the call goes to it
    let first = try Sipp("switch-device-1", host: devices[0], family: .v4, port: devicePorts[0], scenario: "device-answer.xml",
                         server: server, keys: ["rtp_port": "16000"], directory: dir, timeout: 3600, trace: false)
    usleep(200_000)
    let remote = try Sipp("switch-remote", host: cn, family: .v4, port: 5060, scenario: "remote-call.xml", server: server,
                          keys: ["callee": "alice@\(domain)", "rtp_port": "40000"], pause: 3_600_000, directory: dir, timeout: 3600,
                          trace: false)
    var running = [first, remote]
    defer { for s in running { s.stop() } }
    var call: SIPCall?
    for _ in 0..<100 where call == nil {
        call = try api.sipCalls().first { $0.state == .confirmed }
        if call == nil { usleep(50_000) }
    }
    guard let call else {
        let calls = (try? api.sipCalls().map { "\($0.id) \($0.state.rawValue) \($0.reason ?? "")" }.suffix(3)) ?? []
        throw BrokenSetup("sip: the call to switch was not answered: remote: \(remote.log.suffix(400)) \(remote.errors.suffix(400)); device: \(first.log.suffix(400)); calls: \(calls)")
    }

    let remoteSocket = try cn.udpSocket(.v4, port: 40000)
    let receivers = try devices.enumerated().map { i, h in SequenceReceiver(host: "device \(i + 1)", socket: try h.udpSocket(.v4, port: 16000)) }
    let wallToMonotonic = Double(now()) - Date().timeIntervalSince1970 * 1e9
    let media = SequenceSender(socket: remoteSocket, to: SocketAddress(call.anchor.address, port: call.anchor.port), flow: 9,
                               perSecond: r.mediaRate)
    usleep(300_000)
    var owner = first
    for i in 0..<r.switchesAsked {
        let d = i % 2 == 0 ? 1 : 0
        guard let leg = try api.sipCall(call.id).legs.first(where: { $0.role == .device }) else { break }
        let replaces = "\(leg.callID);to-tag=\(leg.localTag);from-tag=\(leg.remoteTag ?? "")"
        let next = try Sipp("switch-\(i)", host: devices[d], family: .v4, port: devicePorts[d], scenario: "device-replace.xml", server: server,
                            keys: ["user": "alice", "domain": domain, "gruu": "sip:alice@\(domain);gr=\(instances[d])", "replaces": replaces,
                                   "rtp_port": "16000"],
                            auth: ("alice", password), directory: dir, timeout: 3600, trace: false)
        running.append(next)
        var switched = false
        for _ in 0..<2500 {
            if try api.sipCall(call.id).switches == i + 1 { switched = true; break }
            usleep(2_000)
        }
        guard switched else {
            r.failures.append("switch \(i + 1) did not happen: \(next.errors.prefix(300))")
            break
        }
        // The old device got its BYE and ends.
        if owner.wait(timeout: 5) != 0 { r.failures.append("switch \(i + 1): the old device's sipp failed: \(owner.errors.prefix(300))") }
        owner = next
        usleep(20_000)
    }
    r.mediaSent = media.stop()
    let arrivals = receivers.flatMap { $0.stop() }
    let report = FlowReport(flow: 9, sent: r.mediaSent, arrivals: arrivals)
    (r.mediaLost, r.mediaReordered) = (report.lost, report.reordered)

    let events = try api.sipCall(call.id).timeline
    let received = events.filter { $0.event == "replaces received" }.map(\.at)
    let moved = events.filter { $0.event == "media moved" }.map(\.at)
    for (i, at) in received.enumerated() {
        if i < moved.count { r.serverSwitchTimes.append((moved[i] - at) * 1000) }
        let host = i % 2 == 0 ? "device 2" : "device 1"
        let from = UInt64(max(0, at * 1e9 + wallToMonotonic))
        if let first = arrivals.lazy.filter({ $0.host == host && $0.time >= from }).map(\.time).min() {
            r.switchTimes.append(Double(first - from) / 1e6)
        }
    }
}

/// `count` SIP OPTIONS from `host` to `server`, one at a time; each one's round trip (ms).
private func optionsRoundTrips(from host: LabHost, to server: Endpoint, count: Int) throws -> [Double] {
    let socket = try host.udpSocket(.v4, port: 5090)
    defer { socket.close() }
    var out: [Double] = []
    for i in 0..<count {
        let message = "OPTIONS sip:\(server.address):\(server.port) SIP/2.0\r\n"
            + "Via: SIP/2.0/UDP \(host.ipv4):5090;branch=z9hG4bK-bench-\(i)\r\n"
            + "Max-Forwards: 70\r\nFrom: <sip:bench@\(host.ipv4)>;tag=bench\(i)\r\nTo: <sip:\(server.address)>\r\n"
            + "Call-ID: bench-options-\(i)@\(host.ipv4)\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        let t0 = now()
        try socket.send(Array(message.utf8), to: SocketAddress(server.address, port: server.port))
        guard let answer = try socket.receive(timeout: .seconds(1)) else { continue }
        let t1 = now()
        if String(decoding: answer.payload.prefix(12), as: UTF8.self) == "SIP/2.0 200 " { out.append(Double(t1 - t0) / 1e6) }
    }
    return out
}

/// utime + stime of process `pid`, seconds.
private func cpuSeconds(_ pid: Int32) throws -> Double {
    let text = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    guard let close = text.lastIndex(of: ")") else { throw BrokenSetup("unreadable /proc/\(pid)/stat") }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
        throw BrokenSetup("unreadable /proc/\(pid)/stat")
    }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A Prometheus sample's value by its full name with labels, 0 when absent.
private func metric(_ text: String, _ name: String) -> Int {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Int(Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)) ?? 0)
    }
    return 0
}
