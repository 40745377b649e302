import Charts
import Dependence
import Foundation

/// The paper's characterization of a trace: add-on shares, adapters per request, popularity CDFs and top-k
/// shares, unique adapters per instance, and LRU / LFU / Belady miss-rate curves per instance for cache sizes 1...10.
public struct TraceAnalysis: Sendable {
    public enum AdapterKind: String, CaseIterable, Sendable {
        case controlnet, lora
        public var label: String { self == .lora ? "LoRA" : "ControlNet" }
    }

    public struct Popularity: Sendable {
        public let service: String
        public let kind: AdapterKind
        /// Invocations per adapter, most popular first.
        public let counts: [Int]
        public var invocations: Int { counts.reduce(0, +) }
        /// Share of invocations covered by the top k adapters, k = 1...counts.count.
        public var cdf: [Double] {
            let total = Double(max(invocations, 1))
            var sum = 0
            return counts.map { sum += $0; return Double(sum) / total }
        }
        /// Smallest k whose top-k share reaches `share`.
        public func adaptersCovering(_ share: Double) -> Int {
            let c = cdf
            return (c.firstIndex { $0 >= share - 1e-12 } ?? (c.count - 1)) + 1
        }
    }

    public struct ServiceSummary: Sendable {
        public let service: String
        public let requests: Int
        public let withControlNet: Int
        public let withLoRA: Int
        public let withAddOn: Int
        public let baseModels: Int
        /// Requests by number of ControlNets / LoRAs (index = count).
        public let controlnetsPerRequest: [Int]
        public let lorasPerRequest: [Int]
    }

    public struct InstanceSummary: Sendable {
        public let service: String
        public let instance: String
        public let requests: Int
        public let uniqueControlNets: Int
        public let uniqueLoRAs: Int
    }

    public struct MissCurve: Sendable {
        public let service: String
        public let instance: String  // "*" for the service total
        public let kind: AdapterKind
        public let policy: CachePolicy
        public let accesses: Int
        /// Misses for cache sizes 1...capacities.
        public let misses: [Int]
        public var rates: [Double] { misses.map { accesses == 0 ? 0 : Double($0) / Double(accesses) } }
    }

    public let requests: Int
    public let services: [ServiceSummary]
    public let popularity: [Popularity]
    public let instances: [InstanceSummary]
    /// Per instance and per service total ("*").
    public let curves: [MissCurve]
    public static let capacities = Array(1...10)

