import ArgumentParser
import Foundation
import Serving
import Traces

/// `swiftdiffusion trace simulate`: the capacity planner (docs/scale-out.md).
struct TraceSimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Capacity planner: a discrete-event simulation of N replicas serving a trace under each placement policy.",
        discussion: """
            Service times come from measured stage times (--stage-times FILE, JSON; default: the measurements in \
            docs/scale-out.md). Prints throughput, p50/p95/p99 latency, adapter loads and cache hit rate per policy.
            """)

    @Option(help: "The trace (JSONL, or CSV when it ends in .csv).") var trace: String
    @Option(help: "Replicas, each running one job at a time.") var replicas: Int
    @Option(help: "Bytes of base models, LoRAs and ControlNets each replica keeps (LRU).") var cacheBytes: Int
    @Option(help: "affinity, random or least-loaded; comma-separated for several (default: all three).")
    var placement = "affinity,random,least-loaded"
    @Option(help: "Stage times JSON (keys: docs/scale-out.md; default: measured on this engine).") var stageTimes: String?
    @Option(
        help:
            "Rescale arrivals so the offered compute is this fraction of the replicas' capacity (default: the trace's own times)."
    )
    var utilization: Double?
    @Option(help: "Affinity: seconds a job may be passed over before it runs next.") var maxWait = 30.0
    @Option(help: "Affinity: seconds a young job is left to a replica that holds more of it, busy or idle (serve --locality-wait).")
    var localityWait = Placement.defaultLocalityWait
    @Option(help: "Seed of random placement.") var seed: UInt64 = 1

    func run() throws {
        guard (1...100_000).contains(replicas) else { throw CLIError("--replicas must be between 1 and 100000") }
        guard cacheBytes >= 0 else { throw CLIError("--cache-bytes must be >= 0") }
        guard maxWait >= 0, maxWait.isFinite else { throw CLIError("--max-wait must be >= 0") }
        guard localityWait >= 0, localityWait.isFinite else { throw CLIError("--locality-wait must be >= 0") }
        if let utilization {
            guard utilization > 0, utilization <= 10 else { throw CLIError("--utilization must be in (0, 10]") }
        }
        var policies: [PlacementPolicy] = []
        for name in placement.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let policy = PlacementPolicy(rawValue: name) else {
                throw CLIError("unknown --placement '\(name)' (affinity, random, least-loaded)")
            }
            policies.append(policy)
        }
        guard !policies.isEmpty else { throw CLIError("--placement names no policy") }
        do {
            let stages = try stageTimes.map { path throws(TraceError) in try StageTimes.read(path: path) } ?? .measuredDefault
            let records = try TraceIO.read(path: trace).filter { $0.outcome != "rejected" }
            guard !records.isEmpty else { throw CLIError("\(trace): no requests") }
            let simulation = PlacementSimulation(stages: stages)
            var jobs = records.map { PlacementSimulation.Job($0, referencePixels: stages.referencePixels) }
            if let utilization { jobs = simulation.scaled(jobs, utilization: utilization, replicas: replicas) }
            print(
                "trace \(trace): \(jobs.count) jobs; \(replicas) replicas; cache \(cacheBytes) bytes each; max wait \(maxWait) s; locality wait \(localityWait) s")
            print("stage times: \(stageTimes ?? "measured default (docs/scale-out/stage-times-embedded.json)")")
            print("policy        throughput/s    p50 s    p95 s    p99 s  adapter_loads  base_loads  hit_rate")
            var results: [PlacementSimulation.Result] = []
            for policy in policies {
                let result = simulation.run(
                    jobs,
                    options: PlacementSimulation.Options(
                        replicas: replicas, cacheBytes: cacheBytes, policy: policy, maximumWait: maxWait, seed: seed,
                        localityWait: localityWait))
                results.append(result)
                print(
                    policy.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                        + String(
                            format: " %13.4f %8.3f %8.3f %8.3f %14d %11d %9.3f", result.throughput, result.p50, result.p95,
                            result.p99,
                            result.adapterLoads, result.baseModelLoads, result.hitRate))
            }
            if let affinity = results.first(where: { $0.policy == .affinity }) {
                for other in results where other.policy != .affinity && other.adapterLoads > 0 {
                    let loads = Double(affinity.adapterLoads) / Double(other.adapterLoads)
                    print(
                        "affinity vs \(other.policy.rawValue): "
                            + String(
                                format: "adapter loads %.2fx (%+.1f %%), p95 %.2fx", loads, 100 * (loads - 1),
                                affinity.p95 / max(other.p95, 1e-9)))
                }
            }
        } catch let error as TraceError {
            throw CLIError(error.description)
        }
    }
}
