/// Kraskov–Stögbauer–Grassberger (2004) mutual information, estimator 1, in nats, as scikit-learn's
/// `mutual_info_regression(x, y, n_neighbors=k)` computes it for one continuous feature, without the tiny
/// random jitter scikit-learn adds to the inputs (1e-10 × max(1, mean|v|) noise, which breaks ties at random):
///
///     scale x and y by their standard deviations (ddof 0);
///     ε_i = distance of point i to its k-th nearest neighbour in the max-norm (the point itself excluded);
///     n_x(i) = #{j ≠ i : |x_j - x_i| < ε_i}, likewise n_y(i);
///     I = max(0, ψ(n) + ψ(k) - mean ψ(n_x + 1) - mean ψ(n_y + 1))
///
/// Neighbour search is a sweep over the points sorted by x (O(n √n) for typical data); marginal counts are
/// binary searches. Ties (repeated values) are where the estimator itself is ill-posed: counts then follow
/// the strict "< ε" rule above exactly, with no jitter. Permutation p-value one-sided.
public struct KSGMutualInformation: DependenceMeasure {
    public let neighbors: Int
    public init(neighbors: Int = 3) { self.neighbors = max(1, neighbors) }
    public var name: String { "ksg" }
    public var alternative: Alternative { .greater }
    public var minimumCount: Int { neighbors + 1 }

    public func statistic(_ sample: PairedSample) -> Double {
        let n = sample.count, k = neighbors
        let x = KSGMutualInformation.standardized(Ranking.binaryScaled(sample.x))
        let y = KSGMutualInformation.standardized(Ranking.binaryScaled(sample.y))
        let ox = Ranking.argsort(x), oy = Ranking.argsort(y)
        let xs = ox.map { x[$0] }, ysByX = ox.map { y[$0] }, ys = oy.map { y[$0] }
        var psi = [Double](repeating: 0, count: n + 2)  // psi[m] = ψ(m) for m >= 1
        psi[1] = -0.57721566490153286061
        for m in 1...n { psi[m + 1] = psi[m] + 1 / Double(m) }

        var sumX = 0.0, sumY = 0.0
        var best = [Double](repeating: .infinity, count: k)  // k smallest distances, ascending
        for p in 0..<n {
            let xi = xs[p], yi = ysByX[p]
            for t in 0..<k { best[t] = .infinity }
            var left = p - 1, right = p + 1
            while true {
                let dl = left >= 0 ? xi - xs[left] : Double.infinity
                let dr = right < n ? xs[right] - xi : Double.infinity
                let goLeft = dl <= dr
                let dx = goLeft ? dl : dr
                if dx == .infinity || dx >= best[k - 1] { break }
                let q = goLeft ? left : right
                let d = max(dx, abs(ysByX[q] - yi))
                if d < best[k - 1] {
                    var t = k - 1
                    while t > 0 && best[t - 1] > d { best[t] = best[t - 1]; t -= 1 }
                    best[t] = d
                }
                if goLeft { left -= 1 } else { right += 1 }
            }
            let epsilon = best[k - 1]
            let radius = epsilon > 0 ? epsilon.nextDown : 0
            sumX += psi[KSGMutualInformation.countWithin(xs, center: xi, radius: radius)]
            sumY += psi[KSGMutualInformation.countWithin(ys, center: yi, radius: radius)]
        }
        let mi = psi[n] + psi[k] - sumX / Double(n) - sumY / Double(n)
        return max(0, mi)
    }

    static func standardized(_ v: [Double]) -> [Double] {
        let n = Double(v.count)
        let mean = v.reduce(0, +) / n
        var ss = 0.0
        for value in v { ss += (value - mean) * (value - mean) }
        let sd = (ss / n).squareRoot()
        return v.map { $0 / sd }
    }

    /// #{j : |sorted[j] - center| <= radius} (center itself included), with the same rounded differences
    /// a direct comparison would use.
    static func countWithin(_ sorted: [Double], center: Double, radius: Double) -> Int {
        // First index whose value is not below center - radius: predicate center - v > radius is monotone.
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < center && center - sorted[mid] > radius { lo = mid + 1 } else { hi = mid }
        }
        let first = lo
        lo = first; hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] <= center || sorted[mid] - center <= radius { lo = mid + 1 } else { hi = mid }
        }
        return lo - first
    }
}
