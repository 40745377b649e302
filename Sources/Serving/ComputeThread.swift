import Compute
import Foundation

/// A dedicated OS thread that runs blocking compute work submitted from async code, one item at a time.
///
/// Denoising blocks for seconds to minutes; doing that on Swift's cooperative pool would starve the
/// server's tasks (HTTP, SSE, timers). Async callers `await run { ... }` and resume when the work is done.
public final class ComputeThread: Sendable {
    private let thread: WorkerThread

    public init(name: String) {
        thread = WorkerThread(name: name)
    }

    /// Runs `body` on the thread and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue {
                do {
                    continuation.resume(returning: try body())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Queues `item` without waiting for it.
    public func submit(_ item: @escaping @Sendable () -> Void) {
        enqueue(item)
    }

    private func enqueue(_ item: @escaping @Sendable () -> Void) {
        thread.enqueue(item)
    }
}
