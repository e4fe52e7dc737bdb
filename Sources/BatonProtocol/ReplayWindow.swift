import Foundation
import Synchronization

/// The authentic registrations the agent has seen lately, by their
/// authentication tag: a new channel has no replay state, so without this a captured
/// `register` could be sent again and judged anew while its timestamp is fresh. Each sealing
/// has a tag of its own (a retransmission is sealed anew), so a tag seen twice is a replay.
///
/// A tag is kept for `window` seconds, at least twice the allowed clock skew: after that its
/// timestamp is stale and the channel refuses it anyway. What a restart forgets is covered by
/// `notBefore`: a message sealed before it (this node's start) is refused as a possible replay;
/// its sender seals its next retransmission anew, after it.
///
/// Recording is by time, not by count: a flood of authentic messages cannot push a tag out
/// early. Thread-safe.
public final class ReplayWindow: Sendable {
    public enum Verdict: Equatable, Sendable {
        case new
        /// The same sealed message again.
        case seen
        /// Sealed before `notBefore` (before this node started).
        case beforeStart
    }

    private struct Tag: Hashable {
        var high: UInt64
        var low: UInt64
    }

    private struct State {
        var seen: [Tag: Double] = [:]
        /// Tags in the order they were recorded, with when; `head` is the oldest still kept.
        var order: [(tag: Tag, at: Double)] = []
        var head = 0
    }

    public let window: Double
    /// Unix milliseconds: messages stamped earlier are refused.
    public let notBefore: UInt64
    private let state = Mutex(State())

    public init(window: Double, notBefore: Date = Date()) {
        self.window = window
        let ms = notBefore.timeIntervalSince1970 * 1000
        self.notBefore = ms > 0 && ms < 1.8e19 ? UInt64(ms) : 0
    }

    /// Judges `envelope` (already authenticated) and records it when it is new.
    public func check(_ envelope: Envelope, now: Date = Date()) -> Verdict {
        guard envelope.timestamp >= notBefore else { return .beforeStart }
        let tag = Self.tag(envelope.ciphertext)
        let t = now.timeIntervalSince1970
        return state.withLock { s in
            expire(&s, before: t - window)
            guard s.seen[tag] == nil else { return .seen }
            s.seen[tag] = t
            s.order.append((tag, t))
            return .new
        }
    }

    /// How many tags are kept now.
    public var count: Int { state.withLock { $0.seen.count } }

    private func expire(_ s: inout State, before cutoff: Double) {
        while s.head < s.order.count, s.order[s.head].at < cutoff {
            s.seen[s.order[s.head].tag] = nil
            s.head += 1
        }
        // Drop the consumed prefix once it is most of the array.
        if s.head > 1024, s.head * 2 > s.order.count {
            s.order.removeFirst(s.head)
            s.head = 0
        }
    }

    /// The last 16 bytes: Poly1305's tag.
    private static func tag(_ ciphertext: [UInt8]) -> Tag {
        var high: UInt64 = 0, low: UInt64 = 0
        let start = max(0, ciphertext.count - 16)
        for (i, b) in ciphertext[start...].enumerated() {
            if i < 8 { high = high << 8 | UInt64(b) } else { low = low << 8 | UInt64(b) }
        }
        return Tag(high: high, low: low)
    }
}
