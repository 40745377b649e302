import Foundation

/// Equitability and power-equitability of dependence measures on noisy relationships, as defined in the
/// project's spec ../shared/research/equitability.md §4.4–§4.6 (itself a labelled reconstruction of Jiang, Liu &
/// Ding, arXiv 1501.02102, whose body the spec's author could not read; see docs/equitability.md).
///
/// For every relationship f (Reshef et al.'s 21 by default) and target R² on a grid, `replicates` samples of
/// n pairs are drawn (x ~ U(0,1), y = f(x) + noise calibrated to that R², `noise`), and every measure scores each
/// of them (the same samples for all measures; signed correlations are scored by |T|). The power needs a null:
/// - `.independentX(B)` (spec §4.6 mode i, Simon & Tibshirani): B samples per cell whose noisy y is paired with
///   a fresh independent x; critical value c_α = the (1 − α) quantile of their scores; reject when T > c_α;
/// - `.permutation(B)` (spec §4.6 mode ii): a B-permutation test on each alternative sample; reject when p ≤ α.
public struct EquitabilityHarness: Sendable {
    public enum Null: Sendable, Equatable {
        case none
        case independentX(replicates: Int)
        case permutation(permutations: Int)
    }

    /// A harness-only pseudo-measure scoring each sample by its realised R² (the spec §4.8 item 6 self-test
    /// "oracle"); not a dependence measure of the library.
    public static let oracle = "r2-oracle"

    public var n = 100
    public var r2Grid: [Double] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    public var replicates = 50
    public var null = Null.none
    public var noise = NoiseModel.gaussianY
    /// α of the independence test (power) and of the central score band (interpretable intervals): both 0.05.
    public var alpha = 0.05
    public var seed: UInt64 = 1
    public var relationships = Relationship.reshef21
    public var measures: [String] = MeasureCatalog.names
    /// Self-equitability check (spec §4.5 item 4) on the first replicate of every cell.
    public var selfEquitability = false

    public init() {}

    /// The invertible transforms of x for the self-equitability check: exp, x³, logit.
    public static let transforms: [(name: String, g: @Sendable (Double) -> Double)] = [
        ("exp", { exp($0) }), ("cube", { $0 * $0 * $0 }),
        ("logit", { let u = min(max($0, 1e-12), 1 - 1e-12); return log(u / (1 - u)) }),
    ]

    /// One (relationship, R²) cell.
    public struct Cell: Sendable {
        public let relationship: String
        public let r2: Double
        /// [measure][replicate]
        public let scores: [[Double]]
        /// [measure][null replicate] (independent-x null), else empty.
        public let nullScores: [[Double]]
        /// [measure][replicate] permutation p-values (permutation null), else empty.
        public let pValues: [[Double]]
        /// [replicate] realised R² = corr(y_clean, y)².
        public let realisedR2: [Double]
        /// [measure][transform] |T(x, y) − T(g(x), y)| on the first replicate (self-equitability), else empty.
        public let selfDifferences: [[Double]]

        public init(relationship: String, r2: Double, scores: [[Double]], nullScores: [[Double]] = [],
                    pValues: [[Double]] = [], realisedR2: [Double] = [], selfDifferences: [[Double]] = []) {
            self.relationship = relationship; self.r2 = r2; self.scores = scores; self.nullScores = nullScores
            self.pValues = pValues; self.realisedR2 = realisedR2; self.selfDifferences = selfDifferences
        }
    }

    public struct Result: Sendable {
        public let measures: [String]
        public let r2Grid: [Double]
        public let relationships: [Relationship]
        public let cells: [Cell]  // relationship-major, then R²
        public let alpha: Double
        public let n: Int

        public init(measures: [String], r2Grid: [Double], relationships: [Relationship], cells: [Cell], alpha: Double, n: Int) {
            self.measures = measures; self.r2Grid = r2Grid; self.relationships = relationships
            self.cells = cells; self.alpha = alpha; self.n = n
        }

        public func cell(_ f: Int, _ r: Int) -> Cell { cells[f * r2Grid.count + r] }

        /// Quantile by linear interpolation between order statistics (R's type 7).
        public func quantile(_ values: [Double], _ q: Double) -> Double {
            let s = values.sorted()
            let h = Double(s.count - 1) * q
            let lo = Int(h.rounded(.down)), hi = min(lo + 1, s.count - 1)
            return s[lo] + (h - Double(lo)) * (s[hi] - s[lo])
        }

        public func median(_ m: Int, _ f: Int, _ r: Int) -> Double { quantile(cell(f, r).scores[m], 0.5) }

