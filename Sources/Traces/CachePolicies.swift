/// Adapter-cache simulation over one instance's time-ordered access sequence (adapter ids as small integers):
/// how many accesses miss a cache of `capacity` adapters under each policy. A miss loads the adapter (the paper's
/// "switch"); the cache starts empty, so every first access misses.
public enum CachePolicy: String, CaseIterable, Sendable {
    /// Least recently used.
    case lru
    /// Least frequently used among the cached adapters (frequency counted while cached, reset on eviction, the
    /// paper's O(1) frequency-bucket LFU), least recently used first among equal frequencies.
    case lfu
    /// Belady's optimal offline policy: evict the adapter whose next use is farthest away (never used again first).
    case belady

    public var label: String {
        switch self {
        case .lru: return "LRU"
        case .lfu: return "LFU"
        case .belady: return "Belady"
        }
    }

    /// Misses of `sequence` on a cache of `capacity` adapters.
    public func misses(_ sequence: [Int32], capacity: Int) -> Int {
        precondition(capacity >= 1)
        switch self {
        case .lru: return Self.lru(sequence, capacity: capacity)
        case .lfu: return Self.lfu(sequence, capacity: capacity)
        case .belady: return Self.belady(sequence, nextUse: Self.nextUse(sequence), capacity: capacity)
        }
    }

    /// Misses for every capacity in `capacities` (Belady's next-use table is built once).
    public func misses(_ sequence: [Int32], capacities: [Int]) -> [Int] {
        if self == .belady {
            let next = Self.nextUse(sequence)
            return capacities.map { Self.belady(sequence, nextUse: next, capacity: $0) }
        }
        return capacities.map { misses(sequence, capacity: $0) }
    }

    // Capacities are small (1...10 in the analysis), so the caches are short arrays scanned linearly.

    static func lru(_ sequence: [Int32], capacity: Int) -> Int {
        var ids = [Int32](), stamp = [Int]()
        ids.reserveCapacity(capacity)
        stamp.reserveCapacity(capacity)
        var misses = 0
        for (t, a) in sequence.enumerated() {
            if let i = ids.firstIndex(of: a) { stamp[i] = t; continue }
            misses += 1
            if ids.count < capacity {
                ids.append(a); stamp.append(t)
            } else {
                var victim = 0
                for i in 1..<ids.count where stamp[i] < stamp[victim] { victim = i }
                ids[victim] = a; stamp[victim] = t
            }
        }
        return misses
    }

    static func lfu(_ sequence: [Int32], capacity: Int) -> Int {
        var ids = [Int32](), frequency = [Int](), stamp = [Int]()
        var misses = 0
        for (t, a) in sequence.enumerated() {
            if let i = ids.firstIndex(of: a) { frequency[i] += 1; stamp[i] = t; continue }
            misses += 1
            if ids.count < capacity {
                ids.append(a); frequency.append(1); stamp.append(t)
            } else {
                var victim = 0
                for i in 1..<ids.count
                where frequency[i] < frequency[victim] || (frequency[i] == frequency[victim] && stamp[i] < stamp[victim]) {
                    victim = i
                }
                ids[victim] = a; frequency[victim] = 1; stamp[victim] = t
            }
        }
        return misses
    }

    /// For each position, the position of the same adapter's next access (Int.max when none).
    static func nextUse(_ sequence: [Int32]) -> [Int] {
        var next = [Int](repeating: Int.max, count: sequence.count)
        var last: [Int32: Int] = [:]
        for t in stride(from: sequence.count - 1, through: 0, by: -1) {
            if let n = last[sequence[t]] { next[t] = n }
            last[sequence[t]] = t
        }
        return next
    }

    static func belady(_ sequence: [Int32], nextUse: [Int], capacity: Int) -> Int {
        var ids = [Int32](), next = [Int]()
        var misses = 0
        for (t, a) in sequence.enumerated() {
            if let i = ids.firstIndex(of: a) { next[i] = nextUse[t]; continue }
            misses += 1
            if ids.count < capacity {
                ids.append(a); next.append(nextUse[t])
            } else {
                var victim = 0
                for i in 1..<ids.count where next[i] > next[victim] { victim = i }
                ids[victim] = a; next[victim] = nextUse[t]
            }
        }
        return misses
    }
}

/// A per-instance LRU cache that reports hits as requests arrive (the generator's and the drivers' cache model).
struct LRUCache {
    let capacity: Int
    private var ids: [Int32] = []
    private var stamp: [Int] = []
    private var clock = 0

    init(capacity: Int) { self.capacity = capacity }

    /// Accesses `id`; true on a hit. Capacity 0 caches nothing.
    mutating func access(_ id: Int32) -> Bool {
        clock += 1
        if let i = ids.firstIndex(of: id) { stamp[i] = clock; return true }
        guard capacity > 0 else { return false }
        if ids.count < capacity {
            ids.append(id); stamp.append(clock)
        } else {
            var victim = 0
            for i in 1..<ids.count where stamp[i] < stamp[victim] { victim = i }
            ids[victim] = id; stamp[victim] = clock
        }
        return false
    }
}
