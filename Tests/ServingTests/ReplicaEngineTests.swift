import Foundation
import XCTest

@testable import Serving

/// Several engines (replicas) in this process on one PostgreSQL database: every job runs to completion exactly
/// once, events reach subscribers on any replica, admission counts the shared queue, and a dead replica's job is
/// finished by another after its lease expires.
final class ReplicaEngineTests: XCTestCase {
    private var schemas: [String] = []

    /// A job that runs for seconds: 150 steps at 64x64.
    static var long: JobSpec {
        var spec = ServingFixtures.spec("long", steps: 150)
        spec.width = 64
        spec.height = 64
        return spec
    }

    override func tearDown() async throws {
        for schema in schemas { await PostgresTestDatabase.drop(schema) }
        schemas = []
    }

    private func replicas(
        _ count: Int, lease: Double = 2, capacity: Int = 64, localityWait: Double = Placement.defaultLocalityWait
    ) async throws -> (url: String, engines: [GenerationEngine]) {
        let (url, schema) = try await PostgresTestDatabase.freshURL()
        schemas.append(schema)
        var engines: [GenerationEngine] = []
        for index in 0..<count {
            var configuration = EngineConfiguration()
            configuration.queueCapacity = capacity
            configuration.placement.localityWait = localityWait
            let store = try await PostgresTestDatabase.store(url, replica: "replica-\(index)", lease: lease)
            engines.append(ServingFixtures.engine(configuration: configuration, store: store))
        }
        return (url, engines)
    }

    func testThreeReplicasRunEveryJobExactlyOnce() async throws {
        let (_, engines) = try await replicas(3)
        let running = engines.map(RunningEngine.init)
        for replica in running { try await replica.waitUntilReady() }
        // Submitted through every replica, subscribed on a different one than the one it was submitted to.
        var jobs: [(JobRecord, AsyncStream<JobEvent>)] = []
        for index in 0..<24 {
            let loras = index % 3 == 0 ? [LoRASpec(name: "sd1-lora", weight: 0.5)] : []
            let job = try await engines[index % 3].submit(
                ServingFixtures.spec("job \(index)", steps: 2, seed: UInt64(index), loras: loras))
            jobs.append((job, try await engines[(index + 1) % 3].events(job.id)))
        }
        for (job, stream) in jobs {
            let events = try await withTimeout(seconds: 120) { await stream.reduce(into: [JobEvent]()) { $0.append($1) } }
            XCTAssertEqual(events.filter(\.isTerminal).map(\.type), ["completed"], "one terminal event for \(job.spec.prompt)")
            // The first event is the state read at subscription (it may already say `started`).
            XCTAssertLessThanOrEqual(
                events.dropFirst().filter { $0.type == "started" }.count, 1, "started once: \(job.spec.prompt)")
            let finished = try await engines[2].job(job.id)
            XCTAssertEqual(finished.status, .succeeded, finished.error ?? "")
            XCTAssertEqual(finished.attempts, 1, "run once: \(job.spec.prompt)")
            let outputs = try await engines[0].outputs(job.id)
            XCTAssertEqual(outputs.count, 1)
        }
        var claims = 0
        for engine in engines { claims += await engine.placementStats?.claims ?? 0 }
        XCTAssertEqual(claims, 24, "every job claimed once across the replicas")
        let counts = try await engines[0].counts()
        XCTAssertEqual(counts, [.succeeded: 24])
        for replica in running { try await replica.stop() }
    }

    func testProgressEventsReachASubscriberOnAnotherReplica() async throws {
        // No delay scheduling: the idle second replica must take the short job at once rather than leave it for up to
        // the locality wait to the busy first one (which holds the model), or the long job may end before its cancel.
        let (_, engines) = try await replicas(2, localityWait: 0)
        let busy = engines[0], worker = engines[1]
        let runningBusy = RunningEngine(busy)
        try await runningBusy.waitUntilReady()
        // The first replica is busy with a long job, so the second one runs the next.
        let long = try await busy.submit(Self.long)
        try await busy.waitUntilStep(long.id, 1)
        let runningWorker = RunningEngine(worker)
        try await runningWorker.waitUntilReady()
        let job = try await busy.submit(ServingFixtures.spec("short", steps: 4))
        let stream = try await busy.events(job.id)
        let events = try await withTimeout(seconds: 60) { await stream.reduce(into: [JobEvent]()) { $0.append($1) } }
        XCTAssertEqual(events.last?.type, "completed")
        XCTAssertEqual(
            events.filter { $0.type == "step" }.compactMap(\.step), [1, 2, 3, 4], "step events from the other replica")
        let workerClaims = await worker.placementStats?.claims
        XCTAssertEqual(workerClaims, 1, "the short job ran on the second replica")
        _ = try await busy.cancel(long.id)
        let cancelled = try await busy.waitUntilFinished(long.id)
        XCTAssertEqual(cancelled.status, .cancelled)
        try await runningBusy.stop()
        try await runningWorker.stop()
    }

