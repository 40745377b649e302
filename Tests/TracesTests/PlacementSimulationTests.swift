import Foundation
import Serving
import XCTest

@testable import Traces

/// The capacity planner's simulation on traces small enough to check by hand.
final class PlacementSimulationTests: XCTestCase {
    /// Whole seconds: base model 10 s, LoRA 1 s, ControlNet 2 s to load; 1 s per step; nothing else. One byte each.
    private let stages = StageTimes(
        baseModelLoadS: 10, loraLoadS: 1, loraPatchS: 0, controlnetLoadS: 2, denoiseStepS: 1, referencePixels: 1,
        controlnetStepFraction: 0, fixedS: 0, baseModelBytes: 1, loraBytes: 1, controlnetBytes: 1, source: "test")

    private func job(
        _ arrival: Double, _ lora: String?, steps: Int = 1, controlnets: [String] = [], model: String = "m"
    ) -> PlacementSimulation.Job {
        PlacementSimulation.Job(
            arrival: arrival, model: model, loras: lora.map { [$0] } ?? [], controlnets: controlnets, steps: steps, pixels: 1)
    }

    /// The first of model-0, model-1, ... whose rendezvous home among the simulation's two replicas is `replica`.
    private func model(homedOn replica: Int) -> String {
        var index = 0
        while Placement.ranks(of: "model-\(index)", replicas: ["replica-0", "replica-1"])[replica] != 0 { index += 1 }
        return "model-\(index)"
    }

    /// Delay scheduling (`Placement.leaves`, the store's claims): a replica leaves a job to an idle replica that fits it
    /// strictly better (more of its adapters held, its model held, or the model's better home), never to an equal or
    /// worse one; to a busy one only when it holds strictly more of the job (not for a better home alone).
    func testAReplicaLeavesAJobOnlyToABetterReplica() {
        let mine = Placement.Score(modelHeld: true, adaptersHeld: 0, homeRank: 1)
        let moreAdapters = Placement.Score(modelHeld: true, adaptersHeld: 1, homeRank: 1)
        let betterHome = Placement.Score(modelHeld: true, adaptersHeld: 0, homeRank: 0)
        XCTAssertTrue(Placement.leaves(mine, toIdle: [moreAdapters]))
        XCTAssertTrue(Placement.leaves(mine, toIdle: [], busy: [moreAdapters]))
        XCTAssertTrue(Placement.leaves(mine, toIdle: [betterHome]))
        XCTAssertFalse(Placement.leaves(mine, toIdle: [], busy: [betterHome]), "a busy home that holds no more is not waited for")
        XCTAssertFalse(Placement.leaves(mine, toIdle: [mine], busy: [mine]))
        XCTAssertFalse(Placement.leaves(mine, toIdle: [Placement.Score(modelHeld: false, adaptersHeld: 3, homeRank: 0)]))
        XCTAssertFalse(Placement.leaves(mine, toIdle: []))
        let holdsLess = Placement.Score(modelHeld: false, adaptersHeld: 0, homeRank: 0)
        XCTAssertTrue(Placement.leaves(holdsLess, toIdle: [], busy: [mine]))
    }

    func testOneReplicaByHand() {
        let jobs = [job(0, "a", steps: 2), job(1, "a", steps: 2), job(20, "b", controlnets: ["c"])]
        let result = PlacementSimulation(stages: stages).run(
            jobs, options: .init(replicas: 1, cacheBytes: 100, policy: .affinity))
        // j0: 10 (model) + 1 (a) + 2 steps = 13, done at 13. j1 waits, runs 13..15 (all cached): latency 14.
        // j2: 1 (b) + 2 (c) + 1 step = 4, runs 20..24.
        XCTAssertEqual(result.latencies, [13, 14, 4])
        XCTAssertEqual(result.p50, 13)
        XCTAssertEqual(result.p99, 14)
        XCTAssertEqual(result.adapterLoads, 3)
        XCTAssertEqual(result.baseModelLoads, 1)
        XCTAssertEqual(result.cacheAccesses, 7)
        XCTAssertEqual(result.cacheHits, 3)
        XCTAssertEqual(result.throughput, 3.0 / 24, accuracy: 1e-12)
    }

