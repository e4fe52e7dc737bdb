import Foundation
import Testing
@testable import BatonSIP

/// Framing a TCP stream (RFC 3261 18.3): Content-Length marks where each message ends.
@Suite struct FramingTests {
    let first = wire(inviteLines + ["Content-Type: application/sdp", "Content-Length: 4"], body: "v=0\n")
    let second = wire(inviteLines.map { $0.replacingOccurrences(of: "314159", with: "314160") } + ["l: 0"])

    /// Cuts `stream` the way the server does: each message parsed, pings counted.
    func cut(_ stream: [UInt8]) throws -> (messages: [SIPMessage], pings: Int, left: Int) {
        var rest = stream, messages: [SIPMessage] = [], pings = 0
        while let f = try SIPParser.frame(stream: rest) {
            switch f {
            case .message(let n):
                messages.append(try SIPParser.parse(datagram: Array(rest.prefix(n))))
                rest.removeFirst(n)
            case .ping: pings += 1; rest.removeFirst(4)
            case .pong: rest.removeFirst(2)
            }
        }
        return (messages, pings, rest.count)
    }

    @Test func messagesBackToBackAreCutAtTheirContentLength() throws {
        let (messages, pings, left) = try cut(first + Array("\r\n\r\n".utf8) + second + Array("\r\n".utf8) + first)
        #expect(messages.map { $0.cseq?.number } == [314159, 314160, 314159])
        #expect(messages[0].body == Array("v=0\n".utf8) && messages[1].body.isEmpty)
        #expect(pings == 1 && left == 0)
    }

    /// Every prefix of a message is "more needed", never a message or a refusal.
    @Test func everyPrefixWaitsForMore() throws {
        for n in 0..<first.count { #expect(try SIPParser.frame(stream: Array(first.prefix(n))) == nil, "prefix \(n)") }
        #expect(try SIPParser.frame(stream: first) == .message(first.count))
        #expect(try SIPParser.frame(stream: first + second.prefix(10)) == .message(first.count))
    }

    /// A reader that keeps how far it searched finds the same messages, a byte at a time,
    /// with every byte of a header looked at once.
    @Test func aTrickledStreamIsCutTheSameWithTheSearchResumed() throws {
        let stream = first + second
        var buffer: [UInt8] = [], searched = 0, cut: [Int] = []
        for byte in stream {
            buffer.append(byte)
            while let f = try SIPParser.frame(stream: buffer, searched: &searched) {
                guard case .message(let n) = f else { Issue.record("\(f)"); return }
                #expect(try SIPParser.parse(datagram: Array(buffer.prefix(n))).method == "INVITE")
                cut.append(n)
                buffer.removeFirst(n)
                searched = 0
            }
            #expect(searched <= buffer.count)
        }
        #expect(cut == [first.count, second.count] && buffer.isEmpty)
    }

    @Test func aStreamWithoutContentLengthIsRefusedWithAnAnswer() throws {
        let e = #expect(throws: SIPParseError.self) { try SIPParser.frame(stream: wire(inviteLines)) }
        #expect(e?.status == 400 && e?.answer?.status == 400)
        let twice = wire(inviteLines + ["Content-Length: 4", "Content-Length: 5"], body: "v=0\n")
        #expect(throws: SIPParseError.self) { try SIPParser.frame(stream: twice) }
        let bad = wire(inviteLines + ["Content-Length: 4x"], body: "v=0\n")
        #expect(throws: SIPParseError.self) { try SIPParser.frame(stream: bad) }
        // The same value twice and whitespace around it frame fine.
        let same = wire(inviteLines + ["Content-Length:  4 ", "content-length:4"], body: "v=0\n")
        #expect(try SIPParser.frame(stream: same) == .message(same.count))
    }

    @Test func endlessHeadersAndHugeBodiesAreRefused() throws {
        let endless = Array("INVITE sip:a@b SIP/2.0\r\nX: ".utf8) + [UInt8](repeating: 0x61, count: SIPParser.maxMessage)
        #expect(throws: SIPParseError.self) { try SIPParser.frame(stream: endless) }
        let huge = wire(inviteLines + ["Content-Length: 65500"])
        let e = #expect(throws: SIPParseError.self) { try SIPParser.frame(stream: huge) }
        #expect(e?.status == 413)
    }
}
