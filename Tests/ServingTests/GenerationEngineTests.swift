import Foundation
import XCTest

@testable import Serving

/// The engine on its own (no HTTP): validation at submission, the bounded queue, cancellation of queued
/// and running jobs, events, and stopping the service.
final class GenerationEngineTests: XCTestCase {
    func testSubmissionValidatesEveryLimitAndName() async throws {
        var configuration = EngineConfiguration()
        configuration.limits.maximumImageBytes = 100
        let engine = ServingFixtures.engine(configuration: configuration)
        let control = try ServingFixtures.controlImage
        func spec(_ change: (inout JobSpec) -> Void) -> JobSpec {
            var spec = ServingFixtures.spec()
            change(&spec)
            return spec
        }
        let cases: [(String, JobSpec, EngineError)] = [
            ("empty prompt", spec { $0.prompt = "" }, .invalidRequest("prompt must not be empty")),
            (
                "long prompt", spec { $0.prompt = String(repeating: "a", count: 8001) },
                .invalidRequest("prompts are limited to 8000 characters")
            ),
            ("zero width", spec { $0.width = 0 }, .invalidRequest("width must be between 8 and 2048")),
            ("negative height", spec { $0.height = -32 }, .invalidRequest("height must be between 8 and 2048")),
            ("huge width", spec { $0.width = 1 << 40 }, .invalidRequest("width must be between 8 and 2048")),
            (
                "too many pixels",
                spec {
                    $0.width = 2048; $0.height = 2048 + 8
                }, .invalidRequest("height must be between 8 and 2048")
            ),
            ("zero steps", spec { $0.steps = 0 }, .invalidRequest("steps must be between 1 and 150")),
            ("10k steps", spec { $0.steps = 10_000 }, .invalidRequest("steps must be between 1 and 150")),
            ("n = 1000", spec { $0.count = 1000 }, .invalidRequest("the number of images must be between 1 and 8")),
            ("huge cfg", spec { $0.cfg = 1e9 }, .invalidRequest("cfg must be between 0 and 50")),
            ("nan cfg", spec { $0.cfg = .nan }, .invalidRequest("cfg must be between 0 and 50")),
            ("strength 0", spec { $0.strength = 0 }, .invalidRequest("strength must be in (0, 1]")),
            ("clip skip", spec { $0.clipSkip = 13 }, .invalidRequest("clip_skip must be between 1 and 2 for model 'sd1' (its text encoder has 2 layers), got 13")),
            ("deadline", spec { $0.loraDeadlineStep = -1 }, .invalidRequest("lora_deadline_step must not be negative")),
            ("unknown model", spec { $0.model = "nope" }, .notFound("unknown model 'nope'; see /v1/models")),
            (
                "traversal model", spec { $0.model = "../checkpoints/sd1" },
                .notFound("unknown model '../checkpoints/sd1'; see /v1/models")
            ),
            (
                "absolute model", spec { $0.model = ServingFixtures.modelsFolder.path + "/checkpoints/sd1" },
                .notFound("unknown model '\(ServingFixtures.modelsFolder.path)/checkpoints/sd1'; see /v1/models")
            ),
            ("unknown LoRA", spec { $0.loras = [LoRASpec(name: "nope")] }, .notFound("unknown LoRA 'nope'; see /v1/loras")),
            (
                "traversal LoRA", spec { $0.loras = [LoRASpec(name: "../loras/sd1-lora")] },
                .notFound("unknown LoRA '../loras/sd1-lora'; see /v1/loras")
            ),
            (
                "LoRA weight", spec { $0.loras = [LoRASpec(name: "sd1-lora", weight: 11)] },
                .invalidRequest("LoRA weights must be between -10 and 10")
            ),
            (
                "too many LoRAs", spec { $0.loras = Array(repeating: LoRASpec(name: "sd1-lora"), count: 9) },
                .invalidRequest("at most 8 LoRAs per request")
            ),
            (
                "unknown ControlNet", spec { $0.controls = [ControlSpec(model: "nope", image: control)] },
                .notFound("unknown ControlNet 'nope'; see /v1/controlnets")
            ),
            (
                "ControlNet range",
                spec { $0.controls = [ControlSpec(model: "sd1-controlnet", image: control, start: 0.5, end: 0.5)] },
                .invalidRequest("ControlNet start/end must satisfy 0 <= start < end <= 1")
            ),
            (
                "resize mode",
                spec { $0.controls = [ControlSpec(model: "sd1-controlnet", image: control, resizeMode: "stretch")] },
                .invalidRequest("unknown resize mode 'stretch' (just_resize, crop_and_resize, resize_and_fill)")
            ),
        ]
        for (name, spec, expected) in cases {
            do {
                _ = try await engine.submit(spec)
                XCTFail("\(name): accepted")
            } catch let error as EngineError {
                XCTAssertEqual(error, expected, name)
            }
        }
        // Messages that come from lower layers: assert they name the problem.
        let messages: [(String, JobSpec, String)] = [
            ("unknown sampler", spec { $0.sampler = "warp_drive" }, "warp_drive"),
            (
                "unknown preprocessor",
                spec { $0.controls = [ControlSpec(model: "sd1-controlnet", image: control, preprocessor: "xray")] }, "xray"
            ),
            (
                "not an image", spec { $0.controls = [ControlSpec(model: "sd1-controlnet", image: Data("hello, world".utf8))] },
                "ControlNet image"
            ),
            (
                "image too large",
                spec { $0.controls = [ControlSpec(model: "sd1-controlnet", image: control + Data(count: 100))] },
                "larger than 100 bytes"
            ),
            ("init image", spec { $0.initImage = Data([0x89, 0x50, 0x4E, 0x47, 0, 0, 0]) }, "init image"),
        ]
        for (name, spec, fragment) in messages {
            do {
                _ = try await engine.submit(spec)
                XCTFail("\(name): accepted")
            } catch EngineError.invalidRequest(let message) {
                XCTAssertTrue(message.contains(fragment), "\(name): \(message)")
            }
        }
        let depth = await engine.queueDepth
        XCTAssertEqual(depth, 0, "nothing invalid was queued")
        let counts = try await engine.counts()
        XCTAssertEqual(counts, [:], "nothing invalid was stored")
    }

