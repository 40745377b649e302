import Foundation
import XCTest

@testable import Serving

/// Durable queue: jobs an engine accepted but did not run are picked up by the next engine on the same
/// SQLite file; the job that was running when the engine was stopped runs again. No job is lost or run twice.
final class EngineRestartTests: XCTestCase {
    func testANewEngineResumesQueuedJobsAndReRunsTheInterruptedOne() async throws {
        let path = ServingFixtures.temporaryDatabase()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }

        // First engine: a long job runs, four short ones (two with a LoRA) queue behind it; then its service
        // task is cancelled.
        let first = ServingFixtures.engine(store: try SQLiteJobStore(path: path))
        let running = RunningEngine(first)
        let long = try await first.submit(ServingFixtures.spec("long", steps: 100, seed: 100))
        try await first.waitUntilStep(long.id, 1)
        var queued: [JobRecord] = []
        for index in 0..<4 {
            let loras = index % 2 == 0 ? [LoRASpec(name: "sd1-lora", weight: 0.8)] : []
            queued.append(try await first.submit(ServingFixtures.spec("queued \(index)", seed: UInt64(index), loras: loras)))
        }
        let depth = await first.queueDepth
        XCTAssertEqual(depth, 4)
        let stopStart = Date()
        try await running.stop()
        XCTAssertLessThan(Date().timeIntervalSince(stopStart), 1, "cancellation interrupts the running job at its next step")

        // What the file says now: the long job was interrupted and queued again (the interruption is not a try
        // that counts towards the poison-job limit), the others never started.
        let inspector = try SQLiteJobStore(path: path)
        let interrupted = try await inspector.job(id: long.id)
        XCTAssertEqual(interrupted?.status, .queued)
        XCTAssertEqual(interrupted?.attempts, 0)
        XCTAssertLessThan(interrupted?.progress.step ?? 100, 100)
        let noOutputs = try await inspector.outputs(jobID: long.id)
        XCTAssertEqual(noOutputs, [])
        for job in queued {
            let stored = try await inspector.job(id: job.id)
            XCTAssertEqual(stored?.status, .queued, "a stopped engine starts no queued job")
        }

        // Second engine on the same file: subscribe to every job before it runs, then run.
        let second = ServingFixtures.engine(store: try SQLiteJobStore(path: path))
        let all = [long] + queued
        var streams: [AsyncStream<JobEvent>] = []
        for job in all { streams.append(try await second.events(job.id)) }
        let secondRunning = RunningEngine(second)
        for (job, stream) in zip(all, streams) {
            let events = try await withTimeout(seconds: 30) { await stream.reduce(into: [JobEvent]()) { $0.append($1) } }
            XCTAssertEqual(
                events.filter(\.isTerminal).map(\.type), ["completed"], "exactly one terminal event for \(job.spec.prompt)")
            // The first event is the state read at subscription.
            XCTAssertEqual(events.first?.type, "queued")
            XCTAssertEqual(
                events.dropFirst().filter { $0.type == "started" }.count, 1, "started once by this engine: \(job.spec.prompt)")
            let finished = try await second.job(job.id)
            XCTAssertEqual(finished.status, .succeeded, finished.error ?? "")
            XCTAssertEqual(finished.attempts, 1, job.spec.prompt)
            XCTAssertEqual(finished.spec, job.spec, "the stored spec (seed included) is what runs")
            XCTAssertEqual(finished.imageCount, 1)
            let outputs = try await second.outputs(job.id)
            XCTAssertEqual(outputs.count, 1, "one image, not one per attempt")
            XCTAssertEqual(Array(outputs[0].prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        }
        let counts = try await second.counts()
        XCTAssertEqual(counts, [.succeeded: 5], "nothing lost, nothing added")
        let secondDepth = await second.queueDepth
        XCTAssertEqual(secondDepth, 0)
        try await secondRunning.stop()

        // A third engine finds nothing to do.
        let third = ServingFixtures.engine(store: try SQLiteJobStore(path: path))
        let thirdRunning = RunningEngine(third)
        try await Task.sleep(for: .milliseconds(50))
        let thirdCounts = try await third.counts()
        XCTAssertEqual(thirdCounts, [.succeeded: 5])
        let longAgain = try await third.job(long.id)
        XCTAssertEqual(longAgain.attempts, 1)
        try await thirdRunning.stop()
    }

    func testCancelledJobsAreNotResumedAndJobsSubmittedBeforeTheRunnerStartsRunOnce() async throws {
        let path = ServingFixtures.temporaryDatabase()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let first = ServingFixtures.engine(store: try SQLiteJobStore(path: path))
        let kept = try await first.submit(ServingFixtures.spec(seed: 1))
        let cancelled = try await first.submit(ServingFixtures.spec(seed: 2))
        try await first.cancel(cancelled.id)
        // The first engine never ran. A second one gets a job before its runner has read the store: that job
        // must be queued once, not once by submit and again by the restore.
        let second = ServingFixtures.engine(store: try SQLiteJobStore(path: path))
        let running = RunningEngine(second)
        let fresh = try await second.submit(ServingFixtures.spec(seed: 3))
        for job in [kept, fresh] {
            let finished = try await second.waitUntilFinished(job.id)
            XCTAssertEqual(finished.status, .succeeded)
            XCTAssertEqual(finished.attempts, 1)
        }
        let depth = await second.queueDepth
        XCTAssertEqual(depth, 0)
        let stillCancelled = try await second.job(cancelled.id)
        XCTAssertEqual(stillCancelled.status, .cancelled)
        XCTAssertEqual(stillCancelled.attempts, 0)
        try await running.stop()
    }
}
