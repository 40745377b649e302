import Dependence
import Foundation

/// Synthetic production-like traces: several services, each with its own instances, base models, LoRAs and
/// ControlNets; Zipf popularity (long-tailed for LoRAs, steep for ControlNets); a diurnal arrival rate; and a
/// simple latency model with per-instance LRU adapter caches so latency and cache hits have drivers to find.
/// Every parameter is documented with its default in docs/characterization.md. Same parameters and seed, same
/// trace, byte for byte.
public struct TraceGenerator: Sendable {
    public struct Parameters: Sendable, Equatable {
        public var requests: Int
        public var seed: UInt64
        /// Number of services ("A", "B", ...); requests are spread over them by `serviceShares`.
        public var services = 2
        /// Relative request share per service; empty: equal shares.
        public var serviceShares: [Double] = []
        public var instancesPerService = 8
        public var baseModelsPerService = 3
        public var baseModelZipf = 1.5
        public var lorasPerService = 1_000
        /// Zipf exponent s of LoRA popularity: P(rank k) ∝ k^-s.
        public var loraZipf = 1.1
        public var controlnetsPerService = 12
        public var controlnetZipf = 2.0
        /// P(0, 1, 2, ... LoRAs in a request).
        public var loraCountProbabilities = [0.40, 0.40, 0.15, 0.05]
        /// P(0, 1, 2, ... ControlNets in a request).
        public var controlnetCountProbabilities = [0.55, 0.35, 0.08, 0.02]
        /// Trace length in days; arrivals follow rate(t) ∝ 1 + a·cos(2π(h − peak)/24), h the hour of day.
        public var days = 1.0
        public var diurnalAmplitude = 0.6
        public var peakHour = 14.0
        /// Adapter cache capacity per instance (LoRAs and ControlNets separately, LRU) for the latency model.
        public var cacheCapacity = 4
        /// Latency model: total = steps · (w·h / 1024²) · secondsPerStep · (1 + controlnetFactor · #ControlNets)
        /// + loraPatchSeconds · #LoRAs + loraLoadSeconds · #LoRA misses + controlnetLoadSeconds · #ControlNet misses,
        /// times log-normal noise exp(N(0, latencyNoise²)); queue time exponential with mean `queueMeanSeconds`.
        public var secondsPerStep = 0.05
        public var controlnetFactor = 0.35
        public var loraPatchSeconds = 0.1
        public var loraLoadSeconds = 2.5
        public var controlnetLoadSeconds = 0.28
        public var latencyNoise = 0.1
        public var queueMeanSeconds = 0.5

        /// (width, height, weight) choices.
        public static let sizes: [(Int, Int, Double)] = [(512, 512, 0.15), (768, 768, 0.20), (1024, 1024, 0.45), (832, 1216, 0.12), (1216, 832, 0.08)]
        /// (steps, weight) choices.
        public static let stepChoices: [(Int, Double)] = [(20, 0.30), (25, 0.25), (30, 0.30), (50, 0.15)]

        public init(requests: Int, seed: UInt64) {
            self.requests = requests
            self.seed = seed
        }

        public static func == (a: Parameters, b: Parameters) -> Bool {
            a.requests == b.requests && a.seed == b.seed && a.services == b.services && a.serviceShares == b.serviceShares
                && a.instancesPerService == b.instancesPerService && a.lorasPerService == b.lorasPerService && a.loraZipf == b.loraZipf
                && a.controlnetsPerService == b.controlnetsPerService && a.controlnetZipf == b.controlnetZipf
                && a.loraCountProbabilities == b.loraCountProbabilities && a.controlnetCountProbabilities == b.controlnetCountProbabilities
                && a.days == b.days && a.diurnalAmplitude == b.diurnalAmplitude && a.peakHour == b.peakHour
                && a.baseModelsPerService == b.baseModelsPerService && a.baseModelZipf == b.baseModelZipf && a.cacheCapacity == b.cacheCapacity
        }

