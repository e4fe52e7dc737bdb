import BatonModel

extension IPAddress {
    /// ff02::1:ffXX:XXXX for this address (RFC 4291 §2.7.1).
    public var solicitedNodeMulticast: IPAddress {
        let w = wire(.v6)
        return .v6([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff] + w[13...])
    }

    /// ff02::1, all nodes.
    public static let allNodes = IPAddress.v6([0xff, 0x02] + [UInt8](repeating: 0, count: 13) + [1])
    /// ::, the source of DAD probes.
    public static let unspecifiedV6 = IPAddress.v6([UInt8](repeating: 0, count: 16))
}

extension MACAddress {
    /// 33:33 + the low 32 bits of an IPv6 multicast address (RFC 2464 §7).
    public static func ipv6Multicast(_ group: IPAddress) -> MACAddress {
        .fromWire([0x33, 0x33] + group.wire(.v6)[12...])
    }
}

/// Where a neighbour solicitation is sent.
public enum SolicitationDestination: Hashable, Sendable {
    /// The target's solicited-node group and its 33:33:ff:.. MAC (resolution, DAD).
    case solicitedNode
    /// The target address itself at a known MAC (reachability confirmation).
    case unicast(MACAddress)
}

extension Transport {
    /// ICMPv6 neighbour solicitation (RFC 4861 §4.3), with a source
    /// link-layer address option when `sourceLinkLayer` is given, then
    /// `options` as given (e.g. a DAD nonce, RFC 7527).
    public static func neighborSolicitation(target: IPAddress, sourceLinkLayer: MACAddress? = nil,
                                            options: [UInt8] = []) -> Transport {
        var body: [UInt8] = [0, 0, 0, 0] + target.wire(.v6)
        if let mac = sourceLinkLayer { body += [1, 1] + mac.bytes }
        return .icmpv6(ICMPMessage(type: 135, body: body + options))
    }

    /// ICMPv6 neighbour advertisement (RFC 4861 §4.4): R, S, O flags and a
    /// target link-layer address option when `targetLinkLayer` is given,
    /// then `options` as given.
    public static func neighborAdvertisement(target: IPAddress, router: Bool, solicited: Bool, override: Bool,
                                             targetLinkLayer: MACAddress? = nil, options: [UInt8] = []) -> Transport {
        let flags: UInt8 = (router ? 0x80 : 0) | (solicited ? 0x40 : 0) | (override ? 0x20 : 0)
        var body: [UInt8] = [flags, 0, 0, 0] + target.wire(.v6)
        if let mac = targetLinkLayer { body += [2, 1] + mac.bytes }
        return .icmpv6(ICMPMessage(type: 136, body: body + options))
    }
}

extension Frame {
    /// A neighbour solicitation for `target`, hop limit 255. From `::` (DAD)
    /// the source link-layer option is always left out (RFC 4862 §5.4.2).
    public static func neighborSolicitation(sourceMAC: MACAddress, source: IPAddress, target: IPAddress,
                                            to destination: SolicitationDestination = .solicitedNode,
                                            includeSourceLinkLayer: Bool = true,
                                            vlans: [VLANTag] = []) -> Frame {
        let (dstMAC, dst): (MACAddress, IPAddress)
        switch destination {
        case .solicitedNode:
            dst = target.solicitedNodeMulticast
            dstMAC = .ipv6Multicast(dst)
        case .unicast(let mac):
            (dstMAC, dst) = (mac, target)
        }
        let sll = includeSourceLinkLayer && !source.isUnspecified ? sourceMAC : nil
        return Frame(ethernet: EthernetHeader(dst: dstMAC, src: sourceMAC, vlans: vlans),
                     network: .ipv6(IPv6Header(src: source, dst: dst, hopLimit: 255)),
                     transport: .neighborSolicitation(target: target, sourceLinkLayer: sll))
    }

    /// A neighbour advertisement for `target` at `sourceMAC`, hop limit 255.
    public static func neighborAdvertisement(sourceMAC: MACAddress, source: IPAddress,
                                             destinationMAC: MACAddress, destination: IPAddress,
                                             target: IPAddress, router: Bool, solicited: Bool, override: Bool,
                                             includeTargetLinkLayer: Bool = true,
                                             vlans: [VLANTag] = []) -> Frame {
        Frame(ethernet: EthernetHeader(dst: destinationMAC, src: sourceMAC, vlans: vlans),
              network: .ipv6(IPv6Header(src: source, dst: destination, hopLimit: 255)),
              transport: .neighborAdvertisement(target: target, router: router, solicited: solicited,
                                                override: override,
                                                targetLinkLayer: includeTargetLinkLayer ? sourceMAC : nil))
    }

    /// The unsolicited NA a takeover sends: to ff02::1 (33:33:00:00:00:01),
    /// hop limit 255, S=0, O=1, target link-layer option, source = the address
    /// itself as Linux sends it unless `source` is given. `router` must match
    /// the address owner's role.
    public static func unsolicitedNeighborAdvertisement(mac: MACAddress, address: IPAddress, router: Bool = false,
                                                        source: IPAddress? = nil,
                                                        vlans: [VLANTag] = []) -> Frame {
        neighborAdvertisement(sourceMAC: mac, source: source ?? address,
                              destinationMAC: .ipv6Multicast(.allNodes), destination: .allNodes,
                              target: address, router: router, solicited: false, override: true, vlans: vlans)
    }
}