        /// The cell's central (1 − α) score band, (q_{α/2}, q_{1−α/2}) (spec §4.5).
        public func band(_ m: Int, _ f: Int, _ r: Int) -> (lo: Double, hi: Double) {
            let s = cell(f, r).scores[m]
            return (quantile(s, alpha / 2), quantile(s, 1 - alpha / 2))
        }

        /// Mean and standard deviation (n − 1) of the cell's scores.
        public func meanAndSD(_ m: Int, _ f: Int, _ r: Int) -> (mean: Double, sd: Double) {
            let s = cell(f, r).scores[m]
            let mean = s.reduce(0, +) / Double(s.count)
            let ss = s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
            return (mean, (ss / Double(max(s.count - 1, 1))).squareRoot())
        }

        /// Δscore(R²) = max_f median − min_f median at each R² of the grid (spec §4.5 item 2).
        public func scoreSpread(_ m: Int) -> [Double] {
            r2Grid.indices.map { r in
                let medians = relationships.indices.map { median(m, $0, r) }
                return medians.max()! - medians.min()!
            }
        }

        /// The interpretable interval of a score s (spec §4.5 item 3): I(s) = { R² : some f has
        /// q_{α/2}(f, R²) ≤ s ≤ q_{1−α/2}(f, R²) }, the band edges interpolated linearly in R² between grid
        /// points; returns (min I(s), max I(s)), or nil when I(s) is empty.
        public func interpretableInterval(_ m: Int, score s: Double) -> (lo: Double, hi: Double)? {
            var lowest = Double.infinity, highest = -Double.infinity
            for f in relationships.indices {
                let bands = r2Grid.indices.map { band(m, f, $0) }
                if r2Grid.count == 1 {
                    if bands[0].lo <= s, s <= bands[0].hi { lowest = min(lowest, r2Grid[0]); highest = max(highest, r2Grid[0]) }
                    continue
                }
                for k in 0..<(r2Grid.count - 1) {
                    // t in [0, 1] along the segment with lo(t) <= s and hi(t) >= s.
                    guard let (a, b) = Self.segment(bands[k], bands[k + 1], s) else { continue }
                    let width = r2Grid[k + 1] - r2Grid[k]
                    lowest = min(lowest, r2Grid[k] + a * width)
                    highest = max(highest, r2Grid[k] + b * width)
                }
            }
            return lowest <= highest ? (lowest, highest) : nil
        }

        /// {t ∈ [0, 1] : lo0 + t(lo1 − lo0) ≤ s ≤ hi0 + t(hi1 − hi0)} as (a, b), or nil.
        static func segment(_ p: (lo: Double, hi: Double), _ q: (lo: Double, hi: Double), _ s: Double) -> (Double, Double)? {
            var a = 0.0, b = 1.0
            // lower edge: p.lo + t·dl <= s
            let dl = q.lo - p.lo
            if dl > 0 { b = min(b, (s - p.lo) / dl) } else if dl < 0 { a = max(a, (s - p.lo) / dl) } else if p.lo > s { return nil }
            // upper edge: p.hi + t·dh >= s
            let dh = q.hi - p.hi
            if dh > 0 { a = max(a, (s - p.hi) / dh) } else if dh < 0 { b = min(b, (s - p.hi) / dh) } else if p.hi < s { return nil }
            return a <= b ? (a, b) : nil
        }

        /// Interpretable-interval widths w(s) = max I(s) − min I(s) over a grid of scores: (mean width, worst-case
        /// width). The spec leaves the grid open; by default it is every cell's median score (the harness's
        /// earlier choice), which makes both numbers unchanged under a strictly increasing rescaling of a measure
        /// — needed to compare unbounded scores (KSG, TICe, HHG) with [0, 1] ones. Scores with an empty I(s)
        /// are skipped.
        public func interpretableIntervals(_ m: Int, scores: [Double]? = nil) -> (mean: Double, worst: Double) {
            let grid = scores ?? relationships.indices.flatMap { f in r2Grid.indices.map { median(m, f, $0) } }
            var total = 0.0, worst = 0.0, count = 0
            for s in grid {
                guard let interval = interpretableInterval(m, score: s) else { continue }
                let w = interval.hi - interval.lo
                total += w; worst = max(worst, w); count += 1
            }
            return (count > 0 ? total / Double(count) : 0, worst)
        }

