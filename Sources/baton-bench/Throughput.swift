import BatonBPF
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet

/// The four ways dut can send the flow back, in the order each round runs them.
enum Path: String, CaseIterable {
    case bare, steered, kernel, relay, anchored, switched

    var title: String {
        switch self {
        case .bare: return "bare MAC swap (baton_macswap, XDP_TX)"
        case .steered: return "baton_steer, exact rule L2, XDP_TX"
        case .kernel: return "kernel forwarding (XDP_PASS, ip_forward)"
        case .relay: return "userspace UDP relay (recvmmsg/sendmmsg)"
        case .anchored: return "baton_steer, relay rule (anchored session)"
        case .switched: return "baton_steer, L2 rule redirected (switch mode)"
        }
    }
}

/// One measured window of one path.
struct Window {
    var generated: UInt64
    var counted: UInt64
    var seconds: Double
    var mpps: Double { Double(counted) / seconds / 1e6 }
    var offeredMpps: Double { Double(generated) / seconds / 1e6 }
}

struct PathResult {
    var windows: [Window] = []
    var unavailable: String?
    /// dut's SNMP counters (and the data plane's statistics for `steered`), summed over windows.
    var counters: [String: Int64] = [:]
    var mpps: Double? { unavailable == nil ? medianOf(windows.map(\.mpps)) : nil }
    var offeredMpps: Double? { unavailable == nil ? medianOf(windows.map(\.offeredMpps)) : nil }
    var generated: UInt64 { windows.reduce(0) { $0 + $1.generated } }
    var counted: UInt64 { windows.reduce(0) { $0 + $1.counted } }
}

struct ThroughputResult {
    var rounds: Int
    var window: Double
    var rules: Int
    var paths: [Path: PathResult] = [:]
    /// Per-round ratios, steered against each of the others.
    var ratios: [Path: [Double]] = [:]
    /// Per-round ratios of the anchored session's relay (and switch mode's redirect) against bare
    /// and the userspace relay.
    var anchoredRatios: [Path: [Double]] = [:]
    var switchedRatios: [Path: [Double]] = [:]
    var labPrefix = ""
    var notes: [String] = []
    /// Many flows (baton_gen): per flow count, bare and steered Mpps per round, and the same
    /// rules as anchored sessions' relays and as switch mode's redirects.
    var flows: [FlowResult] = []

    func mpps(_ p: Path) -> Double? { paths[p]?.mpps }
    func ratio(against p: Path) -> Double? {
        guard mpps(.steered) != nil, mpps(p) != nil else { return nil }
        return medianOf(ratios[p] ?? [])
    }

    func anchoredRatio(against p: Path) -> Double? {
        guard mpps(.anchored) != nil, mpps(p) != nil else { return nil }
        return medianOf(anchoredRatios[p] ?? [])
    }

    func switchedRatio(against p: Path) -> Double? {
        guard mpps(.switched) != nil, mpps(p) != nil else { return nil }
        return medianOf(switchedRatios[p] ?? [])
    }
}

/// One many-flows count: Mpps per round of each path measured.
struct FlowResult {
    var count: Int
    var bare: [Double] = []
    var steered: [Double] = []
    /// baton_floor over a table of `count` slots: 16 bytes of per-flow state, no more.
    var floor: [Double] = []
    /// The same flows' rules re-pointed: `.anchored` (relays), `.switched` (redirects).
    var others: [Path: [Double]] = [:]

    /// Medians of per-round ratios.
    func ratio(_ p: Path) -> Double? { medianRatio(others[p] ?? [], bare) }
    var steeredOverBare: Double? { medianRatio(steered, bare) }
    var floorOverBare: Double? { medianRatio(floor, bare) }
    var steeredOverFloor: Double? { medianRatio(steered, floor) }
}

