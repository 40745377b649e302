import Foundation
import Metrics

/// A cache's counts since it was made, and what it holds now.
public struct CacheStatistics: Sendable, Equatable {
    public var hits = 0
    /// Lookups that did not find the value cached: they loaded it, or waited for the same key's load already running
    /// (`joins`). Loads = misses - joins.
    public var misses = 0
    /// Misses that waited for a load of the same key another caller had started, instead of loading it again.
    public var joins = 0
    public var evictions = 0
    public var entries = 0
    public var bytes = 0
}

/// A cache bounded in bytes (and optionally in entries) that evicts the least recently used entry first, with
/// hit, miss and eviction counts (also exported as `<metric>{result="hit"|"miss"|"eviction"}`; with
/// `exportsLookups` false only evictions are exported, for caches whose owner counts hits per request).
///
/// The engine's model, ControlNet and LoRA-file caches are each one of these. The most recently inserted entry
/// is never evicted by its own insertion, so one item larger than the budget still works (alone).
/// Thread-safe; `value(for:load:)` loads outside the lock, one load per key at a time: a caller that asks for a key
/// whose load another caller has started waits for that load instead of running its own (a LoRA file the loader
/// prefetches for the next job while that job starts loading it, two requests for one uncached ControlNet).
public final class BoundedCache<Key: Hashable & Sendable, Value>: @unchecked Sendable {
    public typealias Statistics = CacheStatistics

    private struct Entry {
        var value: Value
        var bytes: Int
        var lastUse: UInt64
    }

    /// One running load, which callers asking for its key wait for.
    private final class Flight: @unchecked Sendable {
        private let condition = NSCondition()
        private var finished = false
        private var value: Value?

        /// The loaded value, or nil when the load failed.
        func wait() -> Value? {
            condition.lock()
            defer { condition.unlock() }
            while !finished { condition.wait() }
            return value
        }

        func finish(_ value: Value?) {
            condition.lock()
            self.value = value
            finished = true
            condition.broadcast()
            condition.unlock()
        }
    }

    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]
    private var flights: [Key: Flight] = [:]
    private var clock: UInt64 = 0
    private var counts = Statistics()
    public let capacityBytes: Int
    public let maximumEntries: Int
    private let metric: String
    private let dimensions: [(String, String)]
    private let exportsLookups: Bool
    /// Called (outside the lock) with each evicted key and value.
    private let onEvict: @Sendable (Key, Value) -> Void

    public init(
        capacityBytes: Int, maximumEntries: Int = .max, metric: String, dimensions: [(String, String)] = [], exportsLookups: Bool = true,
        onEvict: @escaping @Sendable (Key, Value) -> Void = { _, _ in }
    ) {
        self.capacityBytes = capacityBytes
        self.maximumEntries = max(1, maximumEntries)
        self.metric = metric
        self.dimensions = dimensions
        self.exportsLookups = exportsLookups
        self.onEvict = onEvict
    }

    private func count(_ result: String) {
        if result != "eviction" && !exportsLookups { return }
        Counter(label: metric, dimensions: dimensions + [("result", result)]).increment()
    }

    /// The cached value, marked as just used; nil (a miss) if absent. Does not count.
    public func peek(_ key: Key) -> Value? {
        lock.lock()
        defer { lock.unlock() }
        return entries[key]?.value
    }

    public func contains(_ key: Key) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return entries[key] != nil
    }

    /// The cached value (a hit) or the one `load` makes (a miss), inserted with its size in bytes.
    /// `hit` learns which it was. While another caller loads the same key, this one waits for that load and returns its
    /// value (a miss, counted in `joins`); if that load fails, this caller runs its own `load` (and meets its own error; the
    /// retry counts as one more lookup).
    public func value(for key: Key, hit: UnsafeMutablePointer<Bool>? = nil, load: () throws -> (Value, bytes: Int)) rethrows -> Value {
        lock.lock()
        clock += 1
        if var entry = entries[key] {
            entry.lastUse = clock
            entries[key] = entry
            counts.hits += 1
            lock.unlock()
            count("hit")
            hit?.pointee = true
            return entry.value
        }
        counts.misses += 1
        hit?.pointee = false
        if let running = flights[key] {
            counts.joins += 1
            lock.unlock()
            count("miss")
            if let value = running.wait() { return value }
            return try value(for: key, load: load)
        }
        let flight = Flight()
        flights[key] = flight
        lock.unlock()
        count("miss")
        var loaded: Value?
        // Inserted before the flight ends, so a caller that comes after finds the entry rather than no flight.
        defer {
            lock.withLock { flights[key] = nil }
            flight.finish(loaded)
        }
        let (value, bytes) = try load()
        insert(value, bytes: bytes, for: key)
        loaded = value
        return value
    }

    /// Inserts (or replaces) a value and evicts the least recently used others beyond the bounds.
    public func insert(_ value: Value, bytes: Int, for key: Key) {
        lock.lock()
        clock += 1
        entries[key] = Entry(value: value, bytes: max(0, bytes), lastUse: clock)
        var evicted: [(Key, Value)] = []
        var total = entries.values.reduce(0) { $0 + $1.bytes }
        while entries.count > 1, total > capacityBytes || entries.count > maximumEntries,
            let oldest = entries.filter({ $0.key != key }).min(by: { $0.value.lastUse < $1.value.lastUse })
        {
            entries[oldest.key] = nil
            total -= oldest.value.bytes
            counts.evictions += 1
            evicted.append((oldest.key, oldest.value.value))
        }
        lock.unlock()
        for (key, value) in evicted {
            count("eviction")
            onEvict(key, value)
        }
    }

    /// Evicts least recently used entries until one more entry of `bytes` fits both bounds (before loading a large
    /// value, so the old one is freed first rather than after: a model cache of one never holds two models).
    public func makeRoom(forBytes bytes: Int) {
        lock.lock()
        var evicted: [(Key, Value)] = []
        var total = entries.values.reduce(0) { $0 + $1.bytes }
        while !entries.isEmpty, total + bytes > capacityBytes || entries.count + 1 > maximumEntries,
            let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse })
        {
            entries[oldest.key] = nil
            total -= oldest.value.bytes
            counts.evictions += 1
            evicted.append((oldest.key, oldest.value.value))
        }
        lock.unlock()
        for (key, value) in evicted {
            count("eviction")
            onEvict(key, value)
        }
    }

    /// Removes every entry whose key matches (no eviction counted: the caller forgets them on purpose).
    public func removeAll(where predicate: (Key) -> Bool) {
        lock.lock()
        entries = entries.filter { !predicate($0.key) }
        lock.unlock()
    }

    public var statistics: Statistics {
        lock.lock()
        defer { lock.unlock() }
        var result = counts
        result.entries = entries.count
        result.bytes = entries.values.reduce(0) { $0 + $1.bytes }
        return result
    }
}
