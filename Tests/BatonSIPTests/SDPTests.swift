import BatonModel
import Testing
@testable import BatonSIP

@Suite struct SDPTests {
    let offer = """
    v=0\r
    o=alice 2890844526 2890844526 IN IP4 192.0.2.1\r
    s=-\r
    c=IN IP4 192.0.2.1\r
    t=0 0\r
    m=audio 49170 RTP/AVP 0 8\r
    a=rtpmap:0 PCMU/8000\r
    m=video 51372 RTP/AVP 31\r
    c=IN IP4 192.0.2.9\r
    a=rtcp:53020 IN IP4 192.0.2.10\r

    """

    @Test func readsEndpoints() throws {
        let d = try SessionDescription(parsing: Array(offer.utf8))
        #expect(d.media.count == 2)
        #expect(d.mediaType(0) == "audio")
        #expect(d.rtpEndpoint(0) == Endpoint("192.0.2.1:49170"))
        #expect(d.rtcpEndpoint(0) == Endpoint("192.0.2.1:49171"))
        #expect(d.rtpEndpoint(1) == Endpoint("192.0.2.9:51372"))
        #expect(d.rtcpEndpoint(1) == Endpoint("192.0.2.10:53020"))
    }

    @Test func anchoringRewritesOneMediaAndTheVersion() throws {
        let d = try SessionDescription(parsing: Array(offer.utf8))
        let a = d.anchoring(media: 0, rtp: Endpoint("198.51.100.1:30000")!, rtcp: Endpoint("198.51.100.1:30003")!)
        let back = try SessionDescription(parsing: a.bytes)
        #expect(back.rtpEndpoint(0) == Endpoint("198.51.100.1:30000"))
        #expect(back.rtcpEndpoint(0) == Endpoint("198.51.100.1:30003"))
        #expect(back.rtpEndpoint(1) == Endpoint("192.0.2.9:51372"))       // the other media untouched
        #expect(back.lines.first { $0.type == "o" }?.value == "alice 2890844526 2890844527 IN IP4 192.0.2.1")
        #expect(back.lines.contains { $0.value == "rtpmap:0 PCMU/8000" })
        // RTCP at RTP + 1 needs no attribute.
        let plain = d.anchoring(media: 0, rtp: Endpoint("198.51.100.1:30000")!, rtcp: Endpoint("198.51.100.1:30001")!)
        #expect(!String(decoding: plain.bytes, as: UTF8.self).contains("a=rtcp:30001"))
    }

    @Test(arguments: ["", "o=x 1 1 IN IP4 1.2.3.4\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\n",
                      "v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n",   // no c=
                      "v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\nbogus\r\n", "v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 host.example\r\nm=audio 4000 RTP/AVP 0\r\n"])
    func malformedRefused(_ text: String) {
        #expect(throws: SIPSyntaxError.self) { try SessionDescription(parsing: Array(text.utf8)) }
    }
}
