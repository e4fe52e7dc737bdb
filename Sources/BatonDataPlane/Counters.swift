import CBatonABI

/// A rule's or takeover's traffic, summed over CPUs.
public struct Counter: Equatable, Sendable, Codable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    /// bpf_jiffies64() of the last packet; 0 when none was seen.
    public var lastSeenJiffies: UInt64 = 0
    /// OR of the TCP flags seen: FIN (0x01) or RST (0x04) end a session.
    public var tcpFlags: UInt8 = 0

    public init() {}

    init(perCPU: [baton_counter]) {
        for c in perCPU {
            packets += c.packets
            bytes += c.bytes
            lastSeenJiffies = max(lastSeenJiffies, c.last_seen)
            tcpFlags |= UInt8(truncatingIfNeeded: c.tcp_flags)
        }
    }

    public var sawFinOrReset: Bool { tcpFlags & 0x05 != 0 }

    /// Seconds since the last packet, by `clock`; nil when none was seen.
    public func idleSeconds(at clock: KernelClock) -> Double? {
        guard packets > 0, lastSeenJiffies > 0 else { return nil }
        return clock.seconds(sinceJiffies: lastSeenJiffies)
    }
}

/// The kernel's jiffies and monotonic clock at one instant, read through the
/// baton_clock program, and the tick rate between them. Turns last-seen
/// stamps (jiffies, because the XDP path cannot afford the ktime helpers)
/// into seconds.
public struct KernelClock: Sendable {
    public let jiffies: UInt64
    public let monotonicNanoseconds: UInt64
    public let hz: UInt64

    public func seconds(sinceJiffies j: UInt64) -> Double {
        guard jiffies >= j else { return 0 }
        return Double(jiffies - j) / Double(hz)
    }
}

/// Data-plane statistics by reason (BATON_STAT_*).
public enum StatReason: Int, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case notIP = 0, malformedPassed, notTakenOver, malformedDropped, ruleHit, defaultHit,
         fragmentUnknown, arpReply, neighborAdvert, encapFailed, redirectFailed, loopDropped, tooBig, relayDropped

    public var description: String {
        switch self {
        case .notIP: return "not-ip"
        case .malformedPassed: return "malformed-passed"
        case .notTakenOver: return "not-taken-over"
        case .malformedDropped: return "malformed-dropped"
        case .ruleHit: return "rule-hit"
        case .defaultHit: return "default-hit"
        case .fragmentUnknown: return "fragment-unknown"
        case .arpReply: return "arp-reply"
        case .neighborAdvert: return "neighbor-advert"
        case .encapFailed: return "encap-failed"
        case .redirectFailed: return "redirect-failed"
        case .loopDropped: return "loop-dropped"
        case .tooBig: return "too-big"
        case .relayDropped: return "relay-dropped"
        }
    }

    public var meaning: String {
        switch self {
        case .notIP: return "not IPv4/IPv6/ARP: passed"
        case .malformedPassed: return "unparsable before the destination: passed"
        case .notTakenOver: return "destination not taken over: passed"
        case .malformedDropped: return "for a taken-over address, malformed or truncated: dropped"
        case .ruleHit: return "matched a session rule"
        case .defaultHit: return "taken over, no rule: the takeover's default"
        case .fragmentUnknown: return "later fragment without its first: dropped"
        case .arpReply: return "ARP requests answered"
        case .neighborAdvert: return "neighbour solicitations answered"
        case .encapFailed: return "could not encapsulate: dropped"
        case .redirectFailed: return "egress interface not in the device map: dropped"
        case .loopDropped: return "would loop (tunnelled packet for a takeover, or to the agent's own MAC): dropped"
        case .tooBig: return "too big for the tunnel: answered with fragmentation needed / packet too big (no DF: dropped)"
        case .relayDropped: return "relay rule hit, cannot relay (TTL spent, not UDP/TCP, ICMP error, other family): dropped"
        }
    }
}

public struct StatValue: Equatable, Sendable, Codable {
    public var packets: UInt64
    public var bytes: UInt64
}
