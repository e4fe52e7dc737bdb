import ArgumentParser

/// What to run and for how long, as the parts read it. `--quick` shrinks everything for a
/// smoke run; `BenchCommand` builds it from the command line.
struct Options {
    var quick = false
    /// Installed-rule levels for the test-run costs; the largest is also the
    /// insert benchmark's size and the rule table of the steered throughput run.
    var levels = [1, 10_000, 1_000_000]
    /// Capacity of every data plane the bench loads (2^20, the agent's --max-rules for a million rules).
    var capacity = 1 << 20
    /// Test runs: rounds (each runs every configuration once), repeat for the
    /// steady-state paths, calls per sample of the repeat = 1 loop.
    var testRunRounds = 15
    var testRunRepeat = 100_000
    var repeatOneCalls = 5_000
    /// Throughput: repetitions (each runs every configuration once), seconds per window.
    var throughputRounds = 9
    var window = 2.0
    var warmup = 0.2
    /// Insert benchmark repetitions (each: raw update_batch, then DataPlane.addRules).
    var insertRounds = 3
    var skipTestRun = false
    var skipThroughput = false
    var skipInsert = false
    var skipHandover = false
    var skipControlPlane = false
    var skipSIP = false
    /// Part 5: registrations per configuration, and rules stored for the reconcile.
    var registrations = 20_000
    var reconcileRules = 1_000_000
    /// Part 4: transfers between batond daemons, one after another.
    var handovers = 100
    var verbose = false
    /// Throughput paths to run (all by default; fewer for profiling one).
    var paths = Path.allCases
    /// Part 2's active-flow counts for bare and steered (issue 13 item 5); capped at the
    /// filler rules there are.
    var flows = [1, 1000, 65536, 1_000_000]
}

/// The command line (swift-argument-parser): ranges checked in `validate`, before anything
/// is built.
struct BenchArguments: ParsableArguments {
    @Flag(help: "A ~30 s smoke run: fewer rounds, 1 s windows, 100k rules.")
    var quick = false

    @Option(help: ArgumentHelp("Throughput repetitions per path, 1-100 (default 9, quick 3).", valueName: "n"))
    var rounds: Int?

    @Option(help: ArgumentHelp("Throughput window per repetition, 0.1-30 seconds (default 2, quick 1).", valueName: "seconds"))
    var window: Double?

    @Option(help: ArgumentHelp("Largest rule level and insert size, 10000-4000000 (default 1000000, quick 100000).", valueName: "n"))
    var rules: Int?

    @Option(parsing: .upToNextOption, help: ArgumentHelp(
        "Throughput paths to run, from bare, steered, kernel, relay, anchored, switched (default: all; ratios need steered, anchored or switched and the other path). Comma- or space-separated.",
        valueName: "path"))
    var paths: [String] = []

    @Option(parsing: .upToNextOption, help: ArgumentHelp(
        "Active-flow counts for part 2's many-flows runs of bare, the floor (baton_floor: 16 bytes of state per flow), steered, anchored and switched (the same flows as relay rules, as redirects), 1-4000000 each (default 1, 1000, 65536, 1000000; quick 1, 1000; none: --flows 0). Comma- or space-separated.",
        valueName: "n"))
    var flows: [String] = []

    @Option(help: ArgumentHelp("Transfers in part 4, 1-10000 (default 100, quick 20).", valueName: "n"))
    var handovers: Int?

    @Option(help: ArgumentHelp("Registrations per configuration in part 5, 100-60000 (default 20000, quick 2000; each takes over its own address).", valueName: "n"))
    var registrations: Int?

    @Option(name: .customLong("reconcile-rules"), help: ArgumentHelp("Stored rules in part 5, 1000-4000000 (default 1000000, quick 100000).", valueName: "n"))
    var reconcileRules: Int?

