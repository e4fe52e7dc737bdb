import BatonModel
import BatonNet
import Logging

/// The agent's announcements of taken-over addresses (gratuitous ARP, unsolicited NA, with a
/// refresh: BatonNet's `Announcer`). A transfer is announced once it is active (stored for good), just before its TN is told; the
/// first burst is sent without the table's lock (a batch sends many frames).
final class Announcements: Sendable {
    let announcer: Announcer
    let mac: MACAddress
    let policy: AnnouncementPolicy
    let table: TransferTable
    let logger: Logger

    init(announcer: Announcer, mac: MACAddress, policy: AnnouncementPolicy, table: TransferTable, logger: Logger) {
        self.announcer = announcer
        self.mac = mac
        self.policy = policy
        self.table = table
        self.logger = logger
    }

    /// Starts announcing the addresses of those of `ts` that are active and not announced yet.
    func announce(_ ts: [AgentTransfer]) {
        var started: [(AgentTransfer, Announcement?)] = []
        for t in table.dueForAnnouncement(ts) {
            do {
                started.append((t, try announcer.start(t.register.original, at: mac, policy: policy)))
            } catch {
                logger.error("transfer \(t.id): announcing \(t.register.original) failed: \(error); ARP/NDP answers still work")
                started.append((t, nil))
            }
        }
        table.announced(started)
    }
}
