import Testing
import BatonBPF
import BatonModel
@testable import BatonDataPlane

@Suite(.serialized) struct SmokeTests {
    @Test func loadsAndSteersOneUDPPacket() throws {
        let dp = try DataPlane.load(.init(pinRoot: nil, maxRules: 1024, maxTakeovers: 64))
        let tn = MACAddress("02:00:00:00:00:02")!, sa = MACAddress("02:00:00:00:00:0a")!, tgt = MACAddress("02:00:00:00:00:03")!
        try dp.setTakeover(Takeover(address: IPAddress("10.0.0.2")!, defaultForward: .l2(to: tn, from: sa), agentMAC: sa))
        try dp.setRule(SessionRule(match: SessionMatch(proto: .udp, source: IPAddress("10.0.0.1")!, sourcePort: 1000,
                                                        destination: IPAddress("10.0.0.2")!, destinationPort: 2000),
                                   forward: .l2(to: tgt, from: sa)))
        // eth + ipv4 + udp, 10.0.0.1:1000 -> 10.0.0.2:2000
        var p: [UInt8] = [2,0,0,0,0,0x0a, 2,0,0,0,0,1, 0x08,0x00]
        p += [0x45,0,0,28, 0,1,0,0, 64,17,0,0, 10,0,0,1, 10,0,0,2]
        p += [0x03,0xe8, 0x07,0xd0, 0,8, 0,0]
        let r = try dp.steerProgram.testRun(p)
        #expect(r.retval == XDPAction.tx.rawValue)
        #expect(Array(r.output[0..<6]) == tgt.bytes)
        var q = p
        q[35] = 0xe9 // other source port: default to TN
        let r2 = try dp.steerProgram.testRun(q)
        #expect(r2.retval == XDPAction.tx.rawValue)
        #expect(Array(r2.output[0..<6]) == tn.bytes)
        let rules = try dp.rules()
        #expect(rules.count == 1 && rules[0].counter.packets == 1)
        let clock = try dp.clock()
        #expect(clock.hz >= 100)
        #expect(try dp.takeovers()[0].counter.packets == 1)
    }
}