        /// β(f, R²): the share of replicates rejected at level α (independent-x null: T > the (1 − α) quantile of
        /// the cell's null scores; permutation null: p ≤ α); nil without a null.
        public func power(_ m: Int, _ f: Int, _ r: Int) -> Double? {
            let c = cell(f, r)
            if !c.pValues.isEmpty {
                return Double(c.pValues[m].filter { $0 <= alpha }.count) / Double(c.pValues[m].count)
            }
            guard !c.nullScores.isEmpty, !c.nullScores[m].isEmpty else { return nil }
            let critical = quantile(c.nullScores[m], 1 - alpha)
            return Double(c.scores[m].filter { $0 > critical }.count) / Double(c.scores[m].count)
        }

        /// Monte-Carlo standard error of β: sqrt(β(1 − β)/R).
        public func powerSE(_ m: Int, _ f: Int, _ r: Int) -> Double? {
            guard let b = power(m, f, r) else { return nil }
            return (b * (1 - b) / Double(cell(f, r).scores[m].count)).squareRoot()
        }

        /// Δβ(R²) = max_f β − min_f β for each R² on the grid (spec §4.6).
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

        /// ∫ Δβ(R²) dR² over the grid by the trapezoid rule (0 for a one-level grid).
        public func powerSpreadIntegral(_ m: Int) -> Double? {
            guard let d = powerSpread(m) else { return nil }
            var total = 0.0
            for k in 0..<max(r2Grid.count - 1, 0) { total += (r2Grid[k + 1] - r2Grid[k]) * (d[k] + d[k + 1]) / 2 }
            return total
        }

        /// r₅₀(f): the smallest R² at which β ≥ 0.5, interpolating β linearly between grid points; nil when β
        /// stays below 0.5 on the whole grid.
        public func r50(_ m: Int, _ f: Int) -> Double? {
            var previous: (r2: Double, beta: Double)?
            for r in r2Grid.indices {
                guard let b = power(m, f, r) else { return nil }
                if b >= 0.5 {
                    guard let p = previous else { return r2Grid[r] }
                    return p.r2 + (0.5 - p.beta) / (b - p.beta) * (r2Grid[r] - p.r2)
                }
                previous = (r2Grid[r], b)
            }
            return nil
        }

        /// max_f r₅₀ − min_f r₅₀ over the relationships that reach β = 0.5, and how many never do (for those the
        /// spread is only a lower bound).
        public func r50Spread(_ m: Int) -> (spread: Double, unreached: Int)? {
            guard power(m, 0, 0) != nil else { return nil }
            let values = relationships.indices.map { r50(m, $0) }
            let reached = values.compactMap { $0 }
            return ((reached.max() ?? 0) - (reached.min() ?? 0), values.count - reached.count)
        }

        /// The spec's verdict: power-equitable on the suite at (α, n) with tolerance δ iff
        /// sup_R² Δβ(R²) ≤ δ + 2 · max_{f, R²} SE(β).
        public func isPowerEquitable(_ m: Int, tolerance delta: Double = 0.1) -> Bool? {
            guard let spread = powerSpread(m) else { return nil }
            var maxSE = 0.0
            for f in relationships.indices { for r in r2Grid.indices { maxSE = max(maxSE, powerSE(m, f, r)!) } }
            return spread.max()! <= delta + 2 * maxSE
        }

        /// Reshef et al.'s interval-estimation power (spec §4.6, generalisation): H0 R² ≤ x₀ against H1 R² ≥ x₁,
        /// critical value from the least favourable relationship at x₀ (max over f of the (1 − α) quantile of
        /// the scores at x₀); returns each relationship's share of scores at x₁ above it. x₀ and x₁ are grid
        /// indices.
        public func intervalPower(_ m: Int, x0: Int, x1: Int) -> [Double] {
            let critical = relationships.indices.map { quantile(cell($0, x0).scores[m], 1 - alpha) }.max()!
            return relationships.indices.map { f in
                let s = cell(f, x1).scores[m]
                return Double(s.filter { $0 > critical }.count) / Double(s.count)
            }
        }

        /// (mean, max) over cells of |T(x, y) − T(g(x), y)| for transform g; nil without the check.
        public func selfEquitability(_ m: Int, transform g: Int) -> (mean: Double, max: Double)? {
            let values = cells.compactMap { $0.selfDifferences.isEmpty ? nil : $0.selfDifferences[m][g] }
            guard !values.isEmpty else { return nil }
            return (values.reduce(0, +) / Double(values.count), values.max()!)
        }
    }