    func testACancelOnAnotherReplicaStopsTheRunningJob() async throws {
        let (_, engines) = try await replicas(2, lease: 1)
        let runner = RunningEngine(engines[0])
        try await runner.waitUntilReady()
        let job = try await engines[0].submit(Self.long)
        try await engines[0].waitUntilStep(job.id, 1)
        // The second replica joins once the first runs the job; it only relays the cancel and hears the outcome.
        let other = RunningEngine(engines[1])
        try await other.waitUntilReady()
        let answer = try await engines[1].cancel(job.id)
        XCTAssertEqual(answer.status, .running, "running elsewhere: stopped at its owner's next heartbeat")
        let stream = try await engines[1].events(job.id)
        let events = try await withTimeout(seconds: 30) { await stream.reduce(into: [JobEvent]()) { $0.append($1) } }
        XCTAssertEqual(events.last?.type, "cancelled")
        let finished = try await engines[1].job(job.id)
        XCTAssertEqual(finished.status, .cancelled)
        XCTAssertLessThan(finished.progress.step, 150)
        try await runner.stop()
        try await other.stop()
    }

    func testAdmissionCountsTheSharedQueue() async throws {
        let (_, engines) = try await replicas(2, capacity: 3)
        // No replica runs: the jobs stay queued.
        _ = try await engines[0].submit(ServingFixtures.spec("1"))
        _ = try await engines[1].submit(ServingFixtures.spec("2"))
        _ = try await engines[0].submit(ServingFixtures.spec("3"))
        for engine in engines {
            do {
                _ = try await engine.submit(ServingFixtures.spec("over"))
                XCTFail("a replica admitted a job past the shared capacity")
            } catch EngineError.queueFull(let retryAfter) {
                XCTAssertGreaterThanOrEqual(retryAfter, 1)
            }
        }
        let depth = await engines[1].queueDepth
        XCTAssertEqual(depth, 3)
    }

    func testADeadReplicasJobIsFinishedByAnotherAfterItsLease() async throws {
        let (url, engines) = try await replicas(1, lease: 1)
        // A replica that claimed a job and died: it never renews the lease.
        let dead = try await PostgresTestDatabase.store(url, replica: "dead", lease: 1)
        var orphan = JobRecord(id: UUID().uuidString.lowercased(), spec: ServingFixtures.spec("orphan", steps: 2))
        orphan.spec.model = "sd1"
        try await dead.insert(orphan)
        let claim = try await dead.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(claim.job?.id, orphan.id)
        let start = Date()
        let survivor = RunningEngine(engines[0])
        let finished = try await engines[0].waitUntilFinished(orphan.id, seconds: 30)
        XCTAssertEqual(finished.status, .succeeded)
        XCTAssertEqual(finished.attempts, 2)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.5, "taken over only after the lease expired")
        XCTAssertLessThan(Date().timeIntervalSince(start), 10, "taken over soon after the lease expired")
        // The dead replica's late completion is refused.
        var late = claim.job!
        late.status = .failed
        late.finishedAt = Date()
        let refused = try await dead.finish(late, images: [])
        XCTAssertFalse(refused)
        let stored = try await engines[0].job(orphan.id)
        XCTAssertEqual(stored.status, .succeeded)
        try await survivor.stop()
    }

    func testAReplicaPrefersJobsOfTheAdaptersItHolds() async throws {
        let (_, engines) = try await replicas(1)
        let engine = engines[0]
        // Alternating LoRAs, all queued before the replica starts; it runs those of the LoRA it holds together.
        var ids: [String] = []
        for index in 0..<6 {
            let lora = index % 2 == 0 ? "sd1-lora" : "sd1-lora-b"
            ids.append(try await engine.submit(ServingFixtures.spec("\(index)", steps: 1, loras: [LoRASpec(name: lora)])).id)
        }
        let running = RunningEngine(engine)
        var order: [(Date, String)] = []
        for id in ids {
            let job = try await engine.waitUntilFinished(id, seconds: 60)
            XCTAssertEqual(job.status, .succeeded)
            order.append((job.startedAt!, job.spec.loras[0].name))
        }
        let sequence = order.sorted { $0.0 < $1.0 }.map(\.1)
        let switches = zip(sequence, sequence.dropFirst()).filter { $0 != $1 }.count
        XCTAssertEqual(switches, 1, "grouped by held LoRA: \(sequence)")
        let stats = await engine.placementStats
        XCTAssertEqual(stats?.claims, 6)
        XCTAssertEqual(stats?.affinityHits, 4, "after the first job of each LoRA, the rest needed no load")
        let advertised = try await engine.replicas()
        XCTAssertEqual(advertised.count, 1)
        try await running.stop()
    }
}

extension RunningEngine {
    /// Waits until the engine runs jobs (a replica: listens to the other replicas' events).
    func waitUntilReady(seconds: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await engine.isReady { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TimeoutError(description: "the engine was not ready within \(seconds) s")
    }
}
