/// RTP continuity in userspace: the same rewrite as the data plane's (bpf/include/rtp.h,
/// docs/anchors.md), for the userspace media relay. Packets toward the remote party keep one
/// SSRC, one sequence and one clock across moves: the first packet fixes the SSRC; a packet of
/// another SSRC re-bases the offsets so that its number follows the last one sent and its
/// timestamp the last plus the stream's step (160 until a step was seen).
public struct RTPContinuity: Sendable, Equatable {
    public private(set) var started = false
    public private(set) var ssrcOut: UInt32 = 0
    public private(set) var ssrcIn: UInt32 = 0
    public private(set) var lastSequence: UInt16 = 0
    public private(set) var lastTimestamp: UInt32 = 0
    public private(set) var timestampStep: UInt32 = 0
    public private(set) var rebases: UInt32 = 0
    var sequenceOffset: UInt16 = 0
    var timestampOffset: UInt32 = 0

    public init() {}

    /// Rewrites the RTP header at the start of `payload` (a UDP payload) in place; false when
    /// it is not RTP version 2 or is RTCP multiplexed on the port (RFC 5761: types 64-95 with
    /// the marker bit), left as it is.
    @discardableResult
    public mutating func rewrite(_ payload: UnsafeMutableRawBufferPointer) -> Bool {
        guard payload.count >= 12, payload[0] >> 6 == 2, !(64...95).contains(payload[1] & 0x7f) else { return false }
        let seqIn = UInt16(payload[2]) << 8 | UInt16(payload[3])
        let tsIn = payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self).bigEndian
        let ssrc = payload.loadUnaligned(fromByteOffset: 8, as: UInt32.self).bigEndian
        if !started {
            started = true
            ssrcOut = ssrc
            ssrcIn = ssrc
            lastSequence = seqIn &- 1
            lastTimestamp = tsIn
        } else if ssrc != ssrcIn {
            ssrcIn = ssrc
            sequenceOffset = lastSequence &+ 1 &- seqIn
            timestampOffset = lastTimestamp &+ (timestampStep != 0 ? timestampStep : 160) &- tsIn
            rebases &+= 1
        }
        let seqOut = seqIn &+ sequenceOffset, tsOut = tsIn &+ timestampOffset
        // Only a packet ahead of the last moves the stream on (a late one keeps its place).
        if Int16(bitPattern: seqOut &- lastSequence) > 0 {
            if seqOut &- lastSequence == 1, Int32(bitPattern: tsOut &- lastTimestamp) > 0 { timestampStep = tsOut &- lastTimestamp }
            lastSequence = seqOut
            lastTimestamp = tsOut
        }
        payload[2] = UInt8(seqOut >> 8)
        payload[3] = UInt8(seqOut & 0xff)
        payload.storeBytes(of: tsOut.bigEndian, toByteOffset: 4, as: UInt32.self)
        payload.storeBytes(of: ssrcOut.bigEndian, toByteOffset: 8, as: UInt32.self)
        return true
    }
}
