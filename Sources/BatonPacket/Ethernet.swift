import BatonModel

/// One 802.1Q/802.1ad tag: TPID then TCI (PCP:3, DEI:1, VID:12).
public struct VLANTag: Hashable, Sendable {
    public var tpid: UInt16
    public var tci: UInt16

    public init(tpid: UInt16 = EtherType.vlan, tci: UInt16) {
        self.tpid = tpid
        self.tci = tci
    }

    public init(vid: UInt16, pcp: UInt8 = 0, dei: Bool = false, tpid: UInt16 = EtherType.vlan) {
        self.init(tpid: tpid, tci: UInt16(pcp & 7) << 13 | (dei ? 0x1000 : 0) | vid & 0x0fff)
    }

    public var vid: UInt16 { tci & 0x0fff }
    public var pcp: UInt8 { UInt8(tci >> 13) }
    public var dei: Bool { tci & 0x1000 != 0 }
}

/// Destination, source, tags outermost first, EtherType. `etherType` nil means
/// "what the payload is" (set by `Frame`); set it to build a mismatch.
public struct EthernetHeader: Hashable, Sendable {
    public var dst: MACAddress
    public var src: MACAddress
    public var vlans: [VLANTag]
    public var etherType: UInt16?

    public init(dst: MACAddress, src: MACAddress, vlans: [VLANTag] = [], etherType: UInt16? = nil) {
        self.dst = dst
        self.src = src
        self.vlans = vlans
        self.etherType = etherType
    }

    public var length: Int { 14 + 4 * vlans.count }

    /// The header bytes; `payloadType` is used unless `etherType` overrides it.
    public func bytes(payloadType: UInt16) -> [UInt8] {
        var b = dst.bytes + src.bytes
        for tag in vlans {
            b.put16(tag.tpid)
            b.put16(tag.tci)
        }
        b.put16(etherType ?? payloadType)
        return b
    }
}
