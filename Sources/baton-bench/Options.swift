#if canImport(Glibc)
import Glibc
#endif

/// What to run and for how long. `--quick` shrinks everything for a smoke run.
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
    /// Part 5: registrations per configuration, and rules stored for the reconcile.
    var registrations = 20_000
    var reconcileRules = 1_000_000
    /// Part 4: transfers between batond daemons, one after another.
    var handovers = 100
    var verbose = false
    /// Throughput paths to run (all by default; fewer for profiling one).
    var paths = Path.allCases

    static let usage = """
    usage: baton-bench [--quick] [--rounds N] [--window SECONDS] [--rules N]
                       [--paths LIST] [--handovers N] [--no-testrun] [--no-throughput]
                       [--no-insert] [--no-handover] [--no-control-plane]
                       [--registrations N] [--reconcile-rules N]
                       [--verbose] [--help]

    Measures Baton's XDP data plane on this machine and prints a table, then the
    same figures as one JSON object on the last line of stdout. Every figure is
    also given as a ratio against a baseline measured in the same run, with the
    configurations interleaved (A B A B ...) and medians reported. Needs root and
    a kernel with BPF; builds (and always removes) two network namespaces.

      1. cost per packet of baton_steer through BPF_PROG_TEST_RUN (miss, L2 hit,
         encap hit at 1, 10k and 1M installed rules) beside baton_tx and
         baton_macswap;
      2. Mpps over a veth pair with a live-frames generator: bare MAC swap,
         baton_steer with 1M rules, the kernel's forwarding, a userspace relay;
      3. rules per second inserted by DataPlane.addRules (1M rules) beside raw
         bpf_map_update_batch of the same keys;
      4. handover: transfers between batond daemons while a 20 kpps call runs:
         transfer start to the first packet at the target, and the gap at
         wake-up (p50/p99), beside a UDP round trip and the call's spacing;
      5. control plane: registrations per second through the agent's API (one and
         256 per request) beside a trivial API request's rate, and the agent's
         start-up reconcile with 1M stored rules beside reading the maps.

    options:
      --quick            a ~30 s smoke run (fewer rounds, 1 s windows, 100k rules)
      --rounds N         throughput repetitions per path (default 9)
      --window SECONDS   throughput window per repetition (default 2)
      --rules N          largest rule level and insert size (default 1000000)
      --paths LIST       throughput paths to run, comma-separated, from
                         bare,steered,kernel,relay (default: all; ratios need
                         steered and the other path)
      --handovers N      transfers in part 4 (default 100, quick 20)
      --registrations N  registrations per configuration in part 5 (default 20000,
                         at most 60000: each takes over its own address)
      --reconcile-rules N  stored rules in part 5 (default 1000000, quick 100000)
      --no-testrun, --no-throughput, --no-insert, --no-handover, --no-control-plane
                         skip a part (its figures are null in the JSON)
      --verbose          progress details on stderr
      --help             this text

    docs/benchmark.md explains the methods. Exit status: 0 when the run
    completed (the goals are reported, never enforced), 1 when a setup is
    broken (e.g. no frames counted), 2 for a usage error.
    """

    static func parse(_ arguments: [String]) throws(UsageError) -> Options {
        var o = Options()
        var rules: Int?
        var rounds: Int?
        var window: Double?
        var handovers: Int?
        var registrations: Int?
        var reconcileRules: Int?
        var i = 0
        func value(_ name: String) throws(UsageError) -> String {
            i += 1
            guard i < arguments.count else { throw UsageError("\(name) needs a value") }
            return arguments[i]
        }
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "--help", "-h": throw UsageError(nil)
            case "--quick": o.quick = true
            case "--verbose", "-v": o.verbose = true
            case "--no-testrun": o.skipTestRun = true
            case "--no-throughput": o.skipThroughput = true
            case "--no-insert": o.skipInsert = true
            case "--no-handover": o.skipHandover = true
            case "--no-control-plane": o.skipControlPlane = true
            case "--registrations":
                guard let n = Int(try value(a)), n >= 100, n <= 60_000 else { throw UsageError("--registrations takes 100-60000") }
                registrations = n
            case "--reconcile-rules":
                guard let n = Int(try value(a)), n >= 1000, n <= 4_000_000 else { throw UsageError("--reconcile-rules takes 1000-4000000") }
                reconcileRules = n
            case "--handovers":
                guard let n = Int(try value(a)), n >= 1, n <= 10_000 else { throw UsageError("--handovers takes 1-10000") }
                handovers = n
            case "--rules":
                guard let n = Int(try value(a)), n >= 10_000, n <= 4_000_000 else {
                    throw UsageError("--rules takes a number from 10000 to 4000000")
                }
                rules = n
            case "--paths":
                var ps: [Path] = []
                for name in try value(a).split(separator: ",") {
                    guard let p = Path(rawValue: String(name)) else { throw UsageError("--paths: unknown path \(name)") }
                    if !ps.contains(p) { ps.append(p) }
                }
                guard !ps.isEmpty else { throw UsageError("--paths needs at least one path") }
                o.paths = Path.allCases.filter(ps.contains)
            case "--rounds":
                guard let n = Int(try value(a)), n >= 1, n <= 100 else { throw UsageError("--rounds takes 1-100") }
                rounds = n
            case "--window":
                guard let s = Double(try value(a)), s >= 0.1, s <= 30 else { throw UsageError("--window takes 0.1-30 seconds") }
                window = s
            default:
                throw UsageError("unknown argument \(a)")
            }
            i += 1
        }
        if o.quick {
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
        }
        if let rules {
            o.levels = [1, 10_000, rules].filter { $0 <= rules }
            if o.levels.last != rules { o.levels.append(rules) }
            o.levels = Array(Set(o.levels)).sorted()
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

struct UsageError: Error {
    let message: String?
    init(_ message: String?) { self.message = message }
}