        public func validate() throws(TraceError) {
            func check(_ ok: Bool, _ message: String) throws(TraceError) { if !ok { throw .invalid(message) } }
            try check(requests >= 0 && requests <= 100_000_000, "--requests must be between 0 and 100,000,000, got \(requests)")
            try check((1...26).contains(services), "--services must be between 1 and 26, got \(services)")
            try check(serviceShares.isEmpty || (serviceShares.count == services && serviceShares.allSatisfy { $0 >= 0 } && serviceShares.reduce(0, +) > 0),
                      "--service-shares needs \(services) non-negative values with a positive sum")
            try check((1...100_000).contains(instancesPerService), "--instances must be between 1 and 100,000")
            try check((1...10_000).contains(baseModelsPerService), "--base-models must be between 1 and 10,000")
            try check((1...10_000_000).contains(lorasPerService), "--loras must be between 1 and 10,000,000")
            try check((1...100_000).contains(controlnetsPerService), "--controlnets must be between 1 and 100,000")
            for (name, s) in [("--lora-zipf", loraZipf), ("--controlnet-zipf", controlnetZipf), ("--base-model-zipf", baseModelZipf)] {
                try check(s.isFinite && s >= 0 && s <= 10, "\(name) must be between 0 and 10, got \(s)")
            }
            for (name, p, pool) in [("--lora-counts", loraCountProbabilities, lorasPerService), ("--controlnet-counts", controlnetCountProbabilities, controlnetsPerService)] {
                try check(!p.isEmpty && p.allSatisfy { $0 >= 0 && $0.isFinite } && p.reduce(0, +) > 0, "\(name) needs non-negative probabilities with a positive sum")
                try check(p.count - 1 <= pool, "\(name) allows \(p.count - 1) adapters per request but a service has only \(pool)")
            }
            try check(days > 0 && days <= 3650, "--days must be in (0, 3650], got \(days)")
            try check(diurnalAmplitude >= 0 && diurnalAmplitude < 1, "--diurnal-amplitude must be in [0, 1), got \(diurnalAmplitude)")
            try check(peakHour >= 0 && peakHour < 24, "--peak-hour must be in [0, 24), got \(peakHour)")
            try check(cacheCapacity >= 0 && cacheCapacity <= 10_000, "--cache-size must be between 0 and 10,000")
        }
    }

    public let parameters: Parameters

    public init(_ parameters: Parameters) throws(TraceError) {
        try parameters.validate()
        self.parameters = parameters
    }

    /// Cumulative distribution of a Zipf law over ranks 1...n with exponent s.
    static func zipfCDF(count n: Int, exponent s: Double) -> [Double] {
        var cdf = [Double](repeating: 0, count: n)
        var sum = 0.0
        for k in 0..<n {
            sum += pow(Double(k + 1), -s)
            cdf[k] = sum
        }
        for k in 0..<n { cdf[k] /= sum }
        cdf[n - 1] = 1
        return cdf
    }

    static func normalizedCDF(_ weights: [Double]) -> [Double] {
        let total = weights.reduce(0, +)
        var sum = 0.0
        var cdf = weights.map { sum += $0; return sum / total }
        cdf[cdf.count - 1] = 1
        return cdf
    }

