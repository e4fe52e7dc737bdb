import BatonModel
import BatonNet
import BatonProtocol
import Dispatch
import Foundation
import ServiceLifecycle

/// Target side: the transferred TCP sessions as this host's own TCP stack sees them. A session
/// is closed when a socket the stack had open for it has both FINs behind it (TIME-WAIT,
/// LAST-ACK, CLOSING) or is gone (a reset the stack accepted: in window, RFC 5961). That is
/// the only close the transfer acts on: a FIN or RST the agent sees on its side could be
/// forged by anyone on the path, and says nothing of the other direction. The target tells
/// the TN (`closed`, every interval while it lasts); the TN ends the transfer once every
/// session is closed. A session the stack never had open (a socket that lives elsewhere, a
/// wildcard rule) is never judged closed here: it ends by idleness.
struct SessionWatch: Service {
    let node: Node
    let interval: Duration
    private let queue = DispatchQueue(label: "baton.node.sessions")

    init(node: Node, interval: Duration) {
        self.node = node
        self.interval = interval
    }

    func run() async throws {
        await runPeriodically(every: interval, on: queue) { [node] in node.watchSessions() }
    }
}

extension Node {
    /// One look at every accepted transfer's exact TCP sessions.
    func watchSessions() {
        typealias Item = (t: Incoming, sessions: [SessionMatch])
        let items: [Item] = tables.withLock { s in
            s.incoming.values.filter { $0.state == .accepted }.compactMap { t in
                let tcp = t.offer.sessions.filter { $0.proto == .tcp && (try? $0.kind()) == .exact }
                return tcp.isEmpty ? nil : (t, tcp)
            }
        }
        guard !items.isEmpty else { return }
        let diagnostics: SocketDiagnostics
        do { diagnostics = try SocketDiagnostics() } catch {
            logger.error("watching transferred TCP sessions: \(error)")
            return
        }
        for (t, sessions) in items {
            var states: [SessionMatch: SocketDiagnostics.TCPState?] = [:]
            for m in sessions {
                guard let source = m.source, let sport = m.sourcePort, let dport = m.destinationPort else { continue }
                do {
                    states[m] = try diagnostics.tcpState(local: SocketAddress(m.destination, port: dport),
                                                         remote: SocketAddress(source, port: sport))
                } catch {
                    logger.error("transfer \(t.id): looking up session \(m): \(error)")
                }
            }
            let report: [SessionMatch]? = tables.withLock { _ in
                guard t.state == .accepted else { return nil }
                for (m, state) in states {
                    if let state, !state.isOver { t.seenOpen.insert(m); continue }
                    guard t.seenOpen.contains(m), t.closedHere[m] == nil else { continue }
                    let how = state.map { "\($0)" } ?? "gone (closed or reset)"
                    t.closedHere[m] = how
                    logger.info("transfer \(t.id): session \(m) closed at this target: its socket is \(how)")
                }
                return t.closedHere.isEmpty ? nil : Array(t.closedHere.keys)
            }
            guard let report else { continue }
            do {
                try messenger.send(try t.channel.seal(.closed(Closed(sessions: report))), to: t.offer.control.socketAddress)
            } catch {
                logger.error("transfer \(t.id): telling the TN of closed sessions: \(error)")
            }
        }
    }

    /// TN side, lock held: the target reports sessions closed. Once every session of an active
    /// transfer is, the TN ends it (reason `closed`), from a thread: ending waits for the agent.
    func closedAtTarget(_ t: Outgoing, _ sessions: [SessionMatch]) {
        let ours = Set(t.request.sessions)
        t.closedAtTarget.formUnion(sessions.filter { ours.contains($0) })
        guard t.state == .active, t.closedAtTarget == ours else { return }
        logger.info("transfer \(t.id): every session closed at the target; ending it")
        Thread.detachNewThread { [self] in
            do {
                _ = try endClosed(t)
            } catch {
                logger.error("transfer \(t.id): ending after its sessions closed: \(error)")
            }
        }
    }
}
