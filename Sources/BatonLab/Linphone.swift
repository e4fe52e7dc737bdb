import BatonModel
import BatonNet
import Foundation

/// linphonec (Debian `linphone-cli`, liblinphone 5.1) in a lab host's namespace: a third,
/// independent SIP implementation (belle-sip), and the one of the three that turns a dialled
/// URI's `?Replaces=` header into a Replaces header field (baresip 1.0 leaves it in the
/// Request-URI). It registers `account` through `proxy` at start, with `instance` as its
/// `+sip.instance`; commands go to its console (`call`, `terminate`, `quit`).
public final class Linphone: @unchecked Sendable {
    public static let executable = "/usr/bin/linphonec"
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    public let output: String
    private let process: PeerProcess

    /// `port`: its SIP port (UDP); `rtpPort`: its audio RTP port.
    public init(_ name: String, host: LabHost, port: UInt16, rtpPort: UInt16, account: String, password: String, proxy: Endpoint,
                instance: String, directory: String) throws {
        guard Self.available else { throw LabError(description: "linphonec is not installed (apt-get install linphone-cli)") }
        let config = "\(directory)/\(name).linphonerc"
        let user = account.split(separator: "@").first.map(String.init) ?? account
        let domain = account.split(separator: "@").last.map(String.init) ?? account
        // linphone sends no +sip.instance of its own: the account's contact_parameters add it
        // (RFC 5627). No sound card here: calls go on without audio.
        try Data("""
            [sip]
            use_ipv6=0
            default_proxy=0
            register_only_when_network_is_up=0
            [misc]
            uuid=\(instance.replacingOccurrences(of: "urn:uuid:", with: ""))
            [rtp]
            audio_rtp_port=\(rtpPort)
            [video]
            display=0
            capture=0
            [proxy_0]
            reg_proxy=<sip:\(proxy);transport=udp>
            reg_route=<sip:\(proxy);transport=udp;lr>
            reg_identity=<sip:\(account)>
            reg_expires=3600
            reg_sendregister=1
            contact_parameters=+sip.instance="<\(instance)>"
            publish=0
            [auth_info_0]
            username=\(user)
            passwd=\(password)
            realm=\(domain)

            """.utf8).write(to: URL(fileURLWithPath: config))
        output = "\(directory)/\(name).out"
        process = try PeerProcess(host: host, executable: Self.executable, arguments: ["-c", config, "-d", "6"], output: output, input: true)
        // linphonec binds its SIP port from its console (the config's port is not read at start).
        process.send("ports sip \(port)")
    }

    /// Sends one console command (`call sip:…`, `terminate`, `quit`…).
    public func command(_ line: String) { process.send(line) }

    public var isRunning: Bool { process.isRunning }

    @discardableResult
    public func wait(timeout: Double) -> Int32 { process.wait(timeout: timeout) }

    public func stop() { process.stop() }

    public var log: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }
}
