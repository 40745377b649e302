/// Kendall's tau-b with ties, as scipy.stats.kendalltau (variant 'b'), in O(n log n) by Knight's (1966)
/// algorithm: sort the pairs by (x, y), count tied pairs in x and jointly tied pairs in that order, then count
/// discordant pairs as the inversions of y that a merge sort removes, and tied pairs in y on the sorted result.
///
///     tau_b = (n0 - n1 - n2 + n3 - 2 * discordant) / sqrt(n0 - n1) / sqrt(n0 - n2)
///
/// with n0 = n(n-1)/2, n1 / n2 the pairs tied in x / y and n3 the pairs tied in both. Two-sided p-value.
public struct KendallTau: DependenceMeasure {
    public init() {}
    public var name: String { "kendall" }
    public var alternative: Alternative { .twoSided }

    public func statistic(_ sample: PairedSample) -> Double {
        let n = sample.count
        let (xr, _) = Ranking.denseRanks(sample.x)
        let (yr, _) = Ranking.denseRanks(sample.y)
        // Sort by (x rank, y rank): a counting sort on y then a stable counting sort on x (both O(n)).
        var order = countingSort(Array(0..<n), keys: yr)
        order = countingSort(order, keys: xr)
        var ys = order.map { yr[$0] }
        let xs = order.map { xr[$0] }

        var xTies = 0, jointTies = 0
        var i = 0
        while i < n {
            var j = i + 1
            while j < n && xs[j] == xs[i] { j += 1 }
            xTies += (j - i) * (j - i - 1) / 2
            var k = i
            while k < j {
                var m = k + 1
                while m < j && ys[m] == ys[k] { m += 1 }
                jointTies += (m - k) * (m - k - 1) / 2
                k = m
            }
            i = j
        }
        let discordant = KendallTau.inversions(&ys)
        var yTies = 0
        i = 0
        while i < n {
            var j = i + 1
            while j < n && ys[j] == ys[i] { j += 1 }
            yTies += (j - i) * (j - i - 1) / 2
            i = j
        }
        let total = n * (n - 1) / 2
        let numerator = Double(total - xTies - yTies + jointTies - 2 * discordant)
        let tau = numerator / Double(total - xTies).squareRoot() / Double(total - yTies).squareRoot()
        return min(1, max(-1, tau))
    }

    private func countingSort(_ items: [Int], keys: [Int]) -> [Int] {
        var counts = [Int](repeating: 0, count: items.count + 1)
        for item in items { counts[keys[item] + 1] += 1 }
        for k in 1..<counts.count { counts[k] += counts[k - 1] }
        var out = [Int](repeating: 0, count: items.count)
        for item in items {
            out[counts[keys[item]]] = item
            counts[keys[item]] += 1
        }
        return out
    }

    /// Sorts `a` ascending (bottom-up merge sort) and returns the number of pairs i < j with a[i] > a[j].
    static func inversions(_ a: inout [Int]) -> Int {
        let n = a.count
        var buffer = [Int](repeating: 0, count: n)
        var swaps = 0
        var width = 1
        a.withUnsafeMutableBufferPointer { src0 in
            buffer.withUnsafeMutableBufferPointer { dst0 in
                var src = src0, dst = dst0
                var flipped = false
                while width < n {
                    var lo = 0
                    while lo < n {
                        let mid = min(lo + width, n), hi = min(lo + 2 * width, n)
                        var i = lo, j = mid, k = lo
                        while i < mid && j < hi {
                            if src[j] < src[i] {
                                dst[k] = src[j]; j += 1
                                swaps += mid - i
                            } else {
                                dst[k] = src[i]; i += 1
                            }
                            k += 1
                        }
                        while i < mid { dst[k] = src[i]; i += 1; k += 1 }
                        while j < hi { dst[k] = src[j]; j += 1; k += 1 }
                        lo = hi
                    }
                    swap(&src, &dst)
                    flipped.toggle()
                    width *= 2
                }
                if flipped {
                    for i in 0..<n { src0[i] = src[i] }
                }
            }
        }
        return swaps
    }
}
