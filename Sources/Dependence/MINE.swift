import Foundation

/// The MINE family: MIC (Reshef et al. 2011, the ApproxMaxMI heuristic), and MICe and TICe (Reshef et al.
/// 2016, "Measuring dependence powerfully and equitably", JMLR 17), computed as minepy's C core
/// (`mine_compute_score`, libmine 1.2) computes them and as R's `minerva::mine` reports them; defaults
/// α = 0.6, c = 15.
///
/// Both estimators fill a characteristic matrix M[r][k] (r rows, k columns, r·k <= B, B = max(n^α, 4)):
/// for each row count r the y axis is equipartitioned (EquipartitionYAxis, SOM Algorithm 3: blocks of tied
/// values stay together, the row target is re-balanced after each row), x is cut into clumps (maximal runs of
/// x-sorted points in one row; tied x values with different rows form one clump) and, when there are more than
/// ĉ = c·(max columns) clumps, into ĉ superclumps (the equipartition applied to the clump labels); then the
/// OptimizeXAxis dynamic programme (SOM Algorithm 2) gives, for every column count k, the largest mutual
/// information over x-partitions into k intervals at clump boundaries, normalised by log min(k, q̂) with q̂ the
/// number of rows actually obtained. Then the same with the axes swapped.
///
/// - MIC (`estimator: .approx`): each direction searches every column count with r·k <= B and M takes the
///   larger of the two directions; MIC = max M.
/// - MICe (`.equicharacteristic`): the equicharacteristic matrix: entry (r, k) equipartitions the axis with
///   more bins (y when r > k, x when k >= r, the second direction overwriting the diagonal as libmine does);
///   MICe = max, TICe = Σ of its entries (libmine's `mine_tic(score, norm=FALSE)`, minerva's `TIC`).
///
/// Written from the published algorithms; libmine (GPL-3) was read only to reproduce its documented choices
/// (x·y <= B, real-valued row size, normalisation by the achieved row count). Costs O(n^{4α}) for MIC,
/// O(n^{5α/2}) for MICe/TICe; limited to 20,000 pairs. Permutation p-values one-sided.
public struct MINE: DependenceMeasure {
    public enum Estimator: Sendable { case approx, equicharacteristic }
    public enum Statistic: Sendable { case mic, tic }

    public let estimator: Estimator
    public let statisticKind: Statistic
    public let alpha: Double
    public let c: Double

    public init(estimator: Estimator, statistic: Statistic, alpha: Double = 0.6, c: Double = 15) {
        self.estimator = estimator
        self.statisticKind = statistic
        self.alpha = alpha
        self.c = c
    }

    public var name: String {
        switch (estimator, statisticKind) {
        case (.approx, .mic): return "mic"
        case (.approx, .tic): return "tic"
        case (.equicharacteristic, .mic): return "mice"
        case (.equicharacteristic, .tic): return "tice"
        }
    }
    public var alternative: Alternative { .greater }
    public var maximumCount: Int { 20_000 }

    public func statistic(_ sample: PairedSample) -> Double {
        let matrix = characteristicMatrix(sample)
        switch statisticKind {
        case .mic: return matrix.reduce(0) { max($0, $1.max() ?? 0) }
        case .tic: return matrix.reduce(0) { $0 + $1.reduce(0, +) }
        }
    }

    /// Bound B on r·k: max(n^α, 4) for α in (0, 1], min(α, n) for α >= 4 (libmine's convention).
    func gridBound(_ n: Int) -> Double {
        if alpha > 0 && alpha <= 1 { return max(pow(Double(n), alpha), 4) }
        return min(alpha, Double(n))
    }

