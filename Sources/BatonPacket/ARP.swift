import BatonModel

/// An Ethernet/IPv4 ARP packet (RFC 826). The hardware/protocol type and
/// length fields are settable to build malformed packets.
public struct ARPPacket: Hashable, Sendable {
    public static let request: UInt16 = 1
    public static let reply: UInt16 = 2

    public var operation: UInt16
    public var senderMAC: MACAddress
    public var senderIP: IPAddress
    public var targetMAC: MACAddress
    public var targetIP: IPAddress
    public var hardwareType: UInt16
    public var protocolType: UInt16
    public var hardwareLength: UInt8
    public var protocolLength: UInt8

    public init(operation: UInt16, senderMAC: MACAddress, senderIP: IPAddress,
                targetMAC: MACAddress, targetIP: IPAddress,
                hardwareType: UInt16 = 1, protocolType: UInt16 = EtherType.ipv4,
                hardwareLength: UInt8 = 6, protocolLength: UInt8 = 4) {
        self.operation = operation
        self.senderMAC = senderMAC
        self.senderIP = senderIP
        self.targetMAC = targetMAC
        self.targetIP = targetIP
        self.hardwareType = hardwareType
        self.protocolType = protocolType
        self.hardwareLength = hardwareLength
        self.protocolLength = protocolLength
    }

    /// 28 bytes; no Ethernet padding (see `Frame.padded`).
    public var bytes: [UInt8] {
        var b: [UInt8] = []
        b.put16(hardwareType)
        b.put16(protocolType)
        b += [hardwareLength, protocolLength]
        b.put16(operation)
        return b + senderMAC.bytes + senderIP.wire(.v4) + targetMAC.bytes + targetIP.wire(.v4)
    }
}

/// The two gratuitous ARP forms; some peers honour only one of them.
public enum GratuitousARPForm: Sendable {
    /// `arping -U`: request, sender = target = the address, target MAC broadcast.
    case request
    /// `arping -A`: reply, sender = target = the address, target MAC = own MAC.
    case reply
}

extension Frame {
    /// Who-has `targetIP`, broadcast, target MAC zero (as the kernel sends it).
    public static func arpRequest(senderMAC: MACAddress, senderIP: IPAddress, targetIP: IPAddress,
                                  vlans: [VLANTag] = []) -> Frame {
        Frame(ethernet: EthernetHeader(dst: .broadcast, src: senderMAC, vlans: vlans),
              network: .arp(ARPPacket(operation: ARPPacket.request, senderMAC: senderMAC, senderIP: senderIP,
                                      targetMAC: .zero, targetIP: targetIP)))
    }

    /// `senderIP` is-at `senderMAC`, unicast to the asker.
    public static func arpReply(senderMAC: MACAddress, senderIP: IPAddress, targetMAC: MACAddress,
                                targetIP: IPAddress, vlans: [VLANTag] = []) -> Frame {
        Frame(ethernet: EthernetHeader(dst: targetMAC, src: senderMAC, vlans: vlans),
              network: .arp(ARPPacket(operation: ARPPacket.reply, senderMAC: senderMAC, senderIP: senderIP,
                                      targetMAC: targetMAC, targetIP: targetIP)))
    }

    /// A gratuitous ARP for `ip` at `mac`, broadcast, byte for byte as iputils
    /// arping sends it with -U (request form) or -A (reply form).
    public static func gratuitousARP(mac: MACAddress, ip: IPAddress, form: GratuitousARPForm = .request,
                                     vlans: [VLANTag] = []) -> Frame {
        let arp = ARPPacket(operation: form == .request ? ARPPacket.request : ARPPacket.reply,
                            senderMAC: mac, senderIP: ip,
                            targetMAC: form == .request ? .broadcast : mac, targetIP: ip)
        return Frame(ethernet: EthernetHeader(dst: .broadcast, src: mac, vlans: vlans), network: .arp(arp))
    }
}
