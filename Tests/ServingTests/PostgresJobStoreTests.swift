import Foundation
import XCTest

@testable import Serving

/// The PostgreSQL job store against a real server: the `JobStore` semantics, leases, guarded completion,
/// placement, and several engines (replicas) on one database.
final class PostgresJobStoreTests: XCTestCase {
    private var schemas: [String] = []

    override func tearDown() async throws {
        for schema in schemas { await PostgresTestDatabase.drop(schema) }
        schemas = []
    }

    private func freshURL(file: StaticString = #filePath, line: UInt = #line) async throws -> String {
        let (url, schema) = try await PostgresTestDatabase.freshURL(file: file, line: line)
        schemas.append(schema)
        return url
    }

    private func job(_ prompt: String, loras: [String] = [], model: String = "sd1", created: Date = Date()) -> JobRecord {
        var spec = ServingFixtures.spec(prompt, loras: loras.map { LoRASpec(name: $0) })
        spec.model = model
        return JobRecord(id: UUID().uuidString.lowercased(), spec: spec, createdAt: created)
    }

    func testMigrationsAreVersionedAndRunOnce() async throws {
        let url = try await freshURL()
        let first = try await PostgresTestDatabase.store(url, replica: "a")
        let version = try await first.schemaVersion()
        XCTAssertEqual(version, PostgresJobStore.migrations.map(\.version).max())
        // Connecting again (another replica) applies nothing twice and keeps the data.
        let record = job("kept", created: Date(timeIntervalSince1970: 5_000))
        try await first.insert(record)
        let second = try await PostgresTestDatabase.store(url, replica: "b")
        let again = try await second.schemaVersion()
        XCTAssertEqual(again, version)
        let kept = try await second.job(id: record.id)
        XCTAssertEqual(kept, record)
    }

    func testTheJobStoreSemanticsMatchTheOtherStores() async throws {
        let store = try await PostgresTestDatabase.store(try await freshURL(), replica: "a")
        let old = job("old", created: Date(timeIntervalSince1970: 1_000))
        let new = job("new", created: Date(timeIntervalSince1970: 2_000))
        try await store.insert(new)
        try await store.insert(old)
        let unfinished = try await store.unfinishedJobs()
        XCTAssertEqual(unfinished.map(\.id), [old.id, new.id], "oldest first")
        var finished = old
        finished.status = .cancelled
        finished.finishedAt = Date(timeIntervalSince1970: 3_000)
        try await store.update(finished)
        let read = try await store.job(id: old.id)
        XCTAssertEqual(read, finished)
        // A finished job is not written again.
        do {
            try await store.update(finished)
            XCTFail("a finished job was updated")
        } catch JobStoreError.notLeaseOwner {}
        try await store.saveOutputs(jobID: new.id, images: [Data([1, 2]), Data([3])])
        let outputs = try await store.outputs(jobID: new.id)
        XCTAssertEqual(outputs, [Data([1, 2]), Data([3])])
        let counts = try await store.counts()
        XCTAssertEqual(counts, [.queued: 1, .cancelled: 1])
        let removed = try await store.deleteFinished(before: Date(timeIntervalSince1970: 4_000))
        XCTAssertEqual(removed, 1)
        let gone = try await store.job(id: old.id)
        XCTAssertNil(gone)
        let missing = try await store.job(id: "nope")
        XCTAssertNil(missing)
    }

