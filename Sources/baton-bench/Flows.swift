import BatonDataPlane
import BatonModel
import BatonPacket

/// The addresses, flows, rules and frames of the benchmark.
///
/// The measured flow is one UDP session from a correspondent (S) to the
/// taken-over address (X): `S:40000 -> X:5004`. Its exact rule is what "hit"
/// means; `S:40001 -> X:5004` has no rule and takes the takeover's default
/// ("miss"). Filler rules are distinct exact UDP rules for the same taken-over
/// address from 100.64.0.0/10 correspondents, so they share the table (and its
/// hash buckets) with the measured rule.
enum World {
    // RFC 2544's benchmarking range, outside every lab subnet.
    static let correspondent = IPAddress("198.18.0.1")!
    static let takenOver = IPAddress("198.19.0.10")!
    static let notTakenOver = IPAddress("198.19.0.11")!
    static let agent = IPAddress("198.19.0.1")!       // outer source of the tunnel
    static let tunnelTarget = IPAddress("198.19.0.20")!
    static let flowSourcePort: UInt16 = 40000
    static let missSourcePort: UInt16 = 40001
    static let flowDestinationPort: UInt16 = 5004
    /// 60 bytes: the 64-byte Ethernet minimum without the FCS.
    static let payloadBytes = 18
    /// TTL of generated frames (the kernel-forwarding run decrements it; see Throughput).
    static let ttl: UInt8 = 255

    // Test-run MACs (the throughput run uses the lab's real ones).
    static let agentMAC = MACAddress("02:00:00:00:00:0a")!
    static let tnMAC = MACAddress("02:00:00:00:00:02")!
    static let targetMAC = MACAddress("02:00:00:00:00:03")!
    static let cnMAC = MACAddress("02:00:00:00:00:01")!

    static var flow: SessionMatch {
        SessionMatch(proto: .udp, source: correspondent, sourcePort: flowSourcePort,
                     destination: takenOver, destinationPort: flowDestinationPort)
    }

    static func l2(to: MACAddress = targetMAC, from: MACAddress = agentMAC) -> Forwarding {
        .l2(to: to, from: from)
    }

    static var encap: Forwarding {
        .encap(to: tunnelTarget, from: agent, nextHop: targetMAC, sourceMAC: agentMAC)
    }

    static func takeover(defaultTo mac: MACAddress = tnMAC, from agentMAC: MACAddress = agentMAC) -> Takeover {
        Takeover(address: takenOver, defaultForward: .l2(to: mac, from: agentMAC))
    }

    /// `count` rules in total: the measured flow's rule (forwarding `flowForward`)
    /// and `count - 1` distinct exact UDP fillers.
    static func rules(count: Int, flowForward: Forwarding) -> [SessionRule] {
        precondition(count >= 1 && count <= 50_000 * 65_536)
        var out: [SessionRule] = []
        out.reserveCapacity(count)
        out.append(SessionRule(match: flow, forward: flowForward))
        let filler = l2()
        for i in 0..<(count - 1) { out.append(SessionRule(match: fillerMatch(i), forward: filler)) }
        return out
    }

    /// Filler `i`'s flow: 100.64.0.0/10 + i / 50000, port 10000 + i % 50000 (baton_gen's i-th).
    static func fillerMatch(_ i: Int) -> SessionMatch {
        SessionMatch(proto: .udp, source: IPAddress.v4(0x6440_0000 + UInt32(i / 50_000)), sourcePort: UInt16(10_000 + i % 50_000),
                     destination: takenOver, destinationPort: flowDestinationPort)
    }

    /// The anchored path's relay: from the anchor (the agent's address, relay port 30000) to
    /// the taken-over address, port 5004 again. baton_gen rewrites only the source of the
    /// frames it sends again, so the destination must stay the rules' for the next round.
    static func relay(to mac: MACAddress, from agentMAC: MACAddress) -> Forwarding {
        .relay(.init(source: agent, sourcePort: 30000, destination: takenOver, destinationPort: flowDestinationPort),
               nextHop: mac, sourceMAC: agentMAC)
    }

    /// A 60-byte UDP/IPv4 frame with correct IPv4 and UDP checksums.
    static func frame(dstMAC: MACAddress, srcMAC: MACAddress, src: IPAddress, dst: IPAddress,
                      sport: UInt16, dport: UInt16, ttl: UInt8 = ttl) -> [UInt8] {
        let payload = (0..<payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        let f = Frame(ethernet: EthernetHeader(dst: dstMAC, src: srcMAC),
                      network: .ipv4(IPv4Header(src: src, dst: dst, ttl: ttl, identification: 1)),
                      transport: .udp(UDPDatagram(sport: sport, dport: dport, payload: payload)))
        let bytes = f.bytes
        // Checked once here so a builder change can never feed the kernel bad checksums.
        if let parsed = try? ParsedFrame(bytes) {
            precondition(verifyAllChecksums(parsed), "generated frame has a bad checksum")
        } else {
            preconditionFailure("generated frame does not parse")
        }
        return bytes
    }

    static func flowFrame(dstMAC: MACAddress = agentMAC, srcMAC: MACAddress = cnMAC, miss: Bool = false) -> [UInt8] {
        frame(dstMAC: dstMAC, srcMAC: srcMAC, src: correspondent, dst: takenOver,
              sport: miss ? missSourcePort : flowSourcePort, dport: flowDestinationPort)
    }
}
