// The agent's enrolment verbs (device, policy), metrics and the remote API (--api over mutual
// TLS) of the built `batonctl`, against real batond daemons in a transfer lab (LabDaemons
// enrols "tn" and "target" and allows tn -> target when it starts them).
import BatonAPI
import BatonBPF
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Glibc
import Testing

/// A random batond-style public key: 32 bytes, base64url without padding (43 characters).
func randomPublicKey(startingWithDash: Bool = false) -> String {
    var bytes = (0..<32).map { _ in UInt8.random(in: 0...255) }
    // '-' is 62 in base64url: the first six bits 111110.
    // Otherwise never a leading '-' (1 key in 64 would have one): `--key KEY` would read it as a flag.
    if startingWithDash { bytes[0] = 0xF8 | (bytes[0] & 0x03) } else if bytes[0] >> 2 == 62 { bytes[0] &= 0x7F }
    var s = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    while s.hasSuffix("=") { s.removeLast() }
    return s
}

/// One sample of `metrics --json`.
struct SampleJSON: Decodable {
    enum Value: Decodable {
        case number(Double), special(String)
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let d = try? c.decode(Double.self) { self = .number(d) } else { self = .special(try c.decode(String.self)) }
        }
        var number: Double? { if case .number(let d) = self { d } else { nil } }
    }
    var name: String
    var labels: [String: String]
    var value: Value
    var type: String?
    var help: String?
}

struct RemovedDeviceJSON: Decodable { var device: String; var removed: Bool }
struct RemovedPolicyJSON: Decodable { var policy: Int; var removed: Bool }

@Suite(.serialized, .enabled(if: geteuid() == 0 && xdpSupported(), "needs root and XDP"))
struct DeviceCLITests {
    typealias T = TransferCLITests

