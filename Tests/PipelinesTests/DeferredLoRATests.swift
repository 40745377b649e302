import Adapters
import Compute
import Foundation
import Pipelines
import Samplers
import XCTest

/// Bounded asynchronous LoRA loading in the denoising loop.
final class DeferredLoRATests: XCTestCase {
    private func setUp() throws -> (DiffusionPipeline, GenerationRequest, LoRAApplication) {
        let pipeline = try PipelineParityTests.pipeline("sd1")
        let network = try LoRANetwork.load(contentsOf: PipelineParityTests.models.appendingPathComponent("sd1-lora.safetensors"))
        let lora = LoRAApplication(try LoRAKeyMap.resolve(network, targets: pipeline.model.loraTargets), weight: 0.8)
        let request = GenerationRequest(prompt: "a red circle", negativePrompt: "", width: 32, height: 32, steps: 6, sampler: .euler, seed: 9, decode: false)
        return (pipeline, request, lora)
    }

    func testReadyAtTheFirstStepEqualsPatchingUpFront() throws {
        let (pipeline, request, lora) = try setUp()
        let upFront = try pipeline.generate(request, loras: [lora])
        let deferred = DeferredLoRAs(deadlineStep: 3, poll: { [lora] }, wait: { [lora] })
        let result = try pipeline.generate(request, deferredLoRAs: deferred)
        XCTAssertEqual(result.loraPatchStep, 0)
        XCTAssertTrue(result.latents.isBitwiseEqual(to: upFront.latents))
    }

    func testLateLoRAIsPatchedAtTheDeadlineAndChangesTheResult() throws {
        let (pipeline, request, lora) = try setUp()
        var waited = false
        let deferred = DeferredLoRAs(deadlineStep: 2, poll: { nil }, wait: { waited = true; return [lora] })
        let late = try pipeline.generate(request, deferredLoRAs: deferred)
        XCTAssertTrue(waited, "the loop must block at the deadline")
        XCTAssertEqual(late.loraPatchStep, 2)
        let base = try pipeline.generate(request)
        let upFront = try pipeline.generate(request, loras: [lora])
        XCTAssertGreaterThan(late.latents.maxAbsDifference(base.latents), 1e-3, "the LoRA had no effect")
        XCTAssertGreaterThan(late.latents.maxAbsDifference(upFront.latents), 0, "patching at step 2 should differ from step 0")
        // The model is restored after the request.
        XCTAssertTrue(try pipeline.generate(request).latents.isBitwiseEqual(to: base.latents))
    }

    func testDeadlineBeyondTheScheduleStillPatchesAtTheLastStep() throws {
        let (pipeline, request, lora) = try setUp()
        let deferred = DeferredLoRAs(deadlineStep: 50, poll: { nil }, wait: { [lora] })
        XCTAssertEqual(try pipeline.generate(request, deferredLoRAs: deferred).loraPatchStep, request.steps - 1)
    }

    func testLoadingErrorFailsTheRequest() throws {
        let (pipeline, request, _) = try setUp()
        struct Broken: Error {}
        let deferred = DeferredLoRAs(deadlineStep: 1, poll: { throw Broken() }, wait: { throw Broken() })
        XCTAssertThrowsError(try pipeline.generate(request, deferredLoRAs: deferred))
    }
}