/// dut's SNMP counters the report keeps.
let snmpKeys = ["Ip.ForwDatagrams", "Ip.InHdrErrors", "Ip.InAddrErrors", "Ip.InDiscards", "Ip.OutDiscards",
                "Udp.InDatagrams", "Udp.InErrors", "Udp.InCsumErrors", "Udp.RcvbufErrors", "Udp.MemErrors", "Udp.NoPorts",
                "Icmp.OutMsgs"]

/// Part 2. `dp` holds the full rule table; the flow's rule is rewritten here
/// to send the frames back to gen.
func runThroughput(_ o: Options, tools: ToolPrograms, dp: DataPlane, rules: Int, lab: Lab,
                   hold: DispatcherHold) throws -> ThroughputResult {
    var result = ThroughputResult(rounds: o.throughputRounds, window: o.window, rules: rules)
    result.labPrefix = lab.prefix
    let gen = lab["gen"], dut = lab["dut"]
    let genMAC = gen.mac, dutMAC = dut.mac
    let genIP = gen.ipv4, dutIP = dut.ipv4
    // The kernel path's next hop: a third address on the link, with a static
    // neighbour entry. Its MAC is dut's own, not gen's: the generator reuses
    // its pages with what the last path wrote into them, and a frame the
    // kernel forwarded to gen's MAC would come round again addressed to gen,
    // which dut's stack drops as not for this host. gen's counter takes any
    // MAC, and forwarding costs the same whatever the MAC.
    let hop = gen.primary.ipv4Network.address(at: 3)!

    // No IPv6 chatter (RS, MLD) across the counted link; gen's stack sends nothing.
    for h in [gen, dut] {
        try h.setSysctl("net.ipv6.conf.eth0.disable_ipv6", 1)
    }
    // dut: a router for the kernel path, a host for the relay. No redirects
    // (the route leaves by the interface the frame came in on), no reverse-path filter.
    for (k, v) in [("net.ipv4.ip_forward", 1), ("net.ipv4.conf.all.rp_filter", 0),
                   ("net.ipv4.conf.default.rp_filter", 0), ("net.ipv4.conf.eth0.rp_filter", 0),
                   ("net.ipv4.conf.all.send_redirects", 0), ("net.ipv4.conf.eth0.send_redirects", 0)] {
        try dut.setSysctl(k, v)
    }
    // gen answers no ARP (baton_count drops everything): static neighbours only.
    try dut.addNeighbour(hop, mac: dut.mac)
    try dut.addNeighbour(genIP, mac: gen.mac)
    try dut.addRoute(IPPrefix(World.takenOver, length: 32)!, via: hop)
    for h in [gen, dut] {
        guard try !Ethtool.txChecksum(interface: "eth0", in: h.namespace) else {
            throw BrokenSetup("\(h.name): TX checksumming is still on")
        }
    }

    // The data plane: the flow's rule and the takeover send it back to gen.
    try dp.setTakeover(World.takeover(defaultTo: World.tnMAC, from: dutMAC))
    try dp.setRule(SessionRule(match: World.flow, forward: World.l2(to: genMAC, from: dutMAC)))

    let flowFrame = World.flowFrame(dstMAC: dutMAC, srcMAC: genMAC)
    // The anchored path: two relay rules that rewrite each frame into the other's flow
    // (S:40002 -> X:5004 becomes A:30000 -> X:5006, and back), so that a page the generator
    // sends again still hits a rule; every pass rewrites addresses, ports, TTL and both
    // checksums, as a relay toward a device does.
    let anchoredFrame = World.frame(dstMAC: dutMAC, srcMAC: genMAC, src: World.correspondent, dst: World.takenOver,
                                    sport: 40002, dport: World.flowDestinationPort)
    // Switch mode's path: an L2 rule whose egress is an interface, so XDP_REDIRECT through the
    // devmap (here back out of dut's eth0: the redirect's cost, not a second veth's). The devmap
    // entry is resolved in dut's namespace.
    let dutIfindex = UInt32(dut.ifindex)
    let switchedFrame = World.frame(dstMAC: dutMAC, srcMAC: genMAC, src: World.correspondent, dst: World.takenOver,
                                    sport: 40003, dport: World.flowDestinationPort)
    try dut.run {
        try dp.setRule(SessionRule(match: SessionMatch(proto: .udp, source: World.correspondent, sourcePort: 40003,
                                                       destination: World.takenOver, destinationPort: World.flowDestinationPort),
                                   forward: .l2(to: genMAC, from: dutMAC, ifindex: dutIfindex)))
    }
    for (from, fromPort, to, toPort) in [(World.correspondent, UInt16(40002), World.agent, UInt16(30000)),
                                         (World.agent, 30000, World.correspondent, 40002)] {
        let dport = from == World.correspondent ? World.flowDestinationPort : World.flowDestinationPort + 2
        let next = from == World.correspondent ? World.flowDestinationPort + 2 : World.flowDestinationPort
        try dp.setRule(SessionRule(match: SessionMatch(proto: .udp, source: from, sourcePort: fromPort, destination: World.takenOver,
                                                       destinationPort: dport),
                                   forward: .relay(.init(source: to, sourcePort: toPort, destination: World.takenOver, destinationPort: next),
                                                   nextHop: genMAC, sourceMAC: dutMAC)))
    }
    let relayPort: UInt16 = 7000
    let relayFrame = World.frame(dstMAC: dutMAC, srcMAC: genMAC, src: genIP,
                                 dst: dutIP, sport: 40000, dport: relayPort)

    // gen: the counter on its end of the pair.
    let counterLink = try gen.run { try XDPLink.attach(tools.count, ifindex: UInt32(gen.ifindex), mode: .native) }
    defer { try? counterLink.detach() }

    // The generator stays in the XDP dispatcher (see DispatcherHold): else
    // every live-frames call adds and removes it, ~20 ms of RCU waits each.
    try hold.hold([tools.tx] + (o.flows.isEmpty ? [] : [tools.gen]))

    let relay = try Relay(in: dut.namespace, listen: SocketAddress(dutIP, port: relayPort),
                          destination: SocketAddress(genIP, port: 9))
    if !relay.batched { result.notes.append("recvmmsg/sendmmsg not found: the relay uses recv/send") }
    relay.start()
    var relayStopped = false
    defer { if !relayStopped { _ = relay.stop() } }

    var dutLink: XDPLink?
    defer { try? dutLink?.detach() }
    func attach(_ p: BPFProgram) throws {
        if let l = dutLink { try l.detach() }
        dutLink = nil
        dutLink = try dut.run { try XDPLink.attach(p, ifindex: UInt32(dut.ifindex), mode: .native) }
    }

    let genIfindex = UInt32(gen.ifindex)
    // Frames per live-frames call. Each call makes a fresh page pool; within
    // a call the pool's pages are reused with whatever the last path wrote
    // into them, and the kernel path decrements the TTL each time it forwards
    // one: 8192 frames in batches of 64 reuse a page at most 128 times, so
    // the TTL (255) never runs out. The per-call cost (~45 us) is ~2% here.
    let chunk = 8192
    let batch: UInt32 = 64
    /// Generates `frame` for `duration` seconds on gen; the counter is read
    /// right before the first and right after the last batch.
    func generate(_ frame: [UInt8], for duration: Double, with generator: BPFProgram? = nil) throws -> Window {
        let generator = generator ?? tools.tx
        return try gen.run {
            // One CPU for the generator and the veth processing it drives,
            // the same in every round: the scheduler moving it is noise.
            pinCurrentThread(toCPU: possibleCPUs() - 1)
            var generated: UInt64 = 0
            let c0 = try tools.counted()
            let t0 = now()
            repeat {
                _ = try generator.sendLiveFrames(frame, count: chunk, ingressIfindex: genIfindex, batchSize: batch)
                generated += UInt64(chunk)
            } while seconds(since: t0) < duration
            let c1 = try tools.counted()
            let s = seconds(since: t0)
            return Window(generated: generated, counted: c1 - c0, seconds: s)
        }
    }

    func program(_ p: Path) -> BPFProgram {
        switch p {
        case .bare: return tools.macswap
        case .steered, .anchored, .switched: return dp.steerProgram
        case .kernel, .relay: return tools.pass
        }
    }

    for p in o.paths { result.paths[p] = PathResult() }
    for round in 1...o.throughputRounds {
        var roundMpps: [Path: Double] = [:]
        for p in o.paths where result.paths[p]!.unavailable == nil {
            do {
                try attach(program(p))
            } catch {
                result.paths[p]!.unavailable = "cannot attach \(program(p).name) to dut: \(error)"
                Log.info("throughput: \(p.rawValue): \(result.paths[p]!.unavailable!)")
                continue
            }
            let frame = p == .relay ? relayFrame : p == .anchored ? anchoredFrame : p == .switched ? switchedFrame : flowFrame
            _ = try generate(frame, for: o.warmup)
            let snmp0 = try dut.snmpCounters()
            let usesSteer = p == .steered || p == .anchored || p == .switched
            let stats0 = usesSteer ? try dp.stats() : [:]
            let w = try generate(frame, for: o.window)
            let snmp1 = try dut.snmpCounters()
            for k in snmpKeys {
                result.paths[p]!.counters[k, default: 0] += (snmp1[k] ?? 0) - (snmp0[k] ?? 0)
            }
            // InErrors also counts overload drops (RcvbufErrors: the socket's
            // buffer is full; MemErrors: UDP memory limits) and checksum errors;
            // what is left would be a real receive error.
            func delta(_ k: String) -> Int64 { (snmp1[k] ?? 0) - (snmp0[k] ?? 0) }
            result.paths[p]!.counters["Udp.InErrors-other", default: 0] +=
                delta("Udp.InErrors") - delta("Udp.RcvbufErrors") - delta("Udp.MemErrors") - delta("Udp.InCsumErrors")
            if usesSteer {
                let stats1 = try dp.stats()
                for r in StatReason.allCases {
                    let d = Int64(stats1[r]!.packets) - Int64(stats0[r]!.packets)
                    if d != 0 { result.paths[p]!.counters["steer.\(r)", default: 0] += d }
                }
            }
            result.paths[p]!.windows.append(w)
            roundMpps[p] = w.mpps
            Log.detail("throughput round \(round) \(p.rawValue): \(fmt(w.mpps, 3)) Mpps counted, "
                       + "\(fmt(w.offeredMpps, 3)) Mpps generated, \(w.counted)/\(w.generated) in \(fmt(w.seconds, 2)) s")
        }
        if let s = roundMpps[.steered] {
            for p in [Path.bare, .kernel, .relay] {
                if let b = roundMpps[p], b > 0 { result.ratios[p, default: []].append(s / b) }
            }
        }
        for p in [Path.bare, .relay] {
            guard let b = roundMpps[p], b > 0 else { continue }
            if let a = roundMpps[.anchored] { result.anchoredRatios[p, default: []].append(a / b) }
            if let s = roundMpps[.switched] { result.switchedRatios[p, default: []].append(s / b) }
        }
        Log.info("throughput round \(round)/\(o.throughputRounds): "
                 + o.paths.map { "\($0.rawValue) \(roundMpps[$0].map { fmt($0, 2) } ?? "-")" }.joined(separator: ", ")
                 + " Mpps")
    }
    // Many flows: the generator cycles through `count` of the filler rules' flows, each
    // frame the next one (baton_gen), for bare, the floor and steered in turn; the same frame template
    // for all, so the ratios are the data plane's.
    let fillers = rules - 1
    for count in o.flows {
        let n = min(count, fillers)
        if n < count { result.notes.append("\(count) flows asked, \(n) filler rules there: \(n) flows") }
        try tools.genFlows.update(0, UInt64(n))
        try tools.setFloorSpan(n)
        var entry = FlowResult(count: n)
        let template = World.frame(dstMAC: dutMAC, srcMAC: genMAC, src: IPAddress.v4(0x6440_0000), dst: World.takenOver,
                                   sport: 10_000, dport: World.flowDestinationPort)
        for round in 1...o.throughputRounds {
            // nil: the floor (not a path of its own: with one flow it is the bare path).
            for p in [Path.bare, nil, .steered] {
                try attach(p.map(program) ?? tools.floor)
                _ = try generate(template, for: o.warmup, with: tools.gen)
                let hits0 = p == .steered ? try dp.stats()[.ruleHit]!.packets : 0
                let w = try generate(template, for: o.window, with: tools.gen)
                switch p {
                case .bare: entry.bare.append(w.mpps)
                case nil: entry.floor.append(w.mpps)
                default: entry.steered.append(w.mpps)
                }
                // Every steered frame must have been a rule hit (a miss would be the default's).
                if p == .steered, try dp.stats()[.ruleHit]!.packets - hits0 < w.counted {
                    result.notes.append("\(n) flows, round \(round): fewer rule hits than frames back")
                }
            }
            Log.detail("throughput \(n) flows, round \(round): bare \(fmt(entry.bare.last!, 2)), floor \(fmt(entry.floor.last!, 2)), "
                       + "steered \(fmt(entry.steered.last!, 2)) Mpps")
        }
        // The same flows as anchored sessions' relays and as switch mode's redirects: the n
        // filler rules re-pointed in place (one map update each), measured, and put back.
        let variants: [(Path, Forwarding)] = [(.anchored, World.relay(to: genMAC, from: dutMAC)),
                                              (.switched, .l2(to: genMAC, from: dutMAC, ifindex: dutIfindex))]
        for (path, forward) in variants where o.paths.contains(path) {
            try dut.run { for i in 0..<n { try dp.setRule(SessionRule(match: World.fillerMatch(i), forward: forward)) } }
            try attach(dp.steerProgram)
            for _ in 1...o.throughputRounds {
                _ = try generate(template, for: o.warmup, with: tools.gen)
                let hits0 = try dp.stats()[.ruleHit]!.packets
                let w = try generate(template, for: o.window, with: tools.gen)
                entry.others[path, default: []].append(w.mpps)
                if try dp.stats()[.ruleHit]!.packets - hits0 < w.counted {
                    result.notes.append("\(n) flows, \(path.rawValue): fewer rule hits than frames back")
                }
            }
        }
        if variants.contains(where: { o.paths.contains($0.0) }) {
            let filler = World.l2() // as World.rules made them
            for i in 0..<n { try dp.setRule(SessionRule(match: World.fillerMatch(i), forward: filler)) }
        }
        Log.info("throughput \(n) flows: bare \(fmt(medianOf(entry.bare) ?? 0, 2)), floor \(fmt(medianOf(entry.floor) ?? 0, 2)), steered \(fmt(medianOf(entry.steered) ?? 0, 2))"
                 + entry.others.keys.sorted { $0.rawValue < $1.rawValue }.map { ", \($0.rawValue) \(fmt(medianOf(entry.others[$0]!) ?? 0, 2))" }.joined()
                 + " Mpps")
        result.flows.append(entry)
    }
    try? dutLink?.detach()
    dutLink = nil
    relayStopped = true
    let failure = relay.stop()
    if result.paths[.relay] != nil {
        if let failure { result.paths[.relay]!.unavailable = "relay thread failed: \(failure)" }
        if relay.failedSends > 0 { result.paths[.relay]!.counters["relay.sendFailures"] = Int64(relay.failedSends) }
        result.paths[.relay]!.counters["relay.relayed"] = Int64(relay.relayed)
    }
    return result
}
