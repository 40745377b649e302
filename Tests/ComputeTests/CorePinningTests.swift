import Compute
import Foundation
import XCTest

/// Core placement: threads pinned to cores report exactly those cores; pools and worker threads pin what they are
/// given; a core the machine does not have is refused, not ignored.
final class CorePinningTests: XCTestCase {
    /// Runs `body` on a fresh OS thread (pinning this test's thread would outlive the test) and returns its result.
    private func onNewThread<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Thread {
            box.value = body()
            done.signal()
        }.start()
        done.wait()
        return box.value!
    }

    private final class ResultBox<T>: @unchecked Sendable { var value: T? }

    func testAPinnedThreadRunsOnlyOnItsCore() throws {
        let available = CorePinning.currentThreadCores()
        XCTAssertFalse(available.isEmpty, "sched_getaffinity works here")
        let last = available.last!
        let cores = onNewThread { () -> [Int] in
            XCTAssertTrue(CorePinning.pinCurrentThread(to: [last]))
            return CorePinning.currentThreadCores()
        }
        XCTAssertEqual(cores, [last])
        XCTAssertFalse(onNewThread { CorePinning.pinCurrentThread(to: [100_000]) }, "a core the machine lacks is refused")
        XCTAssertEqual(CorePinning.currentThreadCores(), available, "other threads keep their cores")
    }

    func testPoolWorkersArePinnedToTheirCores() throws {
        let available = CorePinning.currentThreadCores()
        XCTAssertGreaterThanOrEqual(available.count, 2, "the project's machines have two cores")
        guard available.count >= 2 else { return }
        let pool = ComputePool(threadCount: 2, cores: [available[0], available[1]])
        defer { pool.shutDown() }
        // Both indexes wait for each other, so two different threads run them: the caller and the pinned worker.
        let seen = ResultBox<[[Int]]>()
        seen.value = [[], []]
        let lock = NSLock()
        // A barrier: each index waits until both have started, so the same thread cannot run both.
        let barrier = NSCondition()
        let arrived = ResultBox<Int>()
        arrived.value = 0
        onNewThread {
            XCTAssertTrue(CorePinning.pinCurrentThread(to: [available[0]]))
            pool.parallelFor(2) { index in
                barrier.lock()
                arrived.value! += 1
                barrier.broadcast()
                let deadline = Date().addingTimeInterval(5)
                while arrived.value! < 2 && barrier.wait(until: deadline) {}
                barrier.unlock()
                lock.lock()
                seen.value![index] = CorePinning.currentThreadCores()
                lock.unlock()
            }
            return ()
        }
        XCTAssertEqual(Set(seen.value!), Set([[available[0]], [available[1]]]), "\(seen.value!)")
    }

    func testAWorkerThreadPinsItself() {
        let available = CorePinning.currentThreadCores()
        let core = available.last!
        let thread = WorkerThread(name: "pinned-test", poolThreads: 1, cores: [core])
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<[Int]>()
        thread.enqueue {
            box.value = CorePinning.currentThreadCores()
            done.signal()
        }
        done.wait()
        XCTAssertEqual(box.value, [core])
    }
}
