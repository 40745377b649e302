/// Distance correlation (Székely, Rizzo & Bakirov 2007), the biased V-statistic version, as
/// `dcor.distance_correlation(x, y)` returns it (dcor's default; `dcor.u_distance_correlation_sqr` is the
/// unbiased one, not offered here):
///
///     a_ij = |x_i - x_j|, a_i. = Σ_j a_ij, a.. = Σ_i a_i.   (and b for y)
///     dCov²_n(x, y) = Σ_ij a_ij b_ij / n² - 2 Σ_i a_i. b_i. / n³ + a.. b.. / n⁴
///     dCor_n = sqrt(dCov²_n(x, y) / sqrt(dCov²_n(x, x) dCov²_n(y, y)))
///
/// in O(n log n) for two scalar variables (Huo & Székely 2016; Chaudhuri & Hu 2019): the row sums a_i. come
/// from prefix sums over sorted x, and Σ_ij a_ij b_ij from one sweep in x order with Fenwick trees keyed by
/// the rank of y holding (count, Σx, Σy, Σxy) of the points already passed: the earlier points j below y_i
/// contribute (x_i - x_j)(y_i - y_j), those above its negative, both expanded into the four sums.
/// Permutation p-value one-sided.
public struct DistanceCorrelation: DependenceMeasure {
    public init() {}
    public var name: String { "dcor" }
    public var alternative: Alternative { .greater }

    public func statistic(_ sample: PairedSample) -> Double {
        // dCor is scale invariant; exact power-of-two scaling keeps the expanded sums from overflowing.
        let (xy, xx, yy) = DistanceCorrelation.vStatistics(Ranking.binaryScaled(sample.x), Ranking.binaryScaled(sample.y))
        let denominator = (xx * yy).squareRoot()
        guard denominator > 0 else { return 0 }
        return max(0, xy / denominator).squareRoot()
    }

    /// (dCov²_n(x, y), dCov²_n(x, x), dCov²_n(y, y)), V-statistics.
    static func vStatistics(_ x0: [Double], _ y0: [Double]) -> (Double, Double, Double) {
        let n = x0.count
        let nd = Double(n)
        // Distances are translation invariant; centring keeps the expanded sums small.
        let mx = x0.reduce(0, +) / nd, my = y0.reduce(0, +) / nd
        let x = x0.map { $0 - mx }, y = y0.map { $0 - my }
        let a = rowSums(x), b = rowSums(y)
        var s2 = 0.0, sa = 0.0, sb = 0.0, saa = 0.0, sbb = 0.0
        for i in 0..<n {
            s2 += a[i] * b[i]; sa += a[i]; sb += b[i]; saa += a[i] * a[i]; sbb += b[i] * b[i]
        }
        var sxx = 0.0, syy = 0.0, sx = 0.0, sy = 0.0
        for i in 0..<n { sxx += x[i] * x[i]; syy += y[i] * y[i]; sx += x[i]; sy += y[i] }
        let s1 = crossSum(x, y)
        // Σ_ij (x_i - x_j)² = 2n Σ x² - 2 (Σ x)².
        let s1x = 2 * nd * sxx - 2 * sx * sx, s1y = 2 * nd * syy - 2 * sy * sy
        let n2 = nd * nd, n3 = n2 * nd, n4 = n3 * nd
        let dxy = s1 / n2 - 2 * s2 / n3 + sa * sb / n4
        let dxx = s1x / n2 - 2 * saa / n3 + sa * sa / n4
        let dyy = s1y / n2 - 2 * sbb / n3 + sb * sb / n4
        return (dxy, dxx, dyy)
    }

    /// a_i. = Σ_j |v_i - v_j| for every i, from prefix sums over the sorted values.
    static func rowSums(_ v: [Double]) -> [Double] {
        let n = v.count
        let order = Ranking.argsort(v)
        let total = v.reduce(0, +)
        var sums = [Double](repeating: 0, count: n)
        var prefix = 0.0
        for (k, i) in order.enumerated() {
            let value = v[i]
            let below = value * Double(k) - prefix
            let above = (total - prefix - value) - value * Double(n - k - 1)
            sums[i] = below + above
            prefix += value
        }
        return sums
    }

    /// Σ_{i,j} |x_i - x_j| |y_i - y_j| in O(n log n).
    static func crossSum(_ x: [Double], _ y: [Double]) -> Double {
        let order = Ranking.argsort(x)
        let (yRank, distinct) = Ranking.denseRanks(y)
        var count = FenwickTree(size: distinct), sumX = FenwickTree(size: distinct)
        var sumY = FenwickTree(size: distinct), sumXY = FenwickTree(size: distinct)
        var totC = 0.0, totX = 0.0, totY = 0.0, totXY = 0.0
        var s = 0.0
        for i in order {
            let xi = x[i], yi = y[i], r = yRank[i]
            let cB = count.prefix(r), xB = sumX.prefix(r), yB = sumY.prefix(r), xyB = sumXY.prefix(r)
            let cE = count.prefix(r + 1), xE = sumX.prefix(r + 1), yE = sumY.prefix(r + 1), xyE = sumXY.prefix(r + 1)
            let cA = totC - cE, xA = totX - xE, yA = totY - yE, xyA = totXY - xyE
            let below = cB * xi * yi - xi * yB - yi * xB + xyB
            let above = cA * xi * yi - xi * yA - yi * xA + xyA
            s += below - above
            count.add(r, 1); sumX.add(r, xi); sumY.add(r, yi); sumXY.add(r, xi * yi)
            totC += 1; totX += xi; totY += yi; totXY += xi * yi
        }
        return 2 * s
    }
}