    public init(_ records: [TraceRecord]) {
        requests = records.count
        // Group by service, then instance; time order within an instance (stable for equal timestamps).
        var serviceOrder: [String] = [], byService: [String: [Int]] = [:]
        for (i, r) in records.enumerated() {
            if byService[r.service] == nil { serviceOrder.append(r.service) }
            byService[r.service, default: []].append(i)
        }
        serviceOrder.sort()
        var services: [ServiceSummary] = [], popularity: [Popularity] = [], instances: [InstanceSummary] = [], curves: [MissCurve] = []
        for service in serviceOrder {
            let rows = byService[service]!
            var cnHist: [Int] = [], loraHist: [Int] = []
            var withCN = 0, withLoRA = 0, withAny = 0
            var bases = Set<String>()
            var ids: [AdapterKind: [String: Int32]] = [.controlnet: [:], .lora: [:]]
            var counts: [AdapterKind: [Int]] = [.controlnet: [], .lora: []]
            func intern(_ name: String, _ kind: AdapterKind) -> Int32 {
                if let id = ids[kind]![name] { counts[kind]![Int(id)] += 1; return id }
                let id = Int32(counts[kind]!.count)
                ids[kind]![name] = id
                counts[kind]!.append(1)
                return id
            }
            var byInstance: [String: [Int]] = [:]
            var encoded: [(cn: [Int32], lora: [Int32])] = []
            encoded.reserveCapacity(rows.count)
            for i in rows {
                let r = records[i]
                let c = r.controlnets.count, l = r.loras.count
                if cnHist.count <= c { cnHist += [Int](repeating: 0, count: c + 1 - cnHist.count) }
                if loraHist.count <= l { loraHist += [Int](repeating: 0, count: l + 1 - loraHist.count) }
                cnHist[c] += 1
                loraHist[l] += 1
                if c > 0 { withCN += 1 }
                if l > 0 { withLoRA += 1 }
                if c + l > 0 { withAny += 1 }
                bases.insert(r.baseModel)
                encoded.append((r.controlnets.map { intern($0, .controlnet) }, r.loras.map { intern($0, .lora) }))
                byInstance[r.instance, default: []].append(encoded.count - 1)
            }
            services.append(
                ServiceSummary(
                    service: service, requests: rows.count, withControlNet: withCN, withLoRA: withLoRA, withAddOn: withAny,
                    baseModels: bases.count, controlnetsPerRequest: cnHist, lorasPerRequest: loraHist))
            for kind in AdapterKind.allCases {
                popularity.append(Popularity(service: service, kind: kind, counts: counts[kind]!.sorted(by: >)))
            }
            var totals: [String: (accesses: Int, misses: [Int])] = [:]
            for instance in byInstance.keys.sorted(by: Self.naturalOrder) {
                var local = byInstance[instance]!
                // Stable time order within the instance.
                local.sort { (records[rows[$0]].timestamp, $0) < (records[rows[$1]].timestamp, $1) }
                var cnSeq: [Int32] = [], loraSeq: [Int32] = []
                for k in local {
                    cnSeq += encoded[k].cn
                    loraSeq += encoded[k].lora
                }
                instances.append(
                    InstanceSummary(
                        service: service, instance: instance, requests: local.count, uniqueControlNets: Set(cnSeq).count, uniqueLoRAs: Set(loraSeq).count))
                for (kind, seq) in [(AdapterKind.controlnet, cnSeq), (.lora, loraSeq)] {
                    for policy in CachePolicy.allCases {
                        let misses = policy.misses(seq, capacities: Self.capacities)
                        curves.append(MissCurve(service: service, instance: instance, kind: kind, policy: policy, accesses: seq.count, misses: misses))
                        let key = "\(kind.rawValue)/\(policy.rawValue)"
                        let t = totals[key] ?? (0, [Int](repeating: 0, count: Self.capacities.count))
                        totals[key] = (t.accesses + seq.count, zip(t.misses, misses).map(+))
                    }
                }
            }
            for kind in AdapterKind.allCases {
                for policy in CachePolicy.allCases {
                    let t = totals["\(kind.rawValue)/\(policy.rawValue)"] ?? (0, [Int](repeating: 0, count: Self.capacities.count))
                    curves.append(MissCurve(service: service, instance: "*", kind: kind, policy: policy, accesses: t.accesses, misses: t.misses))
                }
            }
        }
        self.services = services
        self.popularity = popularity
        self.instances = instances
        self.curves = curves
    }

    /// "A-2" before "A-10".
    static func naturalOrder(_ a: String, _ b: String) -> Bool {
        a.compare(b, options: .numeric) == .orderedAscending
    }

    public func totalCurve(service: String, kind: AdapterKind, policy: CachePolicy) -> MissCurve? {
        curves.first { $0.service == service && $0.instance == "*" && $0.kind == kind && $0.policy == policy }
    }

    // MARK: Report

    static func pct(_ x: Double) -> String { String(format: "%.1f%%", 100 * x) }
    static func fmt(_ x: Double) -> String { String(format: "%.4f", x) }

    public static let topK = [1, 5, 10, 20, 50, 100]

