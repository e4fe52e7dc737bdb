// baton-bench: what Baton's XDP data plane costs on this machine, as ratios
// against baselines measured in the same run. docs/benchmark.md has the methods.
import ArgumentParser
import BatonBPF
import BatonDataPlane
import BatonLab
#if canImport(Glibc)
import Glibc
#endif

@main
struct BatonBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-bench",
        abstract: "Measure Baton's XDP data plane and control plane on this machine.",
        discussion: """
        Prints a table, then the same figures as one JSON object on the last line of stdout. \
        Every figure is also given as a ratio against a baseline measured in the same run, with \
        the configurations interleaved (A B A B ...) and medians reported. Needs root and a \
        kernel with BPF; builds (and always removes, also on Ctrl-C) its network namespaces.

          1. cost per packet of baton_steer through BPF_PROG_TEST_RUN (miss, L2 hit, encap hit
             at 1, 10k and 1M installed rules) beside baton_tx and baton_macswap;
          2. Mpps over a veth pair with a live-frames generator: bare MAC swap, baton_steer
             with 1M rules, the kernel's forwarding, a userspace relay, an anchored session's XDP relay, switch mode's redirect;
          3. rules per second inserted by DataPlane.addRules (1M rules) beside raw
             bpf_map_update_batch of the same keys;
          4. handover: transfers between batond daemons while a call runs (20 kpps, then 100
             kpps, spaced; then 20 kpps back to back, 0.3 s after each end): transfer start to
             the first packet at the target, and the gap at wake-up (p50/p99), beside a UDP
             round trip and the call's spacing; lost, reordered, refused;
          5. control plane: registrations per second through the agent's API (one and 256 per
             request) beside a trivial API request's rate, and the agent's start-up reconcile
             with 1M stored rules beside reading the maps;
          6. SIP (seed 002, with sipp): calls per agent CPU-second with each call's media anchored
             in XDP beside OPTIONS per CPU-second, concurrent calls held, RTP on 300 of them
             (agent and machine CPU per relayed packet), and the switch by INVITE/Replaces
             (received → first media packet at the new device, p50/p99 over 100 switches) beside
             an OPTIONS round trip; then all of it again with the media relayed in userspace
             (--sip-media userspace), and the two side by side.

        docs/benchmark.md explains the methods. Exit status: 0 when the run completed (the \
        goals are reported, never enforced), 1 when a setup is broken (e.g. no frames \
        counted), 64 for a usage error.
        """)

    @OptionGroup var arguments: BenchArguments

    func run() throws {
        let options = try arguments.options()
        Log.verbose = options.verbose
        measure(options)
    }
}

/// Runs the parts `options` selects and prints the report; exits 1 on a broken setup.
func measure(_ options: Options) {
    var report = Report(options: options)
    do {
        guard geteuid() == 0 else { throw BrokenSetup("needs root (BPF, XDP and network namespaces)") }
        guard xdpSupported() else { throw BrokenSetup("this kernel or process cannot load XDP programs") }
        SignalCleanup.shared.install(message: "baton-bench: interrupted; removing the lab namespaces")
        let started = now()
        // baton_floor's array (the many-flows floor) for the most flows part 2 runs:
        // no more than there are filler rules.
        let mostFlows = options.skipThroughput ? 1 : min(options.flows.max() ?? 1, options.levels.last! - 1)
        let tools = try ToolPrograms(floorSlots: mostFlows)
        // The lab (two namespaces joined by one veth pair) is built first: the
        // throughput part runs in it, and the dispatcher holds live in gen.
        let lab = try Lab.pair("gen", "dut")
        let teardown = SignalCleanup.shared.add(lab)
        defer { SignalCleanup.shared.run(teardown) }
        Log.info("lab \(lab.prefix): namespaces \(lab["gen"].namespace) and \(lab["dut"].namespace)")
        let hold = DispatcherHold(host: lab["gen"])
        defer { hold.release() }
        let largest = options.levels.last!
        Log.info("building \(largest) rules")
        let rules = World.rules(count: largest, flowForward: World.l2())

        // Part 3 first: it fills the largest data plane the other parts use.
        let full: DataPlane
        if options.skipInsert {
            full = try DataPlane.load(.init(pinRoot: nil, maxRules: options.capacity))
            try full.addRules(rules)
        } else {
            Log.info("insert: \(largest) rules, \(options.insertRounds) round(s)")
            let (r, dp) = try runInsert(options, rules: rules)
            report.insert = r
            full = dp
        }
        try full.setTakeover(World.takeover())

        if !options.skipTestRun {
            var planes: [(level: Int, dp: DataPlane)] = []
            for level in options.levels.dropLast() {
                let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: options.capacity))
                try dp.addRules(Array(rules.prefix(level)))
                try dp.setTakeover(World.takeover())
                planes.append((level, dp))
            }
            planes.append((largest, full))
            Log.info("test run: \(options.testRunRounds) rounds")
            try hold.hold([tools.tx, tools.macswap] + planes.map(\.dp.steerProgram))
            report.testRun = try runTestRunCost(options, tools: tools, dataPlanes: planes)
            hold.release() // the smaller data planes' maps go with their programs
        }

        if !options.skipThroughput {
            Log.info("throughput: \(options.throughputRounds) rounds of \(fmt(options.window, 1)) s per path")
            report.throughput = try runThroughput(options, tools: tools, dp: full, rules: largest, lab: lab, hold: hold)
        }
        if !options.skipHandover {
            for config in [HandoverConfig.spaced(rate: 20_000), .spaced(rate: 100_000), .backToBack] {
                Log.info("handover (\(config.name), \(config.rate / 1000) kpps): \(options.handovers) transfers between batond daemons")
                report.handover.append(try runHandover(options, config))
            }
        }
        if !options.skipControlPlane {
            Log.info("control plane: registrations through the API, reconcile of \(options.reconcileRules) rules")
            report.controlPlane = try runControlPlane(options)
        }
        if !options.skipSIP {
            Log.info("sip: calls, concurrent calls and switches through batond's SIP server with sipp")
            var s = SIPBench(xdp: try runSIP(options, media: "xdp"))
            Log.info("sip: the same with the calls' media relayed in userspace (--sip-media userspace)")
            s.userspace = try runSIP(options, media: "userspace")
            if let t = report.throughput {
                s.anchoredCallsPerCore = t.paths[.anchored]?.mpps.map { $0 * 1e6 / 100 }
                s.relayCallsPerCore = t.paths[.relay]?.mpps.map { $0 * 1e6 / 100 }
            }
            report.sip = s
        }
        report.elapsed = seconds(since: started)
    } catch let e as BrokenSetup {
        report.broken.append(e.description)
    } catch {
        report.broken.append("\(error)")
    }
    SignalCleanup.shared.runAll()
    report.checkBroken()
    report.printTable()
    print(report.json())
    if !report.broken.isEmpty {
        for b in report.broken { writeStderr("baton-bench: broken setup: \(b)\n") }
        exit(1)
    }
}
