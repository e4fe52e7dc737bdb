import BatonAPI
import BatonBPF
import BatonModel
import BatonNet
import Foundation
import Glibc
import Synchronization

/// A running `batond` in a lab host's network namespace.
public final class DaemonProcess: @unchecked Sendable {
    public let host: String
    /// Its control socket, for batonctl (`--control`) or `Control(path:)`.
    public let control: String
    /// Its stderr (the log; restarts append).
    public let log: String
    private(set) var process: Process
    let executable: String
    let arguments: [String]

    init(host: String, control: String, log: String, process: Process, executable: String, arguments: [String]) {
        self.host = host
        self.control = control
        self.log = log
        self.process = process
        self.executable = executable
        self.arguments = arguments
    }

    public var isRunning: Bool { process.isRunning }
    /// Its process ID (the current one after a restart).
    public var pid: Int32 { process.processIdentifier }

    /// A client of its API.
    public var api: Control { Control(path: control) }

    /// SIGKILL, as a crash would: nothing is cleaned up.
    public func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits until it exits by itself (a BATON_CRASH_AT crash); false if still running after `timeout`.
    public func waitForExit(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        return !process.isRunning
    }

    /// Starts it again with the same arguments (after `stop` or `kill`), with `environment`
    /// added, and waits until its API answers.
    public func restart(environment: [String: String] = [:]) throws {
        guard !process.isRunning else { throw LabError(description: "batond on \(host) is still running: stop or kill it first") }
        try? FileManager.default.removeItem(atPath: control)
        process = try LabDaemons.spawn(executable, arguments, log: log, environment: environment)
        try LabDaemons.waitForControl(self)
    }

    /// The log so far.
    public func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    public func stop(grace: Double = 3) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// `batond` running on the agent, the TN and the target of a transfer lab (`Lab.transfer`),
/// configured to trust each other. Each daemon has its own state directory, control socket and
/// bpffs pin root, all named after the lab, so labs never share anything; `stop()` kills the
/// daemons and removes their pins, the caller tears the lab down.
public final class LabDaemons: @unchecked Sendable {
    public let lab: Lab
    public let directory: String
    public let agent: DaemonProcess
    public let tn: DaemonProcess
    public let target: DaemonProcess
    /// bpffs pin roots the daemons use (removed by `stop`).
    public let pinRoots: [String]
    /// The TN's temporary pools (IPv4, IPv6), which its device owns besides its addresses.
    public let temporaryPools: [IPPrefix]

    public struct Options: Sendable {
        /// Extra `batond agent` arguments (e.g. ["--idle-timeout", "2"]).
        public var agentArguments: [String] = []
        public var nodeArguments: [String] = []
        public var logLevel = "info"
        /// Environment added to the agent's (BATON_CRASH_AT for crash tests).
        public var agentEnvironment: [String: String] = [:]
        /// Enrol the TN and the target at the agent and allow tn → target.
        public var enrol = true
        /// The agent in switch mode (`batond agent --mode switch`) on the lab's bridge, in the
        /// segment namespace (an L2 transfer lab): the bridge gets the agent's addresses (.100 and
        /// ::64, outside the hosts and the temporary pools), its ports lose their baton_pass and take the agent's baton_steer; "sa" is idle.
        public var switchMode = false
        public init() {}
    }