    @Flag(name: .customLong("no-testrun"), help: "Skip part 1 (its figures are null in the JSON).")
    var noTestRun = false
    @Flag(name: .customLong("no-throughput"), help: "Skip part 2.")
    var noThroughput = false
    @Flag(name: .customLong("no-insert"), help: "Skip part 3.")
    var noInsert = false
    @Flag(name: .customLong("no-handover"), help: "Skip part 4.")
    var noHandover = false
    @Flag(name: .customLong("no-control-plane"), help: "Skip part 5.")
    var noControlPlane = false
    @Flag(name: .customLong("no-sip"), help: "Skip part 6 (it needs sipp: apt-get install sip-tester).")
    var noSIP = false

    @Flag(name: [.customShort("v"), .long], help: "Progress details on stderr.")
    var verbose = false

    func validate() throws {
        func check<T: Comparable>(_ value: T?, _ range: ClosedRange<T>, _ name: String) throws {
            if let value, !range.contains(value) {
                throw ValidationError("--\(name) takes \(range.lowerBound)-\(range.upperBound), not \(value)")
            }
        }
        try check(rounds, 1...100, "rounds")
        try check(window, 0.1...30, "window")
        try check(rules, 10_000...4_000_000, "rules")
        try check(handovers, 1...10_000, "handovers")
        try check(registrations, 100...60_000, "registrations")
        try check(reconcileRules, 1000...4_000_000, "reconcile-rules")
        _ = try selectedPaths()
        _ = try selectedFlows()
    }

    /// --flows, split on commas; [] for "0".
    func selectedFlows() throws -> [Int]? {
        guard !flows.isEmpty else { return nil }
        var out: [Int] = []
        for text in flows.flatMap({ $0.split(separator: ",") }) {
            guard let n = Int(text), (0...4_000_000).contains(n) else {
                throw ValidationError("--flows takes counts of 1-4000000 (or 0 for none), not \(text)")
            }
            if n > 0, !out.contains(n) { out.append(n) }
        }
        return out.sorted()
    }

    /// --paths, split on commas, in the order of Path.allCases, each once.
    func selectedPaths() throws -> [Path] {
        guard !paths.isEmpty else { return Path.allCases }
        var chosen: Set<Path> = []
        for name in paths.flatMap({ $0.split(separator: ",") }) {
            guard let p = Path(rawValue: String(name)) else {
                throw ValidationError("--paths: unknown path \(name) (bare, steered, kernel, relay, anchored, switched)")
            }
            chosen.insert(p)
        }
        guard !chosen.isEmpty else { throw ValidationError("--paths needs at least one path") }
        return Path.allCases.filter(chosen.contains)
    }

    /// The settings the parts read.
    func options() throws -> Options {
        var o = Options()
        o.quick = quick
        o.verbose = verbose
        o.skipTestRun = noTestRun
        o.skipThroughput = noThroughput
        o.skipInsert = noInsert
        o.skipHandover = noHandover
        o.skipControlPlane = noControlPlane
        o.skipSIP = noSIP
        o.paths = try selectedPaths()
        if quick {
            o.levels = [1, 10_000, 100_000]
            o.testRunRounds = 5
            o.testRunRepeat = 20_000
            o.repeatOneCalls = 1_000
            o.throughputRounds = 3
            o.window = 1.0
            o.warmup = 0.1
            o.insertRounds = 1
            o.handovers = 20
            o.registrations = 2000
            o.reconcileRules = 100_000
            o.flows = [1, 1000]
        }
        if let f = try selectedFlows() { o.flows = f }
        if let rules {
            o.levels = Array(Set([1, 10_000, rules].filter { $0 <= rules })).sorted()
        }
        // Capacity: 2^20 unless more rules are asked for;
        // at least 2% headroom above the largest level either way.
        let largest = o.levels.last!
        while o.capacity < largest + largest / 50 { o.capacity *= 2 }
        if let rounds { o.throughputRounds = rounds }
        if let window { o.window = window }
        if let handovers { o.handovers = handovers }
        if let registrations { o.registrations = registrations }
        if let reconcileRules { o.reconcileRules = reconcileRules }
        return o
    }
}
