import BatonCLI
import BatonLab

// MARK: - Output

/// What `lab up` and `lab status` print (`--json`: this, as JSON).
struct LabReport: Encodable {
    struct SegmentReport: Encodable {
        var name: String
        var namespace: String
        var ipv4Network: String
        var ipv6Network: String
    }

    struct InterfaceReport: Encodable {
        var name: String
        var ifindex: Int
        var mac: String
        var ipv4: String
        var ipv6: String
        var ipv4Network: String
        var ipv6Network: String
        var segment: String
    }

    struct HostReport: Encodable {
        var name: String
        var namespace: String
        var interfaces: [InterfaceReport]
    }

    var prefix: String
    /// "l2", "l3", or absent for a lab of another shape.
    var layout: String?
    var segments: [SegmentReport]
    var hosts: [HostReport]

    init(_ lab: Lab) {
        prefix = lab.prefix
        layout = lab.layout?.rawValue
        segments = lab.segments.map {
            SegmentReport(name: $0.name, namespace: $0.namespace.description, ipv4Network: "\($0.ipv4)",
                          ipv6Network: "\($0.ipv6)")
        }
        hosts = lab.hosts.map { host in
            HostReport(name: host.name, namespace: host.namespace.description, interfaces: host.interfaces.map {
                InterfaceReport(name: $0.name, ifindex: $0.index, mac: "\($0.mac)", ipv4: "\($0.ipv4)", ipv6: "\($0.ipv6)",
                                ipv4Network: "\($0.ipv4Network)", ipv6Network: "\($0.ipv6Network)", segment: $0.segment)
            })
        }
    }

    func printText() {
        var table = Table(["HOST", "NAMESPACE", "INTERFACE", "MAC", "IPV4", "IPV6", "SEGMENT"])
        for host in hosts {
            for interface in host.interfaces {
                let length4 = interface.ipv4Network.split(separator: "/").last.map { "/" + $0 } ?? ""
                let length6 = interface.ipv6Network.split(separator: "/").last.map { "/" + $0 } ?? ""
                table.add([host.name, host.namespace, interface.name, interface.mac, interface.ipv4 + length4,
                           interface.ipv6 + length6, interface.segment])
            }
        }
        table.print()
    }
}
