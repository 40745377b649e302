import Dependence
import Foundation
import Serving

/// Measured seconds of each stage of a job on this engine, the planner's input (`trace simulate --stage-times FILE`,
/// JSON with the snake_case keys below). `StageTimes.measuredDefault` documents where its numbers come from.
public struct StageTimes: Codable, Sendable, Equatable {
    /// Loading a base model that is not in memory.
    public var baseModelLoadS: Double
    /// Reading and key-mapping a LoRA file that is not in memory (a cache miss).
    public var loraLoadS: Double
    /// Merging one LoRA into the weights and restoring them afterwards; paid per LoRA whenever a job's LoRA set differs
    /// from the previous job's on that replica (the merged weights of an identical set stay).
    public var loraPatchS: Double
    /// Loading a ControlNet that is not in memory.
    public var controlnetLoadS: Double
    /// One denoising step (both guidance branches) at `referencePixels`; scaled by the job's pixels.
    public var denoiseStepS: Double
    public var referencePixels: Int
    /// Extra per-step cost of each ControlNet, as a fraction of a step.
    public var controlnetStepFraction: Double
    /// Per job, independent of steps: prompt encoding and VAE decoding.
    public var fixedS: Double
    /// Sizes that count against a replica's cache (`--cache-bytes`).
    public var baseModelBytes: Int
    public var loraBytes: Int
    public var controlnetBytes: Int
    /// Where the numbers come from.
    public var source: String

    public init(
        baseModelLoadS: Double, loraLoadS: Double, loraPatchS: Double, controlnetLoadS: Double, denoiseStepS: Double,
        referencePixels: Int = 512 * 512, controlnetStepFraction: Double, fixedS: Double, baseModelBytes: Int, loraBytes: Int,
        controlnetBytes: Int, source: String
    ) {
        self.baseModelLoadS = baseModelLoadS
        self.loraLoadS = loraLoadS
        self.loraPatchS = loraPatchS
        self.controlnetLoadS = controlnetLoadS
        self.denoiseStepS = denoiseStepS
        self.referencePixels = referencePixels
        self.controlnetStepFraction = controlnetStepFraction
        self.fixedS = fixedS
        self.baseModelBytes = baseModelBytes
        self.loraBytes = loraBytes
        self.controlnetBytes = controlnetBytes
        self.source = source
    }

    enum CodingKeys: String, CodingKey {
        case baseModelLoadS = "base_model_load_s", loraLoadS = "lora_load_s", loraPatchS = "lora_patch_s"
        case controlnetLoadS = "controlnet_load_s", denoiseStepS = "denoise_step_s", referencePixels = "reference_pixels"
        case controlnetStepFraction = "controlnet_step_fraction", fixedS = "fixed_s", baseModelBytes = "base_model_bytes"
        case loraBytes = "lora_bytes", controlnetBytes = "controlnet_bytes", source
    }

    /// The embedded model (shapes-sd, 128x128) on this engine, measured with tools/bench/stage_times.py; the same
    /// numbers as docs/scale-out/stage-times-embedded.json, whose `source` says how.
    public static let measuredDefault = StageTimes(
        baseModelLoadS: 0.5082, loraLoadS: 0.3439, loraPatchS: 0.0375, controlnetLoadS: 0.0126, denoiseStepS: 0.04612,
        referencePixels: 16384, controlnetStepFraction: 0.461, fixedS: 0.2857, baseModelBytes: 33285473, loraBytes: 632508,
        controlnetBytes: 3994753,
        source: "docs/scale-out/stage-times-embedded.json (tools/bench/stage_times.py, embedded model, 2 threads, AMD EPYC Zen 4)"
    )

    /// Reads a stage-times JSON file; missing keys are errors.
    public static func read(path: String) throws(TraceError) -> StageTimes {
        guard FileManager.default.fileExists(atPath: path) else { throw .noSuchFile(path) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw .unreadable(path, "\(error)") }
        guard data.count <= 1 << 20 else { throw .tooLarge(path: path, limit: "1 MiB") }
        let times: StageTimes
        do { times = try JSONDecoder().decode(StageTimes.self, from: data) } catch {
            throw .invalid("\(path): not a stage-times file: \(TraceIO.describe(error))")
        }
        let seconds = [
            times.baseModelLoadS, times.loraLoadS, times.loraPatchS, times.controlnetLoadS, times.denoiseStepS, times.fixedS,
            times.controlnetStepFraction,
        ]
        guard seconds.allSatisfy({ $0.isFinite && $0 >= 0 }), times.denoiseStepS > 0, times.referencePixels > 0,
            times.baseModelBytes >= 0, times.loraBytes >= 0, times.controlnetBytes >= 0
        else { throw .invalid("\(path): stage times must be finite and >= 0, denoise_step_s and reference_pixels > 0") }
        return times
    }
}

