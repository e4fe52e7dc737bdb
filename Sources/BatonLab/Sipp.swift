import BatonModel
import BatonNet
import Foundation

/// sipp (Debian `sip-tester`) run in a lab host's network namespace with one of the
/// scenarios in scenarios/sipp/: a real SIP peer for the tests and the demo. Its messages
/// and unexpected ones are logged to files in `directory`; the exit status says whether
/// the scenario ran as written (sipp: 0 all calls succeeded, 1 some failed, other: error).
public final class Sipp: @unchecked Sendable {
    public static let executable = "/usr/bin/sipp"
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    /// scenarios/sipp in the source tree this file was built from (tests and the demo run from it).
    public static var scenarios: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scenarios/sipp").path
    }

    public let name: String
    public let messageLog: String
    public let errorLog: String
    public let output: String
    private let process: PeerProcess

    /// Starts `scenario` (a file name in `scenarios`) on `host`, bound to its `family`
    /// address and `port`, toward `server`. `keys` are sipp's -key values, `pause` its -d (how
    /// long a `<pause/>` lasts, ms), `auth` the digest user name and password. For load:
    /// `calls` (-m), `rate` new calls a second (-r), `limit` calls at once (-l), and `trace`
    /// false to log only unexpected messages (the message log costs more than the calls).
    /// `tcp`: SIP over one TCP connection (-t t1; as a UAS sipp listens on `port`), else UDP.
    public init(_ name: String, host: LabHost, family: IPAddress.Family, port: UInt16, scenario: String, server: Endpoint,
                keys: [String: String] = [:], pause: Int? = nil, auth: (user: String, password: String)? = nil,
                directory: String, timeout: Int = 30, calls: Int = 1, rate: Int? = nil, limit: Int? = nil,
                trace: Bool = true, tcp: Bool = false) throws {
        guard Sipp.available else { throw LabError(description: "sipp is not installed (apt-get install sip-tester)") }
        self.name = name
        messageLog = "\(directory)/\(name).messages.log"
        errorLog = "\(directory)/\(name).errors.log"
        output = "\(directory)/\(name).out"
        var args = [server.address.family == .v6 ? "[\(server.address)]:\(server.port)" : "\(server)",
                    "-sf", "\(Self.scenarios)/\(scenario)", "-i", "\(host.address(family))", "-p", "\(port)",
                    "-m", "\(calls)", "-nostdin", "-timeout", "\(timeout)s", "-timeout_error",
                    "-trace_err", "-error_file", errorLog]
        if trace { args += ["-trace_msg", "-message_file", messageLog] }
        if tcp { args += ["-t", "t1"] }
        if let rate { args += ["-r", "\(rate)", "-rp", "1000"] }
        if let limit { args += ["-l", "\(limit)"] }
        for (k, v) in keys.sorted(by: { $0.key < $1.key }) { args += ["-key", k, v] }
        if let pause { args += ["-d", "\(pause)"] }
        if let auth { args += ["-au", auth.user, "-ap", auth.password] }
        process = try PeerProcess(host: host, executable: Self.executable, arguments: args, output: output)
    }

    public var isRunning: Bool { process.isRunning }

    /// Waits for the scenario to end (at most `timeout` seconds, then stops it); its exit status.
    @discardableResult
    public func wait(timeout: Double = 30) -> Int32 { process.wait(timeout: timeout) }

    /// Ends it at once.
    public func stop() { process.stop() }

    /// The SIP messages sipp sent and received, with its time stamps.
    public var messages: String { (try? String(contentsOfFile: messageLog, encoding: .utf8)) ?? "" }
    public var errors: String { (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "" }
    public var log: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

    /// The first lines of the messages sipp sent ("INVITE sip:…", "SIP/2.0 200 OK"…), in order.
    public var sent: [String] { firstLines(after: "message sent") }
    public var received: [String] { firstLines(after: "message received") }

    /// When (Unix time) sipp logged the first message whose first line starts with `prefix`
    /// in `direction` ("sent" or "received").
    public func time(of prefix: String, _ direction: String) -> Double? {
        let blocks = messages.components(separatedBy: "----------------------------------------------- ")
        for b in blocks {
            let lines = b.split(separator: "\n", omittingEmptySubsequences: false)
            guard lines.count > 2, lines[1].contains("message \(direction)") else { continue }
            guard lines.dropFirst(2).first(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty })?
                .trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix(prefix) == true else { continue }
            // "2026-12-03 07:00:00.123456" then the sipp-relative stamp.
            let stamp = lines[0].split(separator: "\t").first.map(String.init) ?? ""
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone.current
            f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSSSSS"
            if let d = f.date(from: stamp.trimmingCharacters(in: .whitespaces)) { return d.timeIntervalSince1970 }
        }
        return nil
    }

    private func firstLines(after marker: String) -> [String] {
        messages.components(separatedBy: "----------------------------------------------- ").compactMap { b in
            let lines = b.split(separator: "\n", omittingEmptySubsequences: false)
            guard lines.count > 2, lines[1].contains(marker) else { return nil }
            return lines.dropFirst(2).first(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty })
                .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
    }
}