    func testTheCacheIsBoundedInBytesAndLRU() {
        // Room for the model and one LoRA: a, b, a reloads a.
        let jobs = [job(0, "a"), job(100, "b"), job(200, "a")]
        let result = PlacementSimulation(stages: stages).run(jobs, options: .init(replicas: 1, cacheBytes: 2, policy: .random))
        XCTAssertEqual(result.adapterLoads, 3)
        XCTAssertEqual(result.baseModelLoads, 1, "the running job's model is never evicted for its own LoRA")
        let roomy = PlacementSimulation(stages: stages).run(jobs, options: .init(replicas: 1, cacheBytes: 3, policy: .random))
        XCTAssertEqual(roomy.adapterLoads, 2)
    }

    func testAffinityGroupsByHeldAdaptersUntilTheMaximumWait() {
        // a, b, a, b all at once on one replica that holds one LoRA.
        let jobs = [job(0, "a"), job(0, "b"), job(0, "a"), job(0, "b")]
        let simulation = PlacementSimulation(stages: stages)
        let grouped = simulation.run(jobs, options: .init(replicas: 1, cacheBytes: 2, policy: .affinity, maximumWait: 1000))
        XCTAssertEqual(grouped.adapterLoads, 2, "a, a, b, b")
        // j0: 10+1+1 = 12; j2 (a, held): 13; j1 (b): 15; j3: 16.
        XCTAssertEqual(grouped.latencies, [12, 15, 13, 16])
        // A maximum wait of 0: every job is overdue, so the oldest goes first: FIFO, a load per job.
        let fifo = simulation.run(jobs, options: .init(replicas: 1, cacheBytes: 2, policy: .affinity, maximumWait: 0))
        XCTAssertEqual(fifo.adapterLoads, 4)
        XCTAssertEqual(fifo.latencies, [12, 14, 16, 18])
    }

    func testAffinitySendsAJobToTheReplicaHoldingItsLoRA() {
        // Two empty replicas warmed with a (on m's home, the better rank) and b (on the other, empty one); then a
        // b-job and an a-job arrive while both are idle and both hold m.
        let jobs = [job(0, "a"), job(0, "b"), job(100, "b"), job(100, "a")]
        let affinity = PlacementSimulation(stages: stages).run(
            jobs, options: .init(replicas: 2, cacheBytes: 2, policy: .affinity))
        XCTAssertEqual(affinity.adapterLoads, 2)
        XCTAssertEqual(affinity.baseModelLoads, 2)
        // The b-job at 0 waits the locality wait (1 s) for the busy home, which holds m from its start, then runs on
        // the empty replica.
        XCTAssertEqual(affinity.latencies, [12, 13, 1, 1], "both later jobs ran where their LoRA was held")
        let home = Placement.ranks(of: "m", replicas: ["replica-0", "replica-1"]).firstIndex(of: 0)!
        XCTAssertEqual(affinity.placements, [home, 1 - home, 1 - home, home])
    }

