import BatonBPF
import BatonLab
import BatonNet

/// Keeps XDP programs in the kernel's XDP dispatcher while the bench runs.
///
/// The kernel calls an XDP program through a dispatcher: a direct call for
/// programs attached somewhere, an indirect one (a retpoline on this CPU) for
/// the rest. A test run or live-frames run with repeat > 1 adds its program
/// for the run and removes it afterwards, and each change waits for an RCU
/// grace period (~10 ms apiece here): a live-frames call costs ~20 ms more,
/// and a repeat = 1 test run would time an indirect call the attached
/// program never makes. Attaching each program (generic mode) to an idle veth
/// of its own keeps it in the dispatcher: both calls are direct, as on an
/// interface, and no run changes the dispatcher.
final class DispatcherHold {
    private let host: LabHost
    private var links: [XDPLink] = []
    private var made = 0

    init(host: LabHost) { self.host = host }

    func hold(_ programs: [BPFProgram]) throws {
        for p in programs {
            let n = made
            made += 1
            links.append(try host.run {
                let nl = try Netlink()
                try nl.createVeth("hold\(n)a", peer: "hold\(n)b")
                let ifindex = UInt32(try nl.link(named: "hold\(n)a").index)
                return try XDPLink.attach(p, ifindex: ifindex, mode: .generic)
            })
        }
    }

    /// Detaches every hold (the veths go with the namespace).
    func release() {
        for l in links { try? l.detach() }
        links = []
    }
}