    /// M[i][j]: rows i + 2, columns j + 2, for all (i + 2)(j + 2) <= B.
    public func characteristicMatrix(_ sample: PairedSample) -> [[Double]] {
        let n = sample.count
        let bound = gridBound(n)
        let rowCounts = max(Int((bound / 2).rounded(.down)), 2) - 1
        let width = (0..<rowCounts).map { Int((bound / Double($0 + 2)).rounded(.down)) - 1 }
        var matrix = width.map { [Double](repeating: 0, count: max($0, 0)) }

        let ix = Ranking.argsort(sample.x), iy = Ranking.argsort(sample.y)
        let xx = ix.map { sample.x[$0] }, yy = iy.map { sample.y[$0] }

        // Direction 1: y equipartitioned into i + 2 rows, x optimised.
        for i in 0..<rowCounts where width[i] > 0 {
            let maxColumns = estimator == .approx ? width[i] + 1 : min(i + 2, width[i] + 1)
            let scores = MINE.direction(
                rowsSorted: yy, rowOrder: iy, columnsSorted: xx, columnOrder: ix,
                rows: i + 2, maxColumns: maxColumns, clumpLimit: max(Int(c * Double(width[i] + 1)), 1))
            for j in 0..<min(scores.count, matrix[i].count) { matrix[i][j] = scores[j] }
        }
        // Direction 2: x equipartitioned into i + 2 columns, y optimised; fills M[j][i].
        for i in 0..<rowCounts where width[i] > 0 {
            let maxRows = estimator == .approx ? width[i] + 1 : min(i + 2, width[i] + 1)
            let scores = MINE.direction(
                rowsSorted: xx, rowOrder: ix, columnsSorted: yy, columnOrder: iy,
                rows: i + 2, maxColumns: maxRows, clumpLimit: max(Int(c * Double(width[i] + 1)), 1))
            switch estimator {
            case .approx:
                for j in 0..<width[i] where j < scores.count { matrix[j][i] = max(matrix[j][i], scores[j]) }
            case .equicharacteristic:
                for j in 0..<min(i + 1, width[i]) where j < scores.count { matrix[j][i] = scores[j] }
            }
        }
        return matrix
    }

    /// One direction: equipartition the "row" variable into `rows` rows, build the (super)clumps of the
    /// "column" variable and return the normalised best mutual information for 2...maxColumns columns.
    static func direction(
        rowsSorted: [Double], rowOrder: [Int], columnsSorted: [Double], columnOrder: [Int],
        rows: Int, maxColumns: Int, clumpLimit: Int
    ) -> [Double] {
        let n = rowsSorted.count
        let (rowOfSorted, q) = equipartition(rowsSorted, bins: rows)
        // Row label of each point, listed in column-sorted order.
        var rowOfPoint = [Int](repeating: 0, count: n)
        for (k, point) in rowOrder.enumerated() { rowOfPoint[point] = rowOfSorted[k] }
        let rowByColumn = columnOrder.map { rowOfPoint[$0] }
        var (column, p) = clumps(columnsSorted, rows: rowByColumn)
        if p > clumpLimit {
            (column, p) = equipartition(column.map(Double.init), bins: clumpLimit)
        }
        return optimizeAxis(rows: rowByColumn, q: q, columns: column, p: p, maxColumns: maxColumns, n: n)
    }

    /// EquipartitionYAxis: labels 0..<q for sorted values, tied values kept in one bin.
    static func equipartition(_ sorted: [Double], bins: Int) -> ([Int], Int) {
        let n = sorted.count
        var labels = [Int](repeating: 0, count: n)
        var rowSize = Double(n) / Double(bins)
        var i = 0, h = 0, current = 0
        while i < n {
            var s = 1
            while i + s < n && sorted[i + s] == sorted[i] { s += 1 }
            if h != 0 && abs(Double(h + s) - rowSize) >= abs(Double(h) - rowSize) {
                current += 1
                h = 0
                rowSize = Double(n - i) / Double(bins - current)
            }
            for j in i..<(i + s) { labels[j] = current }
            i += s
            h += s
        }
        return (labels, current + 1)
    }

    /// Clumps of column-sorted points: a new clump wherever the row label changes; a run of tied column
    /// values spanning several rows becomes one clump of its own.
    static func clumps(_ sorted: [Double], rows: [Int]) -> ([Int], Int) {
        let n = sorted.count
        var key = rows
        var tiedLabel = -1
        var i = 0
        while i < n {
            var s = 1
            var mixed = false
            while i + s < n && sorted[i + s] == sorted[i] {
                if rows[i + s] != rows[i] { mixed = true }
                s += 1
            }
            if s > 1 && mixed {
                for j in i..<(i + s) { key[j] = tiedLabel }
                tiedLabel -= 1
            }
            i += s
        }
        var labels = [Int](repeating: 0, count: n)
        var current = 0
        for j in 1..<n {
            if key[j] != key[j - 1] { current += 1 }
            labels[j] = current
        }
        return (labels, current + 1)
    }