    /// Delay scheduling waits for a busy replica that holds a young job's model and LoRA, for at most the locality
    /// wait; with a locality wait of 0 the idle replica takes the job and loads both.
    func testAYoungJobWaitsForTheBusyReplicaHoldingItsLoRA() {
        let home = Placement.ranks(of: "m", replicas: ["replica-0", "replica-1"]).firstIndex(of: 0)!
        // j0 warms m's home with m and a (10 + 1 + 1 s); j1 runs there 30..31; j2 arrives at 30.5 while the home is
        // busy: the empty replica leaves it until 31.5, the home frees at 31 and runs it 31..32.
        let jobs = [job(0, "a"), job(30, "a"), job(30.5, "a")]
        let simulation = PlacementSimulation(stages: stages)
        let delayed = simulation.run(jobs, options: .init(replicas: 2, cacheBytes: 2, policy: .affinity))
        XCTAssertEqual(delayed.placements, [home, home, home])
        XCTAssertEqual(delayed.latencies, [12, 1, 1.5])
        XCTAssertEqual(delayed.adapterLoads, 1)
        XCTAssertEqual(delayed.baseModelLoads, 1)
        let eager = simulation.run(jobs, options: .init(replicas: 2, cacheBytes: 2, policy: .affinity, localityWait: 0))
        XCTAssertEqual(eager.placements, [home, home, 1 - home])
        XCTAssertEqual(eager.latencies, [12, 1, 12])
        XCTAssertEqual(eager.adapterLoads, 2)
        XCTAssertEqual(eager.baseModelLoads, 2)
        // A locality wait shorter than the busy job's remainder: the job waits 0.25 s, then the empty replica takes it.
        let short = simulation.run(jobs, options: .init(replicas: 2, cacheBytes: 2, policy: .affinity, localityWait: 0.25))
        XCTAssertEqual(short.placements, [home, home, 1 - home])
        XCTAssertEqual(short.latencies, [12, 1, 12.25])
    }

    func testRendezvousHomesPartitionBaseModelsAcrossReplicas() {
        let a = model(homedOn: 0), b = model(homedOn: 1)
        XCTAssertEqual(Placement.ranks(of: a, replicas: ["replica-0", "replica-1"]), [0, 1])
        XCTAssertEqual(Placement.ranks(of: b, replicas: ["replica-0", "replica-1"]), [1, 0])
        // Empty replicas take anything, the job's home first: b to replica-1, a to replica-0. Then each takes the jobs
        // of the model it holds; at 300 two a-jobs arrive at once and the second waits for replica-0 rather than
        // evict b on replica-1 (neither a's home nor holding a).
        let jobs = [
            job(0, "x", model: b), job(0, "y", model: a), job(100, "y", model: a), job(100, "x", model: b),
            job(200, "x", model: b), job(200, "y", model: a), job(300, "y", model: a), job(300, "z", model: a),
        ]
        let simulation = PlacementSimulation(stages: stages)
        let result = simulation.run(jobs, options: .init(replicas: 2, cacheBytes: 2, policy: .affinity, maximumWait: 1000))
        XCTAssertEqual(result.placements, [1, 0, 0, 1, 1, 0, 0, 0])
        XCTAssertEqual(result.baseModelLoads, 2)
        XCTAssertEqual(result.adapterLoads, 3)
        // 10 (model) + 1 (LoRA) + 1 step; then 1 step each; the last waits 1 s, loads z and runs 1 step.
        XCTAssertEqual(result.latencies, [12, 12, 1, 1, 1, 1, 1, 3])
        // The starvation bound: with a maximum wait of 0.5 s the last job runs on replica-1 at 300.5 instead
        // (loading a and z: 0.5 + 10 + 1 + 1).
        let bounded = simulation.run(jobs, options: .init(replicas: 2, cacheBytes: 2, policy: .affinity, maximumWait: 0.5))
        XCTAssertEqual(bounded.placements, [1, 0, 0, 1, 1, 0, 0, 1])
        XCTAssertEqual(bounded.latencies.last, 12.5)
        XCTAssertEqual(bounded.baseModelLoads, 3)
    }

