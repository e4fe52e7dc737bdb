// The transfer protocol between the transferring node (TN), the target and the
// session agent: typed messages in authenticated, encrypted UDP datagrams.
// No sockets here; batond owns them. The wire format is in docs/protocol.md.

/// Constants of the wire protocol that the daemon needs.
public enum TransferProtocol {
    /// The UDP port batond listens on for protocol datagrams.
    public static let defaultPort: UInt16 = 7390
    /// The envelope version this module writes and accepts.
    public static let version: UInt8 = 2
    /// The largest datagram accepted or produced, in bytes.
    public static let maxDatagramSize = 60_000
    /// How often a sender repeats an unanswered request, in seconds. Each
    /// repetition is sealed anew (new counter), so an identical datagram is always a replay.
    public static let retransmitInterval: Double = 0.2
    /// The default bound on |timestamp − now| for accepted messages, in seconds.
    public static let defaultMaxClockSkew: Double = 30
}
