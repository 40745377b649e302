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

    /// Up to 2,000 pairs, permutations reuse the two kernel-distance matrices (2 × 8n² bytes, 64 MB at the
    /// limit): each permutation is then one O(n²) multiply-add pass instead of n² exponentials.
    public func permutationKernel(_ sample: PairedSample) -> (any PermutationKernel)? {
        sample.count <= 2_000 ? Kernel(sample) : nil
    }

    struct Kernel: PermutationKernel {
        let n: Int
        var a: [Double], b: [Double]
        var ra: [Double], rb: [Double]
        let constant: Double, scale: Double

        init(_ sample: PairedSample) {
            let n = sample.count
            self.n = n
            let x = Ranking.binaryScaled(sample.x), y = Ranking.binaryScaled(sample.y)
            let gx = HSIC.medianGamma(x), gy = HSIC.medianGamma(y)
            var a = [Double](repeating: 0, count: n * n), b = a
            for i in 0..<n {
                for j in (i + 1)..<n {
                    let dx = x[i] - x[j], dy = y[i] - y[j]
                    let va = 1 - exp(-gx * dx * dx), vb = 1 - exp(-gy * dy * dy)
                    a[i * n + j] = va; a[j * n + i] = va; b[i * n + j] = vb; b[j * n + i] = vb
                }
            }
            let ra = (0..<n).map { i in a[(i * n)..<(i * n + n)].reduce(0, +) }
            let rb = (0..<n).map { i in b[(i * n)..<(i * n + n)].reduce(0, +) }
            self.a = a; self.b = b; self.ra = ra; self.rb = rb
            let nd = Double(n)
            let ta = ra.reduce(0, +), tb = rb.reduce(0, +)
            func u(_ m: [Double], _ r: [Double], _ t: Double) -> Double {
                var s1 = 0.0
                for v in m { s1 += v * v }
                var s2 = 0.0
                for v in r { s2 += v * v }
                return s1 - 2 * s2 / (nd - 2) + t * t / ((nd - 1) * (nd - 2))
            }
            let varX = u(a, ra, ta), varY = u(b, rb, tb)
            constant = ta * tb / ((nd - 1) * (nd - 2))
            scale = varX > 0 && varY > 0 ? 1 / (varX * varY).squareRoot() : 0
        }

        mutating func statistic(permutation p: [Int]) -> Double {
            guard scale > 0 else { return 0 }
            let n = self.n
            var s1 = 0.0, s2 = 0.0
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    p.withUnsafeBufferPointer { p in
                        for i in 0..<n {
                            let rowA = i * n, rowB = p[i] * n
                            var s = 0.0
                            for j in 0..<n { s += a[rowA + j] * b[rowB + p[j]] }
                            s1 += s
                        }
                    }
                }
            }
            for i in 0..<n { s2 += ra[i] * rb[p[i]] }
            let covariance = s1 - 2 * s2 / Double(n - 2) + constant
            return covariance * scale
        }
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
