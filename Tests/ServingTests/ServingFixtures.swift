import Foundation
import Logging
import ParityTesting
import XCTest

@testable import Serving

/// The tiny fixture models (Tests/Fixtures/models) in the folder layout `ModelRepository` scans, and helpers
/// to run an engine on them. A 32x32 job with a few steps runs in milliseconds.
enum ServingFixtures {
    /// checkpoints sd1, sd2, sdxl; LoRAs sd1-lora, sd1-lora-b; ControlNets sd1-controlnet, sd1-controlnet-b.
    static let modelsFolder: URL = FixtureModels.linkedFolder(named: "swiftdiffusion-serving-models")

    static var controlImage: Data {
        get throws { try Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png")) }
    }

    static func repository() -> ModelRepository {
        ModelRepository(roots: [modelsFolder], embeddedModels: nil, defaultModel: "sd1")
    }

    static func engine(
        configuration: EngineConfiguration = EngineConfiguration(), store: any JobStore = InMemoryJobStore()
    ) -> GenerationEngine {
        var logger = Logger(label: "serving-test")
        logger.logLevel = .critical
        return GenerationEngine(configuration: configuration, repository: repository(), store: store, logger: logger)
    }

    /// A small job: 32x32, `steps` steps, fixed seed.
    static func spec(_ prompt: String = "a red circle", steps: Int = 3, seed: UInt64 = 1, loras: [LoRASpec] = []) -> JobSpec {
        JobSpec(prompt: prompt, width: 32, height: 32, steps: steps, seed: seed, loras: loras)
    }

    /// A fresh SQLite file path in a temporary folder.
    static func temporaryDatabase() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-test-\(UUID().uuidString)/jobs.sqlite").path
    }
}

/// Runs an engine's service loop in a task that a test can stop.
final class RunningEngine: Sendable {
    let engine: GenerationEngine
    let task: Task<Void, Error>

    init(_ engine: GenerationEngine) {
        self.engine = engine
        task = Task { try await engine.run() }
    }

    /// Cancels the service task and waits for `run()` to return (the running job, if any, finishes first).
    func stop(file: StaticString = #filePath, line: UInt = #line) async throws {
        task.cancel()
        try await withTimeout(seconds: 30, file: file, line: line) { _ = try? await self.task.value }
    }
}

struct TimeoutError: Error, CustomStringConvertible {
    let description: String
}

/// Runs `body`, failing with `TimeoutError` if it takes longer than `seconds`.
func withTimeout<T: Sendable>(
    seconds: Double, file: StaticString = #filePath, line: UInt = #line, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TimeoutError(description: "timed out after \(seconds) s (\(file):\(line))")
        }
        return value
    }
}

extension GenerationEngine {
    /// Polls the job until it is finished (no reliance on events).
    func waitUntilFinished(_ id: String, seconds: Double = 30) async throws -> JobRecord {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let job = try await job(id)
            if job.status.isFinished { return job }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw TimeoutError(description: "job \(id) did not finish within \(seconds) s")
    }

    /// Polls until the job is running and has finished at least `step` denoising steps.
    func waitUntilStep(_ id: String, _ step: Int = 1, seconds: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let job = try await job(id)
            if job.status == .running, job.progress.stage == "denoise", job.progress.step >= step { return }
            if job.status.isFinished { throw TimeoutError(description: "job \(id) finished (\(job.status)) before step \(step)") }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw TimeoutError(description: "job \(id) did not reach step \(step) within \(seconds) s")
    }
}
