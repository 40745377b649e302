/// Which permutations count as "at least as extreme" as the observed statistic.
public enum Alternative: String, Sendable, Codable {
    /// |T_perm| >= |T_obs| (signed correlations: Pearson, Spearman, Kendall).
    case twoSided = "two-sided"
    /// T_perm >= T_obs (every measure whose large values mean dependence).
    case greater
}

/// One dependence statistic of two paired variables.
public protocol DependenceMeasure: Sendable {
    /// The key used by the command line and JSON output (`pearson`, `dcor`, `mice`, ...).
    var name: String { get }
    var alternative: Alternative { get }
    /// Fewest pairs the measure accepts (3 unless it needs more).
    var minimumCount: Int { get }
    /// Most pairs the measure accepts (its cost is quadratic or worse above a few thousand).
    var maximumCount: Int { get }
    /// The statistic of an already validated sample whose size is within the limits.
    func statistic(_ sample: PairedSample) -> Double
    /// Optional fast path for permutation tests: the sample prepared once, then re-scored per permutation of y.
    /// nil (the default) re-runs `statistic` on each permuted sample.
    func permutationKernel(_ sample: PairedSample) -> (any PermutationKernel)?
}

/// A statistic prepared for one sample and re-evaluated on permutations of its y: `statistic(permutation:)`
/// must equal `statistic(PairedSample(x, y[permutation]))` up to rounding.
public protocol PermutationKernel {
    mutating func statistic(permutation: [Int]) -> Double
}

extension DependenceMeasure {
    public var minimumCount: Int { 3 }
    public var maximumCount: Int { Int.max }
    public func permutationKernel(_ sample: PairedSample) -> (any PermutationKernel)? { nil }

    func checkSize(_ n: Int) throws(DependenceError) {
        if n < minimumCount { throw .tooFewPoints(measure: name, n: n, minimum: minimumCount) }
        if n > maximumCount { throw .tooLarge(measure: name, n: n, limit: maximumCount) }
    }

    /// Validates `x` and `y` and returns the statistic.
    public func value(x: [Double], y: [Double]) throws(DependenceError) -> Double {
        let sample = try PairedSample(x: x, y: y)
        try checkSize(sample.count)
        return try checked(statistic(sample))
    }

    /// The statistic with a permutation p-value: `permutations` random permutations of `y` (xoshiro256**
    /// seeded by `seed`, Fisher–Yates), p = (1 + #{extreme}) / (1 + permutations), never 0. A permuted
    /// statistic counts as extreme when it reaches the observed one within a relative 1e-12 (so exact ties,
    /// as rank statistics have, are counted whatever the summation order). `permutations` = 0 gives no p-value.
    public func test(x: [Double], y: [Double], permutations: Int, seed: UInt64 = 0) throws(DependenceError) -> TestResult {
        let sample = try PairedSample(x: x, y: y)
        try checkSize(sample.count)
        return try test(sample, permutations: permutations, seed: seed)
    }

    public func test(_ sample: PairedSample, permutations: Int, seed: UInt64 = 0) throws(DependenceError) -> TestResult {
        guard permutations >= 0 else { throw .invalidParameter("permutations must be >= 0, got \(permutations)") }
        try checkSize(sample.count)
        let observed = try checked(statistic(sample))
        guard permutations > 0 else { return TestResult(value: observed, pValue: nil, permutations: 0) }
        var rng = Xoshiro256StarStar(seed: seed)
        let reference = alternative == .twoSided ? abs(observed) : observed
        let threshold = reference - 1e-12 * max(abs(reference), 1e-300)
        var extreme = 0
        if var kernel = permutationKernel(sample) {
            // Shuffling indices with the same generator calls gives the same permutations as shuffling y.
            var index = Array(0..<sample.count)
            for _ in 0..<permutations {
                rng.shuffle(&index)
                let t = kernel.statistic(permutation: index)
                if (alternative == .twoSided ? abs(t) : t) >= threshold { extreme += 1 }
            }
        } else {
            var y = sample.y
            for _ in 0..<permutations {
                rng.shuffle(&y)
                let t = statistic(PairedSample(unchecked: sample.x, y))
                if (alternative == .twoSided ? abs(t) : t) >= threshold { extreme += 1 }
            }
        }
        return TestResult(value: observed, pValue: Double(extreme + 1) / Double(permutations + 1), permutations: permutations)
    }

    private func checked(_ value: Double) throws(DependenceError) -> Double {
        guard value.isFinite else { throw .numericalFailure(measure: name) }
        return value
    }
}

/// A statistic and, when permutations were run, its permutation p-value.
public struct TestResult: Sendable, Equatable, Codable {
    public let value: Double
    public let pValue: Double?
    public let permutations: Int
}

/// Every measure the library offers, by its command-line key.
public enum MeasureCatalog {
    public static let names = ["pearson", "spearman", "kendall", "dcor", "hsic", "mic", "mice", "tice", "xi", "ksg", "hhg"]

    /// The measure with default parameters for a key, or nil for an unknown key.
    public static func measure(named name: String) -> (any DependenceMeasure)? {
        switch name {
        case "pearson": return Pearson()
        case "spearman": return Spearman()
        case "kendall": return KendallTau()
        case "dcor": return DistanceCorrelation()
        case "hsic": return HSIC()
        case "mic": return MINE(estimator: .approx, statistic: .mic)
        case "mice": return MINE(estimator: .equicharacteristic, statistic: .mic)
        case "tice": return MINE(estimator: .equicharacteristic, statistic: .tic)
        case "xi": return ChatterjeeXi()
        case "ksg": return KSGMutualInformation()
        case "hhg": return HHG()
        default: return nil
        }
    }
}
