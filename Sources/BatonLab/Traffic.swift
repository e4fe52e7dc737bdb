import BatonModel
import BatonNet
import Foundation
import Synchronization

// Traffic for whole-transfer runs (tests, demo, benchmark): a sequence-numbered UDP flow whose
// every arrival is timed, and a TCP stream whose bytes are checked one by one.

/// A sequence-numbered datagram: "BTSQ", flow, sequence number.
enum SequencedPayload {
    static let magic: [UInt8] = Array("BTSQ".utf8)

    static func make(flow: UInt32, sequence: UInt64, size: Int) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: flow.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: sequence.bigEndian) { bytes += $0 }
        if bytes.count < size { bytes += [UInt8](repeating: 0x5a, count: size - bytes.count) }
        return bytes
    }

    static func parse(_ bytes: [UInt8]) -> (flow: UInt32, sequence: UInt64)? {
        guard bytes.count >= 16, Array(bytes[0..<4]) == magic else { return nil }
        let flow = bytes[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let sequence = bytes[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return (flow, sequence)
    }
}

/// Sends a sequence-numbered flow at a fixed rate on its own thread, paced per millisecond.
public final class SequenceSender: Sendable {
    public let flow: UInt32
    private struct State {
        var running = true
        var count = 0
        var failures = 0
    }
    private let state = Mutex(State())
    /// Held around each send; true while paused (see `paused(_:)`).
    private let gate = Mutex(false)
    private let done = DispatchSemaphore(value: 0)

    /// `cpu`: the CPU the sending thread is pinned to (see `pinCurrentThread`); nil leaves it free.
    public init(socket: UDPSocket, to destination: SocketAddress, flow: UInt32, perSecond: Int, size: Int = 64,
                cpu: Int? = 0) {
        self.flow = flow
        Thread.detachNewThread { [self] in
            if let cpu { pinCurrentThread(toCPU: cpu) }
            let start = monotonicNanoseconds()
            var sequence: UInt64 = 0
            while state.withLock({ $0.running }) {
                let due = UInt64(Double(monotonicNanoseconds() - start) * Double(perSecond) / 1e9)
                while sequence < due {
                    do {
                        let sent = try gate.withLock { paused throws -> Bool in
                            if paused { return false }
                            try socket.send(SequencedPayload.make(flow: flow, sequence: sequence, size: size), to: destination)
                            return true
                        }
                        guard sent else { break }
                        sequence += 1
                    } catch {
                        // ENOBUFS and the like: the same number is sent again, so a gap means loss on the way.
                        state.withLock { $0.failures += 1 }
                        break
                    }
                }
                state.withLock { $0.count = Int(sequence) }
                usleep(200)
            }
            done.signal()
        }
    }

    /// Runs `body` with no datagram of this flow inside the sending host's stack: it waits for
    /// a send in progress to return and holds the next until `body` is done; the datagrams due
    /// meanwhile go right after, in order. For what a datagram in flight would race with (a
    /// neighbour entry deleted under it is a black hole, by the kernel's design).
    public func paused<T>(_ body: () throws -> T) rethrows -> T {
        gate.withLock { $0 = true }
        defer { gate.withLock { $0 = false } }
        return try body()
    }

    /// Datagrams sent so far (numbers 0..<sent).
    public var sent: Int { state.withLock { $0.count } }
    /// Sends the socket refused (retried with the same number).
    public var sendFailures: Int { state.withLock { $0.failures } }

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

/// One datagram's arrival.
public struct Arrival: Sendable {
    public var host: String
    public var flow: UInt32
    public var sequence: UInt64
    /// `monotonicNanoseconds()` when the kernel received it (when it was read, if the socket
    /// gave no stamp).
    public var time: UInt64
}

/// Receives sequence-numbered datagrams on one host and records every arrival.
public final class SequenceReceiver: Sendable {
    public let host: String
    private let socket: UDPSocket
    private struct State {
        var running = true
        /// In arrival order, so also in time order.
        var arrivals: [Arrival] = []
        var counts: [UInt32: Int] = [:]
    }
    private let state: Mutex<State>
    private let done = DispatchSemaphore(value: 0)

    public init(host: String, socket: UDPSocket) {
        self.host = host
        self.socket = socket
        // A deep buffer: the receiver thread shares two cores with daemons and senders, and a
        // socket-buffer drop would look like a loss in the network.
        try? socket.setReceiveBufferSize(8 << 20, force: true)
        // Arrival times from the kernel's stamp: when the host got the datagram, not when this
        // thread (sharing two cores with the daemons) got around to reading it.
        try? socket.recordKernelTimes()
        var initial = State()
        initial.arrivals.reserveCapacity(1 << 16)
        state = Mutex(initial)
        Thread.detachNewThread { [self] in
            while state.withLock({ $0.running }) {
                guard let d = try? socket.receive(timeout: .milliseconds(50)),
                      let (flow, sequence) = SequencedPayload.parse(d.payload) else { continue }
                let read = monotonicNanoseconds()
                let stamped = read - min(read, d.age ?? 0)
                state.withLock { s in
                    // Kept in time order (`first` searches it) across stamps from two CPUs.
                    let a = Arrival(host: host, flow: flow, sequence: sequence, time: max(stamped, s.arrivals.last?.time ?? 0))
                    s.arrivals.append(a)
                    s.counts[flow, default: 0] += 1
                }
            }
            done.signal()
        }
    }

    // Both are polled while the receiver runs: neither rescans every arrival under the lock.
    public func count(flow: UInt32) -> Int { state.withLock { $0.counts[flow] ?? 0 } }

    /// The first arrival of `flow` at or after `time`, if any.
    public func first(flow: UInt32, after time: UInt64 = 0) -> Arrival? {
        state.withLock { s in
            var low = 0, high = s.arrivals.count
            while low < high {
                let middle = (low + high) / 2
                if s.arrivals[middle].time < time { low = middle + 1 } else { high = middle }
            }
            return s.arrivals[low...].first { $0.flow == flow }
        }
    }

    public var snapshot: [Arrival] { state.withLock { $0.arrivals } }

    /// Stops receiving (after the socket drained for `drain`) and returns every arrival.
    public func stop(drain: Duration = .milliseconds(300)) -> [Arrival] {
        Thread.sleep(forTimeInterval: Double(drain.components.seconds) + Double(drain.components.attoseconds) / 1e18)
        state.withLock { $0.running = false }
        done.wait()
        socket.close()
        return snapshot
    }
}

/// What happened to one sequence-numbered flow across all hosts.
public struct FlowReport: Sendable, CustomStringConvertible {
    public var sent: Int
    /// Distinct sequence numbers received anywhere.
    public var received: Int
    public var lost: Int { sent - received }
    public var duplicates: Int
    /// Datagrams that arrived at a host after a higher number had arrived at that host.
    public var reordered: Int
    /// Received per host.
    public var perHost: [String: Int]
    /// The largest time between two consecutive arrivals of the flow, any host (ms).
    public var largestGapMilliseconds: Double
    /// Per host, the received numbers as contiguous ranges (e.g. tn: 0..<4210, 9112..<20000).
    public var ranges: [String: [Range<UInt64>]]
    /// The first few reorderings, as "host: 812 after 815".
    public var reorderings: [String]

    public init(flow: UInt32, sent: Int, arrivals: [Arrival]) {
        // Stable by time: one host's arrivals keep the order they were read in.
        let mine = arrivals.enumerated().filter { $0.element.flow == flow }
            .sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
        self.sent = sent
        var seen = Set<UInt64>()
        var duplicates = 0
        var highest: [String: UInt64] = [:]
        var reordered = 0
        var perHost: [String: Int] = [:]
        var gap: UInt64 = 0
        var numbers: [String: [UInt64]] = [:]
        var reorderings: [String] = []
        for (i, a) in mine.enumerated() {
            if !seen.insert(a.sequence).inserted { duplicates += 1 }
            if let h = highest[a.host], a.sequence < h {
                reordered += 1
                if reorderings.count < 5 { reorderings.append("\(a.host): \(a.sequence) after \(h)") }
            }
            highest[a.host] = max(highest[a.host] ?? 0, a.sequence)
            perHost[a.host, default: 0] += 1
            numbers[a.host, default: []].append(a.sequence)
            if i > 0 { gap = max(gap, a.time - mine[i - 1].time) }
        }
        received = seen.filter { $0 < UInt64(sent) }.count
        self.duplicates = duplicates
        self.reordered = reordered
        self.reorderings = reorderings
        self.perHost = perHost
        largestGapMilliseconds = Double(gap) / 1e6
        ranges = numbers.mapValues { list in
            var result: [Range<UInt64>] = []
            for n in list.sorted() {
                if let last = result.last, last.upperBound == n {
                    result[result.count - 1] = last.lowerBound..<(n + 1)
                } else if let last = result.last, last.contains(n) {
                    continue
                } else {
                    result.append(n..<(n + 1))
                }
            }
            return result
        }
    }

    public var description: String {
        let hosts = perHost.keys.sorted().map { h in
            "\(h) \(perHost[h]!) [" + (ranges[h] ?? []).map { "\($0.lowerBound)-\($0.upperBound - 1)" }.joined(separator: ", ") + "]"
        }.joined(separator: "; ")
        return "sent \(sent), received \(received), lost \(lost), duplicates \(duplicates), reordered \(reordered), "
            + "largest gap \(String(format: "%.2f", largestGapMilliseconds)) ms; \(hosts)"
            + (reorderings.isEmpty ? "" : "; reorderings: " + reorderings.joined(separator: ", "))
    }
}

/// A TCP stream from a correspondent to a listener: the client writes a known byte pattern
/// continuously, the server reads and checks every byte. A reset or a wrong byte is recorded.
public final class TCPStreamCheck: Sendable {
    private struct State {
        var running = true
        var written = 0
        var read = 0
        /// The first failure; later ones are dropped.
        var failure: String?
    }
    private let state = Mutex(State())
    private let group = DispatchGroup()

    static func byte(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index % 251) }

    /// `client` writes `chunk` bytes every `interval`; `server` is the accepted connection.
    public init(client: TCPConnection, server: TCPConnection, chunk: Int = 1024, interval: Duration = .milliseconds(2)) {
        group.enter()
        Thread.detachNewThread { [self] in
            defer { group.leave() }
            var offset = 0
            while state.withLock({ $0.running }) {
                let bytes = (offset..<(offset + chunk)).map(Self.byte)
                do {
                    try client.send(bytes, timeout: .seconds(10))
                } catch {
                    state.withLock { $0.failure = $0.failure ?? "client send: \(error)" }
                    return
                }
                offset += chunk
                state.withLock { $0.written = offset }
                Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18 + Double(interval.components.seconds))
            }
            try? client.shutdownWrite()
        }
        group.enter()
        Thread.detachNewThread { [self] in
            defer { group.leave() }
            var offset = 0
            while true {
                let bytes: [UInt8]
                do {
                    bytes = try server.receive(upTo: 65536, timeout: .seconds(15))
                } catch {
                    state.withLock { $0.failure = $0.failure ?? "server receive: \(error)" }
                    return
                }
                if bytes.isEmpty { return } // the client's FIN: all read
                for (i, b) in bytes.enumerated() where b != Self.byte(offset + i) {
                    state.withLock { $0.failure = $0.failure ?? "byte \(offset + i) is \(b), expected \(Self.byte(offset + i))" }
                    return
                }
                offset += bytes.count
                state.withLock { $0.read = offset }
            }
        }
    }

    public var bytesWritten: Int { state.withLock { $0.written } }
    public var bytesRead: Int { state.withLock { $0.read } }

    /// Stops writing, waits until the server has read everything (or failed), and returns
    /// (written, read, failure).
    public func stop() -> (written: Int, read: Int, failure: String?) {
        state.withLock { $0.running = false }
        group.wait()
        return state.withLock { ($0.written, $0.read, $0.failure) }
    }
}

