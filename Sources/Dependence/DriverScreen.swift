/// Ranks candidate features by their dependence with a target (request features against latency or cache
/// misses, for `trace analyze --drivers`): every measure on every feature, permutation p-values, and
/// Benjamini–Hochberg adjusted p-values (q) across the features, per measure.
///
/// Caveat, stated with every report: no measure is equitable in Reshef et al.'s sense (Kinney & Atwal), and
/// the measures here differ in power by relationship shape (docs/equitability.md), so a ranking is a screen,
/// not an effect size; and i.i.d. permutations assume independent rows, which time-ordered traces are not.
public enum DriverScreen {
    public struct Entry: Sendable {
        public let feature: String
        public let measure: String
        public let result: Result<TestResult, DependenceError>
        /// Benjamini–Hochberg q over the features that have a p-value for this measure.
        public let q: Double?
    }

    public static let caveat = "Dependence is not effect size: no measure is equitable across relationship shapes "
        + "(Kinney & Atwal 2014; see docs/equitability.md for how power differs by shape), and permutation p-values "
        + "assume exchangeable rows, which time-ordered traces are not."

    /// One entry per (feature, measure), features in the given order.
    public static func screen(
        target: [Double], features: [(name: String, values: [Double])], measures: [any DependenceMeasure],
        permutations: Int, seed: UInt64 = 0
    ) -> [Entry] {
        var results: [[Result<TestResult, DependenceError>]] = []
        for feature in features {
            var row: [Result<TestResult, DependenceError>] = []
            for measure in measures {
                do {
                    row.append(.success(try measure.test(x: feature.values, y: target, permutations: permutations, seed: seed)))
                } catch {
                    row.append(.failure(error))
                }
            }
            results.append(row)
        }
        var qs = [[Double?]](repeating: [Double?](repeating: nil, count: measures.count), count: features.count)
        for m in measures.indices {
            var index: [Int] = [], p: [Double] = []
            for f in features.indices {
                if case .success(let r) = results[f][m], let pv = r.pValue { index.append(f); p.append(pv) }
            }
            for (k, q) in benjaminiHochberg(p).enumerated() { qs[index[k]][m] = q }
        }
        var out: [Entry] = []
        for f in features.indices {
            for m in measures.indices {
                out.append(Entry(feature: features[f].name, measure: measures[m].name, result: results[f][m], q: qs[f][m]))
            }
        }
        return out
    }

    /// Benjamini–Hochberg step-up adjusted p-values, q_(i) = min_{j >= i} min(1, p_(j) m / j), in input order.
    public static func benjaminiHochberg(_ p: [Double]) -> [Double] {
        let m = p.count
        guard m > 0 else { return [] }
        let order = p.indices.sorted { p[$0] < p[$1] || (p[$0] == p[$1] && $0 < $1) }
        var q = [Double](repeating: 0, count: m)
        var running = 1.0
        for rank in stride(from: m, through: 1, by: -1) {
            let i = order[rank - 1]
            running = min(running, p[i] * Double(m) / Double(rank))
            q[i] = min(1, running)
        }
        return q
    }
}
