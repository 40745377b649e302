import Foundation
import Imaging
import XCTest

@testable import Serving

/// What the engine refuses at submission (issue 10: one request must never kill the server): sizes and CLIP skip
/// the chosen model cannot take, images whose fitting would need a huge intermediate, unbounded metadata; a job
/// that ended the process on every try is failed as a poison job instead of being run again; Retry-After follows
/// the queue.
final class SubmissionLimitsTests: XCTestCase {
    private func assertInvalid(_ spec: JobSpec, contains text: String, file: StaticString = #filePath, line: UInt = #line) async {
        let engine = ServingFixtures.engine()
        do {
            _ = try await engine.submit(spec)
            XCTFail("accepted: \(spec)", file: file, line: line)
        } catch let EngineError.invalidRequest(message) {
            XCTAssertTrue(message.contains(text), "'\(message)' should mention '\(text)'", file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    /// A solid PNG of the given size.
    private func png(width: Int, height: Int) throws -> Data {
        try ImageCodec.encodePNG(RGBImage(width: width, height: height, red: 200, green: 10, blue: 10))
    }

    func testSizesMustBeMultiplesOfTheModelsVAEFactor() async throws {
        // The tiny sd1 fixture's VAE halves the size once: 33 is not a multiple of 2.
        var spec = ServingFixtures.spec()
        spec.width = 33
        await assertInvalid(spec, contains: "width must be a multiple of 2 for model 'sd1'")
        spec.width = 32
        spec.height = 31
        await assertInvalid(spec, contains: "height must be a multiple of 2")
    }

    func testClipSkipIsBoundedByTheModelsTextEncoder() async throws {
        var spec = ServingFixtures.spec()
        spec.clipSkip = 3  // the fixture's text encoder has 2 layers
        await assertInvalid(spec, contains: "clip_skip must be between 1 and 2 for model 'sd1' (its text encoder has 2 layers)")
        spec.clipSkip = 2
        let engine = ServingFixtures.engine()
        let job = try await engine.submit(spec)
        XCTAssertEqual(job.spec.clipSkip, 2)
    }

    func testExtremeAspectRatiosAndHugeIntermediatesAreRefused() async throws {
        var spec = ServingFixtures.spec()
        spec.controls = [ControlSpec(model: "sd1-controlnet", image: try png(width: 1024, height: 1))]
        await assertInvalid(spec, contains: "aspect ratio is beyond 32:1")
        // 32:1 is allowed as a ratio, but covering 2048x2048 with it needs a 65536x2048 intermediate.
        spec.width = 2048
        spec.height = 2048
        spec.controls = [ControlSpec(model: "sd1-controlnet", image: try png(width: 64, height: 2), resizeMode: "crop_and_resize")]
        await assertInvalid(spec, contains: "would scale it to 65536x2048")
        // Just resize goes straight to the target size: accepted.
        spec.controls[0].resizeMode = "just_resize"
        let engine = ServingFixtures.engine()
        _ = try await engine.submit(spec)
        spec.controls = []
        spec.initImage = try png(width: 4096, height: 1)
        await assertInvalid(spec, contains: "init image is 4096x1")
    }

    func testScaledSizeMatchesWhatApplyAllocates() throws {
        let image = RGBImage(width: 30, height: 10, red: 1, green: 2, blue: 3)
        for mode in ResizeMode.allCases {
            let size = mode.scaledSize(width: 30, height: 10, toWidth: 16, toHeight: 16)
            XCTAssertEqual(mode.apply(to: image, width: 16, height: 16).width, 16)
            switch mode {
            case .justResize: XCTAssertTrue(size == (16, 16))
            case .cropAndResize: XCTAssertTrue(size == (48, 16), "\(size)")
            case .resizeAndFill: XCTAssertTrue(size == (16, 5), "\(size)")
            }
        }
    }

    func testMetadataIsBounded() async throws {
        var spec = ServingFixtures.spec()
        spec.metadata = ["blob": String(repeating: "x", count: 5000)]
        await assertInvalid(spec, contains: "metadata is limited to 16 entries and 4096 bytes")
        spec.metadata = Dictionary(uniqueKeysWithValues: (0..<17).map { ("k\($0)", "v") })
        await assertInvalid(spec, contains: "metadata is limited")
    }

    func testAJobThatEndedTheProcessOnEveryTryIsFailedAsAPoisonJob() async throws {
        let path = ServingFixtures.temporaryDatabase()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        // Records as a process killed mid-run leaves them: "running", with the tries counted at each start.
        let store = try SQLiteJobStore(path: path)
        var poison = JobRecord(id: "poison", spec: ServingFixtures.spec("poison", seed: 1))
        poison.status = .running
        poison.attempts = EngineConfiguration().maximumJobAttempts
        var survivor = JobRecord(id: "survivor", spec: ServingFixtures.spec("survivor", seed: 2))
        survivor.status = .running
        survivor.attempts = 1
        try await store.insert(poison)
        try await store.insert(survivor)

        let engine = ServingFixtures.engine(store: try SQLiteJobStore(path: path))
        let running = RunningEngine(engine)
        let finished = try await engine.waitUntilFinished("survivor")
        XCTAssertEqual(finished.status, .succeeded, "a job interrupted fewer times than the limit runs again")
        XCTAssertEqual(finished.attempts, 2)
        let failed = try await engine.job("poison")
        XCTAssertEqual(failed.status, .failed)
        XCTAssertEqual(failed.attempts, 3, "not started again")
        XCTAssertTrue(failed.error?.hasPrefix("poison job: the server process ended while running this job 3 times") ?? false, failed.error ?? "")
        try await running.stop()
    }

    func testRetryAfterGrowsWithTheQueue() async throws {
        var configuration = EngineConfiguration()
        configuration.queueCapacity = 6
        let engine = ServingFixtures.engine(configuration: configuration)
        // Not running: jobs stay queued. Before any job has finished, a job is taken to last 5 s.
        for index in 0..<6 { _ = try await engine.submit(ServingFixtures.spec(seed: UInt64(index))) }
        do {
            _ = try await engine.submit(ServingFixtures.spec())
            XCTFail("the queue is full")
        } catch let EngineError.queueFull(retryAfter) {
            XCTAssertEqual(retryAfter, 30, "six queued jobs of 5 s each")
        }
        let estimate = await engine.retryAfterEstimate()
        XCTAssertEqual(estimate, 30)
    }
}