    /// Starts target, TN and agent in that order and waits until each serves its control
    /// socket. `batond` is the daemon's executable (see `LabDaemons.findBatond`).
    public static func start(_ lab: Lab, batond: String, options: Options = Options()) throws -> LabDaemons {
        let directory = "/tmp/baton-\(lab.prefix)"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let sa = lab["sa"], tn = lab["tn"], target = lab["target"]
        let roots = ["/sys/fs/bpf/baton-\(lab.prefix)-sa", "/sys/fs/bpf/baton-\(lab.prefix)-tn",
                     "/sys/fs/bpf/baton-\(lab.prefix)-target"]
        // Registered before the first daemon starts: a signal from here on stops what has
        // started and removes the pins, whatever the test or tool was doing.
        let started = Mutex<[DaemonProcess]>([])
        let undo: @Sendable () -> Void = {
            for p in started.withLock({ $0 }) { p.stop() }
            for root in roots { try? FileManager.default.removeItem(atPath: root) }
        }
        let cleanup = SignalCleanup.shared.add(undo)
        do {
            func key(_ host: String) throws -> String {
                try run(batond, ["key", "--state-dir", "\(directory)/\(host)"]).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let saKey = try key("sa"), tnKey = try key("tn"), targetKey = try key("target")
            func addresses(_ h: LabHost) -> String { "\(h.ipv4),\(h.ipv6)" }
            var agentAddresses = addresses(sa)
            if options.switchMode {
                let segment = lab.segments[0]
                let v4 = segment.ipv4.address(at: 100)!, v6 = segment.ipv6.address(at: 100)!
                try segment.namespace.run {
                    let netlink = try Netlink()
                    try netlink.addAddress(v4, prefixLength: segment.ipv4.length, interface: segment.bridge)
                    // The lab's bridge runs without IPv6 (no chatter of its own); the agent needs it.
                    try Sysctl.write(Sysctl.interfaceKey(segment.bridge, "disable_ipv6", family: .v6), 0)
                    try netlink.addAddress(v6, prefixLength: segment.ipv6.length, interface: segment.bridge, flags: .nodad)
                    for port in try netlink.links() where port.masterIndex == (try netlink.link(named: segment.bridge).index) {
                        try XDPLink.detachFromInterface(ifindex: UInt32(port.index), mode: .native)
                    }
                }
                agentAddresses = "\(v4),\(v6)"
            }
            // Temporary addresses: the upper half of the TN's segment, short of the broadcast
            // address (.128/26 and ::c0/122), enrolled as the TN's. Each stays a grace period
            // after its transfer, so back-to-back runs need a few dozen.
            let pool4 = IPPrefix(tn.primary.ipv4Network.address(at: 128)!, length: 26)!
            let pool6 = IPPrefix(tn.primary.ipv6Network.address(at: 192)!, length: 122)!
            func common(_ host: String) -> [String] {
                ["--netns", lab[host].namespace.name!, "--state-dir", "\(directory)/\(host)",
                 "--control", "\(directory)/\(host).sock", "--log-level", options.logLevel]
            }
            let targetProcess = try launch(batond, host: "target", directory: directory,
                                           ["node"] + common("target") + ["--decap-root", roots[2],
                                            "--peer=tn,\(tnKey),\(addresses(tn))"] + options.nodeArguments)
            started.withLock { $0.append(targetProcess) }
            let tnProcess = try launch(batond, host: "tn", directory: directory,
                                       ["node"] + common("tn") + ["--decap-root", roots[1],
                                        // KEY=value form: a base64url key may begin with "-".
                                        "--agent=\(saKey),\(agentAddresses)",
                                        "--peer=target,\(targetKey),\(addresses(target))",
                                        "--temporary-pool", "\(pool4)", "--temporary-pool", "\(pool6)"] + options.nodeArguments)
            started.withLock { $0.append(tnProcess) }
            var agentArguments = ["agent"] + common("sa") + ["--root", roots[0]]
            if options.switchMode {
                agentArguments[agentArguments.firstIndex(of: "--netns")! + 1] = lab.segments[0].namespace.name!
                agentArguments += ["--interface", lab.segments[0].bridge, "--mode", "switch"]
            }
            let agentProcess = try launch(batond, host: "sa", directory: directory, agentArguments + options.agentArguments,
                                          environment: options.agentEnvironment)
            started.withLock { $0.append(agentProcess) }
            for p in started.withLock({ $0 }) { try waitForControl(p) }
            // Enrolment: the TN owns its addresses, the target its own; the TN may move
            // sessions to the target.
            if options.enrol {
                let api = agentProcess.api
                try api.addDevice(Device(name: "tn", publicKey: tnKey,
                                         addresses: ["\(tn.ipv4)/32", "\(tn.ipv6)/128", "\(pool4)", "\(pool6)"]))
                try api.addDevice(Device(name: "target", publicKey: targetKey,
                                         addresses: ["\(target.ipv4)/32", "\(target.ipv6)/128"]))
                try api.addPolicy(Policy(from: "tn", to: "target"))
            }
            return LabDaemons(lab: lab, directory: directory, agent: agentProcess, tn: tnProcess, target: targetProcess,
                              pinRoots: roots, temporaryPools: [pool4, pool6], cleanup: cleanup)
        } catch {
            SignalCleanup.shared.withdraw(cleanup)
            undo()
            throw error
        }
    }

    /// The registration that stops these daemons on a signal (withdrawn by `stop`).
    private let cleanup: SignalCleanup.Token

    private init(lab: Lab, directory: String, agent: DaemonProcess, tn: DaemonProcess, target: DaemonProcess, pinRoots: [String],
                 temporaryPools: [IPPrefix], cleanup: SignalCleanup.Token) {
        self.cleanup = cleanup
        self.temporaryPools = temporaryPools
        self.lab = lab
        self.directory = directory
        self.agent = agent
        self.tn = tn
        self.target = target
        self.pinRoots = pinRoots
    }

    public var all: [DaemonProcess] { [agent, tn, target] }

    /// Stops the daemons and removes their pins (which detaches their XDP links).
    public func stop(keepLogs: Bool = false) {
        SignalCleanup.shared.withdraw(cleanup)
        for p in all { p.stop() }
        for root in pinRoots { try? FileManager.default.removeItem(atPath: root) }
        if !keepLogs { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Every daemon's log, for a failure message.
    public func logs() -> String {
        all.map { "---- batond on \($0.host) ----\n" + $0.logText() }.joined(separator: "\n")
    }

    /// `batond` next to the running executable or a loaded bundle (the build directory).
    public static func findBatond() -> String? { findExecutable("batond") }

    /// A built executable of this package: `$NAME` in upper case if set (e.g. BATONCTL),
    /// else the first `name` found in, or up to four levels above, the running executable,
    /// the main bundle or any loaded bundle (a test bundle sits in the build directory).
    public static func findExecutable(_ name: String) -> String? {
        if let p = ProcessInfo.processInfo.environment[name.uppercased()], access(p, X_OK) == 0 { return p }
        var starts: [URL] = [URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath(),
                             Bundle.main.bundleURL, Bundle.main.executableURL].compactMap { $0 }
        starts += Bundle.allBundles.map(\.bundleURL)
        for start in starts {
            var directory = start
            for _ in 0..<5 {
                let candidate = directory.appendingPathComponent(name).path
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                   access(candidate, X_OK) == 0 {
                    return candidate
                }
                directory = directory.deletingLastPathComponent()
            }
        }
        return nil
    }

    private static func launch(_ batond: String, host: String, directory: String, _ arguments: [String],
                               environment: [String: String] = [:]) throws -> DaemonProcess {
        let log = "\(directory)/\(host).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let p = try spawn(batond, arguments, log: log, environment: environment)
        return DaemonProcess(host: host, control: "\(directory)/\(host).sock", log: log, process: p, executable: batond,
                             arguments: arguments)
    }

    static func spawn(_ batond: String, _ arguments: [String], log: String, environment: [String: String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: batond)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        p.standardError = handle
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Until its API answers.
    static func waitForControl(_ p: DaemonProcess) throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !p.isRunning {
                throw LabError(description: "batond on \(p.host) exited at start: \(p.logText())")
            }
            if FileManager.default.fileExists(atPath: p.control), (try? Control(path: p.control, timeout: 2).status()) != nil { return }
            usleep(20_000)
        }
        throw LabError(description: "batond on \(p.host) did not open \(p.control) within 20 s: \(p.logText())")
    }

    /// Runs a short command and returns its stdout; throws with its stderr if it fails.
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let error = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw LabError(description: "\(executable) \(arguments.joined(separator: " ")) failed: \(String(decoding: error, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self)
    }
}
