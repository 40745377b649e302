import Foundation

/// A dedicated OS thread that runs blocking compute work submitted from async code, one item at a time.
///
/// Denoising blocks for seconds to minutes; doing that on Swift's cooperative pool would starve the
/// server's tasks (HTTP, SSE, timers). Async callers `await run { ... }` and resume when the work is done.
public final class ComputeThread: Sendable {
    private final class State: @unchecked Sendable {
        let condition = NSCondition()
        var work: [() -> Void] = []
        var stopped = false

        func loop() {
            while true {
                condition.lock()
                while work.isEmpty && !stopped { condition.wait() }
                if work.isEmpty && stopped {
                    condition.unlock()
                    return
                }
                let item = work.removeFirst()
                condition.unlock()
                item()
            }
        }
    }

    private let state = State()

    public init(name: String) {
        let state = self.state
        let thread = Thread {
            #if os(Linux)
            // Foundation on Linux does not pass a name set before `start()` to the OS thread (and setting
            // `Thread.current.name` from the thread does not always stick); the kernel's per-thread name does.
            try? name.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
            #endif
            state.loop()
        }
        thread.name = name
        thread.stackSize = 16 << 20
        thread.start()
    }

    deinit {
        state.condition.lock()
        state.stopped = true
        state.condition.signal()
        state.condition.unlock()
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

    private func enqueue(_ item: @escaping () -> Void) {
        state.condition.lock()
        state.work.append(item)
        state.condition.signal()
        state.condition.unlock()
    }
}
