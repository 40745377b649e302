import Adapters
import Compute
import Foundation
import Pipelines
import Samplers
import XCTest

/// The denoising loop's side of bounded asynchronous LoRA loading: at each step boundary it asks its
/// `LoRAStepSchedule` and patches in what it hands over (the engine's schedule is `AdapterSchedule`, tested in
/// ServingTests).
final class DeferredLoRATests: XCTestCase {
    /// A schedule made of two closures: `poll` before the deadline, `wait` at it.
    final class ClosureSchedule: LoRAStepSchedule {
        let deadlineStep: Int
        let poll: () throws -> [LoRAApplication]?
        let wait: () throws -> [LoRAApplication]
        var landedSteps: [Int] = []

        init(deadlineStep: Int, poll: @escaping () throws -> [LoRAApplication]?, wait: @escaping () throws -> [LoRAApplication]) {
            self.deadlineStep = deadlineStep
            self.poll = poll
            self.wait = wait
        }

        func lorasToPatch(beforeStep step: Int, of total: Int) throws -> [LoRAApplication]? {
            step >= min(deadlineStep, total - 1) ? try wait() : try poll()
        }

        func landed(atStep step: Int) { landedSteps.append(step) }
    }

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
        let deferred = ClosureSchedule(deadlineStep: 3, poll: { [lora] }, wait: { [lora] })
        let result = try pipeline.generate(request, loraSchedule: deferred)
        XCTAssertEqual(result.loraPatchStep, 0)
        XCTAssertEqual(deferred.landedSteps, [0], "the loop reports the landing once")
        XCTAssertTrue(result.latents.isBitwiseEqual(to: upFront.latents))
    }

    func testLateLoRAIsPatchedAtTheDeadlineAndChangesTheResult() throws {
        let (pipeline, request, lora) = try setUp()
        var waited = false
        let deferred = ClosureSchedule(deadlineStep: 2, poll: { nil }, wait: { waited = true; return [lora] })
        let late = try pipeline.generate(request, loraSchedule: deferred)
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
        let deferred = ClosureSchedule(deadlineStep: 50, poll: { nil }, wait: { [lora] })
        XCTAssertEqual(try pipeline.generate(request, loraSchedule: deferred).loraPatchStep, request.steps - 1)
    }

    func testLoadingErrorFailsTheRequest() throws {
        let (pipeline, request, _) = try setUp()
        struct Broken: Error {}
        let deferred = ClosureSchedule(deadlineStep: 1, poll: { throw Broken() }, wait: { throw Broken() })
        XCTAssertThrowsError(try pipeline.generate(request, loraSchedule: deferred))
    }
}
