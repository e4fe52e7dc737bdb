import BatonDataPlane
import BatonModel
import BatonNet
import BatonProtocol
import BatonStore
import Foundation

/// One transfer at the agent: its registration, channel, rules and takeover, and where it is.
/// Its mutable fields change only inside `TransferTable`'s lock (the table's transitions);
/// what never changes (id, channel, register, device, rules once admitted) is read anywhere.
final class AgentTransfer: @unchecked Sendable {
    typealias State = AgentTransferState

    let id: TransferID
    let channel: TransferChannel
    let register: Register
    /// The TN's enrolled device name.
    let device: String
    var rules: [SessionRule] = []
    var takeover: Takeover
    /// stored: in the store, maybe in the maps, `registered` not yet sent; active: the TN was
    /// told; waking, lingering: ending; ended; failed: rolled back before the TN was told.
    var state: State = .stored
    var reason: String?
    var announcement: Announcement?
    let started: Date
    var ended: Date?
    var milestones: [String: Double] = [:]
    var wakeUpsSent = 0
    /// When the wake-up began (the agent gives up after `maxWaking`).
    var wakingSince: ContinuousClock.Instant?
    var nextWakeUp = ContinuousClock.now
    var lingerUntil: ContinuousClock.Instant?
    let idleTimeout: Double
    /// When the agent (re)started serving it: idleness counts from here at the earliest.
    let since = ContinuousClock.now
    /// The registration as stored (it never changes), encoded once: without its sessions,
    /// which are the rules, kept compactly by the store (sessions in every registration
    /// would make a restart with 1M rules slow).
    private(set) lazy var storedRegister = Data(register.storedBytes)

    init(id: TransferID, channel: TransferChannel, register: Register, device: String, takeover: Takeover,
         idleTimeout: Double, started: Date = Date()) {
        self.id = id
        self.channel = channel
        self.register = register
        self.device = device
        self.takeover = takeover
        self.idleTimeout = idleTimeout
        self.started = started
    }

    /// Milliseconds since the registration was opened, to the microsecond.
    func mark(_ name: String) { milestones[name] = (Date().timeIntervalSince(started) * 1_000_000).rounded() / 1000 }

    /// Its fields at one moment, taken under the table's lock, for what is shown of it.
    struct View: Sendable {
        let id: TransferID
        let state: State
        let register: Register
        let rules: [SessionRule]
        let reason: String?
        let started: Date
        let ended: Date?
        let milestones: [String: Double]
    }

    var view: View {
        View(id: id, state: state, register: register, rules: rules, reason: reason, started: started, ended: ended,
             milestones: milestones)
    }

    var isFinished: Bool { state == .ended || state == .failed }

    /// Its row in the store.
    var record: Store.TransferRecord {
        Store.TransferRecord(
            id: "\(id)", device: device, state: state.rawValue, original: "\(register.original)",
            register: storedRegister, sessionKey: Data(channel.storedKey.storedBytes),
            highestTN: channel.highestAccepted(from: .tn).map { Int64(bitPattern: $0) }, takeover: takeover,
            reason: reason, started: started.timeIntervalSince1970, ended: ended?.timeIntervalSince1970,
            milestones: milestones)
    }
}

/// What to send back to the sender of a message.
struct Answer: Sendable {
    var bytes: [UInt8]
    var accepted: Bool
    /// Where a datagram answer goes: the registration's control endpoint (the TN sends
    /// from its temporary address, but not necessarily from the protocol port).
    var to: SocketAddress?
    /// With no `to`: the port on the datagram's source address it goes to (the TN's protocol
    /// port), else the source port.
    var port: UInt16?
    /// Whether the UDP path sends it: not to a sender that is not an enrolled device (its
    /// addresses are only claimed; the API still answers in its response).
    var datagram = true
    /// The transfer this answer admits: its address is announced once the answer is out.
    var admitted: AgentTransfer?
}

/// A new transfer's registration, opened, authorized and checked, to be admitted.
struct Candidate: Sendable {
    let envelope: Envelope
    let transfer: AgentTransfer
    /// Its store record, encoded ahead of the lock.
    let stored: Store.PreparedTransfer
    let source: String
}
