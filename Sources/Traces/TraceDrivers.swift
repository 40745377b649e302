import Dependence
import Foundation

/// `trace analyze --drivers`: request features ranked by their dependence on latency and on cache misses with the
/// Dependence library's `DriverScreen` (every measure, permutation p-values, Benjamini–Hochberg q).
public struct TraceDrivers: Sendable {
    public struct Options: Sendable {
        /// Rows screened: a seeded uniform sample of the trace (the O(n²) measures and the permutations bound it).
        public var sample = 2_000
        public var permutations = 199
        public var measures = ["spearman", "dcor", "xi", "pearson", "kendall"]
        /// LRU capacity per instance (adapters of each kind) for the cache-hit feature and the cache-miss target.
        public var cacheCapacity = 4
        public var seed: UInt64 = 0
        public init() {}
    }

    public struct Target: Sendable {
        public let name: String
        public let rows: Int
        public let entries: [DriverScreen.Entry]
        public let note: String?
    }

    public let targets: [Target]
    public let measures: [String]

    /// Features per request: `controlnet_count`, `lora_count`, `pixels`, `steps`, `lora_popularity_rank` and
    /// `controlnet_popularity_rank` (best rank among the request's adapters in its service, 1 = most used; 0 without
    /// one), and `cache_hit` (1 when every adapter hit the per-instance LRU cache). Targets: `latency` (total_s, or
    /// latency_s in a replayed trace) and `cache_misses` (adapters the request had to load under that cache).
    public init(_ records: [TraceRecord], options: Options = Options()) throws(TraceError) {
        var measures: [any DependenceMeasure] = []
        for name in options.measures {
            guard let m = MeasureCatalog.measure(named: name) else {
                throw .invalid("unknown measure \"\(name)\"; known: \(MeasureCatalog.names.joined(separator: ", "))")
            }
            measures.append(m)
        }
        guard options.sample >= 3, options.permutations >= 0, options.cacheCapacity >= 0 else {
            throw .invalid("--driver-sample must be at least 3, --permutations and --cache-size non-negative")
        }
        self.measures = options.measures
        let n = records.count
        // Popularity ranks per service and kind.
        var rank: [String: Int] = [:]
        var counts: [String: [String: Int]] = [:]
        for r in records {
            for l in r.loras { counts["\(r.service)\u{1}lora", default: [:]][l, default: 0] += 1 }
            for c in r.controlnets { counts["\(r.service)\u{1}cn", default: [:]][c, default: 0] += 1 }
        }
        for (key, table) in counts {
            for (k, entry) in table.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }).enumerated() { rank[key + "\u{1}" + entry.key] = k + 1 }
        }
        // Cache simulation in time order per instance.
        let order = records.indices.sorted { (records[$0].timestamp, $0) < (records[$1].timestamp, $1) }
        var loraCaches: [String: LRUCache] = [:], cnCaches: [String: LRUCache] = [:]
        var adapterIDs: [String: Int32] = [:]
        func id(_ s: String) -> Int32 {
            if let v = adapterIDs[s] { return v }
            let v = Int32(adapterIDs.count)
            adapterIDs[s] = v
            return v
        }
        var misses = [Int](repeating: 0, count: n)
        for i in order {
            let r = records[i], key = r.service + "\u{1}" + r.instance
            var lc = loraCaches[key] ?? LRUCache(capacity: options.cacheCapacity)
            var cc = cnCaches[key] ?? LRUCache(capacity: options.cacheCapacity)
            for l in r.loras where !lc.access(id("L" + r.service + "\u{1}" + l)) { misses[i] += 1 }
            for c in r.controlnets where !cc.access(id("C" + r.service + "\u{1}" + c)) { misses[i] += 1 }
            loraCaches[key] = lc
            cnCaches[key] = cc
        }
        // Seeded sample of rows.
        var rng = Xoshiro256StarStar(seed: options.seed)
        var rows = Array(0..<n)
        if n > options.sample {
            for k in 0..<options.sample { rows.swapAt(k, k + rng.below(n - k)) }
            rows = Array(rows[0..<options.sample]).sorted()
        }
        func features(_ rows: [Int], includeCacheHit: Bool) -> [(name: String, values: [Double])] {
            func best(_ names: [String], _ kind: String, _ r: TraceRecord) -> Double {
                Double(names.compactMap { rank["\(r.service)\u{1}\(kind)\u{1}\($0)"] }.min() ?? 0)
            }
            var f: [(name: String, values: [Double])] = [
                ("controlnet_count", rows.map { Double(records[$0].controlnets.count) }),
                ("lora_count", rows.map { Double(records[$0].loras.count) }),
                ("pixels", rows.map { Double(records[$0].width * records[$0].height) }),
                ("steps", rows.map { Double(records[$0].steps) }),
                ("lora_popularity_rank", rows.map { best(records[$0].loras, "lora", records[$0]) }),
                ("controlnet_popularity_rank", rows.map { best(records[$0].controlnets, "cn", records[$0]) }),
            ]
            if includeCacheHit { f.append(("cache_hit", rows.map { misses[$0] == 0 ? 1 : 0 })) }
            return f
        }
        var targets: [Target] = []
        let latencyRows = rows.filter { (records[$0].latencyS ?? records[$0].totalS) != nil && records[$0].outcome == "succeeded" }
        if latencyRows.count >= 3 {
            let y = latencyRows.map { records[$0].latencyS ?? records[$0].totalS! }
            targets.append(Target(
                name: "latency", rows: latencyRows.count,
                entries: DriverScreen.screen(target: y, features: features(latencyRows, includeCacheHit: true), measures: measures,
                                             permutations: options.permutations, seed: options.seed),
                note: nil))
        } else {
            targets.append(Target(name: "latency", rows: latencyRows.count, entries: [], note: "fewer than 3 sampled succeeded requests with a latency"))
        }
        targets.append(Target(
            name: "cache_misses", rows: rows.count,
            entries: rows.count >= 3
                ? DriverScreen.screen(target: rows.map { Double(misses[$0]) }, features: features(rows, includeCacheHit: false), measures: measures,
                                      permutations: options.permutations, seed: options.seed) : [],
            note: rows.count >= 3 ? nil : "fewer than 3 requests"))
        self.targets = targets
    }

    /// Features of a target ranked by the first measure's value (failed measures last), each measure's value and p.
    public func ranking(_ target: Target) -> [(feature: String, cells: [DriverScreen.Entry])] {
        var byFeature: [String: [DriverScreen.Entry]] = [:], order: [String] = []
        for e in target.entries {
            if byFeature[e.feature] == nil { order.append(e.feature) }
            byFeature[e.feature, default: []].append(e)
        }
        func key(_ f: String) -> Double {
            guard let first = byFeature[f]?.first, case .success(let r) = first.result else { return -.infinity }
            return abs(r.value)
        }
        return order.sorted { key($0) > key($1) }.map { ($0, byFeature[$0]!) }
    }

    public func markdown() -> String {
        var s = "# Drivers of latency and cache misses\n\n> Caveat: \(DriverScreen.caveat)\n\n"
        s += "Ranked by |\(measures.first ?? "")|; each cell is value (permutation p, Benjamini–Hochberg q across features).\n"
        for t in targets {
            s += "\n## \(t.name) (\(t.rows) requests)\n\n"
            if let note = t.note { s += note + "\n"; continue }
            s += "| rank | feature | " + measures.joined(separator: " | ") + " |\n|---:|---|" + String(repeating: "---|", count: measures.count) + "\n"
            for (k, row) in ranking(t).enumerated() {
                let cells = row.cells.map { e -> String in
                    switch e.result {
                    case .success(let r):
                        return String(format: "%.3f", r.value) + (r.pValue.map { String(format: " (p %.3g", $0) } ?? " (p –")
                            + (e.q.map { String(format: ", q %.3g)", $0) } ?? ")")
                    case .failure(let error): return "n/a: \(error)"
                    }
                }
                s += "| \(k + 1) | \(row.feature) | " + cells.joined(separator: " | ") + " |\n"
            }
        }
        return s
    }

    public func csv() -> String {
        var s = "target,feature,measure,value,p_value,q_value,error\n"
        for t in targets {
            for e in t.entries {
                switch e.result {
                case .success(let r):
                    s += "\(t.name),\(e.feature),\(e.measure),\(r.value),\(r.pValue.map { "\($0)" } ?? ""),\(e.q.map { "\($0)" } ?? ""),\n"
                case .failure(let error):
                    s += "\(t.name),\(e.feature),\(e.measure),,,,\(TraceIO.csvField("\(error)"))\n"
                }
            }
        }
        return s
    }
}
