import Foundation
import XCTest

@testable import Serving

/// The engine's caches: bounded in bytes and entries, least recently used out first, counted.
final class BoundedCacheTests: XCTestCase {
    func testLeastRecentlyUsedEntriesLeaveBeyondTheByteBudget() {
        let evicted = EvictionLog()
        let cache = BoundedCache<String, Int>(capacityBytes: 100, metric: "test_cache_total", onEvict: { key, _ in evicted.append(key) })
        for (key, bytes) in [("a", 40), ("b", 40)] { _ = cache.value(for: key) { (1, bytes: bytes) } }
        _ = cache.value(for: "a") { XCTFail("a is cached"); return (0, bytes: 0) }  // a is now the most recent
        _ = cache.value(for: "c") { (3, bytes: 40) }  // 120 bytes: b (least recent) goes
        XCTAssertEqual(evicted.keys, ["b"])
        XCTAssertTrue(cache.contains("a") && cache.contains("c") && !cache.contains("b"))
        let statistics = cache.statistics
        XCTAssertEqual([statistics.hits, statistics.misses, statistics.evictions, statistics.entries, statistics.bytes], [1, 3, 1, 2, 80])
        // One entry over the budget stays alone rather than failing.
        _ = cache.value(for: "huge") { (4, bytes: 500) }
        XCTAssertEqual(cache.statistics.entries, 1)
        XCTAssertEqual(evicted.keys, ["b", "a", "c"])
    }

    func testEntryLimit() {
        let cache = BoundedCache<Int, Int>(capacityBytes: .max, maximumEntries: 2, metric: "test_cache_total")
        for key in 0..<5 { _ = cache.value(for: key) { (key, bytes: 1) } }
        XCTAssertEqual(cache.statistics.entries, 2)
        XCTAssertEqual(cache.statistics.evictions, 3)
        XCTAssertTrue(cache.contains(3) && cache.contains(4))
    }

    /// Room is made before a large value loads: a cache of one entry never holds two.
    func testMakeRoomEvictsBeforeLoading() {
        let cache = BoundedCache<String, Int>(capacityBytes: 100, maximumEntries: 1, metric: "test_cache_total")
        _ = cache.value(for: "a") { (1, bytes: 60) }
        _ = cache.value(for: "b") {
            cache.makeRoom(forBytes: 60)
            XCTAssertEqual(cache.statistics.entries, 0, "a is unloaded before b loads")
            return (2, bytes: 60)
        }
        XCTAssertEqual([cache.statistics.entries, cache.statistics.evictions], [1, 1])
    }

    /// Two callers asking for one key while it loads: one load, and both get its value (the second is a miss that
    /// joined the running load).
    func testACallerWaitsForTheLoadOfItsKeyAlreadyRunning() throws {
        let cache = BoundedCache<String, Int>(capacityBytes: 100, metric: "test_cache_total")
        let release = DispatchSemaphore(value: 0), started = DispatchSemaphore(value: 0)
        let loads = Counter(), results = Results()
        let first = Thread {
            results.append(cache.value(for: "k") {
                loads.increment()
                started.signal()
                release.wait()
                return (7, bytes: 10)
            })
        }
        first.start()
        started.wait()
        let second = Thread {
            results.append(cache.value(for: "k") {
                loads.increment()
                return (8, bytes: 10)
            })
        }
        second.start()
        // The second caller counts its join before it waits; only then may the first load finish.
        try waitUntil { cache.statistics.joins == 1 }
        release.signal()
        try waitUntil { results.values.count == 2 }
        XCTAssertEqual(loads.value, 1, "the key loaded once")
        XCTAssertEqual(results.values, [7, 7])
        let statistics = cache.statistics
        XCTAssertEqual([statistics.hits, statistics.misses, statistics.joins, statistics.entries], [0, 2, 1, 1])
        XCTAssertEqual(cache.value(for: "k") { (9, bytes: 10) }, 7, "cached after the load")
    }

    /// A load that fails does not fail the callers waiting for it: each runs its own load.
    func testAWaiterLoadsForItselfWhenTheLoadItWaitedForFails() throws {
        struct Failure: Error {}
        let cache = BoundedCache<String, Int>(capacityBytes: 100, metric: "test_cache_total")
        let release = DispatchSemaphore(value: 0), started = DispatchSemaphore(value: 0)
        let results = Results(), failures = Counter()
        let first = Thread {
            do {
                _ = try cache.value(for: "k") { () throws -> (Int, bytes: Int) in
                    started.signal()
                    release.wait()
                    throw Failure()
                }
            } catch { failures.increment() }
        }
        first.start()
        started.wait()
        let second = Thread { results.append(cache.value(for: "k") { (5, bytes: 10) }) }
        second.start()
        try waitUntil { cache.statistics.joins == 1 }
        release.signal()
        try waitUntil { results.values.count == 1 && failures.value == 1 }
        XCTAssertEqual(results.values, [5])
        XCTAssertTrue(cache.contains("k"))
    }

    private func waitUntil(_ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let deadline = Date().addingTimeInterval(10)
        while !condition() {
            guard Date() < deadline else { return XCTFail("timed out", file: file, line: line) }
            usleep(1000)
        }
    }

    /// The engine's ControlNet cache is bounded: with room for one ControlNet, alternating two evicts each time.
    func testTheEnginesControlNetCacheEvicts() throws {
        var configuration = EngineConfiguration()
        configuration.controlNetCacheBytes = 1
        let engine = ImageEngine(repository: ServingFixtures.repository(), configuration: configuration, logger: .init(label: "test"))
        for model in ["sd1-controlnet", "sd1-controlnet-b", "sd1-controlnet"] {
            var spec = ServingFixtures.spec(steps: 1)
            spec.controls = [ControlSpec(model: model, image: try ServingFixtures.controlImage)]
            let rendered = try engine.render(try engine.prepare(spec))
            XCTAssertEqual(rendered.cache.controlnetMisses, 1, model)
        }
        let statistics = try XCTUnwrap(engine.cacheStatistics["controlnet"])
        XCTAssertEqual([statistics.misses, statistics.evictions, statistics.entries], [3, 2, 1])
        XCTAssertEqual(engine.cacheStatistics["model"]?.hits, 2)
    }
}

final class EvictionLog: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    func append(_ key: String) { lock.withLock { storage.append(key) } }
    var keys: [String] { lock.withLock { storage } }
}

private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [Int] = []
    func append(_ value: Int) { lock.withLock { list.append(value) } }
    var values: [Int] { lock.withLock { list } }
}
