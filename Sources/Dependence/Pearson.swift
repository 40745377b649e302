/// Pearson's product-moment correlation r (scipy.stats.pearsonr's statistic), two-pass for stability.
/// Permutation p-value two-sided: |r_perm| >= |r|.
public struct Pearson: DependenceMeasure {
    public init() {}
    public var name: String { "pearson" }
    public var alternative: Alternative { .twoSided }

    public func statistic(_ sample: PairedSample) -> Double {
        Pearson.correlation(Ranking.binaryScaled(sample.x), Ranking.binaryScaled(sample.y))
    }

    static func correlation(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(x.count)
        var mx = 0.0, my = 0.0
        for i in x.indices { mx += x[i]; my += y[i] }
        mx /= n; my /= n
        var sxx = 0.0, syy = 0.0, sxy = 0.0
        for i in x.indices {
            let dx = x[i] - mx, dy = y[i] - my
            sxx += dx * dx; syy += dy * dy; sxy += dx * dy
        }
        // PairedSample guarantees non-constant inputs; a rounding-level zero is still guarded.
        guard sxx > 0, syy > 0 else { return 0 }
        return min(1, max(-1, sxy / (sxx.squareRoot() * syy.squareRoot())))
    }
}

/// Spearman's rank correlation ρ: Pearson's r on average ranks (scipy.stats.spearmanr). Two-sided p-value.
public struct Spearman: DependenceMeasure {
    public init() {}
    public var name: String { "spearman" }
    public var alternative: Alternative { .twoSided }

    public func statistic(_ sample: PairedSample) -> Double {
        Pearson.correlation(Ranking.averageRanks(sample.x), Ranking.averageRanks(sample.y))
    }
}
