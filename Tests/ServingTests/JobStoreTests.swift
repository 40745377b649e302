import Foundation
import XCTest

@testable import Serving

/// Both stores honour the same contract: records round-trip, unfinished jobs come back oldest first,
/// outputs keep their order, retention deletes only old finished jobs (and their images), counts per status.
final class JobStoreTests: XCTestCase {
    func testInMemoryStore() async throws {
        try await exerciseContract(InMemoryJobStore())
    }

    func testSQLiteStore() async throws {
        let path = ServingFixtures.temporaryDatabase()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        try await exerciseContract(try SQLiteJobStore(path: path))
    }

    func testSQLiteStoreKeepsEverythingAcrossReopening() async throws {
        let path = ServingFixtures.temporaryDatabase()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        var job = JobRecord(
            id: "persisted",
            spec: JobSpec(
                model: "sd1", prompt: "kept", width: 32, height: 32, steps: 3, seed: 9, loras: [LoRASpec(name: "x", weight: 0.5)]),
            createdAt: Date(timeIntervalSince1970: 1_700_000_000.25))
        job.status = .succeeded
        job.imageCount = 2
        job.timings = ["denoise": 0.5, "total": 0.75]
        job.infotext = "kept\nSteps: 3"
        job.loraPatchStep = 1
        job.attempts = 2
        job.finishedAt = Date(timeIntervalSince1970: 1_700_000_001.5)
        do {
            let store = try SQLiteJobStore(path: path)
            try await store.insert(job)
            try await store.saveOutputs(jobID: job.id, images: [Data([1, 2, 3]), Data([4])])
        }
        let reopened = try SQLiteJobStore(path: path)
        let loaded = try await reopened.job(id: "persisted")
        XCTAssertEqual(loaded, job)
        let outputs = try await reopened.outputs(jobID: "persisted")
        XCTAssertEqual(outputs, [Data([1, 2, 3]), Data([4])])
        let counts = try await reopened.counts()
        XCTAssertEqual(counts, [.succeeded: 1])
    }

    func testSQLiteStoreRejectsADuplicateID() async throws {
        let path = ServingFixtures.temporaryDatabase()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let store = try SQLiteJobStore(path: path)
        let job = JobRecord(id: "same", spec: JobSpec(prompt: "x"))
        try await store.insert(job)
        do {
            try await store.insert(job)
            XCTFail("a second insert with the same id must fail")
        } catch {}
    }

    private func exerciseContract(_ store: any JobStore, file: StaticString = #filePath, line: UInt = #line) async throws {
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        // Inserted out of creation order: unfinishedJobs must sort by creation time.
        let ids = ["c", "a", "b", "d"]
        let created = ["a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0]
        for id in ids {
            try await store.insert(
                JobRecord(
                    id: id, spec: JobSpec(prompt: "prompt \(id)", seed: 7), createdAt: base.addingTimeInterval(created[id]!)))
        }
        let missing = try await store.job(id: "zzz")
        XCTAssertNil(missing, file: file, line: line)
        let storedA = try await store.job(id: "a")
        var a = try XCTUnwrap(storedA, file: file, line: line)
        XCTAssertEqual(a.spec.prompt, "prompt a", file: file, line: line)
        XCTAssertEqual(a.status, .queued, file: file, line: line)
        var unfinished = try await store.unfinishedJobs()
        XCTAssertEqual(unfinished.map(\.id), ["a", "b", "c", "d"], file: file, line: line)

        // a runs and succeeds with two images; b runs; c is cancelled; d stays queued.
        a.status = .running
        a.progress = JobProgress(stage: "denoise", step: 2, total: 3)
        try await store.update(a)
        let running = try await store.job(id: "a")
        XCTAssertEqual(running?.progress, JobProgress(stage: "denoise", step: 2, total: 3), file: file, line: line)
        try await store.saveOutputs(jobID: "a", images: [Data("first".utf8), Data("second".utf8)])
        a.status = .succeeded
        a.imageCount = 2
        a.finishedAt = base.addingTimeInterval(10)
        try await store.update(a)
        let storedB = try await store.job(id: "b")
        var b = try XCTUnwrap(storedB, file: file, line: line)
        b.status = .running
        try await store.update(b)
        let storedC = try await store.job(id: "c")
        var c = try XCTUnwrap(storedC, file: file, line: line)
        c.status = .cancelled
        c.finishedAt = base.addingTimeInterval(20)
        try await store.update(c)

        unfinished = try await store.unfinishedJobs()
        XCTAssertEqual(unfinished.map(\.id), ["b", "d"], file: file, line: line)
        XCTAssertEqual(unfinished.map(\.status), [.running, .queued], file: file, line: line)
        var outputs = try await store.outputs(jobID: "a")
        XCTAssertEqual(outputs, [Data("first".utf8), Data("second".utf8)], file: file, line: line)
        // Saving again replaces (a job re-run after a restart must not accumulate images).
        try await store.saveOutputs(jobID: "a", images: [Data("only".utf8)])
        outputs = try await store.outputs(jobID: "a")
        XCTAssertEqual(outputs, [Data("only".utf8)], file: file, line: line)
        let none = try await store.outputs(jobID: "d")
        XCTAssertEqual(none, [], file: file, line: line)
        var counts = try await store.counts()
        XCTAssertEqual(counts, [.succeeded: 1, .running: 1, .cancelled: 1, .queued: 1], file: file, line: line)

        // Retention: only finished jobs that finished before the date go, with their images.
        var removed = try await store.deleteFinished(before: base.addingTimeInterval(15))
        XCTAssertEqual(removed, 1, file: file, line: line)
        let deleted = try await store.job(id: "a")
        XCTAssertNil(deleted, file: file, line: line)
        outputs = try await store.outputs(jobID: "a")
        XCTAssertEqual(outputs, [], file: file, line: line)
        let kept = try await store.job(id: "c")
        XCTAssertEqual(kept?.status, .cancelled, file: file, line: line)
        removed = try await store.deleteFinished(before: Date.distantFuture)
        XCTAssertEqual(removed, 1, "c; unfinished b and d stay", file: file, line: line)
        counts = try await store.counts()
        XCTAssertEqual(counts, [.running: 1, .queued: 1], file: file, line: line)
        unfinished = try await store.unfinishedJobs()
        XCTAssertEqual(unfinished.map(\.id), ["b", "d"], file: file, line: line)
    }
}
