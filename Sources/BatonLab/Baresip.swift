import BatonModel
import BatonNet
import Foundation

/// baresip (Debian `baresip-core`) run in a lab host's namespace: a second SIP client beside
/// sipp, written by other people, for the SIP tests. It registers one account through
/// `proxy` with an RFC 5626 instance (`sipnat=outbound`, which is what makes baresip send
/// `+sip.instance`), runs `seconds`, unregisters and exits. `-s` traces every SIP message to
/// its output, which the tests read.
public final class Baresip: @unchecked Sendable {
    public static let executable = "/usr/bin/baresip"
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    public let output: String
    private let process: PeerProcess

    /// `instance` is a bare UUID (baresip writes the urn:uuid: itself).
    public init(_ name: String, host: LabHost, port: UInt16, account: String, password: String, proxy: Endpoint,
                instance: String, seconds: Int, directory: String) throws {
        guard Self.available else { throw LabError(description: "baresip is not installed (apt-get install baresip-core)") }
        let config = "\(directory)/\(name).baresip"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        // uuid.so reads the instance from the config directory's `uuid` (no newline: baresip
        // would send it inside the quoted +sip.instance); account.so reads `accounts`.
        try Data(instance.utf8).write(to: URL(fileURLWithPath: "\(config)/uuid"))
        try Data("""
            module_path /usr/lib/baresip/modules
            module_tmp uuid.so
            module_tmp account.so
            sip_listen \(host.ipv4):\(port)

            """.utf8).write(to: URL(fileURLWithPath: "\(config)/config"))
        try Data("<sip:\(account)>;auth_pass=\(password);outbound=\"sip:\(proxy)\";regint=60;sipnat=outbound\n".utf8)
            .write(to: URL(fileURLWithPath: "\(config)/accounts"))
        output = "\(directory)/\(name).out"
        process = try PeerProcess(host: host, executable: Self.executable, arguments: ["-f", config, "-s", "-t", "\(seconds)"],
                                  output: output)
    }

    public var isRunning: Bool { process.isRunning }

    /// Waits for it to quit (at most `timeout` seconds, then kills it); its exit status.
    @discardableResult
    public func wait(timeout: Double) -> Int32 { process.wait(timeout: timeout) }

    public func stop() { process.stop() }

    /// Its output: the SIP trace and its own log lines (colour codes and all).
    public var log: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }
}