    /// OptimizeXAxis: I[t][l] = the largest mutual information between the rows and a partition of the first
    /// t column blocks into l intervals; returns I[p][k] / log min(k, q) for k = 2...maxColumns.
    static func optimizeAxis(rows: [Int], q: Int, columns: [Int], p: Int, maxColumns: Int, n: Int) -> [Double] {
        let count = max(maxColumns - 1, 0)
        if p == 1 || q < 2 || count == 0 { return [Double](repeating: 0, count: count) }
        // cum[t] = points in blocks 0..<t; cumRow[t * q + r] = points of row r in blocks 0..<t (rows contiguous).
        var cum = [Int](repeating: 0, count: p + 1)
        var cumRow = [Int](repeating: 0, count: q * (p + 1))
        for k in 0..<n { cum[columns[k] + 1] += 1; cumRow[(columns[k] + 1) * q + rows[k]] += 1 }
        for t in 1...p {
            cum[t] += cum[t - 1]
            for r in 0..<q { cumRow[t * q + r] += cumRow[(t - 1) * q + r] }
        }
        // log k for every count k <= n: the entropies below take ~p²q logarithms of counts.
        let logOf = [0.0] + (1...n).map { log(Double($0)) }
        @inline(__always) func plogp(_ part: Int, _ logTotal: Double, _ total: Double) -> Double {
            part == 0 ? 0 : Double(part) / total * (logOf[part] - logTotal)
        }
        // Entropy of the rows over all points.
        let totalN = Double(n), logN = log(totalN)
        var hRows = 0.0
        for r in 0..<q { hRows -= plogp(cumRow[p * q + r], logN, totalN) }
        // Entropy of the rows within the column interval (s, t] (blocks s..<t), for 1 <= s < t <= p.
        func hRowsBetween(_ s: Int, _ t: Int) -> Double {
            if s == t { return 0 }
            let total = Double(cum[t] - cum[s]), logTotal = logOf[cum[t] - cum[s]]
            var h = 0.0
            for r in 0..<q { h -= plogp(cumRow[t * q + r] - cumRow[s * q + r], logTotal, total) }
            return h
        }
        let columnsMax = maxColumns
        // I stored as [t][l], t in 0...p, l in 0...columnsMax.
        let stride = columnsMax + 1
        var table = [Double](repeating: 0, count: (p + 1) * stride)
        // Two columns: split the first t blocks at s.
        for t in 2...p {
            let total = Double(cum[t]), logTotal = logOf[cum[t]]
            var best = -Double.greatestFiniteMagnitude
            for s in 1...t {
                // H(<c_0, c_s, c_t>) - H(<c_0, c_s, c_t>, Q)
                var hColumns = 0.0
                if s != t {
                    hColumns -= plogp(cum[s], logTotal, total)
                    hColumns -= plogp(cum[t] - cum[s], logTotal, total)
                }
                var hJoint = 0.0
                for r in 0..<q {
                    let left = cumRow[s * q + r], all = cumRow[t * q + r]
                    hJoint -= plogp(left, logTotal, total)
                    hJoint -= plogp(all - left, logTotal, total)
                }
                let f = hColumns - hJoint
                if f > best { best = f }
            }
            if columnsMax >= 2 { table[t * stride + 2] = hRows + best }
        }
        if columnsMax >= 3 {
            // hBetween[s][t] cached for s in 2...t.
            var between = [Double](repeating: 0, count: (p + 1) * (p + 1))
            if p >= 3 {
                for t in 3...p { for s in 2...t { between[s * (p + 1) + t] = hRowsBetween(s, t) } }
            }
            for l in 3...columnsMax where l <= p {
                for t in l...p {
                    let ct = Double(cum[t])
                    var best = -Double.greatestFiniteMagnitude
                    for s in (l - 1)...t {
                        let cs = Double(cum[s])
                        let f = (cs / ct) * (table[s * stride + l - 1] - hRows) - ((ct - cs) / ct) * between[s * (p + 1) + t]
                        if f > best { best = f }
                    }
                    table[t * stride + l] = hRows + best
                }
            }
        }
        if p + 1 <= columnsMax {
            for l in (p + 1)...columnsMax { table[p * stride + l] = table[p * stride + p] }
        }
        let logQ = log(Double(q))
        return (2...columnsMax).map { k in table[p * stride + k] / min(log(Double(k)), logQ) }
    }
}