    @Test func devicesAndPoliciesRoundTrip() throws {
        try T.withDaemons { lab, daemons in
            let agent = daemons.agent.control
            let tn = lab["tn"], target = lab["target"]

            // What LabDaemons enrolled.
            let devices = try T.ok(agent, ["device", "list", "--json"]).json([Device].self)
            #expect(devices.map(\.name).sorted() == ["target", "tn"], "\(devices)")
            let tnDevice = try #require(devices.first { $0.name == "tn" })
            #expect(tnDevice.addresses.contains("\(tn.ipv4)/32") && tnDevice.publicKey.count == 43)
            #expect(tnDevice.enrolled != nil)
            let table = try T.ok(agent, ["device", "list"]).stdout
            let rows = table.split(separator: "\n")
            #expect(rows.count == 3 && rows[0].hasPrefix("NAME") && rows[0].contains("PUBLIC KEY"), "\(table)")
            #expect(rows.contains { $0.hasPrefix("target ") && $0.contains("\(target.ipv4)/32") }, "\(table)")
            let shown = try T.ok(agent, ["device", "show", "tn", "--json"]).json(Device.self)
            #expect(shown == tnDevice)
            let detail = try T.ok(agent, ["device", "show", "tn"]).stdout
            #expect(detail.contains("name:       tn") && detail.contains(tnDevice.publicKey) && detail.contains("the agent's default"),
                    "\(detail)")
            let policies = try T.ok(agent, ["policy", "list", "--json"]).json([Policy].self)
            #expect(policies.map { "\($0.from)>\($0.to)" } == ["tn>target"], "\(policies)")
            #expect(policies.first?.id != nil)

            // --control before the verb reads the same.
            let before = try batonctl(["--control", agent, "device", "list", "--json"])
            #expect(before.status == 0, "\(before)")
            #expect(try before.json([Device].self).count == 2)

            // Enrol a device whose key begins with '-' (--key=KEY), with two prefixes and a rate.
            let key = randomPublicKey(startingWithDash: true)
            #expect(key.hasPrefix("-"))
            let added = try T.ok(agent, ["device", "add", "phone", "--key=\(key)", "--address", "10.99.0.0/24",
                                         "--address", "fd00:99::7", "--rate-limit", "5", "--json"]).json(Device.self)
            #expect(added.name == "phone" && added.publicKey == key)
            #expect(added.addresses == ["10.99.0.0/24", "fd00:99::7/128"], "\(added.addresses)")
            #expect(added.rateLimit == 5 && added.enrolled != nil)
            #expect(try T.ok(agent, ["device", "show", "phone", "--json"]).json(Device.self) == added)
            #expect(try T.ok(agent, ["device", "show", "phone"]).stdout.contains("rate limit: 5 registrations/s"))
            #expect(try T.ok(agent, ["device", "list", "--json"]).json([Device].self).count == 3)
            // Text add, then the same name or the same key again: conflict, exit 1.
            let text = try T.ok(agent, ["device", "add", "laptop", "--key", randomPublicKey(), "--address", "10.98.0.1"]).stdout
            #expect(text.contains("name:       laptop") && text.contains("10.98.0.1/32"), "\(text)")
            try T.fails(agent, 1, "phone", ["device", "add", "phone", "--key", randomPublicKey(), "--address", "10.97.0.0/24"])
            try T.fails(agent, 1, "already", ["device", "add", "phone2", "--key=\(key)", "--address", "10.97.0.0/24"])
            // Prefixes a device cannot hold, or that another holds, are refused as conflicts (exit 1);
            // the same prefix twice is kept once.
            let sa = lab["sa"].ipv4
            let segment = try #require(IPPrefix(sa, length: 24)).network
            let prefixCases: [(Int32, String, [String])] = [
                (1, "overlaps 10.99.0.0/24 of device phone", ["10.99.0.128/25"]),
                (1, "covers every address", ["0.0.0.0/0"]),
                (1, "covers every address", ["::/0"]),
                (1, "holds the unspecified address 0.0.0.0", ["0.0.0.0/8"]),
                (1, "overlaps link-local addresses", ["169.254.7.7"]),
                (1, "overlaps link-local addresses", ["fe80::1"]),
                (1, "overlaps multicast addresses", ["224.0.0.0/8"]),
                (1, "holds \(sa), the agent's own address", ["\(sa)"]),
                (1, "the network address of the agent's segment \(segment)", ["\(segment.address)"]),
                (1, "the broadcast address of the agent's segment \(segment)", ["\(segment.lastAddress)"]),
                (1, "overlaps its prefix 10.95.0.0/16", ["10.95.0.0/16", "10.95.1.0/24"]),
            ]
            for (status, message, prefixes) in prefixCases {
                try T.fails(agent, status, message,
                            ["device", "add", "other", "--key", randomPublicKey()] + prefixes.flatMap { ["--address", $0] })
            }
            #expect(try T.ok(agent, ["device", "list", "--json"]).json([Device].self).count == 4, "nothing refused was enrolled")
            let twice = try T.ok(agent, ["device", "add", "twice", "--key", randomPublicKey(), "--address", "10.94.0.1",
                                         "--address", "10.94.0.1/32", "--json"]).json(Device.self)
            #expect(twice.addresses == ["10.94.0.1/32"], "\(twice)")
            _ = try T.ok(agent, ["device", "del", "twice"])

            // The agent's own key is the daemon's usage error: exit 64.
            let agentKey = try T.ok(agent, ["node", "status", "--json"]).json(DaemonStatus.self).publicKey
            try T.fails(agent, 64, "the agent's own key", ["device", "add", "self", "--key=\(agentKey)", "--address", "10.96.0.1"])

            // Policies: add (text and JSON), list, the same pair again, delete.
            let policy = try T.ok(agent, ["policy", "add", "--from", "phone", "--to", "*", "--json"]).json(Policy.self)
            let id = try #require(policy.id)
            #expect(policy.from == "phone" && policy.to == "*")
            let addedText = try T.ok(agent, ["policy", "add", "--from", "*", "--to", "laptop"]).stdout
            #expect(addedText.hasPrefix("added policy ") && addedText.contains(": * -> laptop"), "\(addedText)")
            try T.fails(agent, 1, "already", ["policy", "add", "--from", "phone", "--to", "*"])
            let all = try T.ok(agent, ["policy", "list", "--json"]).json([Policy].self)
            #expect(all.count == 3 && all.contains(policy), "\(all)")
            let policyTable = try T.ok(agent, ["policy", "list"]).stdout.split(separator: "\n")
            #expect(policyTable.count == 4 && policyTable[0].hasPrefix("ID") && policyTable[0].contains("FROM"), "\(policyTable)")
            #expect(policyTable.contains { $0.contains("phone") && $0.contains("*") })
            let removed = try T.ok(agent, ["policy", "del", "\(id)", "--json"]).json(RemovedPolicyJSON.self)
            #expect(removed.policy == id && removed.removed)
            try T.fails(agent, 2, "no policy \(id)", ["policy", "del", "\(id)"])
            let laptopPolicy = try #require(try T.ok(agent, ["policy", "list", "--json"]).json([Policy].self).first { $0.to == "laptop" })
            #expect(try T.ok(agent, ["policy", "del", "\(laptopPolicy.id ?? -1)"]).stdout == "removed policy \(laptopPolicy.id ?? -1)\n")

            // Delete the devices; unknown devices are exit 2.
            let gone = try T.ok(agent, ["device", "del", "phone", "--json"]).json(RemovedDeviceJSON.self)
            #expect(gone.device == "phone" && gone.removed)
            #expect(try T.ok(agent, ["device", "del", "laptop"]).stdout == "removed device laptop\n")
            try T.fails(agent, 2, "no device phone", ["device", "del", "phone"])
            try T.fails(agent, 2, "no device phone", ["device", "show", "phone"])
            try T.fails(agent, 2, "no device nobody", ["device", "show", "nobody", "--json"])
            #expect(try T.ok(agent, ["device", "list", "--json"]).json([Device].self).map(\.name).sorted() == ["target", "tn"])
            #expect(try T.ok(agent, ["policy", "list", "--json"]).json([Policy].self).count == 1)

            // A node does not serve the agent's routes: exit 2, saying whose they are.
            try T.fails(daemons.tn.control, 2, "served by the agent", ["device", "list"])
            try T.fails(daemons.tn.control, 2, "served by the agent", ["policy", "add", "--from", "tn", "--to", "target"])
        }
    }

    @Test func metricsOfAgentAndNode() throws {
        try T.withDaemons { _, daemons in
            for sock in [daemons.agent.control, daemons.tn.control] {
                let text = try T.ok(sock, ["metrics"]).stdout
                #expect(text.contains("# TYPE"), "\(text)")
                let samples = try T.ok(sock, ["metrics", "--json"]).json([SampleJSON].self)
                #expect(!samples.isEmpty)
                #expect(samples.allSatisfy { !$0.name.isEmpty && $0.name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" } })
                #expect(samples.contains { $0.name.hasPrefix("baton_") && $0.type != nil && $0.value.number != nil }, "\(text)")
            }
            let agent = try T.ok(daemons.agent.control, ["metrics", "--json"]).json([SampleJSON].self)
            let registrations = agent.filter { $0.name == "baton_registrations_total" }
            #expect(Set(registrations.compactMap { $0.labels["result"] }) == ["accepted", "refused"], "\(registrations)")
            #expect(registrations.allSatisfy { $0.type == "counter" && $0.help?.isEmpty == false })
        }
    }

    /// --api: the agent also listens over HTTPS with client certificates (batond --listen);
    /// batonctl, run in the correspondent's namespace (`baton-lab exec`), reaches it there.
    @Test func remoteAgentOverMutualTLS() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("batonctl-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let exe = try #require(Binary.path)
        // The lab's addresses are known only once it is up, so the server certificate names the
        // agent by its IPv4 address after the lab is built: build it first, then start batond.
        let lab = try Lab.transfer(.l2)
        defer { try? lab.teardown() }
        let sa = lab["sa"].ipv4
        try makeCertificates(dir, serverIP: "\(sa)")
        var options = LabDaemons.Options()
        options.agentArguments = ["--listen", "\(sa):7391", "--tls-cert", "\(dir)/server.pem", "--tls-key", "\(dir)/server.key",
                                  "--tls-client-ca", "\(dir)/ca.pem", "--tls-revoked", "\(dir)/revoked.txt"]
        let batond = try #require(LabDaemons.findBatond())
        let daemons = try LabDaemons.start(lab, batond: batond, options: options)
        var failed = true
        defer {
            daemons.stop(keepLogs: failed)
            if failed { print("daemon logs kept in \(daemons.directory)\n" + daemons.logs()) }
        }

        func remote(_ args: [String], ca: String = "ca.pem", cert: String = "client.pem", key: String = "client.key") throws -> Run {
            let tool = try #require(Binary.lab, "baton-lab not found next to the test bundle")
            return try ToolRun.run(tool, ["exec", lab.prefix, "cn", "--", exe] + args +
                                   ["--api", "https://\(sa):7391", "--tls-ca", "\(dir)/\(ca)", "--tls-cert", "\(dir)/\(cert)",
                                    "--tls-key", "\(dir)/\(key)"])
        }
        let list = try remote(["device", "list", "--json"])
        #expect(list.status == 0 && list.stderr.isEmpty, "\(list)")
        #expect(try list.json([Device].self).map(\.name).sorted() == ["target", "tn"])
        let status = try remote(["node", "status", "--json"])
        #expect(status.status == 0, "\(status)")
        #expect(try status.json(DaemonStatus.self).role == .agent)
        // Outside 10/8, where every lab subnet lies: the prefix may not hold the agent's own address.
        let added = try remote(["device", "add", "remote", "--key", randomPublicKey(), "--address", "198.18.0.0/16", "--json"])
        #expect(added.status == 0, "\(added)")
        #expect(try T.ok(daemons.agent.control, ["device", "show", "remote", "--json"]).json(Device.self).addresses == ["198.18.0.0/16"])
        let unknown = try remote(["device", "show", "nobody"])
        expectFailure(unknown, 2, "no device nobody", ["device", "show", "nobody", "--api", "…"])

        // Roles from the certificate (issue 12 item 9): a registrar enrols and nothing else; a
        // certificate that names no role may do nothing; a revoked one is refused.
        let enrolled = try remote(["device", "add", "phone", "--key", randomPublicKey(), "--address", "10.96.0.0/16"],
                                  cert: "registrar.pem", key: "registrar.key")
        #expect(enrolled.status == 0, "a registrar enrols: \(enrolled)")
        #expect(try remote(["device", "list"], cert: "registrar.pem", key: "registrar.key").status == 0)
        for args in [["transfer", "list"], ["device", "del", "phone"], ["policy", "list"], ["node", "status"]] {
            expectFailure(try remote(args, cert: "registrar.pem", key: "registrar.key"), 77,
                          "a registrar certificate may not", args + ["(registrar)"])
        }
        expectFailure(try remote(["device", "list"], cert: "nobody.pem", key: "nobody.key"), 77,
                      "names no role: its subject needs OU=operator or OU=registrar", ["device", "list", "(no role)"])
        expectFailure(try remote(["device", "list"], cert: "revoked.pem", key: "revoked.key"), 77, "is revoked",
                      ["device", "list", "(revoked)"])
        #expect(try T.ok(daemons.agent.control, ["device", "list", "--json"]).json([Device].self).map(\.name).sorted()
                == ["phone", "remote", "target", "tn"], "only the registrar's enrolment changed anything")

        // A client certificate the daemon's CA did not sign is turned away: nothing answers.
        let stranger = try remote(["device", "list"], cert: "stranger.pem", key: "stranger.key")
        expectFailure(stranger, 69, "no answer from batond at https://\(sa):7391", ["device", "list", "--api", "… (stranger)"])
        failed = false
    }

    /// Parsing happens before connecting: no daemon is needed to refuse these.
    @Test func badInputIsOneLineUsage() throws {
        let sock = "/nonexistent.sock"
        let good = randomPublicKey()
        let add = ["device", "add", "phone", "--key", good, "--address", "10.0.0.0/24"]
        let cases: [(Int32, String, [String])] = [
            (64, "invalid public key 'abc'", ["device", "add", "phone", "--key", "abc", "--address", "10.0.0.1"]),
            (64, "invalid public key", ["device", "add", "phone", "--key", String(good.dropLast()) + "!", "--address", "10.0.0.1"]),
            (64, "invalid public key", ["device", "add", "phone", "--key", String(good.dropLast()) + "B", "--address", "10.0.0.1"]),
            (64, "invalid address prefix '10.0.0.0/33'", ["device", "add", "phone", "--key", good, "--address", "10.0.0.0/33"]),
            (64, "invalid address prefix 'nope'", ["device", "add", "phone", "--key", good, "--address", "10.0.0.1", "--address", "nope"]),
            (64, "invalid address prefix '10.0.0.1/'", ["device", "add", "phone", "--key", good, "--address", "10.0.0.1/"]),
            (64, "invalid device name 'bad name'", ["device", "add", "bad name", "--key", good, "--address", "10.0.0.1"]),
            (64, "invalid device name 'a/b'", ["device", "show", "a/b"]),
            (64, "invalid device name '\(String(repeating: "x", count: 64))'", ["device", "del", String(repeating: "x", count: 64)]),
            (64, "invalid rate '0'", add + ["--rate-limit", "0"]),
            (64, "invalid rate '1e9': expected 0.001-1000000 per second", add + ["--rate-limit", "1e9"]),
            (64, "invalid rate 'fast'", add + ["--rate-limit", "fast"]),
            (64, "invalid device 'a b'", ["policy", "add", "--from", "a b", "--to", "*"]),
            (64, "invalid device '**'", ["policy", "add", "--from", "tn", "--to", "**"]),
            (64, "invalid policy ID 'x'", ["policy", "del", "x"]),
        ]
        for (status, message, args) in cases {
            expectFailure(try T.ctl(sock, args), status, message, args)
        }
        // A key that begins with '-' needs --key=KEY: without it, ArgumentParser's usage error.
        let dash = randomPublicKey(startingWithDash: true)
        let bare = try T.ctl(sock, ["device", "add", "phone", "--key", dash, "--address", "10.0.0.1"])
        #expect(bare.status == 64, "\(bare)")
        // Missing --address is ArgumentParser's usage error.
        let missing = try T.ctl(sock, ["device", "add", "phone", "--key", good])
        #expect(missing.status == 64 && missing.stderr.contains("--address"), "\(missing)")
        // Well-formed requests get as far as the (missing) daemon.
        for args in [add, add + ["--rate-limit", "0.5"], ["device", "add", "phone", "--key=\(dash)", "--address", "fd00::/64"],
                     ["device", "show", "phone"], ["device", "del", "a.b-c_d"], ["policy", "add", "--from", "*", "--to", "*"],
                     ["policy", "del", "3"], ["policy", "list"], ["device", "list", "--json"], ["metrics"], ["metrics", "--json"]] {
            expectFailure(try T.ctl(sock, args), 69, "no daemon at \(sock)", args)
        }
    }

    @Test func daemonOptionsAreCheckedFirst() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("batonctl-opts-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["ca.pem", "c.pem", "c.key"] { _ = FileManager.default.createFile(atPath: "\(dir)/\(name)", contents: Data("x".utf8)) }
        let tls = ["--tls-ca", "\(dir)/ca.pem", "--tls-cert", "\(dir)/c.pem", "--tls-key", "\(dir)/c.key"]
        let cases: [(Int32, String, [String])] = [
            (64, "--control and --api are exclusive", ["device", "list", "--control", "/x.sock", "--api", "https://10.0.0.1:7391"] + tls),
            (64, "--api needs --tls-key", ["device", "list", "--api", "https://10.0.0.1:7391", "--tls-ca", "\(dir)/ca.pem",
                                           "--tls-cert", "\(dir)/c.pem"]),
            (64, "invalid --api 'http://10.0.0.1:7391'", ["node", "status", "--api", "http://10.0.0.1:7391"] + tls),
            (64, "invalid --api 'https://10.0.0.1'", ["node", "status", "--api", "https://10.0.0.1"] + tls),
            (64, "invalid --api 'https://10.0.0.1:7391/v1'", ["node", "status", "--api", "https://10.0.0.1:7391/v1"] + tls),
            (64, "go with --api", ["transfer", "list", "--tls-ca", "\(dir)/ca.pem"]),
            (2, "cannot read \(dir)/missing.pem", ["metrics", "--api", "https://10.0.0.1:7391", "--tls-ca", "\(dir)/missing.pem",
                                                   "--tls-cert", "\(dir)/c.pem", "--tls-key", "\(dir)/c.key"]),
            (64, "invalid --control ''", ["node", "status", "--control", ""]),
            (64, "a socket path is at most", ["node", "status", "--control", "/" + String(repeating: "s", count: 200)]),
            // Before the verb, as after it.
            (69, "no daemon at /nonexistent.sock", ["--control", "/nonexistent.sock", "node", "status"]),
            (69, "no daemon at /nonexistent.sock", ["--control", "/nonexistent.sock", "policy", "list", "--json"]),
            (64, "--control and --api are exclusive", ["--api", "https://10.0.0.1:7391", "device", "list", "--control", "/x.sock"] + tls),
        ]
        for (status, message, args) in cases {
            expectFailure(try batonctl(args), status, message, args)
        }
        // The TLS files are read when connecting: files that are not PEM are the client's usage error.
        let garbage = ["device", "list", "--api", "https://127.0.0.1:9"] + tls
        expectFailure(try batonctl(garbage), 64, "cannot read the TLS files", garbage)
    }
}