    func testAdmissionIsBoundedByTheSharedQueue() async throws {
        let url = try await freshURL()
        let a = try await PostgresTestDatabase.store(url, replica: "a")
        let b = try await PostgresTestDatabase.store(url, replica: "b")
        // Twelve concurrent admissions through two replicas into a queue of five: exactly five get in.
        let admitted = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<12 {
                let store = index % 2 == 0 ? a : b
                let record = job("job \(index)")
                group.addTask { try await store.insertIfRoom(record, capacity: 5) != nil }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        XCTAssertEqual(admitted, 5)
        let queued = try await a.queuedCount()
        XCTAssertEqual(queued, 5)
    }

    func testOnlyTheLeaseOwnerCompletesAJobAndOnlyOnce() async throws {
        let url = try await freshURL()
        let a = try await PostgresTestDatabase.store(url, replica: "a")
        let b = try await PostgresTestDatabase.store(url, replica: "b")
        let record = job("once")
        try await a.insert(record)
        let claimed = try await a.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 3)
        var running = try XCTUnwrap(claimed.job)
        XCTAssertEqual(running.status, .running)
        XCTAssertEqual(running.attempts, 1)
        let lease = try await a.lease(of: record.id)
        XCTAssertEqual(lease?.owner, "a")
        // Nothing left for b; b may neither write the running job nor complete it.
        let nothing = try await b.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 3)
        XCTAssertNil(nothing.job)
        do {
            try await b.update(running)
            XCTFail("a replica without the lease wrote the running job")
        } catch JobStoreError.notLeaseOwner {}
        running.status = .succeeded
        running.finishedAt = Date()
        running.imageCount = 1
        let stolen = try await b.finish(running, images: [Data([9])])
        XCTAssertFalse(stolen)
        let won = try await a.finish(running, images: [Data([7])])
        XCTAssertTrue(won)
        let twice = try await a.finish(running, images: [Data([8])])
        XCTAssertFalse(twice, "completion is written once")
        let images = try await a.outputs(jobID: record.id)
        XCTAssertEqual(images, [Data([7])])
        let stored = try await b.job(id: record.id)
        XCTAssertEqual(stored?.status, .succeeded)
    }

    func testAnExpiredLeaseIsTakenOverAndTheOldOwnerIsShutOut() async throws {
        let url = try await freshURL()
        let dying = try await PostgresTestDatabase.store(url, replica: "dying", lease: 0.5)
        let survivor = try await PostgresTestDatabase.store(url, replica: "survivor", lease: 0.5)
        let record = job("orphan")
        try await dying.insert(record)
        let first = try await dying.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 3)
        XCTAssertNotNil(first.job)
        // While the lease runs, nobody else gets the job; heartbeats keep it.
        let early = try await survivor.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 3)
        XCTAssertNil(early.job)
        let renewed = try await dying.renewLeases([record.id])
        XCTAssertEqual(renewed, [record.id: false])
        // The owner stops renewing (it died): after the lease time the survivor takes the job over.
        try await Task.sleep(for: .milliseconds(700))
        let takeover = try await survivor.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 3)
        var taken = try XCTUnwrap(takeover.job, "the expired lease was not taken over")
        XCTAssertEqual(taken.attempts, 2)
        let owner = try await survivor.lease(of: record.id)?.owner
        XCTAssertEqual(owner, "survivor")
        // The old owner comes back: its lease is gone and its completion is refused.
        let lost = try await dying.renewLeases([record.id])
        XCTAssertEqual(lost, [:])
        var late = first.job!
        late.status = .succeeded
        late.finishedAt = Date()
        let refused = try await dying.finish(late, images: [Data([1])])
        XCTAssertFalse(refused)
        taken.status = .succeeded
        taken.finishedAt = Date()
        let accepted = try await survivor.finish(taken, images: [Data([2])])
        XCTAssertTrue(accepted)
        let images = try await survivor.outputs(jobID: record.id)
        XCTAssertEqual(images, [Data([2])])
    }

    func testAJobWhoseReplicasKeepDyingIsFailedAsPoison() async throws {
        let url = try await freshURL()
        let store = try await PostgresTestDatabase.store(url, replica: "a", lease: 0.2)
        let record = job("poison")
        try await store.insert(record)
        for attempt in 1...2 {
            let claim = try await store.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 2)
            XCTAssertEqual(claim.job?.attempts, attempt)
            try await Task.sleep(for: .milliseconds(300))
        }
        let last = try await store.claim(holdings: ReplicaHoldings(), maximumWait: 30, maximumAttempts: 2)
        XCTAssertNil(last.job)
        XCTAssertEqual(last.poisoned.map(\.id), [record.id])
        let stored = try await store.job(id: record.id)
        XCTAssertEqual(stored?.status, .failed)
        XCTAssertTrue(stored?.error?.contains("poison job") == true)
    }

    func testCancellingAQueuedJobIsImmediateAndARunningOneIsFlaggedForItsOwner() async throws {
        let url = try await freshURL()
        let a = try await PostgresTestDatabase.store(url, replica: "a")
        let b = try await PostgresTestDatabase.store(url, replica: "b")
        let queued = job("queued", created: Date(timeIntervalSince1970: 2_000))
        let running = job("running", created: Date(timeIntervalSince1970: 1_000))
        try await a.insert(running)
        try await a.insert(queued)
        _ = try await a.claim(holdings: ReplicaHoldings(), maximumWait: 0, maximumAttempts: 3)
        let cancelled = try await b.cancel(id: queued.id)
        XCTAssertEqual(cancelled?.status, .cancelled)
        let flagged = try await b.cancel(id: running.id)
        XCTAssertEqual(flagged?.status, .running)
        let renewal = try await a.renewLeases([running.id])
        XCTAssertEqual(renewal, [running.id: true], "the owner learns of the cancel at its heartbeat")
        let finishedAlready = try await b.cancel(id: queued.id)
        XCTAssertNil(finishedAlready)
    }

    func testPlacementPrefersHeldAdaptersButNotPastTheMaximumWait() async throws {
        let url = try await freshURL()
        let store = try await PostgresTestDatabase.store(url, replica: "a")
        let oldest = job("lora a", loras: ["sd1-lora"], created: Date(timeIntervalSince1970: 1_000))
        try await store.insert(oldest)
        try await Task.sleep(for: .milliseconds(20))
        let held = job("lora b", loras: ["sd1-lora-b"], created: Date(timeIntervalSince1970: 2_000))
        try await store.insert(held)
        let holdings = ReplicaHoldings(models: ["sd1"], adapters: ["lora:sd1-lora-b"])
        let affine = try await store.claim(holdings: holdings, maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(affine.job?.id, held.id, "the job whose LoRA is held goes first")
        XCTAssertEqual(affine.held, 2)
        XCTAssertEqual(affine.missing, 0)
        // Same choice again, but the oldest job has waited past the maximum: it goes first whatever is held.
        let third = job("lora b again", loras: ["sd1-lora-b"])
        try await store.insert(third)
        let fair = try await store.claim(holdings: holdings, maximumWait: 0.01, maximumAttempts: 3)
        XCTAssertEqual(fair.job?.id, oldest.id, "no job starves past the maximum wait")
        XCTAssertEqual(fair.held, 1)
        XCTAssertEqual(fair.missing, 1)
    }

    func testTwoReplicasSplitJobsByTheirModelsHome() async throws {
        let url = try await freshURL()
        let a = try await PostgresTestDatabase.store(url, replica: "a")
        let b = try await PostgresTestDatabase.store(url, replica: "b")
        // Models whose rendezvous home among the live replicas a and b is a, resp. b.
        func model(homedOn replica: Int) -> String {
            var index = 0
            while Placement.ranks(of: "model-\(index)", replicas: ["a", "b"])[replica] != 0 { index += 1 }
            return "model-\(index)"
        }
        let onA = model(homedOn: 0), onB = model(homedOn: 1)
        // Both replicas are live and hold some other model (an empty replica would take anything).
        let warm = ReplicaHoldings(models: ["warm"])
        _ = try await a.advertise(warm, stats: ReplicaStats())
        let live = try await b.advertise(warm, stats: ReplicaStats())
        XCTAssertEqual(live, 2)
        let forB = job("b's", model: onB, created: Date(timeIntervalSince1970: 1_000))
        let forA = job("a's", model: onA, created: Date(timeIntervalSince1970: 2_000))
        let forBAgain = job("b's again", model: onB, created: Date(timeIntervalSince1970: 3_000))
        for record in [forB, forA, forBAgain] {
            try await a.insert(record)
            try await Task.sleep(for: .milliseconds(20))
        }
        // a passes over the older b-jobs for the job of its home model; then nothing is left for it.
        let first = try await a.claim(holdings: warm, maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(first.job?.id, forA.id)
        XCTAssertEqual(first.held, 0)
        XCTAssertEqual(first.missing, 1)
        let none = try await a.claim(holdings: warm, maximumWait: 30, maximumAttempts: 3)
        XCTAssertNil(none.job, "b's jobs wait for b (or a holder of b's model) until the maximum wait")
        let second = try await b.claim(holdings: warm, maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(second.job?.id, forB.id)
        // A replica that holds the model takes its jobs too, home or not.
        let holder = try await a.claim(holdings: ReplicaHoldings(models: [onB]), maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(holder.job?.id, forBAgain.id)
        XCTAssertEqual(holder.held, 1)
        XCTAssertEqual(holder.missing, 0)
        // The starvation bound: once a job has waited the maximum wait, a replica that is neither home nor holder
        // takes it.
        let late = job("b's late", model: onB)
        try await b.insert(late)
        let passed = try await a.claim(holdings: warm, maximumWait: 30, maximumAttempts: 3)
        XCTAssertNil(passed.job)
        try await Task.sleep(for: .milliseconds(50))
        let starved = try await a.claim(holdings: warm, maximumWait: 0.02, maximumAttempts: 3)
        XCTAssertEqual(starved.job?.id, late.id)
    }

    /// Delay scheduling: a young job whose LoRA another replica holds is left to that replica, idle or busy, for the
    /// locality wait (the claim says when to look again); past it, or with a locality wait of 0, anyone takes it.
    func testAYoungJobIsLeftToTheReplicaHoldingItsAdapters() async throws {
        let url = try await freshURL()
        let a = try await PostgresTestDatabase.store(url, replica: "a")
        let b = try await PostgresTestDatabase.store(url, replica: "b")
        let holdsX = ReplicaHoldings(models: ["sd1"], adapters: ["lora:x"]), plain = ReplicaHoldings(models: ["sd1"])
        _ = try await a.advertise(holdsX, stats: ReplicaStats())
        _ = try await b.advertise(plain, stats: ReplicaStats())
        let withX = job("x", loras: ["x"])
        try await b.insert(withX)
        let passed = try await b.claim(holdings: plain, maximumWait: 30, maximumAttempts: 3)
        XCTAssertNil(passed.job, "b leaves the job to idle a, which holds its LoRA")
        let retry = try XCTUnwrap(passed.retryAfter)
        XCTAssertGreaterThan(retry, 0)
        XCTAssertLessThanOrEqual(retry, Placement.defaultLocalityWait)
        let taken = try await a.claim(holdings: holdsX, maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(taken.job?.id, withX.id)
        XCTAssertEqual(taken.missing, 0)
        XCTAssertNil(taken.retryAfter)
        // a is busy now: b still leaves the next job with x to it, unless delay scheduling is off.
        let again = job("x again", loras: ["x"])
        try await b.insert(again)
        let busyHolder = try await b.claim(holdings: plain, maximumWait: 30, maximumAttempts: 3)
        XCTAssertNil(busyHolder.job, "a busy holder is waited for too")
        XCTAssertNotNil(busyHolder.retryAfter)
        let noDelay = try await b.claim(
            holdings: plain, maximumWait: 30, maximumAttempts: 3, placement: PlacementSettings(localityWait: 0))
        XCTAssertEqual(noDelay.job?.id, again.id)
        // A job nobody holds better is taken at once.
        let plainJob = job("no lora")
        try await b.insert(plainJob)
        let unheld = try await b.claim(holdings: plain, maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(unheld.job?.id, plainJob.id)
        // Past the locality wait anyone takes a job its holder would fit better.
        let late = job("x late", loras: ["x"])
        try await b.insert(late)
        let young = try await b.claim(holdings: plain, maximumWait: 30, maximumAttempts: 3)
        XCTAssertNil(young.job, "a holds x")
        try await Task.sleep(for: .seconds(try XCTUnwrap(young.retryAfter) + 0.05))
        let old = try await b.claim(holdings: plain, maximumWait: 30, maximumAttempts: 3)
        XCTAssertEqual(old.job?.id, late.id, "past the locality wait anyone takes it")
    }

    /// The random baseline: each queued job belongs to the replica its identifier hashes to, whatever the replicas
    /// hold; the other replica takes it only once it waited the maximum wait.
    func testRandomPlacementGivesEachJobToItsHashedReplica() async throws {
        let url = try await freshURL()
        let a = try await PostgresTestDatabase.store(url, replica: "a")
        let b = try await PostgresTestDatabase.store(url, replica: "b")
        let random = PlacementSettings(policy: .random)
        let holdsX = ReplicaHoldings(models: ["sd1"], adapters: ["lora:x"])
        _ = try await a.advertise(holdsX, stats: ReplicaStats())
        _ = try await b.advertise(ReplicaHoldings(), stats: ReplicaStats())
        let jobs = (0..<8).map { job("random \($0)", loras: ["x"]) }
        for record in jobs { try await a.insert(record) }
        let homes = jobs.map { Placement.ranks(of: $0.id, replicas: ["a", "b"])[0] == 0 ? "a" : "b" }
        XCTAssertTrue(homes.contains("a") && homes.contains("b"), "eight jobs hash to both replicas (\(homes))")
        var taken: [String: [String]] = [:]
        for (name, store, holdings) in [("a", a, holdsX), ("b", b, ReplicaHoldings())] {
            while let claimed = try await store.claim(holdings: holdings, maximumWait: 30, maximumAttempts: 3, placement: random).job {
                taken[name, default: []].append(claimed.id)
            }
        }
        XCTAssertEqual(Set(taken["a"] ?? []), Set(zip(jobs, homes).filter { $0.1 == "a" }.map(\.0.id)))
        XCTAssertEqual(Set(taken["b"] ?? []), Set(zip(jobs, homes).filter { $0.1 == "b" }.map(\.0.id)))
        // A job of b's that waited the maximum wait goes to a.
        var late = job("b's late")
        while Placement.ranks(of: late.id, replicas: ["a", "b"])[1] != 0 { late = job("b's late") }
        try await a.insert(late)
        let notMine = try await a.claim(holdings: holdsX, maximumWait: 30, maximumAttempts: 3, placement: random)
        XCTAssertNil(notMine.job)
        try await Task.sleep(for: .milliseconds(50))
        let starved = try await a.claim(holdings: holdsX, maximumWait: 0.02, maximumAttempts: 3, placement: random)
        XCTAssertEqual(starved.job?.id, late.id)
    }

    func testReplicasAdvertiseTheirHoldingsAndCounters() async throws {
        let url = try await freshURL()
        let a = try await PostgresTestDatabase.store(url, replica: "a")
        let b = try await PostgresTestDatabase.store(url, replica: "b")
        var stats = ReplicaStats()
        stats.claims = 3
        stats.affinityHits = 2
        stats.loadsAvoided = 5
        stats.loads = 1
        _ = try await a.advertise(ReplicaHoldings(models: ["sd1"], adapters: ["lora:x"]), stats: stats)
        let live = try await b.advertise(ReplicaHoldings(), stats: ReplicaStats())
        XCTAssertEqual(live, 2)
        let replicas = try await b.replicas(within: 60)
        XCTAssertEqual(replicas.map(\.id), ["a", "b"])
        XCTAssertEqual(replicas.first?.holdings.adapters, ["lora:x"])
        XCTAssertEqual(replicas.first?.stats, stats)
    }

    func testBadStoreURLsAreClearErrors() {
        for url in [
            "http://x/y", "postgres://u@h/db?schema=Bad-Name", "postgres://u@h/db?sslmode=require", "postgres://u@h/db?foo=1",
        ] {
            XCTAssertThrowsError(try PostgresJobStore.Location(url: url), url) { error in
                XCTAssertFalse("\(error)".isEmpty)
            }
        }
        let location = try? PostgresJobStore.Location(url: "postgres://user:p%40ss@db.example:6543/jobs?schema=replicas")
        XCTAssertEqual(location?.user, "user")
        XCTAssertEqual(location?.password, "p@ss")
        XCTAssertEqual(location?.host, "db.example")
        XCTAssertEqual(location?.port, 6543)
        XCTAssertEqual(location?.database, "jobs")
        XCTAssertEqual(location?.schema, "replicas")
    }
}
