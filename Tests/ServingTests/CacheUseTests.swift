import Foundation
import XCTest

@testable import Serving

/// Each finished job records which of its model, LoRAs and ControlNets were already in memory (the trace export's
/// cache-hit fields).
final class CacheUseTests: XCTestCase {
    func testJobsRecordTheirCacheHitsAndMisses() async throws {
        var configuration = EngineConfiguration()
        configuration.loraDeadlineFraction = 0  // LoRAs load before denoising: the first job's are misses
        let engine = ServingFixtures.engine(configuration: configuration)
        let running = RunningEngine(engine)
        var spec = ServingFixtures.spec("a red circle", steps: 2, seed: 4, loras: [LoRASpec(name: "sd1-lora", weight: 0.7)])
        spec.controls = [ControlSpec(model: "sd1-controlnet", image: try ServingFixtures.controlImage)]
        let first = try await engine.waitUntilFinished(try await engine.submit(spec).id)
        XCTAssertEqual(first.status, .succeeded, first.error ?? "")
        XCTAssertEqual(first.cache, CacheUse(modelHit: false, loraHits: 0, loraMisses: 1, controlnetHits: 0, controlnetMisses: 1))
        spec.loras.append(LoRASpec(name: "sd1-lora-b", weight: 0.3))
        let second = try await engine.waitUntilFinished(try await engine.submit(spec).id)
        XCTAssertEqual(second.cache, CacheUse(modelHit: true, loraHits: 1, loraMisses: 1, controlnetHits: 1, controlnetMisses: 0))
        // Stored, so the trace export reads it from the job store.
        let stored = try await engine.job(second.id)
        XCTAssertEqual(stored.cache?.loraMisses, 1)
        try await running.stop()
    }
}
