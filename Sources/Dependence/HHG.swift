/// The Heller–Heller–Gorfine (2013) statistic with Pearson's chi-square, as hyppo's `HHG().statistic(x, y)`
/// (Euclidean distances, here |x_i - x_j| and |y_i - y_j| computed exactly):
///
///     for each ordered pair i ≠ j, over all points k: a_k = [d_x(i,k) <= d_x(i,j)], b_k = [d_y(i,k) <= d_y(i,j)]
///     t11 = Σ a b - 2 (i and j themselves), t12 = Σ a (1-b), t21 = Σ (1-a) b, t22 = Σ (1-a)(1-b)
///     S(i,j) = (n-2)(t12 t21 - t11 t22)² / ((t11+t12)(t21+t22)(t11+t21)(t12+t22))  (0 if a margin is empty)
///     HHG = Σ_{i≠j} S(i,j)
///
/// hyppo counts the 2×2 tables by brute force (O(n³)); here, for each i, the other points are ordered by
/// distance from i with one outward merge over the sorted data (O(n)) and the joint counts come from a
/// Fenwick tree sweep (O(n log n)), so the statistic costs O(n² log n). Limited to 5,000 pairs.
/// Permutation p-value one-sided.
public struct HHG: DependenceMeasure {
    public init() {}
    public var name: String { "hhg" }
    public var alternative: Alternative { .greater }
    public var maximumCount: Int { 5_000 }

    public func statistic(_ original: PairedSample) -> Double {
        // Only the order of distances matters; exact power-of-two scaling keeps |x_i - x_j| finite.
        let sample = PairedSample(unchecked: Ranking.binaryScaled(original.x), Ranking.binaryScaled(original.y))
        let n = sample.count
        let ox = Ranking.argsort(sample.x), oy = Ranking.argsort(sample.y)
        var px = [Int](repeating: 0, count: n), py = [Int](repeating: 0, count: n)
        for (k, i) in ox.enumerated() { px[i] = k }
        for (k, i) in oy.enumerated() { py[i] = k }
        let xs = ox.map { sample.x[$0] }, ys = oy.map { sample.y[$0] }

        var uOrder = [Int](repeating: 0, count: n)  // points by distance in x from i
        var vOrder = [Int](repeating: 0, count: n)
        var a = [Int](repeating: 0, count: n)  // #{k : d_x(i,k) <= d_x(i,j)}, indexed by j
        var b = [Int](repeating: 0, count: n)
        var c = [Int](repeating: 0, count: n)
        var vRank = [Int](repeating: 0, count: n)
        var tree = CountTree(size: n)
        let nm2 = Double(n - 2)
        var total = 0.0

        for i in 0..<n {
            HHG.outwardOrder(sorted: xs, order: ox, start: px[i], into: &uOrder)
            HHG.outwardOrder(sorted: ys, order: oy, start: py[i], into: &vOrder)
            let xi = sample.x[i], yi = sample.y[i]
            // b counts and dense ranks of d_y(i, .).
            var g = 0, rank = 0
            while g < n {
                let d = abs(sample.y[vOrder[g]] - yi)
                var h = g + 1
                while h < n && abs(sample.y[vOrder[h]] - yi) == d { h += 1 }
                for m in g..<h { b[vOrder[m]] = h; vRank[vOrder[m]] = rank }
                rank += 1
                g = h
            }
            tree.reset()
            g = 0
            while g < n {
                let d = abs(sample.x[uOrder[g]] - xi)
                var h = g + 1
                while h < n && abs(sample.x[uOrder[h]] - xi) == d { h += 1 }
                for m in g..<h { tree.add(vRank[uOrder[m]]) }
                for m in g..<h {
                    let j = uOrder[m]
                    a[j] = h
                    c[j] = tree.prefix(vRank[j] + 1)
                }
                g = h
            }
            for j in 0..<n where j != i {
                let t11 = Double(c[j] - 2), t12 = Double(a[j] - c[j]), t21 = Double(b[j] - c[j])
                let t22 = Double(n - a[j] - b[j] + c[j])
                let denominator = (t11 + t12) * (t21 + t22) * (t11 + t21) * (t12 + t22)
                if denominator > 0 {
                    let diff = t12 * t21 - t11 * t22
                    total += nm2 * diff * diff / denominator
                }
            }
        }
        return total
    }

    /// Writes the indices of all points ordered by |v - v_start| ascending: a merge walking outward from
    /// `start` in the sorted values (`order` maps sorted positions to point indices).
    static func outwardOrder(sorted: [Double], order: [Int], start: Int, into out: inout [Int]) {
        let n = sorted.count
        let center = sorted[start]
        out[0] = order[start]
        var left = start - 1, right = start + 1, k = 1
        while k < n {
            let dl = left >= 0 ? center - sorted[left] : Double.infinity
            let dr = right < n ? sorted[right] - center : Double.infinity
            if dl <= dr { out[k] = order[left]; left -= 1 } else { out[k] = order[right]; right += 1 }
            k += 1
        }
    }
}
