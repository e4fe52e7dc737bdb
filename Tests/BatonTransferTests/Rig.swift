import BatonAPI
import BatonBPF
import BatonDaemon
import BatonDataPlane
import BatonLab
import BatonModel
import BatonNet
import Foundation
import Testing

/// A transfer lab with batond running on sa, tn and target; torn down whatever happens.
struct Rig {
    let lab: Lab
    let daemons: LabDaemons
    let family: IPAddress.Family

    var cn: LabHost { lab["cn"] }
    var sa: LabHost { lab["sa"] }
    var tn: LabHost { lab["tn"] }
    var target: LabHost { lab["target"] }
    /// The TN's own address on the wire: the one the transfer takes over.
    var original: IPAddress { tn.address(family) }

    var agentControl: Control { Control(path: daemons.agent.control) }
    var tnControl: Control { Control(path: daemons.tn.control) }
    var targetControl: Control { Control(path: daemons.target.control) }

    static func with(_ layout: LabLayout, family: IPAddress.Family, correspondents: [String] = ["cn"],
                     options: LabDaemons.Options = LabDaemons.Options(),
                     _ body: (Rig) throws -> Void) throws {
        let batond = try #require(LabDaemons.findBatond(), "batond not found next to the tests: run `swift build` first")
        let lab = try Lab.transfer(layout, correspondents: correspondents)
        defer { try? lab.teardown() }
        let daemons = try LabDaemons.start(lab, batond: batond, options: options)
        var failed = true
        defer {
            daemons.stop(keepLogs: failed)
            if failed { print("daemon logs kept in \(daemons.directory)\n" + daemons.logs()) }
        }
        try body(Rig(lab: lab, daemons: daemons, family: family))
        failed = false
    }

    /// A sequence-numbered call (flow 1) from cn port 40000 to the original's port 5004,
    /// received wherever it arrives: at the TN or at the target.
    struct Call {
        let atTN: SequenceReceiver
        let atTarget: SequenceReceiver
        let sender: SequenceSender
        let session: SessionMatch
    }

    /// Starts the call and waits until `reaching` of it arrived at the TN.
    func startCall(perSecond: Int, reaching: Int) throws -> Call {
        let call = Call(atTN: SequenceReceiver(host: "tn", socket: try tn.udpSocket(family, port: 5004)),
                        atTarget: SequenceReceiver(host: "target", socket: try target.udpSocket(family, port: 5004)),
                        sender: SequenceSender(socket: try cn.udpSocket(family, port: 40000), to: SocketAddress(original, port: 5004),
                                               flow: 1, perSecond: perSecond),
                        session: SessionMatch(proto: .udp, source: cn.address(family), sourcePort: 40000,
                                              destination: original, destinationPort: 5004))
        try wait(3, "the call to reach the TN") { call.atTN.count(flow: 1) > reaching }
        return call
    }

    /// The call's session transferred from the TN to the target (`layout`'s mode).
    func transfer(_ call: Call, _ layout: LabLayout) throws -> TransferInfo {
        try tnControl.start(TransferRequest(to: "target", sessions: [call.session], mode: layout.transferMode))
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes.
    @discardableResult
    func wait(_ timeout: Double = 5, _ what: String, _ condition: () throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        Issue.record("timed out after \(timeout) s waiting for: \(what)")
        return false
    }

    /// The correspondent's neighbour entry for the original address (its MAC), nil if none.
    func correspondentSees() throws -> MACAddress? {
        try cn.neighbour(original)?.mac
    }

    /// Forgets the correspondent's neighbour entry, as if it had expired, and waits until
    /// the correspondent (which keeps sending) has resolved the address again.
    /// `sender`: a flow to the original, held while the entry is deleted: a datagram that has
    /// the entry in hand as it goes is dropped by the kernel (a deleted entry's output is a
    /// black hole), which an entry that expires by itself never does while in use.
    func expireCorrespondentEntry(pausing sender: SequenceSender? = nil) throws -> MACAddress? {
        if let sender { sender.paused { _ = try? cn.deleteNeighbour(original) } } else { try? cn.deleteNeighbour(original) }
        var mac: MACAddress?
        try wait(3, "the correspondent to resolve \(original) again") {
            if let n = try cn.neighbour(original), let m = n.mac, !n.state.intersection(.valid).isEmpty {
                mac = m
                return true
            }
            return false
        }
        return mac
    }

}