/// A CA, a server certificate for `serverIP` and client certificates it signed (`client`:
/// OU=operator, `registrar`: OU=registrar, `nobody`: no role, `revoked`: OU=operator, its
/// serial in `revoked.txt`), and a "stranger" client certificate from another CA, as PEM files
/// in `dir` (openssl).
func makeCertificates(_ dir: String, serverIP: String) throws {
    func openssl(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        if p.terminationStatus != 0 { Issue.record("openssl \(args.joined(separator: " ")): \(text)") }
        try #require(p.terminationStatus == 0)
    }
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ["ca", "otherca"] {
        try openssl(["req", "-x509"] + ec + ["-keyout", "\(ca).key", "-out", "\(ca).pem", "-days", "2", "-subj", "/CN=\(ca)"])
    }
    func issue(_ name: String, by ca: String, extensions: String, unit: String? = nil) throws {
        try openssl(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)" + (unit.map { "/OU=\($0)" } ?? "")])
        try Data(extensions.utf8).write(to: URL(fileURLWithPath: "\(dir)/\(name).ext"))
        try openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key", "-CAcreateserial",
                     "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext"])
    }
    try issue("server", by: "ca", extensions: "subjectAltName=IP:\(serverIP)\nextendedKeyUsage=serverAuth\n")
    try issue("client", by: "ca", extensions: "extendedKeyUsage=clientAuth\n", unit: "operator")
    try issue("registrar", by: "ca", extensions: "extendedKeyUsage=clientAuth\n", unit: "registrar")
    try issue("nobody", by: "ca", extensions: "extendedKeyUsage=clientAuth\n")
    try issue("revoked", by: "ca", extensions: "extendedKeyUsage=clientAuth\n", unit: "operator")
    try issue("stranger", by: "otherca", extensions: "extendedKeyUsage=clientAuth\n", unit: "operator")
    // `openssl x509 -serial` prints "serial=HEX".
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = ["x509", "-noout", "-serial", "-in", "\(dir)/revoked.pem"]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let serial = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    let hex = try #require(serial.split(separator: "=").last).trimmingCharacters(in: .whitespacesAndNewlines)
    try Data("# revoked by the test\n\(hex)\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/revoked.txt"))
}
