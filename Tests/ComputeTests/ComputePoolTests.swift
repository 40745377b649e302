import Compute
import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The compute pool's hand-over: workers spin briefly for the next parallel region, then sleep. Every index runs exactly
/// once however the regions follow each other (back to back, caught by the spin; or after a pause, from sleep), from
/// one caller or two, and an idle pool takes no CPU once its spin is over.
final class ComputePoolTests: XCTestCase {
    func testEveryIndexRunsOnceWhetherTheWorkersSpinOrSleep() {
        for threads in [2, 3, 4] {
            let pool = ComputePool(threadCount: threads)
            defer { pool.shutDown() }
            for round in 0..<400 {
                let count = 1 + round % 9
                let hits = Mutex([Int](repeating: 0, count: count))
                pool.parallelFor(count) { index in hits.withLock { $0[index] += 1 } }
                XCTAssertEqual(hits.withLock { $0 }, Array(repeating: 1, count: count), "\(threads) threads, round \(round)")
                // Every 50th region comes after the workers have gone to sleep.
                if round % 50 == 49 { usleep(5_000) }
            }
        }
    }

    func testTwoCallersTakeTurns() {
        let pool = ComputePool(threadCount: 3)
        defer { pool.shutDown() }
        let total = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            for _ in 0..<300 { pool.parallelFor(4) { total.wrappingAdd($0 + 1 + caller, ordering: .relaxed) } }
        }
        // Each region adds 1 + 2 + 3 + 4 (+ 4 for the second caller).
        XCTAssertEqual(total.load(ordering: .relaxed), 300 * 10 + 300 * 14)
    }

    func testAnIdlePoolSleepsAfterItsSpin() throws {
        #if os(Linux)
            let pool = ComputePool(threadCount: 3)
            defer { pool.shutDown() }
            pool.parallelFor(3) { _ in }
            usleep(20_000)  // past the spin
            func cpuSeconds() -> Double {
                var time = timespec()
                clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
                return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
            }
            let before = cpuSeconds()
            usleep(300_000)
            let used = cpuSeconds() - before
            // Two spinning workers would take 0.6 s of CPU in 0.3 s (the margin leaves room for other threads of the
            // test process).
            XCTAssertLessThan(used, 0.3, "the process took \(used) s of CPU while its pool was idle")
            // Shut down, the pool still runs what it is given (on the caller).
            pool.shutDown()
            let hits = Atomic<Int>(0)
            pool.parallelFor(5) { _ in hits.wrappingAdd(1, ordering: .relaxed) }
            XCTAssertEqual(hits.load(ordering: .relaxed), 5)
        #else
            throw XCTSkip("CLOCK_PROCESS_CPUTIME_ID check written for Linux")
        #endif
    }
}
