import Foundation

/// Equitability and power-equitability of dependence measures on noisy functional relationships.
///
/// For every relationship f (Reshef et al.'s 21 by default) and target R² on a grid, `replicates` samples of
/// n pairs are drawn (x ~ U(0,1), y = f(x) + noise calibrated to that R²), and every measure scores each of them
/// (the same samples for all measures). With `nullReplicates` > 0 the same noisy y is also paired with a fresh
/// independent x (Simon & Tibshirani's null with the alternative's marginals), giving per-cell critical values.
///
/// Summaries (definitions in docs/equitability.md; signed correlations are scored by |T|):
/// - equitability (Reshef et al.'s interpretable intervals, reconstructed): for a score s, the R² values whose
///   central 90% score band, for some f, contains s; the interval's width in R² units, averaged and maximised
///   over s; small = equitable;
/// - power β(f, R²) = share of replicates above the 95% quantile of the cell's null scores;
/// - power-equitability (Jiang, Liu & Ding, reconstructed as in ../shared/research/equitability.md §4.6):
///   Δβ(R²) = max_f β - min_f β, its maximum and mean over the grid; small = power-equitable.
public struct EquitabilityHarness: Sendable {
    public var n = 100
    public var r2Grid: [Double] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    public var replicates = 50
    public var nullReplicates = 0
    public var alpha = 0.05
    public var seed: UInt64 = 1
    public var relationships = Relationship.reshef21
    public var measures: [String] = MeasureCatalog.names

    public init() {}

    /// Scores of one (relationship, R²) cell: [measure][replicate].
    public struct Cell: Sendable {
        public let relationship: String
        public let r2: Double
        public let scores: [[Double]]
        public let nullScores: [[Double]]
    }

    public struct Result: Sendable {
        public let measures: [String]
        public let r2Grid: [Double]
        public let relationships: [Relationship]
        public let cells: [Cell]  // relationship-major, then R²
        public let alpha: Double
        public let n: Int

        public func cell(_ f: Int, _ r: Int) -> Cell { cells[f * r2Grid.count + r] }

        public func quantile(_ values: [Double], _ q: Double) -> Double {
            let s = values.sorted()
            let h = Double(s.count - 1) * q
            let lo = Int(h.rounded(.down)), hi = min(lo + 1, s.count - 1)
            return s[lo] + (h - Double(lo)) * (s[hi] - s[lo])
        }

        public func median(_ m: Int, _ f: Int, _ r: Int) -> Double { quantile(cell(f, r).scores[m], 0.5) }

        /// Share of replicates strictly above the (1 - α) quantile of the cell's null scores; nil without nulls.
        public func power(_ m: Int, _ f: Int, _ r: Int) -> Double? {
            let c = cell(f, r)
            guard !c.nullScores[m].isEmpty else { return nil }
            let critical = quantile(c.nullScores[m], 1 - alpha)
            return Double(c.scores[m].filter { $0 > critical }.count) / Double(c.scores[m].count)
        }

        /// (mean width, worst width) of the interpretable intervals, evaluated at every cell's median score (so
        /// the summary does not change under a monotone rescaling of the measure, which matters for unbounded
        /// scores such as KSG, TICe and HHG).
        public func interpretableIntervals(_ m: Int) -> (mean: Double, worst: Double) {
            let fCount = relationships.count, rCount = r2Grid.count
            var bands: [(lo: Double, hi: Double, r2: Double)] = []
            var medians: [Double] = []
            for f in 0..<fCount {
                for r in 0..<rCount {
                    let s = cell(f, r).scores[m]
                    bands.append((quantile(s, 0.05), quantile(s, 0.95), r2Grid[r]))
                    medians.append(quantile(s, 0.5))
                }
            }
            var total = 0.0, worst = 0.0
            for s in medians {
                let hits = bands.filter { $0.lo <= s && s <= $0.hi }.map(\.r2)
                let width = (hits.max() ?? 0) - (hits.min() ?? 0)
                total += width; worst = max(worst, width)
            }
            return (total / Double(medians.count), worst)
        }

        /// Δβ(R²) = max_f β - min_f β for each R² on the grid.
        public func powerSpread(_ m: Int) -> [Double]? {
            var spread: [Double] = []
            for r in 0..<r2Grid.count {
                var lo = 1.0, hi = 0.0
                for f in 0..<relationships.count {
                    guard let b = power(m, f, r) else { return nil }
                    lo = min(lo, b); hi = max(hi, b)
                }
                spread.append(hi - lo)
            }
            return spread
        }
    }

    /// Runs the sweep; `progress` is called after each relationship with (done, total).
    public func run(progress: (Int, Int) -> Void = { _, _ in }) throws(DependenceError) -> Result {
        guard n >= 10 else { throw .invalidParameter("n must be >= 10, got \(n)") }
        guard replicates >= 2, nullReplicates >= 0 else { throw .invalidParameter("need >= 2 replicates") }
        guard !r2Grid.isEmpty, r2Grid.allSatisfy({ $0 > 0 && $0 <= 1 }) else {
            throw .invalidParameter("R² levels must be in (0, 1]")
        }
        let instances: [any DependenceMeasure] = try measures.map { name throws(DependenceError) in
            guard let m = MeasureCatalog.measure(named: name) else { throw .invalidParameter("unknown measure \(name)") }
            try m.checkSize(n)
            return m
        }
        var cells: [Cell] = []
        for (fi, relationship) in relationships.enumerated() {
            let variance = relationship.variance
            for (ri, r2) in r2Grid.enumerated() {
                let generator = NoisyRelationship(relationship, r2: r2, variance: variance)
                var rng = Xoshiro256StarStar(seed: seed &+ UInt64(fi) &* 1_000_003 &+ UInt64(ri) &* 7919)
                var scores = [[Double]](repeating: [], count: instances.count)
                var nulls = [[Double]](repeating: [], count: instances.count)
                for _ in 0..<replicates {
                    let (x, y) = generator.sample(n: n, rng: &rng)
                    let values = try Self.score(instances, x, y)
                    for m in instances.indices { scores[m].append(values[m]) }
                }
                for _ in 0..<nullReplicates {
                    let (x, y) = generator.sample(n: n, rng: &rng, independentX: true)
                    let values = try Self.score(instances, x, y)
                    for m in instances.indices { nulls[m].append(values[m]) }
                }
                cells.append(Cell(relationship: relationship.id, r2: r2, scores: scores, nullScores: nulls))
            }
            progress(fi + 1, relationships.count)
        }
        return Result(measures: measures, r2Grid: r2Grid, relationships: relationships, cells: cells, alpha: alpha, n: n)
    }

    /// Every measure on one sample (|T| for two-sided ones); MICe and TICe share one equicharacteristic matrix.
    static func score(_ measures: [any DependenceMeasure], _ x: [Double], _ y: [Double]) throws(DependenceError) -> [Double] {
        let sample = try PairedSample(x: x, y: y)
        var equicharacteristic: [[Double]]?
        return measures.map { measure in
            if let mine = measure as? MINE, mine.estimator == .equicharacteristic, mine.alpha == 0.6, mine.c == 15 {
                let matrix = equicharacteristic ?? mine.characteristicMatrix(sample)
                equicharacteristic = matrix
                return mine.statisticKind == .mic
                    ? matrix.reduce(0) { max($0, $1.max() ?? 0) } : matrix.reduce(0) { $0 + $1.reduce(0, +) }
            }
            let t = measure.statistic(sample)
            return measure.alternative == .twoSided ? abs(t) : t
        }
    }
}
