/// Kendall's tau-b with ties, as scipy.stats.kendalltau (variant 'b'), in O(n log n) by Knight's (1966)
/// algorithm: sort the pairs by (x, y), count tied pairs in x and jointly tied pairs in that order, then count
/// discordant pairs as the inversions of y that a merge sort removes, and tied pairs in y on the sorted result.
///
///     tau_b = (n0 - n1 - n2 + n3 - 2 * discordant) / sqrt(n0 - n1) / sqrt(n0 - n2)
///
/// with n0 = n(n-1)/2, n1 / n2 the pairs tied in x / y and n3 the pairs tied in both. Two-sided p-value.
/// (No dense ranks are needed: the merge sort compares the y values themselves; equal values are not inversions.)
public struct KendallTau: DependenceMeasure {
    public init() {}
    public var name: String { "kendall" }
    public var alternative: Alternative { .twoSided }

    public func statistic(_ sample: PairedSample) -> Double {
        let n = sample.count
        // Sort the pairs by (x, y).
        var pairs = [(Double, Double)](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = (sample.x[i], sample.y[i]) }
            count = n
        }
        pairs.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        var ys = pairs.map(\.1)

        var xTies = 0, jointTies = 0
        var i = 0
        while i < n {
            var j = i + 1
            while j < n && pairs[j].0 == pairs[i].0 { j += 1 }
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

    /// Sorts `a` ascending (bottom-up merge sort) and returns the number of pairs i < j with a[i] > a[j].
    static func inversions(_ a: inout [Double]) -> Int {
        let n = a.count
        var buffer = [Double](repeating: 0, count: n)
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
