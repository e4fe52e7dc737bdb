// batond's numbers from the command line, checked where they enter: a value out of range,
// infinite or not a number is refused before anything starts, with the flag and its range.
import BatonLab
import Foundation
import Testing

@Suite(.enabled(if: LabDaemons.findBatond() != nil, "batond not built next to the tests"))
struct BatondFlagsTests {
    @Test(arguments: [
        (["agent", "--linger", "inf"], "invalid --linger inf: expected 0-60 seconds"),
        (["agent", "--linger=-1"], "invalid --linger -1.0: expected 0-60 seconds"),
        (["agent", "--announce-refresh", "inf"], "invalid --announce-refresh inf: expected 0-3600 seconds"),
        (["agent", "--announce-refresh", "0.0001"], "invalid --announce-refresh 0.0001: expected 0.1-3600 seconds (0: never)"),
        (["agent", "--max-rules", "5000000000"], "invalid --max-rules 5000000000: expected 1-4194304"),
        (["agent", "--max-takeovers", "0"], "invalid --max-takeovers 0: expected 1-1048576"),
        (["agent", "--max-takeovers", "1048577"], "invalid --max-takeovers 1048577: expected 1-1048576"),
        (["agent", "--idle-timeout", "1e308"], "invalid --idle-timeout 1e+308: expected 0.1-86400 seconds"),
        (["agent", "--idle-timeout=-5"], "invalid --idle-timeout -5.0: expected 0.1-86400 seconds"),
        (["agent", "--rate-limit", "nan"], "invalid --rate-limit nan: expected 0.001-1000000 registrations/s"),
        (["agent", "--rate-burst", "1e9"], "invalid --rate-burst 1000000000.0: expected 1-1000000 registrations"),
        (["agent", "--announce-count", "0"], "invalid --announce-count 0: expected 1-100"),
        (["node", "--announce-interval", "99999"], "invalid --announce-interval 99999: expected 0-10000 ms"),
        (["agent", "--port", "70000"], "invalid port 70000: expected 1-65535"),
        (["agent", "--cookie-threshold=-1"], "invalid --cookie-threshold -1: expected 0-10000000 messages/s"),
        (["agent", "--cookie-threshold", "10000001"], "invalid --cookie-threshold 10000001: expected 0-10000000 messages/s"),
        (["agent", "--relay-ports", "7000-8000"], "--relay-ports 7000-8000 holds the protocol port 7390 (--port)"),
        (["agent", "--relay-ports", "40000-30000"], "--relay-ports must be FIRST-LAST with 1024 <= FIRST < LAST <= 65535"),
        (["agent", "--relay-ports", "80-90"], "--relay-ports must be FIRST-LAST with 1024 <= FIRST < LAST <= 65535"),
        (["agent", "--anchor-grace", "3601"], "invalid --anchor-grace 3601.0: expected 0-3600 seconds"),
        (["agent", "--anchor-idle-timeout", "0"], "invalid --anchor-idle-timeout 0.0: expected 0.1-86400 seconds"),
        (["agent", "--mode", "bridge"], "--mode must be takeover or switch, not 'bridge'"),
        (["agent", "--switch-port", "eth1"], "--switch-port needs --mode switch"),
        (["agent", "--sip-listen", "10.0.0.1:5060"], "--sip-listen, --sip-route, --sip-lockout, --sip-expires and --sip-media need --sip-domain"),
        (["agent", "--sip-expires", "10-20"], "--sip-listen, --sip-route, --sip-lockout, --sip-expires and --sip-media need --sip-domain"),
        (["agent", "--sip-domain", "example.com", "--sip-expires", "20-10"], "--sip-expires must be MIN-MAX seconds with 1 <= MIN <= MAX <= 86400, not '20-10'"),
        (["agent", "--sip-domain", "example.com", "--sip-expires", "0-10"], "--sip-expires must be MIN-MAX seconds"),
        (["agent", "--sip-domain", "example.com", "--sip-expires", "60"], "--sip-expires must be MIN-MAX seconds"),
        (["agent", "--sip-media", "userspace"], "--sip-listen, --sip-route, --sip-lockout, --sip-expires and --sip-media need --sip-domain"),
        (["agent", "--sip-domain", "example.com", "--sip-media", "kernel"], "--sip-media must be xdp or userspace, not 'kernel'"),
        (["agent", "--sip-domain", "example.com", "--sip-expires", "1-99999"], "--sip-expires must be MIN-MAX seconds"),
        (["agent", "--sip-domain", "10.0.0.1"], "--sip-domain must be a domain name, not '10.0.0.1'"),
        (["agent", "--sip-domain", "ex ample"], "--sip-domain must be a domain name, not 'ex ample'"),
        (["agent", "--sip-domain", "example.com", "--sip-listen", "10.0.0.1"], "--sip-listen must be ADDR:PORT"),
        (["agent", "--sip-domain", "example.com", "--sip-listen", "10.0.0.1:30000"], "--relay-ports 30000-39999 holds the SIP port 30000 (--sip-listen)"),
        (["agent", "--sip-domain", "example.com", "--relay-ports", "5000-6000"], "--relay-ports 5000-6000 holds the SIP port 5060"),
        (["agent", "--sip-domain", "example.com", "--sip-route", "other.test"], "--sip-route must be DOMAIN=ADDR:PORT, not 'other.test'"),
        (["agent", "--sip-domain", "example.com", "--sip-digest", "SHA-512"], "--sip-digest takes SHA-256 and/or MD5"),
        (["agent", "--sip-domain", "example.com", "--sip-digest", "MD5,MD5"], "--sip-digest takes SHA-256 and/or MD5"),
        (["agent", "--sip-domain", "example.com", "--mode", "switch"], "--sip-domain needs --mode takeover"),
        (["agent", "--sip-domain", "example.com", "--sip-lockout", "0"], "invalid --sip-lockout 0.0: expected 0.001-86400 seconds"),
        (["agent", "--control", "/tmp/batond-flags-test.sock"], "the directory of --control /tmp/batond-flags-test.sock, /tmp, is writable by group or others (mode 1777)"),
    ])
    func outOfRangeIsRefusedWithTheFlagAndTheRange(arguments: [String], message: String) throws {
        let batond = try #require(LabDaemons.findBatond())
        let run = try ToolRun.run(batond, arguments + ["--state-dir", "/nonexistent/never-created"], timeout: 20)
        #expect(run.status == 64, "\(arguments): \(run)")
        #expect(run.stderr.contains(message), "\(arguments): \(run)")
        #expect(!run.stderr.contains("Fatal error"), "\(arguments): \(run)")
    }

    /// --tls-revoked: only with --listen, and a file whose every line is a serial number.
    @Test func revocationFileIsChecked() throws {
        let batond = try #require(LabDaemons.findBatond())
        let dir = "/tmp/batond-revoked-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("# ok\n1A:2b\n\nnot-a-serial\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/bad.txt"))
        for (arguments, message) in [
            (["agent", "--tls-revoked", "\(dir)/bad.txt"], "go with --listen"),
            (["agent", "--listen", "127.0.0.1:7391", "--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca",
              "--tls-revoked", "\(dir)/bad.txt"], "line 4: 'not-a-serial' is not a hexadecimal serial number"),
            (["agent", "--listen", "127.0.0.1:7391", "--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca",
              "--tls-revoked", "\(dir)/missing.txt"], "cannot read --tls-revoked \(dir)/missing.txt"),
        ] {
            let run = try ToolRun.run(batond, arguments + ["--state-dir", "/nonexistent/never-created"], timeout: 20)
            #expect(run.status == 64, "\(arguments): \(run)")
            #expect(run.stderr.contains(message), "\(arguments): \(run)")
        }
    }
}
