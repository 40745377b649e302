import Foundation

/// An OS thread of its own that runs submitted closures one at a time, in order; optionally with a compute pool of
/// its own bound (kernels called from the closures use that pool). The thread holds only its queue, so it ends when
/// the `WorkerThread` goes away (after the work already queued).
///
/// Used where blocking compute must stay off Swift's cooperative pool: the engine's generation thread, ControlNet
/// workers.
public final class WorkerThread: Sendable {
    private final class Queue: @unchecked Sendable {
        let condition = NSCondition()
        var work: [() -> Void] = []
        var stopped = false

        func loop() {
            while true {
                condition.lock()
                while work.isEmpty && !stopped { condition.wait() }
                if work.isEmpty {
                    condition.unlock()
                    return
                }
                let item = work.removeFirst()
                condition.unlock()
                item()
            }
        }
    }

    private let queue = Queue()

    /// Starts the thread. `poolThreads`: bind a pool of that many threads (the thread itself included); nil keeps
    /// the process-wide pool.
    /// `cores`: pin the thread to `cores[0]` and its pool's workers to the cores after it.
    public init(name: String, poolThreads: Int? = nil, cores: [Int]? = nil, stackSize: Int = 16 << 20) {
        let queue = self.queue
        let thread = Thread {
            if let first = cores?.first { CorePinning.pinCurrentThread(to: [first]) }
            #if os(Linux)
            // Foundation on Linux does not pass a name set before `start()` to the OS thread (and setting
            // `Thread.current.name` from the thread does not always stick); the kernel's per-thread name does.
            try? name.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
            #endif
            if let poolThreads {
                let pool = ComputePool(threadCount: poolThreads, cores: cores)
                ComputePool.run(on: pool) { queue.loop() }
                pool.shutDown()
            } else {
                queue.loop()
            }
        }
        thread.name = name
        thread.stackSize = stackSize
        thread.start()
    }

    deinit {
        queue.condition.lock()
        queue.stopped = true
        queue.condition.signal()
        queue.condition.unlock()
    }

    /// Queues `item` to run on the thread after everything queued before it.
    public func enqueue(_ item: @escaping @Sendable () -> Void) {
        queue.condition.lock()
        queue.work.append(item)
        queue.condition.signal()
        queue.condition.unlock()
    }
}