/// Where jobs run when several replicas serve one trace.
public enum PlacementPolicy: String, CaseIterable, Sendable {
    /// One shared queue and the PostgreSQL store's claim rule (`Serving.Placement`): a free replica takes a queued job
    /// it is eligible for (it holds the job's base model, holds none, or is the model's rendezvous home; its model held
    /// first, then most adapters held, then the oldest) unless the oldest job has waited `maximumWait`: then that one,
    /// on the free replica it fits best.
    case affinity
    /// Each job goes to a replica chosen uniformly at random and waits in its queue.
    case random
    /// Each job goes to the replica with the least work (running remainder + queued compute) and waits in its queue.
    case leastLoaded = "least-loaded"
}

/// A discrete-event simulation of N replicas serving a trace: service time = the stage times of what a job needs
/// that its replica does not hold, plus its compute; each replica has a byte-bounded LRU cache of base models, LoRAs
/// and ControlNets and runs one job at a time.
public struct PlacementSimulation: Sendable {
    public struct Job: Sendable, Equatable {
        public var arrival: Double
        public var model: String
        public var loras: [String]
        public var controlnets: [String]
        public var steps: Int
        public var pixels: Int

        public init(arrival: Double, model: String, loras: [String] = [], controlnets: [String] = [], steps: Int, pixels: Int) {
            self.arrival = arrival
            self.model = model
            self.loras = loras
            self.controlnets = controlnets
            self.steps = steps
            self.pixels = pixels
        }

        /// A trace record as a job (0 x 0 means the reference size).
        public init(_ record: TraceRecord, referencePixels: Int) {
            let pixels = record.width * record.height
            self.init(
                arrival: record.timestamp, model: record.baseModel, loras: record.loras, controlnets: record.controlnets,
                steps: max(1, record.steps), pixels: pixels > 0 ? pixels : referencePixels)
        }
    }

    public struct Options: Sendable {
        public var replicas: Int
        public var cacheBytes: Int
        public var policy: PlacementPolicy
        /// Affinity: a job waits at most this long before it runs next whatever the replicas hold.
        public var maximumWait: Double
        /// Random placement's seed.
        public var seed: UInt64
        /// Affinity: seconds a young job is left to a replica that fits it better, busy or idle (delay scheduling).
        public var localityWait: Double

        public init(
            replicas: Int, cacheBytes: Int, policy: PlacementPolicy, maximumWait: Double = 30, seed: UInt64 = 1,
            localityWait: Double = Placement.defaultLocalityWait
        ) {
            self.replicas = replicas
            self.cacheBytes = cacheBytes
            self.policy = policy
            self.maximumWait = maximumWait
            self.seed = seed
            self.localityWait = localityWait
        }
    }

    public struct Result: Sendable, Equatable {
        public var policy: PlacementPolicy
        public var jobs: Int
        /// Jobs per second from the first arrival to the last completion.
        public var throughput: Double
        /// Seconds from arrival to completion.
        public var p50: Double
        public var p95: Double
        public var p99: Double
        /// LoRA and ControlNet loads (cache misses); base-model loads separately.
        public var adapterLoads: Int
        public var baseModelLoads: Int
        /// Hits over accesses of every component (base model, LoRAs, ControlNets).
        public var cacheHits: Int
        public var cacheAccesses: Int
        public var hitRate: Double { cacheAccesses == 0 ? 0 : Double(cacheHits) / Double(cacheAccesses) }
        /// Latency of each job, in trace order.
        public var latencies: [Double]
        /// The replica (0-based) each job ran on, in trace order.
        public var placements: [Int] = []
    }

    public let stages: StageTimes

    public init(stages: StageTimes) { self.stages = stages }

    /// Compute seconds of a job (no loads).
    public func computeSeconds(_ job: Job) -> Double {
        stages.fixedS + Double(job.steps) * stages.denoiseStepS * Double(job.pixels) / Double(stages.referencePixels)
            * (1 + stages.controlnetStepFraction * Double(job.controlnets.count))
    }

    /// Arrival times scaled so the offered load is `utilization` of the replicas' compute capacity (loads excluded).
    public func scaled(_ jobs: [Job], utilization: Double, replicas: Int) -> [Job] {
        guard jobs.count > 1, let first = jobs.first?.arrival, let last = jobs.last?.arrival, last > first else { return jobs }
        let meanService = jobs.map(computeSeconds).reduce(0, +) / Double(jobs.count)
        let targetRate = utilization * Double(replicas) / meanService
        let traceRate = Double(jobs.count - 1) / (last - first)
        let factor = traceRate / targetRate
        return jobs.map {
            var job = $0; job.arrival = (job.arrival - first) * factor; return job
        }
    }

    private struct Cache {
        let capacity: Int
        var items: [(key: String, bytes: Int)] = []
        var keys: Set<String> = []
        var used = 0

