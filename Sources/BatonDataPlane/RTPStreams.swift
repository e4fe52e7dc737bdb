import BatonBPF
import BatonModel
import CBatonABI
import Glibc

/// RTP continuity's state (`baton_rtp`, bpf/include/rtp.h): one entry per anchored session
/// that asks for it, keyed by the anchor's address and port toward the remote. The control
/// plane creates it empty and removes it; the data plane fills it from the first packet on.
extension DataPlane {
    /// What the data plane keeps of one stream.
    public struct RTPStream: Sendable, Equatable {
        /// The first packet has been seen: `ssrc` and the offsets are set.
        public var started: Bool
        /// The SSRC the remote sees, and the one being rewritten now.
        public var ssrc: UInt32
        public var ssrcIn: UInt32
        public var lastSequence: UInt16
        public var lastTimestamp: UInt32
        public var timestampStep: UInt32
        /// Sources taken on after the first (devices the stream moved to, and back).
        public var rebases: UInt32
        public var packets: UInt64
    }

    static func rtpKey(_ e: Endpoint) -> baton_rtp_key {
        var k = baton_rtp_key()
        abiStore(e.address.bytes16, into: &k.addr)
        k.port = e.port.bigEndian
        return k
    }

    /// Creates the stream of `anchor` (address and port toward the remote). `fresh`: a new
    /// session's, zeroed even if an entry was left behind (a lost store, a crash between
    /// writes): it must not inherit an old call's SSRC and numbers. Otherwise (a restart
    /// adopting its sessions) an existing stream keeps its state.
    public func addRTPStream(_ anchor: Endpoint, fresh: Bool = false) throws {
        do {
            try rtpMap.update(Self.rtpKey(anchor), baton_rtp(), flags: fresh ? .any : .noExist)
        } catch let e as BPFError where e.errno == EEXIST {
            return
        } catch let e as BPFError where e.errno == E2BIG {
            throw DataPlaneError.full("RTP continuity table is full (\(BATON_MAX_RTP) streams)")
        }
    }

    @discardableResult
    public func removeRTPStream(_ anchor: Endpoint) throws -> Bool { try rtpMap.delete(Self.rtpKey(anchor)) }

    public func rtpStream(_ anchor: Endpoint) throws -> RTPStream? {
        guard let v = try rtpMap.lookup(Self.rtpKey(anchor)) else { return nil }
        return RTPStream(started: v.flags & UInt32(BATON_RTP_STARTED) != 0, ssrc: UInt32(bigEndian: v.ssrc_out),
                         ssrcIn: UInt32(bigEndian: v.ssrc_in), lastSequence: v.last_seq, lastTimestamp: v.last_ts,
                         timestampStep: v.ts_step, rebases: v.rebases, packets: v.packets)
    }
}
