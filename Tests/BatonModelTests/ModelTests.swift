import Foundation
import Testing
import BatonModel

@Suite("BatonModel addresses")
struct IPAddressTests {
    @Test(arguments: [
        ("10.0.0.1", UInt32(0x0a00_0001)), ("0.0.0.0", 0), ("255.255.255.255", 0xffff_ffff), ("192.0.2.1", 0xc000_0201),
    ])
    func parsesIPv4(text: String, value: UInt32) {
        #expect(IPAddress(text) == .v4(value))
        #expect(IPAddress(text)?.description == text)
        #expect(IPAddress(text)?.family == .v4)
    }

    @Test(arguments: [
        "", " ", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.-1", " 1.2.3.4", "1.2.3.4 ", "01.2.3.4", "1.2.3.4/24",
        "0x0a.0.0.1", "10.1", "abc", "1::2::3", "12345::", ":::", "2001:db8::g", "1:2:3:4:5:6:7:8:9",
        "fe80::1%eth0", "::ffff:1.2.3.4.5", "[::1]",
    ])
    func rejectsInvalid(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test(arguments: [
        ("::", "::"), ("::1", "::1"), ("2001:db8::1", "2001:db8::1"), ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("fe80::ff:fe00:a", "fe80::ff:fe00:a"), ("ff02::1:ff00:a", "ff02::1:ff00:a"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0db8:0001:0000:0000:0000:0000:0000", "2001:db8:1::"),
    ])
    func parsesAndFormatsIPv6(text: String, canonical: String) throws {
        let a = try #require(IPAddress(text))
        #expect(a.family == .v6)
        #expect(a.description == canonical)          // RFC 5952 form from inet_ntop
        #expect(IPAddress(canonical) == a)
        #expect(a.wireBytes.count == 16)
    }

    @Test func mappedFormRoundTrip() throws {
        let v4 = ip("10.0.0.1")
        #expect(v4.bytes16 == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1])
        #expect(IPAddress(bytes16: v4.bytes16) == v4)
        let v6 = ip("2001:db8::1")
        #expect(IPAddress(bytes16: v6.bytes16) == v6)
        // Text "::ffff:a.b.c.d" names the IPv4 host: one value for one host.
        let mapped = ip("::ffff:10.0.0.1")
        #expect(mapped == v4)
        #expect(mapped.family == .v4)
    }

    @Test func wireBytes() {
        #expect(IPAddress(wire: [192, 0, 2, 1]) == ip("192.0.2.1"))
        #expect(IPAddress(wire: ip("2001:db8::1").wireBytes) == ip("2001:db8::1"))
        #expect(IPAddress(wire: [1, 2, 3]) == nil)
        #expect(IPAddress(wire: [UInt8](repeating: 0, count: 5)) == nil)
        #expect(ip("192.0.2.1").wireBytes == [192, 0, 2, 1])
    }

    @Test func properties() {
        #expect(ip("224.0.0.1").isMulticast && ip("239.255.255.255").isMulticast)
        #expect(!ip("223.255.255.255").isMulticast && !ip("240.0.0.0").isMulticast)
        #expect(ip("ff02::1").isMulticast && !ip("fe80::1").isMulticast)
        #expect(ip("0.0.0.0").isUnspecified && ip("::").isUnspecified && !ip("::1").isUnspecified)
        #expect(ip("10.0.0.1") < ip("10.0.0.2") && ip("10.255.255.255") < ip("2001:db8::1"))
    }

    @Test func codable() throws {
        let list = [ip("10.0.0.1"), ip("2001:db8::1")]
        let json = try JSONEncoder().encode(list)
        #expect(String(decoding: json, as: UTF8.self) == #"["10.0.0.1","2001:db8::1"]"#)
        #expect(try JSONDecoder().decode([IPAddress].self, from: json) == list)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([IPAddress].self, from: Data(#"["10.0.0.256"]"#.utf8)) }
    }
}

@Suite("BatonModel MAC addresses")
struct MACAddressTests {
    @Test(arguments: [
        ("02:00:00:00:00:0a", "02:00:00:00:00:0a"), ("02-00-00-00-00-0A", "02:00:00:00:00:0a"),
        ("FF:FF:FF:FF:FF:FF", "ff:ff:ff:ff:ff:ff"), ("33:33:ff:00:00:0a", "33:33:ff:00:00:0a"),
    ])
    func parsesAndFormats(text: String, canonical: String) throws {
        let m = try #require(MACAddress(text))
        #expect(m.description == canonical)
        #expect(MACAddress(canonical) == m)
        #expect(m.bytes.count == 6)
    }

    @Test(arguments: [
        "", "02:00:00:00:00", "02:00:00:00:00:0a:0b", "0g:00:00:00:00:0a", "2:0:0:0:0:a", "02:00-00:00:00:0a",
        "020000:00:00:0a", "02:00:00:00:00:0a ", "02.00.00.00.00.0a", "::::::", "002:00:00:00:00:0a",
    ])
    func rejectsInvalid(text: String) {
        #expect(MACAddress(text) == nil)
    }

    /// `UInt8(_:radix:)` accepts a sign; octets must be two hex digits.
    @Test func signedOctetsAreRejected() {
        #expect(MACAddress("+a:00:00:00:00:0a") == nil)
        #expect(MACAddress("-0:00:00:00:00:0a") == nil)
    }

    @Test func properties() throws {
        #expect(MACAddress.broadcast.isMulticast && !MACAddress.broadcast.isZero)
        #expect(MACAddress.zero.isZero && !MACAddress.zero.isMulticast)
        #expect(mac("33:33:00:00:00:01").isMulticast && !mac("02:00:00:00:00:01").isMulticast)
        #expect(MACAddress(bytes: [1, 2, 3, 4, 5, 6])?.description == "01:02:03:04:05:06")
        #expect(MACAddress(bytes: [1, 2, 3, 4, 5]) == nil)
        #expect(MACAddress(bytes: [UInt8](repeating: 1, count: 7)) == nil)
        let json = try JSONEncoder().encode(macA)
        #expect(String(decoding: json, as: UTF8.self) == #""02:00:00:00:00:0a""#)
        #expect(try JSONDecoder().decode(MACAddress.self, from: json) == macA)
    }
}

@Suite("BatonModel protocols")
struct IPProtocolTests {
    @Test func names() {
        #expect(IPProtocol(name: "TCP") == .tcp)
        #expect(IPProtocol(name: "ipv6-icmp") == .icmpv6 && IPProtocol(name: "icmp6") == .icmpv6)
        #expect(IPProtocol(name: "sctp") == nil)
        #expect(IPProtocol.allCases.map(\.description) == ["icmp", "tcp", "udp", "icmpv6"])
        #expect(IPProtocol.tcp.hasPorts && !IPProtocol.icmp.hasPorts)
    }
}
