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