    /// Runs the sweep; `progress` is called after each relationship with (done, total).
    public func run(progress: (Int, Int) -> Void = { _, _ in }) throws(DependenceError) -> Result {
        guard n >= 10 else { throw .invalidParameter("n must be >= 10, got \(n)") }
        guard replicates >= 2 else { throw .invalidParameter("need >= 2 replicates") }
        guard alpha > 0, alpha < 1 else { throw .invalidParameter("alpha must be in (0, 1)") }
        switch null {
        case .none: break
        case .independentX(let b): guard b >= 2 else { throw .invalidParameter("need >= 2 null replicates") }
        case .permutation(let b): guard b >= 1 else { throw .invalidParameter("need >= 1 permutation") }
        }
        guard !relationships.isEmpty else { throw .invalidParameter("no relationships") }
        guard !r2Grid.isEmpty, r2Grid.allSatisfy({ $0 > 0 && $0 <= 1 }), zip(r2Grid, r2Grid.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw .invalidParameter("R² levels must be increasing and in (0, 1]")
        }
        let instances: [(any DependenceMeasure)?] = try measures.map { name throws(DependenceError) in
            if name == Self.oracle { return nil }
            guard let m = MeasureCatalog.measure(named: name) else { throw .invalidParameter("unknown measure \(name)") }
            try m.checkSize(n)
            return m
        }
        if case .permutation = null, instances.contains(where: { $0 == nil }) {
            throw .invalidParameter("the \(Self.oracle) pseudo-measure needs the independent-x null, not permutations")
        }
        var cells: [Cell] = []
        for (fi, relationship) in relationships.enumerated() {
            let variance = relationship.variance
            for (ri, r2) in r2Grid.enumerated() {
                let generator = NoisyRelationship(relationship, r2: r2, variance: variance, noise: noise)
                var rng = Xoshiro256StarStar(seed: seed &+ UInt64(fi) &* 1_000_003 &+ UInt64(ri) &* 7919)
                var scores = [[Double]](repeating: [], count: instances.count)
                var nulls = [[Double]](), pValues = [[Double]](), selfDiffs = [[Double]]()
                var realised: [Double] = []
                for rep in 0..<replicates {
                    let (x, y, rr) = generator.sample(n: n, rng: &rng)
                    realised.append(rr)
                    let values = try Self.score(instances, x, y, realisedR2: rr)
                    for m in instances.indices { scores[m].append(values[m]) }
                    if case .permutation(let b) = null {
                        if pValues.isEmpty { pValues = Array(repeating: [], count: instances.count) }
                        let sample = try PairedSample(x: x, y: y)
                        for (m, measure) in instances.enumerated() {
                            guard let measure else { continue }  // excluded above
                            let seedValue = seed &+ UInt64(fi) &* 0x9E37_79B9 &+ UInt64(ri) &* 65_537 &+ UInt64(rep)
                            pValues[m].append(try measure.test(sample, permutations: b, seed: seedValue).pValue ?? 1)
                        }
                    }
                    if selfEquitability && rep == 0 {
                        for m in instances.indices {
                            var row: [Double] = []
                            for t in Self.transforms {
                                let v = try Self.score([instances[m]], x.map(t.g), y, realisedR2: rr)[0]
                                row.append(abs(v - values[m]))
                            }
                            selfDiffs.append(row)
                        }
                    }
                }
                if case .independentX(let b) = null {
                    nulls = Array(repeating: [], count: instances.count)
                    for _ in 0..<b {
                        let (x, y, _) = generator.sample(n: n, rng: &rng, independentX: true)
                        // The oracle scores a null sample by the R² of y on the fresh x's noiseless values.
                        let oracleR2: Double = instances.contains { $0 == nil }
                            ? { let r = pearson(x.map(relationship.f), y); return r * r }() : 0
                        let values = try Self.score(instances, x, y, realisedR2: oracleR2)
                        for m in instances.indices { nulls[m].append(values[m]) }
                    }
                }
                cells.append(Cell(relationship: relationship.id, r2: r2, scores: scores, nullScores: nulls,
                                  pValues: pValues, realisedR2: realised, selfDifferences: selfDiffs))
            }
            progress(fi + 1, relationships.count)
        }
        return Result(measures: measures, r2Grid: r2Grid, relationships: relationships, cells: cells, alpha: alpha, n: n)
    }

    /// Every measure on one sample (|T| for two-sided ones; nil = the R² oracle); MICe and TICe share one
    /// equicharacteristic matrix.
    static func score(_ measures: [(any DependenceMeasure)?], _ x: [Double], _ y: [Double], realisedR2: Double)
        throws(DependenceError) -> [Double]
    {
        let sample = try PairedSample(x: x, y: y)
        var equicharacteristic: [[Double]]?
        return measures.map { measure in
            guard let measure else { return realisedR2 }
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
