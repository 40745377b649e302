/// Sorting and ranking helpers shared by the measures. All sorts are stable (ties keep their input order),
/// so every statistic is a deterministic function of the data.
enum Ranking {
    /// Indices that sort `values` ascending; ties keep their original order.
    static func argsort(_ values: [Double]) -> [Int] {
        // Sorting (value, index) pairs keeps the comparisons inline and the data contiguous (about 3x faster
        // than sorting indices through a closure that reads the values); the index breaks ties.
        var pairs = values.enumerated().map { ($1, $0) }
        pairs.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        return pairs.map(\.1)
    }

    /// `v` multiplied by the power of two that brings its largest magnitude into [1, 2). Exact (barring values
    /// 2^1000 times smaller than the largest, which underflow), so a scale-invariant statistic computed on the
    /// result is bit-identical, but sums of squares can no longer overflow (1e300) or underflow (1e-300).
    static func binaryScaled(_ v: [Double]) -> [Double] {
        let largest = v.reduce(0) { max($0, abs($1)) }
        guard largest > 0, largest.isFinite else { return v }
        let factor = Double(sign: .plus, exponent: -largest.exponent, significand: 1)
        if factor == 1 { return v }
        return v.map { $0 * factor }
    }

    /// Average ranks (1-based; ties get the mean of the ranks they span), as scipy.stats.rankdata('average').
    static func averageRanks(_ values: [Double]) -> [Double] {
        let order = argsort(values)
        var ranks = [Double](repeating: 0, count: values.count)
        var i = 0
        let n = values.count
        while i < n {
            var j = i + 1
            while j < n && values[order[j]] == values[order[i]] { j += 1 }
            let rank = Double(i + j + 1) / 2  // mean of (i+1)...j
            for k in i..<j { ranks[order[k]] = rank }
            i = j
        }
        return ranks
    }

    /// Dense ranks 0, 1, 2, ... (equal values share one rank), in input order.
    static func denseRanks(_ values: [Double]) -> (ranks: [Int], distinct: Int) {
        let order = argsort(values)
        var ranks = [Int](repeating: 0, count: values.count)
        var current = -1
        var previous = -Double.infinity
        for (k, i) in order.enumerated() {
            if k == 0 || values[i] != previous { current += 1; previous = values[i] }
            ranks[i] = current
        }
        return (ranks, current + 1)
    }
}

/// A Fenwick (binary indexed) tree of sums over positions 0..<size.
struct FenwickTree {
    private var tree: [Double]
    init(size: Int) { tree = [Double](repeating: 0, count: size + 1) }

    mutating func add(_ position: Int, _ value: Double) {
        var i = position + 1
        while i < tree.count { tree[i] += value; i += i & -i }
    }

    /// Sum over positions 0..<end.
    func prefix(_ end: Int) -> Double {
        var s = 0.0
        var i = end
        while i > 0 { s += tree[i]; i -= i & -i }
        return s
    }
}

/// A Fenwick tree of integer counts.
struct CountTree {
    private var tree: [Int32]
    init(size: Int) { tree = [Int32](repeating: 0, count: size + 1) }

    mutating func add(_ position: Int) {
        tree.withUnsafeMutableBufferPointer { t in
            var i = position + 1
            while i < t.count { t[i] &+= 1; i += i & -i }
        }
    }

    /// Count over positions 0..<end.
    func prefix(_ end: Int) -> Int {
        tree.withUnsafeBufferPointer { t in
            var s: Int32 = 0
            var i = end
            while i > 0 { s &+= t[i]; i -= i & -i }
            return Int(s)
        }
    }

    mutating func reset() {
        tree.withUnsafeMutableBufferPointer { t in
            for i in t.indices { t[i] = 0 }
        }
    }
}
