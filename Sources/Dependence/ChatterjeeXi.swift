/// Chatterjee's (2021) rank correlation ξ_n(x, y), as scipy.stats.chatterjeexi with y_continuous=False
/// (the general formula, valid with ties):
///
///     sort the pairs by x; r_i = #{j : y_j <= y_(i)}, l_i = #{j : y_j >= y_(i)}
///     ξ_n = 1 - n Σ_i |r_{i+1} - r_i| / (2 Σ_i l_i (n - l_i))
///
/// Not symmetric: it measures how well y is a function of x. Ties in x are broken by input order (Chatterjee
/// breaks them at random; scipy's argsort leaves them in an unspecified order), so the value is deterministic.
/// Permutation p-value one-sided (large ξ means dependence).
public struct ChatterjeeXi: DependenceMeasure {
    public init() {}
    public var name: String { "xi" }
    public var alternative: Alternative { .greater }

    public func statistic(_ sample: PairedSample) -> Double {
        let n = sample.count
        let order = Ranking.argsort(sample.x)
        // r (count of y <= y_i) and l (count of y >= y_i) for each point from the sorted y.
        let yOrder = Ranking.argsort(sample.y)
        var r = [Int](repeating: 0, count: n), l = [Int](repeating: 0, count: n)
        var i = 0
        while i < n {
            var j = i + 1
            while j < n && sample.y[yOrder[j]] == sample.y[yOrder[i]] { j += 1 }
            for k in i..<j { r[yOrder[k]] = j; l[yOrder[k]] = n - i }
            i = j
        }
        var numerator = 0
        for k in 1..<n { numerator += abs(r[order[k]] - r[order[k - 1]]) }
        var denominator = 0
        for k in 0..<n { denominator += l[k] * (n - l[k]) }
        return 1 - Double(n * numerator) / Double(2 * denominator)
    }
}
