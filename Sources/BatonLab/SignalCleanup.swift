import Dispatch
import Foundation
import Synchronization

/// What a process that builds labs must undo when it is interrupted: daemons to stop, labs to
/// tear down. Every lab (`Lab.track`) and every `LabDaemons` registers itself here when it is
/// made and withdraws when it is torn down or stopped, so the tests, the demo, the benchmark
/// and baton-lab all leave nothing behind on SIGINT, SIGTERM or SIGHUP: the actions still
/// registered run newest first (daemons before their lab), then the process exits with
/// 128 + signal. The first registration installs the handlers unless the tool did with a
/// message of its own. (SIGKILL cannot be caught: `baton-lab down --all` and
/// `batonctl teardown --all` remove what such a run left.)
public final class SignalCleanup: Sendable {
    public static let shared = SignalCleanup()

    /// One registered action; `withdraw` or `run` it.
    public struct Token: Hashable, Sendable { fileprivate let id: UInt64 }

    private struct State {
        var next: UInt64 = 0
        var actions: [(id: UInt64, action: @Sendable () -> Void)] = []
        var sources: [DispatchSourceSignal] = []
        /// The token of each lab registered, by prefix (a lab is a value: copies share it).
        var labs: [String: Token] = [:]
    }
    private let state = Mutex(State())

    private init() {}

    /// Handles SIGINT, SIGTERM and SIGHUP from now on: prints `message` on stderr, runs every
    /// action still registered (newest first), exits 128 + the signal. Once per process.
    public func install(message: String) {
        state.withLock { s in
            guard s.sources.isEmpty else { return }
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { [self] in
                    FileHandle.standardError.write(Data((message + "\n").utf8))
                    runAll()
                    exit(128 + sig)
                }
                source.resume()
                s.sources.append(source)
            }
        }
    }

    /// Registers `action` to run if the process is interrupted.
    @discardableResult
    public func add(_ action: @escaping @Sendable () -> Void) -> Token {
        install(message: "interrupted: stopping the daemons and removing the labs this process made")
        return state.withLock { s in
            s.next += 1
            s.actions.append((s.next, action))
            return Token(id: s.next)
        }
    }

    /// A lab torn down if the process is interrupted (or when the token is run). A lab is
    /// registered once, when it is built; this gives back that registration.
    @discardableResult
    public func add(_ lab: Lab) -> Token {
        if let token = state.withLock({ $0.labs[lab.prefix] }) { return token }
        let token = add {
            do { try lab.teardown() } catch {
                FileHandle.standardError.write(Data("warning: tearing down lab \(lab.prefix): \(error)\n".utf8))
            }
        }
        state.withLock { $0.labs[lab.prefix] = token }
        return token
    }

    /// Forgets the lab's registration (it was torn down, or is kept on purpose).
    func withdraw(lab prefix: String) {
        if let token = state.withLock({ $0.labs.removeValue(forKey: prefix) }) { withdraw(token) }
    }

    /// Forgets the action without running it (its owner undid it itself).
    public func withdraw(_ token: Token) {
        state.withLock { s in s.actions.removeAll { $0.id == token.id } }
    }

    /// Runs the action now, once, and forgets it.
    public func run(_ token: Token) {
        let action = state.withLock { s -> (@Sendable () -> Void)? in
            guard let i = s.actions.firstIndex(where: { $0.id == token.id }) else { return nil }
            return s.actions.remove(at: i).action
        }
        action?()
    }

    /// Runs every action still registered, newest first, and forgets them.
    public func runAll() {
        let actions = state.withLock { s -> [@Sendable () -> Void] in
            defer { s.actions = [] }
            return s.actions.reversed().map(\.action)
        }
        for action in actions { action() }
    }
}
