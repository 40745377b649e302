import Adapters
import Compute
import Foundation
import Models
import Samplers

/// Asked at every step boundary of the denoising loop which LoRAs to patch in there (bounded asynchronous LoRA
/// loading). `AdapterSchedule` (Serving) is the engine's; tests give their own.
public protocol LoRAStepSchedule: AnyObject {
    /// Before step `step` (0-based) of `total`: the LoRAs to patch in now, or nil to go on without. Returning them
    /// at `step` is final (the loop does not ask again); blocking here (the deadline) holds the step back.
    func lorasToPatch(beforeStep step: Int, of total: Int) throws -> [LoRAApplication]?
    /// The LoRAs returned for `step` are patched in.
    func landed(atStep step: Int)
}

/// The denoising loop as a step iterator (as mlx-swift-examples' `DenoiseIterator`): `next()` runs one step, and at
/// each step boundary the loop asks its named collaborators what to do instead of deciding inline:
/// - `loraSchedule` (`LoRAStepSchedule`, the engine's `AdapterSchedule`): LoRAs to patch in before this step;
///   text-encoder LoRAs re-encode the prompt here;
/// - `controlNetExecutor` (`ControlNetExecutor`): where this step's ControlNets run against the UNet's halves;
/// - `branches` (`LatentParallelism`): whether the two guidance branches run side by side.
struct DenoisingSteps {
    let pipeline: DiffusionPipeline
    let request: GenerationRequest
    let hooks: GenerationHooks
    let loraMode: DiffusionPipeline.LoRAMode
    var scheduler: any Scheduler
    private(set) var latents: Tensor
    var noise: LatentNoise
    var prompt: EncodedPrompt
    var conditioning: UNetConditioning
    let guided: Bool
    let controlImages: [Tensor]
    let stepIndices: [Int]
    let branches: LatentParallelism
    var loraSchedule: (any LoRAStepSchedule)?
    /// The step before which the schedule's LoRAs were patched in.
    private(set) var loraPatchStep: Int?
    /// Seconds spent patching them in (and re-encoding the prompt for text-encoder LoRAs).
    private(set) var patchSeconds: Double = 0
    private(set) var position = 0
    /// Seconds of ControlNet compute over the steps, wherever the executor ran it (beside the UNet or before it).
    let controlNetClock = StageClock()
    /// Names this generation to a ControlNet executor (a remote worker caches its control images under it).
    let generationID = UUID()

    var total: Int { stepIndices.count }

    /// Runs the next step; false when every step has run.
    mutating func next() throws -> Bool {
        guard position < total else { return false }
        let stepIndex = stepIndices[position]
        try hooks.beforeStep(position, total)
        try patchScheduledLoRAs()
        let timestep = [scheduler.timesteps[stepIndex]]
        let input = try scheduler.scaleModelInput(guided ? concat([latents, latents], axis: 0) : latents, stepIndex: stepIndex)
        let clock = controlNetClock
        let controls = try pipeline.controlCalls(
            request, scheduler: scheduler, images: controlImages, input: input, latents: latents, stepIndex: stepIndex, position: position,
            total: total, timestep: timestep, conditioning: conditioning, positive: prompt.positive, guided: guided,
            generationID: generationID
        ).map { call in call.timed { seconds in clock.add(seconds) } }
        let stepConditioning = conditioning
        let branches = self.branches
        var prediction = try pipeline.controlNetExecutor.step(
            calls: controls,
            downAndMid: { try branches.downAndMid(input, timesteps: timestep, conditioning: stepConditioning) },
            up: { down, control in try branches.up(down, conditioning: stepConditioning, control: control) })
        if guided {
            let halves = chunk(prediction, 2, axis: 0)
            // uncond + scale * (cond - uncond)
            prediction = halves[0] + (halves[1] - halves[0]) * request.guidanceScale
        }
        latents = try scheduler.step(modelOutput: prediction, stepIndex: stepIndex, sample: latents, noise: &noise).prevSample
        hooks.afterStep(position, total)
        position += 1
        return true
    }

    /// The step boundary's LoRA question: patch in what the schedule hands over (re-encoding the prompt for
    /// text-encoder LoRAs).
    private mutating func patchScheduledLoRAs() throws {
        guard let schedule = loraSchedule, let ready = try schedule.lorasToPatch(beforeStep: position, of: total) else { return }
        loraSchedule = nil
        loraPatchStep = position
        let start = DispatchTime.now().uptimeNanoseconds
        defer { patchSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        // A ControlNet service lends the patch its idle workers' cores too.
        pipeline.controlNetExecutor.onIdleCores { pipeline.apply(ready, mode: loraMode) }
        schedule.landed(atStep: position)
        if ready.contains(where: { $0.lora.entries.contains { $0.component != .unet } }) {
            // Text-encoder LoRAs change the conditioning: encode the prompt again.
            prompt = try PromptEncoder(model: pipeline.model).encode(request)
            let timestepCondition = conditioning.timestepCondition
            conditioning = guided ? prompt.conditioning : prompt.positive
            conditioning.timestepCondition = timestepCondition
        }
    }
}

/// Seconds accumulated from any thread (a ControlNet call may run on a ControlNet worker).
final class StageClock: @unchecked Sendable {
    private let lock = NSLock()
    private var nanoseconds: UInt64 = 0

    func time<T>(_ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let elapsed = DispatchTime.now().uptimeNanoseconds - start
            lock.withLock { nanoseconds += elapsed }
        }
        return try body()
    }

    /// Adds seconds measured elsewhere.
    func add(_ seconds: Double) { lock.withLock { nanoseconds += UInt64(max(0, seconds) * 1e9) } }

    var seconds: Double { lock.withLock { Double(nanoseconds) / 1e9 } }
}