    /// The index i with cdf[i-1] <= u < cdf[i].
    @inline(__always) static func draw(_ cdf: [Double], _ u: Double) -> Int {
        var lo = 0, hi = cdf.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cdf[mid] > u { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// The diurnal arrival density's shape at hour-of-day `h` (not normalised; the maximum is 1 + a).
    public static func diurnalRate(hour h: Double, amplitude a: Double, peakHour: Double) -> Double {
        1 + a * cos(2 * Double.pi * (h - peakHour) / 24)
    }

    public func generate() -> [TraceRecord] {
        let p = parameters
        var rng = Xoshiro256StarStar(seed: p.seed)
        let duration = p.days * 86_400
        // Arrival times: N i.i.d. draws from the diurnal density (thinning), sorted: the order statistics of a
        // non-homogeneous Poisson process conditioned on N arrivals.
        var times = [Double](repeating: 0, count: p.requests)
        let bound = 1 + p.diurnalAmplitude
        for i in 0..<p.requests {
            while true {
                let t = rng.unit() * duration
                let rate = Self.diurnalRate(hour: (t / 3600).truncatingRemainder(dividingBy: 24), amplitude: p.diurnalAmplitude, peakHour: p.peakHour)
                if rng.unit() * bound < rate { times[i] = t; break }
            }
        }
        times.sort()

        let serviceCDF = Self.normalizedCDF(p.serviceShares.isEmpty ? [Double](repeating: 1, count: p.services) : p.serviceShares)
        let loraCDF = Self.zipfCDF(count: p.lorasPerService, exponent: p.loraZipf)
        let controlnetCDF = Self.zipfCDF(count: p.controlnetsPerService, exponent: p.controlnetZipf)
        let baseCDF = Self.zipfCDF(count: p.baseModelsPerService, exponent: p.baseModelZipf)
        let loraCountCDF = Self.normalizedCDF(p.loraCountProbabilities)
        let controlnetCountCDF = Self.normalizedCDF(p.controlnetCountProbabilities)
        let sizeCDF = Self.normalizedCDF(Parameters.sizes.map(\.2))
        let stepCDF = Self.normalizedCDF(Parameters.stepChoices.map(\.1))
        let serviceNames = (0..<p.services).map { String(UnicodeScalar(UInt8(65 + $0))) }
        let loraWidth = String(p.lorasPerService).count, controlnetWidth = String(p.controlnetsPerService).count
        func name(_ service: String, _ kind: String, _ rank: Int, _ width: Int) -> String {
            let digits = String(rank + 1)
            return "\(service)-\(kind)-" + String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let loraNames = serviceNames.map { s in (0..<p.lorasPerService).map { name(s, "lora", $0, loraWidth) } }
        let controlnetNames = serviceNames.map { s in (0..<p.controlnetsPerService).map { name(s, "cn", $0, controlnetWidth) } }
        let baseNames = serviceNames.map { s in (0..<p.baseModelsPerService).map { "\(s)-base-\($0 + 1)" } }
        let instanceNames = serviceNames.map { s in (0..<p.instancesPerService).map { "\(s)-\($0 + 1)" } }
        var loraCaches = [[LRUCache]](repeating: [LRUCache](repeating: LRUCache(capacity: p.cacheCapacity), count: p.instancesPerService), count: p.services)
        var controlnetCaches = loraCaches

        func distinct(_ count: Int, _ cdf: [Double]) -> [Int] {
            var chosen: [Int] = []
            while chosen.count < count {
                let k = Self.draw(cdf, rng.unit())
                if !chosen.contains(k) { chosen.append(k) }
            }
            return chosen
        }

        var records: [TraceRecord] = []
        records.reserveCapacity(p.requests)
        for t in times {
            let service = Self.draw(serviceCDF, rng.unit())
            let instance = rng.below(p.instancesPerService)
            let base = Self.draw(baseCDF, rng.unit())
            let controlnets = distinct(Self.draw(controlnetCountCDF, rng.unit()), controlnetCDF)
            let loras = distinct(Self.draw(loraCountCDF, rng.unit()), loraCDF)
            let size = Parameters.sizes[Self.draw(sizeCDF, rng.unit())]
            let steps = Parameters.stepChoices[Self.draw(stepCDF, rng.unit())].0
            var loraMisses = 0, controlnetMisses = 0
            for l in loras where !loraCaches[service][instance].access(Int32(l)) { loraMisses += 1 }
            for c in controlnets where !controlnetCaches[service][instance].access(Int32(c)) { controlnetMisses += 1 }
            let compute = Double(steps) * Double(size.0 * size.1) / 1_048_576 * p.secondsPerStep * (1 + p.controlnetFactor * Double(controlnets.count))
            let loading = p.loraPatchSeconds * Double(loras.count) + p.loraLoadSeconds * Double(loraMisses)
                + p.controlnetLoadSeconds * Double(controlnetMisses)
            // Box–Muller normal for the log-normal noise.
            let z = sqrt(-2 * log(max(rng.unit(), 1e-300))) * cos(2 * Double.pi * rng.unit())
            let total = (compute + loading) * exp(p.latencyNoise * z)
            let queue = -p.queueMeanSeconds * log(max(1 - rng.unit(), 1e-300))
            records.append(
                TraceRecord(
                    timestamp: (t * 1000).rounded() / 1000, service: serviceNames[service], instance: instanceNames[service][instance],
                    baseModel: baseNames[service][base], controlnets: controlnets.map { controlnetNames[service][$0] },
                    loras: loras.map { loraNames[service][$0] }, width: size.0, height: size.1, steps: steps,
                    queueS: (queue * 1e4).rounded() / 1e4, totalS: (total * 1e4).rounded() / 1e4,
                    loraCacheHit: loras.isEmpty ? nil : loraMisses == 0, controlnetCacheHit: controlnets.isEmpty ? nil : controlnetMisses == 0,
                    outcome: "succeeded"))
        }
        return records
    }

    /// Maximum-likelihood estimate of a finite Zipf exponent from rank observations (1-based ranks out of `count`):
    /// maximises −s Σ log r − n log H(count, s) by golden-section search on [0, 5].
    public static func estimateZipfExponent(ranks: [Int], count: Int) -> Double {
        let n = Double(ranks.count)
        let sumLog = ranks.reduce(0.0) { $0 + log(Double($1)) }
        let logs = (1...count).map { log(Double($0)) }
        func logLikelihood(_ s: Double) -> Double {
            var h = 0.0
            for l in logs { h += exp(-s * l) }
            return -s * sumLog - n * log(h)
        }
        var a = 0.0, b = 5.0
        let g = (sqrt(5.0) - 1) / 2
        var c = b - g * (b - a), d = a + g * (b - a)
        var fc = logLikelihood(c), fd = logLikelihood(d)
        for _ in 0..<80 {
            if fc > fd { b = d; d = c; fd = fc; c = b - g * (b - a); fc = logLikelihood(c) } else { a = c; c = d; fc = fd; d = a + g * (b - a); fd = logLikelihood(d) }
        }
        return (a + b) / 2
    }
}