    /// Markdown tables of every analysis.
    public func markdown() -> String {
        var s = "# Trace characterization\n\n\(requests) requests, \(services.count) service(s), \(instances.count) instance(s).\n\n"
        s += "## Requests with add-ons\n\n| service | requests | base models | with ControlNet | with LoRA | with any add-on |\n|---|---:|---:|---:|---:|---:|\n"
        for v in services {
            let n = Double(max(v.requests, 1))
            s += "| \(v.service) | \(v.requests) | \(v.baseModels) | \(Self.pct(Double(v.withControlNet) / n)) | \(Self.pct(Double(v.withLoRA) / n)) | \(Self.pct(Double(v.withAddOn) / n)) |\n"
        }
        s += "\n## Adapters per request (share of requests)\n\n| service | kind | " + (0...3).map { "\($0)" }.joined(separator: " | ") + " | 4+ | mean |\n|---|---|---:|---:|---:|---:|---:|---:|\n"
        for v in services {
            for (kind, hist) in [("ControlNets", v.controlnetsPerRequest), ("LoRAs", v.lorasPerRequest)] {
                let n = Double(max(v.requests, 1))
                let cells = (0...3).map { Self.pct(Double($0 < hist.count ? hist[$0] : 0) / n) }
                let tail = hist.count > 4 ? hist[4...].reduce(0, +) : 0
                let mean = hist.enumerated().reduce(0.0) { $0 + Double($1.offset * $1.element) } / n
                s += "| \(v.service) | \(kind) | " + cells.joined(separator: " | ") + " | \(Self.pct(Double(tail) / n)) | \(String(format: "%.3f", mean)) |\n"
            }
        }
        s += "\n## Popularity\n\n| service | kind | invocations | unique | ≥1% share | covering 25% / 50% / 75% | "
        s += Self.topK.map { "top-\($0)" }.joined(separator: " | ") + " |\n|---|---|---:|---:|---:|---|" + String(repeating: "---:|", count: Self.topK.count) + "\n"
        for p in popularity {
            let total = Double(max(p.invocations, 1)), cdf = p.cdf
            let frequent = p.counts.filter { Double($0) / total >= 0.01 }.count
            let cover = p.counts.isEmpty ? "–" : "\(p.adaptersCovering(0.25)) / \(p.adaptersCovering(0.5)) / \(p.adaptersCovering(0.75))"
            let tops = Self.topK.map { k in cdf.isEmpty ? "–" : Self.pct(cdf[min(k, cdf.count) - 1]) }
            s += "| \(p.service) | \(p.kind.label) | \(p.invocations) | \(p.counts.count) | \(frequent) | \(cover) | " + tops.joined(separator: " | ") + " |\n"
        }
        s += "\n## Unique adapters per instance\n\n| service | instances | requests (mean) | unique ControlNets mean / max | unique LoRAs mean / max |\n|---|---:|---:|---|---|\n"
        for v in services {
            let list = instances.filter { $0.service == v.service }
            let n = Double(max(list.count, 1))
            let cn = list.map(\.uniqueControlNets), lo = list.map(\.uniqueLoRAs)
            s += "| \(v.service) | \(list.count) | \(String(format: "%.1f", Double(v.requests) / n)) | "
            s += "\(String(format: "%.1f", Double(cn.reduce(0, +)) / n)) / \(cn.max() ?? 0) | \(String(format: "%.1f", Double(lo.reduce(0, +)) / n)) / \(lo.max() ?? 0) |\n"
        }
        s += "\n(Per instance: instances.csv.)\n\n## Miss rate by cache size (all instances of a service; per instance: miss_rates.csv)\n\n"
        s += "| service | kind | policy | accesses | " + Self.capacities.map { "C=\($0)" }.joined(separator: " | ") + " |\n|---|---|---|---:|"
        s += String(repeating: "---:|", count: Self.capacities.count) + "\n"
        for c in curves where c.instance == "*" {
            s += "| \(c.service) | \(c.kind.label) | \(c.policy.label) | \(c.accesses) | " + c.rates.map(Self.fmt).joined(separator: " | ") + " |\n"
        }
        return s
    }

    public func csvFiles() -> [String: String] {
        var files: [String: String] = [:]
        var a = "service,kind,count,requests,share\n"
        for v in services {
            for (kind, hist) in [("controlnet", v.controlnetsPerRequest), ("lora", v.lorasPerRequest)] {
                for (k, n) in hist.enumerated() { a += "\(v.service),\(kind),\(k),\(n),\(Self.fmt(Double(n) / Double(max(v.requests, 1))))\n" }
            }
        }
        files["adapters_per_request.csv"] = a
        var p = "service,kind,rank,invocations,cumulative_share\n"
        for pop in popularity {
            for (k, (n, c)) in zip(pop.counts, pop.cdf).enumerated() { p += "\(pop.service),\(pop.kind.rawValue),\(k + 1),\(n),\(String(format: "%.6f", c))\n" }
        }
        files["popularity.csv"] = p
        var i = "service,instance,requests,unique_controlnets,unique_loras\n"
        for v in instances { i += "\(v.service),\(v.instance),\(v.requests),\(v.uniqueControlNets),\(v.uniqueLoRAs)\n" }
        files["instances.csv"] = i
        var m = "service,instance,kind,policy,capacity,accesses,misses,miss_rate\n"
        for c in curves {
            for (k, cap) in Self.capacities.enumerated() {
                m += "\(c.service),\(c.instance),\(c.kind.rawValue),\(c.policy.rawValue),\(cap),\(c.accesses),\(c.misses[k]),\(String(format: "%.6f", c.rates[k]))\n"
            }
        }
        files["miss_rates.csv"] = m
        return files
    }