/// The traffic of a seed-000 transfer test: a TCP stream from the correspondent to the TN's
/// `original` port 5005 (connected first: its connection resolves the correspondent's
/// neighbour entry, so no datagram of the call waits in the resolution queue, which may send
/// the first few after newer ones); the call (flow 1, `cn`:40000 → `original`:5004 at
/// `rate`); a second correspondent's flow to the same port (flow 2, `cn2`:40000, 1000/s); each
/// flow received at the TN and at the target (there on `targetAddress`, if given).
public final class TransferTraffic: Sendable {
    public let atTN: SequenceReceiver
    public let atTarget: SequenceReceiver
    public let call: SequenceSender
    public let other: SequenceSender?
    public let stream: TCPStreamCheck
    private let sockets: (listener: TCPListener, client: TCPConnection, server: TCPConnection)

    /// What `stop` found.
    public struct Result: Sendable {
        public let call: FlowReport
        public let other: FlowReport?
        public let tcp: (written: Int, read: Int, failure: String?)
    }

    public init(cn: LabHost, cn2: LabHost?, tn: LabHost, target: LabHost, original: IPAddress, rate: Int,
                targetAddress: IPAddress? = nil) throws {
        let family = original.family
        let listener = try tn.tcpListener(family, address: original, port: 5005)
        let client = try cn.connectTCP(to: SocketAddress(original, port: 5005))
        guard let server = try listener.accept(timeout: .seconds(5)) else {
            listener.close()
            client.close()
            throw LabError(description: "the TCP stream to \(original):5005 did not connect")
        }
        sockets = (listener, client, server)
        stream = TCPStreamCheck(client: client, server: server)
        atTN = SequenceReceiver(host: "tn", socket: try tn.udpSocket(family, port: 5004))
        atTarget = SequenceReceiver(host: "target", socket: try target.udpSocket(family, address: targetAddress, port: 5004))
        call = SequenceSender(socket: try cn.udpSocket(family, port: 40000), to: SocketAddress(original, port: 5004),
                              flow: 1, perSecond: rate)
        other = try cn2.map { SequenceSender(socket: try $0.udpSocket(family, port: 40000), to: SocketAddress(original, port: 5004),
                                             flow: 2, perSecond: 1000) }
    }

    /// Stops every sender, the stream and the receivers, and closes the sockets.
    public func stop() -> Result {
        let sent = call.stop(), sentOther = other?.stop()
        let tcp = stream.stop()
        let arrivals = atTN.stop() + atTarget.stop()
        sockets.listener.close()
        sockets.client.close()
        sockets.server.close()
        return Result(call: FlowReport(flow: 1, sent: sent, arrivals: arrivals),
                      other: sentOther.map { FlowReport(flow: 2, sent: $0, arrivals: arrivals) }, tcp: tcp)
    }
}
