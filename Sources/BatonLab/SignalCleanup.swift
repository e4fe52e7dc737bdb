import Dispatch
import Foundation
import Synchronization

/// What a tool that builds labs (baton-demo, baton-bench) must undo when it is interrupted:
/// daemons to stop, labs to tear down. Actions are registered as they are made and run
/// newest first on SIGINT, SIGTERM or SIGHUP, before the process exits with 128 + signal.
/// On the normal way out each action is withdrawn (or run) by its owner.
public final class SignalCleanup: Sendable {
    public static let shared = SignalCleanup()

    /// One registered action; `withdraw` or `run` it.
    public struct Token: Hashable, Sendable { fileprivate let id: UInt64 }

    private struct State {
        var next: UInt64 = 0
        var actions: [(id: UInt64, action: @Sendable () -> Void)] = []
        var sources: [DispatchSourceSignal] = []
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
        state.withLock { s in
            s.next += 1
            s.actions.append((s.next, action))
            return Token(id: s.next)
        }
    }

    /// A lab torn down if the process is interrupted (or when the token is run).
    @discardableResult
    public func add(_ lab: Lab) -> Token {
        add {
            do { try lab.teardown() } catch {
                FileHandle.standardError.write(Data("warning: tearing down lab \(lab.prefix): \(error)\n".utf8))
            }
        }
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