    func testWhileTheHomeIsBusyAHolderOfTheModelTakesTheJob() {
        let a = model(homedOn: 0), b = model(homedOn: 1)
        // Room for one model. replica-1 takes the b-job (its home), replica-0 a long a-job (its home), 0..110. An
        // a-job at 20 finds replica-1 idle but holding b: it waits for its maximum wait (5 s), then runs there (10 +
        // 1), and from then on replica-1 holds a, so the a-job at 40 runs there at once.
        let jobs = [job(0, nil, model: b), job(0, nil, steps: 100, model: a), job(20, nil, model: a), job(40, nil, model: a)]
        let simulation = PlacementSimulation(stages: stages)
        let bounded = simulation.run(jobs, options: .init(replicas: 2, cacheBytes: 1, policy: .affinity, maximumWait: 5))
        XCTAssertEqual(bounded.placements, [1, 0, 1, 1])
        XCTAssertEqual(bounded.latencies, [11, 110, 16, 1])
        XCTAssertEqual(bounded.baseModelLoads, 3)
        // With a long maximum wait both a-jobs wait for a's home: 110..111 and 111..112.
        let patient = simulation.run(jobs, options: .init(replicas: 2, cacheBytes: 1, policy: .affinity, maximumWait: 1000))
        XCTAssertEqual(patient.placements, [1, 0, 0, 0])
        XCTAssertEqual(patient.latencies, [11, 110, 91, 72])
        XCTAssertEqual(patient.baseModelLoads, 2)
    }

    func testLeastLoadedBalancesWork() {
        // A long job, then two short ones at once: least-loaded puts both on the free replica; random may not.
        let jobs = [job(0, nil, steps: 100), job(1, nil), job(1, nil)]
        let result = PlacementSimulation(stages: stages).run(
            jobs, options: .init(replicas: 2, cacheBytes: 10, policy: .leastLoaded))
        // Replica 2: j1 1..12 (model load + 1 step), j2 12..13.
        XCTAssertEqual(result.latencies, [110, 11, 12])
    }

    func testRandomPlacementIsReproducibleBySeed() {
        let jobs = (0..<200).map { job(Double($0), "l\($0 % 7)") }
        let simulation = PlacementSimulation(stages: stages)
        let first = simulation.run(jobs, options: .init(replicas: 4, cacheBytes: 3, policy: .random, seed: 5))
        let again = simulation.run(jobs, options: .init(replicas: 4, cacheBytes: 3, policy: .random, seed: 5))
        XCTAssertEqual(first, again)
        XCTAssertEqual(first.latencies.count, 200)
    }

    func testUtilizationScalingSetsTheArrivalRate() {
        // Mean compute 2 s; 4 replicas at 50 %: one arrival per second.
        let jobs = (0..<11).map { job(Double($0) * 10, nil, steps: 2) }
        let scaled = PlacementSimulation(stages: stages).scaled(jobs, utilization: 0.5, replicas: 4)
        for (index, job) in scaled.enumerated() { XCTAssertEqual(job.arrival, Double(index), accuracy: 1e-9) }
    }

    func testStageTimesFilesAreCheckedAndTheDefaultRoundTrips() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("stage-times-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let good = folder.appendingPathComponent("good.json")
        try JSONEncoder().encode(StageTimes.measuredDefault).write(to: good)
        XCTAssertEqual(try StageTimes.read(path: good.path), .measuredDefault)
        let bad = folder.appendingPathComponent("bad.json")
        try Data(#"{"base_model_load_s": 1}"#.utf8).write(to: bad)
        XCTAssertThrowsError(try StageTimes.read(path: bad.path)) {
            XCTAssertTrue("\($0)".contains("not a stage-times file"), "\($0)")
        }
        var negative = StageTimes.measuredDefault
        negative.loraLoadS = -1
        try JSONEncoder().encode(negative).write(to: bad)
        XCTAssertThrowsError(try StageTimes.read(path: bad.path)) { XCTAssertTrue("\($0)".contains(">= 0"), "\($0)") }
        XCTAssertThrowsError(try StageTimes.read(path: folder.appendingPathComponent("none.json").path))
    }
}

/// The planner's built-in stage times are the measured file in docs/, not numbers of their own.
final class StageTimesDefaultTests: XCTestCase {
    func testTheDefaultIsTheMeasuredFile() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var measured = try StageTimes.read(path: root.appendingPathComponent("docs/scale-out/stage-times-embedded.json").path)
        measured.source = StageTimes.measuredDefault.source
        XCTAssertEqual(measured, StageTimes.measuredDefault)
    }
}