        func holds(_ key: String) -> Bool { keys.contains(key) }

        /// Accesses `key`; true on a hit. A miss inserts it, evicting least recently used items (never `pinned`).
        mutating func access(_ key: String, bytes: Int, pinned: Set<String>) -> Bool {
            if keys.contains(key), let index = items.firstIndex(where: { $0.key == key }) {
                items.append(items.remove(at: index))
                return true
            }
            guard bytes <= capacity else { return false }
            var index = 0
            while used + bytes > capacity, index < items.count {
                if pinned.contains(items[index].key) {
                    index += 1
                    continue
                }
                used -= items[index].bytes
                keys.remove(items[index].key)
                items.remove(at: index)
            }
            if used + bytes <= capacity {
                items.append((key, bytes))
                keys.insert(key)
                used += bytes
            }
            return false
        }
    }

    private struct Replica {
        var cache: Cache
        var lastLoRAs: [String] = []
        var busyUntil = 0.0
        var running: Int?
        var queue: [Int] = []
        var queuedCompute = 0.0
    }

    private static func keys(_ job: Job) -> [String] {
        ["model:" + job.model] + job.loras.map { "lora:" + $0 } + job.controlnets.map { "controlnet:" + $0 }
    }

    public func run(_ jobs: [Job], options: Options) -> Result {
        precondition(options.replicas >= 1)
        let jobs = jobs.sorted { $0.arrival < $1.arrival }
        var replicas = Array(repeating: Replica(cache: Cache(capacity: options.cacheBytes)), count: options.replicas)
        var shared: [Int] = []
        var finish = [Double](repeating: 0, count: jobs.count)
        var placements = [Int](repeating: 0, count: jobs.count)
        var adapterLoads = 0, baseLoads = 0, hits = 0, accesses = 0
        var random = Xoshiro256StarStar(seed: options.seed)
        let window = 256
        // Affinity: the placement rule of the PostgreSQL store (`Placement`), replicas named replica-0, replica-1, ...
        let names = (0..<options.replicas).map { "replica-\($0)" }
        var ranksOfModel: [String: [Int]] = [:]
        let homeRanks = jobs.map { job in
            let ranks = ranksOfModel[job.model] ?? Placement.ranks(of: job.model, replicas: names)
            ranksOfModel[job.model] = ranks
            return ranks
        }
        let components = jobs.map(Self.keys)
        var wake: Double?
        func placementScore(_ index: Int, on r: Int, holdsAModel: Bool, starving: Bool) -> Placement.Score? {
            let keys = components[index]
            var fit = Placement.Fit(
                hasModel: !jobs[index].model.isEmpty, modelHeld: replicas[r].cache.holds(keys[0]), holdsAModel: holdsAModel,
                adaptersHeld: 0, homeRank: homeRanks[index][r])
            guard starving || fit.eligible else { return nil }
            fit.adaptersHeld = keys.dropFirst().reduce(0) { $0 + (replicas[r].cache.holds($1) ? 1 : 0) }
            return Placement.score(fit, starving: starving)
        }

        func start(_ index: Int, on r: Int, at now: Double) {
            let job = jobs[index]
            var seconds = computeSeconds(job)
            let pinned = Set(Self.keys(job))
            /// One cache access: a hit, or a miss that costs `loadSeconds`; true on a miss.
            func load(_ key: String, bytes: Int, loadSeconds: Double) -> Bool {
                accesses += 1
                if replicas[r].cache.access(key, bytes: bytes, pinned: pinned) {
                    hits += 1
                    return false
                }
                seconds += loadSeconds
                return true
            }
            if load("model:" + job.model, bytes: stages.baseModelBytes, loadSeconds: stages.baseModelLoadS) { baseLoads += 1 }
            for lora in job.loras where load("lora:" + lora, bytes: stages.loraBytes, loadSeconds: stages.loraLoadS) {
                adapterLoads += 1
            }
            for controlnet in job.controlnets
            where load("controlnet:" + controlnet, bytes: stages.controlnetBytes, loadSeconds: stages.controlnetLoadS) {
                adapterLoads += 1
            }
            let loras = job.loras.sorted()
            if !loras.isEmpty && loras != replicas[r].lastLoRAs { seconds += stages.loraPatchS * Double(loras.count) }
            replicas[r].lastLoRAs = loras
            replicas[r].running = index
            placements[index] = r
            replicas[r].busyUntil = now + seconds
            finish[index] = now + seconds
        }

        /// Starts queued work on idle replicas at `now`.
        func dispatch(at now: Double) {
            wake = nil
            switch options.policy {
            case .affinity:
                while !shared.isEmpty {
                    let idle = replicas.indices.filter { replicas[$0].running == nil }
                    guard !idle.isEmpty else { return }
                    let oldest = shared[0]
                    // (The same sum as the wake-up time below, so a wake-up always finds the job starving.)
                    let starving = now >= jobs[oldest].arrival + options.maximumWait
                    // The oldest job once it waited the maximum wait, else the best eligible (replica, job) pair.
                    let candidates = starving ? [oldest] : Array(shared.prefix(window))
                    var chosen: (job: Int, position: Int, replica: Int, score: Placement.Score)?
                    // Delay scheduling: a young job is not taken by a replica when another one fits it better
                    // (`Placement.leaves`); look again when the first such job's locality wait ends.
                    var deferredUntil = Double.infinity
                    var holdsAModel: [Int: Bool] = [:]
                    func holdsModel(_ r: Int) -> Bool {
                        if let known = holdsAModel[r] { return known }
                        let holds = replicas[r].cache.items.contains { $0.key.hasPrefix("model:") }
                        holdsAModel[r] = holds
                        return holds
                    }
                    for r in idle {
                        for (position, index) in candidates.enumerated() {
                            guard let score = placementScore(index, on: r, holdsAModel: holdsModel(r), starving: starving)
                            else { continue }
                            let until = jobs[index].arrival + options.localityWait
                            if !starving && now < until {
                                var idleScores: [Placement.Score] = [], busyScores: [Placement.Score] = []
                                for other in replicas.indices where other != r {
                                    guard let otherScore = placementScore(index, on: other, holdsAModel: holdsModel(other), starving: false)
                                    else { continue }
                                    if replicas[other].running == nil { idleScores.append(otherScore) } else { busyScores.append(otherScore) }
                                }
                                if Placement.leaves(score, toIdle: idleScores, busy: busyScores) {
                                    deferredUntil = min(deferredUntil, until)
                                    continue
                                }
                            }
                            if chosen == nil || chosen!.score < score { chosen = (index, position, r, score) }
                        }
                    }
                    guard let chosen else {
                        // Nothing eligible on the idle replicas: look again when the oldest job starves or a job left
                        // for another replica may run here.
                        wake = min(jobs[oldest].arrival + options.maximumWait, deferredUntil)
                        return
                    }
                    shared.remove(at: chosen.position)
                    start(chosen.job, on: chosen.replica, at: now)
                }
            case .random, .leastLoaded:
                for r in replicas.indices where replicas[r].running == nil && !replicas[r].queue.isEmpty {
                    let index = replicas[r].queue.removeFirst()
                    replicas[r].queuedCompute -= computeSeconds(jobs[index])
                    start(index, on: r, at: now)
                }
            }
        }

        var next = 0
        while true {
            // The next event: the earliest completion, or the next arrival (completions first at equal times).
            var completion: (time: Double, replica: Int)?
            for r in replicas.indices where replicas[r].running != nil {
                if completion == nil || replicas[r].busyUntil < completion!.time { completion = (replicas[r].busyUntil, r) }
            }
            // Affinity: a queued job starves (and may run anywhere) between events.
            if let time = wake, completion.map({ time < $0.time }) ?? true, next >= jobs.count || time < jobs[next].arrival {
                dispatch(at: time)
                continue
            }
            if let completion, next >= jobs.count || completion.time <= jobs[next].arrival {
                replicas[completion.replica].running = nil
                dispatch(at: completion.time)
                continue
            }
            guard next < jobs.count else { break }
            let now = jobs[next].arrival
            switch options.policy {
            case .affinity:
                shared.append(next)
            case .random:
                let r = Int.random(in: 0..<options.replicas, using: &random)
                replicas[r].queue.append(next)
                replicas[r].queuedCompute += computeSeconds(jobs[next])
            case .leastLoaded:
                let load = replicas.map { max(0, $0.busyUntil - now) * ($0.running == nil ? 0 : 1) + $0.queuedCompute }
                let r = load.indices.min { load[$0] < load[$1] }!
                replicas[r].queue.append(next)
                replicas[r].queuedCompute += computeSeconds(jobs[next])
            }
            next += 1
            dispatch(at: now)
        }

        let latencies = jobs.indices.map { finish[$0] - jobs[$0].arrival }
        let sorted = latencies.sorted()
        func quantile(_ q: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            // Nearest rank.
            let rank = Int((q * Double(sorted.count)).rounded(.up))
            return sorted[min(sorted.count - 1, max(0, rank - 1))]
        }
        let span = (finish.max() ?? 0) - (jobs.first?.arrival ?? 0)
        return Result(
            policy: options.policy, jobs: jobs.count, throughput: span > 0 ? Double(jobs.count) / span : 0, p50: quantile(0.5),
            p95: quantile(0.95), p99: quantile(0.99), adapterLoads: adapterLoads, baseModelLoads: baseLoads, cacheHits: hits,
            cacheAccesses: accesses, latencies: latencies, placements: placements)
    }
}
