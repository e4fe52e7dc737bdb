// baton-bench: what Baton's XDP data plane costs on this machine, as ratios
// against baselines measured in the same run. docs/benchmark.md has the methods.
import BatonBPF
import BatonDataPlane
import BatonLab
#if canImport(Glibc)
import Glibc
#endif

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    if let m = error.message {
        writeStderr("baton-bench: \(m)\n\n\(Options.usage)\n")
        exit(2)
    }
    print(Options.usage)
    exit(0)
}
Log.verbose = options.verbose

var report = Report(options: options)
do {
    guard geteuid() == 0 else { throw BrokenSetup("needs root (BPF, XDP and network namespaces)") }
    guard xdpSupported() else { throw BrokenSetup("this kernel or process cannot load XDP programs") }
    Cleanup.shared.installSignalHandlers()
    let started = now()
    let tools = try ToolPrograms.shared()
    // The lab (two namespaces joined by one veth pair) is built first: the
    // throughput part runs in it, and the dispatcher holds live in gen.
    let lab = try Lab.pair("gen", "dut")
    Cleanup.shared.add(lab)
    defer { Cleanup.shared.remove(lab) }
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
        Log.info("handover: \(options.handovers) transfers between batond daemons")
        report.handover = try runHandover(options)
    }
    if !options.skipControlPlane {
        Log.info("control plane: registrations through the API, reconcile of \(options.reconcileRules) rules")
        report.controlPlane = try runControlPlane(options)
    }
    report.elapsed = seconds(since: started)
} catch let e as BrokenSetup {
    report.broken.append(e.description)
} catch {
    report.broken.append("\(error)")
}
Cleanup.shared.all()
report.checkBroken()
report.printTable()
print(report.json())
if !report.broken.isEmpty {
    for b in report.broken { writeStderr("baton-bench: broken setup: \(b)\n") }
    exit(1)
}
