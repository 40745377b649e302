import Foundation

/// The Hilbert–Schmidt independence criterion with Gaussian kernels, normalised as hyppo's `Hsic` statistic
/// (hyppo 0.5, default `bias=False`): the unbiased distance correlation of the kernel-induced distances
/// d_x(i,j) = 1 - k_x(i,j) / max k_x, with k_x(i,j) = exp(-γ_x |x_i - x_j|²), likewise for y:
///
///     with a_ij = d_x(i,j) (a_ii = 0), a_i. row sums, a.. the total, and U-centring,
///     U(a, b) = Σ_ij a_ij b_ij - 2 Σ_i a_i. b_i. / (n-2) + a.. b.. / ((n-1)(n-2))
///     HSIC = U(a, b) / sqrt(U(a, a) U(b, b))   (0 if either variance term is <= 0; may be slightly negative)
///
/// Bandwidth: the median heuristic as hyppo computes it, γ = 1 / (2 m²), m = the median of the off-diagonal
/// pairwise distances (1 if that median is 0) — but computed per variable. hyppo's `compute_kern` derives γ
/// from x and then applies that same γ to y as well; we give y its own median (Gretton et al.'s practice),
/// and the goldens call hyppo's statistic on kernels built that way.
///
/// O(n²) time without storing the n × n matrices; the median is found exactly in O(n log n) by a binary
/// search over the bit patterns of doubles with two-pointer pair counts. Limited to 10,000 pairs.
/// Permutation p-value one-sided.
public struct HSIC: DependenceMeasure {
    public init() {}
    public var name: String { "hsic" }
    public var alternative: Alternative { .greater }
    public var maximumCount: Int { 10_000 }

    public func statistic(_ sample: PairedSample) -> Double {
        let n = sample.count
        // The statistic is scale invariant (γ follows the median); exact power-of-two scaling avoids overflow.
        let x = Ranking.binaryScaled(sample.x), y = Ranking.binaryScaled(sample.y)
        let gx = HSIC.medianGamma(x), gy = HSIC.medianGamma(y)
        var ra = [Double](repeating: 0, count: n), rb = [Double](repeating: 0, count: n)
        var sab = 0.0, saa = 0.0, sbb = 0.0
        x.withUnsafeBufferPointer { x in
            y.withUnsafeBufferPointer { y in
                for i in 0..<n {
                    let xi = x[i], yi = y[i]
                    var rowA = 0.0, rowB = 0.0, ab = 0.0, aa = 0.0, bb = 0.0
                    for j in (i + 1)..<n {
                        let dx = xi - x[j], dy = yi - y[j]
                        let a = 1 - exp(-gx * dx * dx), b = 1 - exp(-gy * dy * dy)
                        rowA += a; rowB += b; ab += a * b; aa += a * a; bb += b * b
                        ra[j] += a; rb[j] += b
                    }
                    ra[i] += rowA; rb[i] += rowB
                    sab += ab; saa += aa; sbb += bb
                }
            }
        }
        let nd = Double(n)
        var s2ab = 0.0, s2aa = 0.0, s2bb = 0.0, ta = 0.0, tb = 0.0
        for i in 0..<n {
            s2ab += ra[i] * rb[i]; s2aa += ra[i] * ra[i]; s2bb += rb[i] * rb[i]; ta += ra[i]; tb += rb[i]
        }
        func u(_ s1: Double, _ s2: Double, _ s3: Double) -> Double {
            2 * s1 - 2 * s2 / (nd - 2) + s3 / ((nd - 1) * (nd - 2))
        }
        let covariance = u(sab, s2ab, ta * tb), varX = u(saa, s2aa, ta * ta), varY = u(sbb, s2bb, tb * tb)
        guard varX > 0, varY > 0 else { return 0 }
        return covariance / (varX * varY).squareRoot()
    }

    /// γ = 1 / (2 m²) with m the median of the n(n-1) off-diagonal distances |v_i - v_j| (numpy's median:
    /// the mean of the two middle ones), 1 if that median is 0.
    static func medianGamma(_ v: [Double]) -> Double {
        let sorted = v.sorted()
        let n = sorted.count
        let pairs = n * (n - 1) / 2
        let lower = kthPairwiseDistance(sorted, (pairs - 1) / 2), upper = kthPairwiseDistance(sorted, pairs / 2)
        var median = (lower + upper) / 2
        if median == 0 { median = 1 }
        return 1 / (2 * (median * median))
    }

    /// The k-th smallest (0-based) of the distances s_j - s_i, i < j, of sorted values: the smallest double t
    /// with #{d <= t} > k, found by bisecting the (order-preserving) bit patterns of non-negative doubles.
    static func kthPairwiseDistance(_ s: [Double], _ k: Int) -> Double {
        func countAtMost(_ t: Double) -> Int {
            var count = 0, i = 0
            for j in 1..<s.count {
                while s[j] - s[i] > t { i += 1 }
                count += j - i
            }
            return count
        }
        var lo: UInt64 = 0, hi = (s[s.count - 1] - s[0]).bitPattern
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if countAtMost(Double(bitPattern: mid)) > k { hi = mid } else { lo = mid + 1 }
        }
        return Double(bitPattern: lo)
    }
}