    func testSubmissionFillsInTheSeedAndTheDefaultModel() async throws {
        let engine = ServingFixtures.engine()
        var spec = ServingFixtures.spec()
        spec.seed = nil
        let job = try await engine.submit(spec)
        XCTAssertEqual(job.spec.model, "sd1")
        XCTAssertNotNil(job.spec.seed)
        let stored = try await engine.job(job.id)
        XCTAssertEqual(stored.spec.seed, job.spec.seed, "the drawn seed is stored, so a re-run gives the same image")
        XCTAssertEqual(stored.status, .queued)
    }

    func testTheQueueIsBoundedAndPositionsAreReported() async throws {
        var configuration = EngineConfiguration()
        configuration.queueCapacity = 3
        let engine = ServingFixtures.engine(configuration: configuration)  // not running: nothing drains
        var ids: [String] = []
        for index in 0..<3 { ids.append(try await engine.submit(ServingFixtures.spec(seed: UInt64(index))).id) }
        do {
            _ = try await engine.submit(ServingFixtures.spec())
            XCTFail("a fourth job must be refused")
        } catch EngineError.queueFull(let retryAfter) {
            XCTAssertGreaterThanOrEqual(retryAfter, 1)
        }
        for (index, id) in ids.enumerated() {
            let position = await engine.queuePosition(id)
            XCTAssertEqual(position, index + 1)
        }
        // Cancelling frees a slot and moves the others up.
        let cancelled = try await engine.cancel(ids[0])
        XCTAssertEqual(cancelled.status, .cancelled)
        let position = await engine.queuePosition(ids[2])
        XCTAssertEqual(position, 2)
        _ = try await engine.submit(ServingFixtures.spec())
        let depth = await engine.queueDepth
        XCTAssertEqual(depth, 3)
    }