    /// SVG charts drawn with the Dependence library's chart writer.
    public func svgFiles(topKLimit: Int = 100) -> [String: String] {
        charts(topKLimit: topKLimit).mapValues { $0.render() }
    }

    /// The same charts as PNG images (Charts' raster back end over the same layout), keyed `NAME.png`.
    public func pngFiles(topKLimit: Int = 100) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for (name, chart) in charts(topKLimit: topKLimit) {
            files[(name as NSString).deletingPathExtension + ".png"] = try chart.png()
        }
        return files
    }

    /// The charts, keyed by their SVG file name.
    public func charts(topKLimit: Int = 100) -> [String: SVGChart] {
        var files: [String: SVGChart] = [:]
        var panels: [SVGChart.Panel] = []
        for kind in AdapterKind.allCases {
            let lines = services.map { v -> [(x: Double, y: Double)] in
                guard let pop = popularity.first(where: { $0.service == v.service && $0.kind == kind }) else { return [] }
                return pop.cdf.prefix(topKLimit).enumerated().map { (x: Double($0.offset + 1), y: $0.element) }
            }
            panels.append(SVGChart.Panel(title: "\(kind.label) popularity", lines: lines, yRange: 0...1))
        }
        var chart = SVGChart(
            title: "Popularity CDF: share of invocations covered by the top-k adapters", xLabel: "k (top-k adapters, up to \(topKLimit))",
            yLabel: "cumulative share", panels: panels, legend: services.map { "service \($0.service)" })
        chart.columns = 2
        files["popularity_cdf.svg"] = chart

        panels = []
        for kind in AdapterKind.allCases {
            let lines = services.map { v -> [(x: Double, y: Double)] in
                let hist = kind == .lora ? v.lorasPerRequest : v.controlnetsPerRequest
                return hist.enumerated().map { (x: Double($0.offset), y: Double($0.element) / Double(max(v.requests, 1))) }
            }
            panels.append(SVGChart.Panel(title: "\(kind.label)s per request", lines: lines, yRange: 0...1))
        }
        chart = SVGChart(title: "Adapters per request", xLabel: "adapters in the request", yLabel: "share of requests", panels: panels,
                         legend: services.map { "service \($0.service)" })
        chart.columns = 2
        files["adapters_per_request.svg"] = chart

        panels = []
        for v in services {
            for kind in AdapterKind.allCases {
                let lines = CachePolicy.allCases.map { policy -> [(x: Double, y: Double)] in
                    guard let c = totalCurve(service: v.service, kind: kind, policy: policy) else { return [] }
                    return zip(Self.capacities, c.rates).map { (x: Double($0), y: $1) }
                }
                panels.append(SVGChart.Panel(title: "service \(v.service), \(kind.label)", lines: lines, yRange: 0...1))
            }
        }
        chart = SVGChart(title: "Per-instance adapter cache miss rate (all instances of a service)", xLabel: "cache size (adapters)",
                         yLabel: "miss rate", panels: panels, legend: CachePolicy.allCases.map(\.label))
        chart.columns = 2
        files["miss_rates.svg"] = chart
        return files
    }

    /// Writes summary.md, the CSV tables and the charts (each as .svg and .png) into `directory`; returns the file names.
    @discardableResult
    public func write(to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var files = csvFiles().merging(svgFiles()) { a, _ in a }
        files["summary.md"] = markdown()
        for (name, text) in files {
            try Data(text.utf8).write(to: URL(fileURLWithPath: directory).appendingPathComponent(name))
        }
        let images = try pngFiles()
        for (name, data) in images {
            try data.write(to: URL(fileURLWithPath: directory).appendingPathComponent(name))
        }
        return (Array(files.keys) + Array(images.keys)).sorted()
    }
}
