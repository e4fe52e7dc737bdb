import BatonModel
import BatonNet
import Foundation
import Synchronization

// RTP for the SIP tests and demo: a device's media (its own SSRC, sequence numbers and clock,
// 20 ms packets of 8 kHz audio) and what the remote party hears of it, packet by packet.

/// Sends RTP at `perSecond` packets a second on its own thread: 12-byte header, PCMU
/// payload type, `samples` timestamp units apart. To several destinations, each gets its own
/// stream at that rate (SSRC `ssrc + i` for the i-th), round robin from the one thread.
public final class RTPSender: Sendable {
    private struct State {
        var running = true
        var sent = 0
    }
    private let state = Mutex(State())
    private let done = DispatchSemaphore(value: 0)

    public convenience init(socket: UDPSocket, to destination: SocketAddress, ssrc: UInt32, firstSequence: UInt16, firstTimestamp: UInt32,
                            perSecond: Int = 50, samples: UInt32 = 160, payloadBytes: Int = 160) {
        self.init(socket: socket, to: [destination], ssrc: ssrc, firstSequence: firstSequence, firstTimestamp: firstTimestamp,
                  perSecond: perSecond, samples: samples, payloadBytes: payloadBytes)
    }

    public init(socket: UDPSocket, to destinations: [SocketAddress], ssrc: UInt32, firstSequence: UInt16, firstTimestamp: UInt32,
                perSecond: Int = 50, samples: UInt32 = 160, payloadBytes: Int = 160) {
        Thread.detachNewThread { [self] in
            let start = monotonicNanoseconds(), rate = Double(perSecond * destinations.count)
            var n = 0
            while state.withLock({ $0.running }) {
                let due = Int(Double(monotonicNanoseconds() - start) * rate / 1e9) + 1
                while n < due, !destinations.isEmpty {
                    let i = n % destinations.count, round = n / destinations.count
                    let seq = firstSequence &+ UInt16(truncatingIfNeeded: round), ts = firstTimestamp &+ UInt32(truncatingIfNeeded: round) &* samples
                    try? socket.send(RTPPacket.make(ssrc: ssrc &+ UInt32(i), sequence: seq, timestamp: ts, payloadBytes: payloadBytes),
                                     to: destinations[i])
                    n += 1
                }
                state.withLock { $0.sent = n }
                usleep(1000)
            }
            done.signal()
        }
    }

    public var sent: Int { state.withLock { $0.sent } }

    /// Stops and returns how many were sent (again: the same count, at once).
    @discardableResult
    public func stop() -> Int {
        let wasRunning = state.withLock { s in
            defer { s.running = false }
            return s.running
        }
        if wasRunning { done.wait() }
        return sent
    }
}

public enum RTPPacket {
    static func make(ssrc: UInt32, sequence: UInt16, timestamp: UInt32, payloadBytes: Int) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x00, UInt8(sequence >> 8), UInt8(sequence & 0xff)]
        for v in [timestamp, ssrc] { p += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
        return p + [UInt8](repeating: 0xff, count: payloadBytes)
    }

    /// (SSRC, sequence, timestamp) of an RTP version 2 packet.
    public static func parse(_ b: [UInt8]) -> (ssrc: UInt32, sequence: UInt16, timestamp: UInt32)? {
        guard b.count >= 12, b[0] >> 6 == 2 else { return nil }
        func u32(_ i: Int) -> UInt32 { b[i..<i + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        return (u32(8), UInt16(b[2]) << 8 | UInt16(b[3]), u32(4))
    }
}

/// One RTP packet as received.
public struct RTPArrival: Sendable {
    public var source: SocketAddress
    public var ssrc: UInt32
    public var sequence: UInt16
    public var timestamp: UInt32
}

/// Receives RTP on one socket and records every packet.
public final class RTPReceiver: Sendable {
    private let state = Mutex<(running: Bool, got: [RTPArrival])>((true, []))
    private let done = DispatchSemaphore(value: 0)
    private let socket: UDPSocket

    public init(socket: UDPSocket) {
        self.socket = socket
        try? socket.setReceiveBufferSize(4 << 20, force: true)
        Thread.detachNewThread { [self] in
            while state.withLock({ $0.running }) {
                guard let d = try? socket.receive(timeout: .milliseconds(50)), let r = RTPPacket.parse(d.payload) else { continue }
                state.withLock { $0.got.append(RTPArrival(source: d.source, ssrc: r.ssrc, sequence: r.sequence, timestamp: r.timestamp)) }
            }
            done.signal()
        }
    }

    public var count: Int { state.withLock { $0.got.count } }

    public func stop(drain: Double = 0.3) -> [RTPArrival] {
        Thread.sleep(forTimeInterval: drain)
        state.withLock { $0.running = false }
        done.wait()
        socket.close()
        return state.withLock { $0.got }
    }

    /// What a stream looks like to its receiver: SSRCs, sources, and the numbering's breaks.
    public struct Report: Sendable, CustomStringConvertible {
        public var packets: Int
        public var ssrcs: Set<UInt32>
        public var sources: Set<String>
        /// Places where a sequence number is not the last one plus one (wrap included).
        public var sequenceBreaks: Int
        /// Places where the timestamp went backwards (modulo 2^32, as RFC 3550 reads it).
        public var timestampRegressions: Int

        public init(_ got: [RTPArrival]) {
            packets = got.count
            ssrcs = Set(got.map(\.ssrc))
            sources = Set(got.map { "\($0.source)" })
            var breaks = 0, regressions = 0
            for (a, b) in zip(got, got.dropFirst()) {
                if b.sequence != a.sequence &+ 1 { breaks += 1 }
                if Int32(bitPattern: b.timestamp &- a.timestamp) <= 0 { regressions += 1 }
            }
            sequenceBreaks = breaks
            timestampRegressions = regressions
        }

        public var description: String {
            "\(packets) packets, SSRCs \(ssrcs.map { String($0, radix: 16) }.sorted()), from \(sources.sorted()), \(sequenceBreaks) sequence break(s), \(timestampRegressions) timestamp regression(s)"
        }
    }
}