    /// Concurrent submissions must not overshoot the capacity (the check and the append are separated by
    /// the store write).
    func testConcurrentSubmissionsNeverExceedTheCapacity() async throws {
        var configuration = EngineConfiguration()
        configuration.queueCapacity = 4
        let path = ServingFixtures.temporaryDatabase()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let engine = ServingFixtures.engine(configuration: configuration, store: try SQLiteJobStore(path: path))
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<40 {
                group.addTask { (try? await engine.submit(ServingFixtures.spec(seed: UInt64(index)))) != nil }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        XCTAssertEqual(outcomes.filter { $0 }.count, 4)
        let depth = await engine.queueDepth
        XCTAssertEqual(depth, 4)
        let counts = try await engine.counts()
        XCTAssertEqual(counts, [.queued: 4])
    }

    func testCancellingQueuedAndFinishedAndUnknownJobs() async throws {
        let engine = ServingFixtures.engine()
        let job = try await engine.submit(ServingFixtures.spec())
        let cancelled = try await engine.cancel(job.id)
        XCTAssertEqual(cancelled.status, .cancelled)
        XCTAssertNotNil(cancelled.finishedAt)
        do {
            try await engine.cancel(job.id)
            XCTFail("cancelling twice must be a conflict")
        } catch EngineError.conflict(let message) {
            XCTAssertTrue(message.contains("already cancelled"), message)
        }
        do {
            try await engine.cancel("no-such-job")
            XCTFail("unknown job")
        } catch EngineError.notFound(let message) {
            XCTAssertTrue(message.contains("no-such-job"), message)
        }
        do {
            _ = try await engine.outputs(job.id)
            XCTFail("a cancelled job has no outputs")
        } catch EngineError.conflict(let message) {
            XCTAssertTrue(message.contains("cancelled"), message)
        }
        // The runner skips it.
        let running = RunningEngine(engine)
        let next = try await engine.submit(ServingFixtures.spec())
        let finished = try await engine.waitUntilFinished(next.id)
        XCTAssertEqual(finished.status, .succeeded)
        let after = try await engine.job(job.id)
        XCTAssertEqual(after.status, .cancelled)
        XCTAssertEqual(after.attempts, 0)
        try await running.stop()
    }

    func testCancellingARunningJobStopsItAtTheNextStep() async throws {
        let engine = ServingFixtures.engine()
        let running = RunningEngine(engine)
        let job = try await engine.submit(ServingFixtures.spec(steps: 150))
        try await engine.waitUntilStep(job.id, 1)
        let response = try await engine.cancel(job.id)
        XCTAssertEqual(response.status, .running, "a running job stops at its next step boundary")
        let finished = try await engine.waitUntilFinished(job.id)
        XCTAssertEqual(finished.status, .cancelled)
        XCTAssertEqual(finished.imageCount, 0)
        XCTAssertLessThan(finished.progress.step, 150)
        try await running.stop()
    }

    /// A cancel that answers "cancelled" must stay cancelled, even when it races the runner picking the job up
    /// (reads of the store take a while, so the runner is mid-read when the cancel arrives).
    func testCancelRightAfterSubmitIsFinal() async throws {
        let store = SlowReadStore()
        await store.setReadDelay(.milliseconds(10))
        let engine = ServingFixtures.engine(store: store)
        let running = RunningEngine(engine)
        for seed in 0..<10 {
            let job = try await engine.submit(ServingFixtures.spec(steps: 2, seed: UInt64(seed)))
            let answer = try await engine.cancel(job.id)
            let finished = try await engine.waitUntilFinished(job.id)
            if answer.status == .cancelled {
                XCTAssertEqual(
                    finished.status, .cancelled, "job \(seed): cancel answered cancelled, the job ended \(finished.status)")
                XCTAssertEqual(finished.imageCount, 0)
            } else {
                XCTAssertEqual(answer.status, .running)
            }
        }
        try await running.stop()
    }

    func testEventsOfAJobRunInOrderAndEndWithTheTerminalOne() async throws {
        let engine = ServingFixtures.engine()
        let job = try await engine.submit(ServingFixtures.spec(steps: 4))
        let stream = try await engine.events(job.id)  // subscribed while queued: the runner is not started yet
        let running = RunningEngine(engine)
        let events = try await withTimeout(seconds: 30) { await stream.reduce(into: [JobEvent]()) { $0.append($1) } }
        let types = events.map(\.type)
        XCTAssertEqual(types.first, "queued")
        XCTAssertEqual(types.dropFirst().first, "started")
        XCTAssertEqual(types.last, "completed")
        let steps = events.filter { $0.type == "step" }
        XCTAssertEqual(steps.map(\.step), [1, 2, 3, 4])
        XCTAssertTrue(steps.allSatisfy { $0.total == 4 && $0.etaSeconds != nil && $0.etaSeconds! >= 0 })
        XCTAssertEqual(steps.last?.etaSeconds, 0)
        let stages = events.filter { $0.type == "stage" }.compactMap(\.stage)
        XCTAssertEqual(stages, ["load_model", "encode_prompt", "denoise", "decode"])
        let firstStep = try XCTUnwrap(types.firstIndex(of: "step"))
        XCTAssertLessThan(try XCTUnwrap(types.firstIndex(of: "stage")), firstStep)
        XCTAssertEqual(types.filter { $0 == "completed" }.count, 1)
        // After completion a subscriber gets only the terminal event.
        let late = try await engine.events(job.id)
        let lateEvents = await late.reduce(into: [JobEvent]()) { $0.append($1) }
        XCTAssertEqual(lateEvents.map(\.type), ["completed"])
        XCTAssertEqual(lateEvents.first?.status, .succeeded)
        try await running.stop()
    }

    /// A job that finishes while `events` reads its record must still end the subscriber's stream (the
    /// terminal event was published before the subscription existed).
    func testEventsOfAJobThatFinishesDuringSubscriptionStillEnd() async throws {
        let store = SlowReadStore()
        let engine = ServingFixtures.engine(store: store)
        let running = RunningEngine(engine)
        let job = try await engine.submit(ServingFixtures.spec(steps: 10))
        try await engine.waitUntilStep(job.id, 1)
        // The next read takes the record now (running) and returns it after the job has finished.
        await store.holdNextRead()
        let stream = try await engine.events(job.id)
        let events = try await withTimeout(seconds: 20) { await stream.reduce(into: [JobEvent]()) { $0.append($1) } }
        XCTAssertEqual(events.map(\.type), ["started", "completed"], "the stale state, then the terminal event")
        try await running.stop()
    }

    func testSubmitAndWaitReturnsTheFinishedJob() async throws {
        let engine = ServingFixtures.engine()
        let running = RunningEngine(engine)
        for seed in 0..<5 {
            let job = try await withTimeout(seconds: 30) {
                try await engine.submitAndWait(ServingFixtures.spec(steps: 1, seed: UInt64(seed)))
            }
            XCTAssertEqual(job.status, .succeeded)
            XCTAssertEqual(job.imageCount, 1)
            let outputs = try await engine.outputs(job.id)
            XCTAssertEqual(outputs.count, 1)
        }
        try await running.stop()
    }

    func testAFailingJobIsReportedAndTheNextOneRuns() async throws {
        let engine = ServingFixtures.engine()
        let running = RunningEngine(engine)
        // Valid at submission, impossible to run: this strength leaves no step of 3.
        var bad = ServingFixtures.spec()
        bad.initImage = try ServingFixtures.controlImage
        bad.strength = 0.01
        let failed = try await engine.waitUntilFinished(try await engine.submit(bad).id)
        XCTAssertEqual(failed.status, .failed)
        XCTAssertTrue(failed.error?.contains("leaves no step to run") == true, failed.error ?? "")
        XCTAssertEqual(failed.imageCount, 0)
        do {
            _ = try await engine.outputs(failed.id)
            XCTFail("a failed job has no outputs")
        } catch EngineError.conflict {}
        let good = try await engine.waitUntilFinished(try await engine.submit(ServingFixtures.spec()).id)
        XCTAssertEqual(good.status, .succeeded)
        try await running.stop()
    }

    func testRunReturnsWhenItsTaskIsCancelledWhileIdle() async throws {
        let engine = ServingFixtures.engine()
        let running = RunningEngine(engine)
        let job = try await engine.submit(ServingFixtures.spec())
        _ = try await engine.waitUntilFinished(job.id)
        try await running.stop()
        let ready = await engine.isReady
        XCTAssertTrue(ready)
    }
}

/// An in-memory store whose `job(id:)` is slow, as a busy database's: it takes the record at once and
/// returns it late (after `readDelay`, or once the job has finished for a held read).
actor SlowReadStore: JobStore {
    private let inner = InMemoryJobStore()
    private var readDelay: Duration?
    private var holdingNextRead = false

    func setReadDelay(_ delay: Duration?) { readDelay = delay }

    /// The next read returns the record as it is now, but only after the job has finished and its terminal
    /// event has had time to go out.
    func holdNextRead() { holdingNextRead = true }

    func insert(_ job: JobRecord) async throws { try await inner.insert(job) }
    func update(_ job: JobRecord) async throws { try await inner.update(job) }
    func job(id: String) async throws -> JobRecord? {
        let record = await inner.job(id: id)
        if holdingNextRead {
            holdingNextRead = false
            while await inner.job(id: id)?.status.isFinished != true { try await Task.sleep(for: .milliseconds(2)) }
            try await Task.sleep(for: .milliseconds(100))
        }
        if let readDelay { try await Task.sleep(for: readDelay) }
        return record
    }
    func unfinishedJobs() async throws -> [JobRecord] { await inner.unfinishedJobs() }
    func saveOutputs(jobID: String, images: [Data]) async throws { await inner.saveOutputs(jobID: jobID, images: images) }
    func outputs(jobID: String) async throws -> [Data] { await inner.outputs(jobID: jobID) }
    func deleteFinished(before date: Date) async throws -> Int { await inner.deleteFinished(before: date) }
    func counts() async throws -> [JobStatus: Int] { await inner.counts() }
}
