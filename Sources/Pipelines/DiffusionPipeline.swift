import Adapters
import Compute
import Dispatch
import Foundation
import Imaging
import Models
import Samplers

/// One request's workflow on a loaded model: encode the prompt, denoise (text-to-image or
/// image-to-image, with ControlNets), decode. Matches diffusers' `StableDiffusionPipeline`,
/// `StableDiffusionImg2ImgPipeline`, `StableDiffusionControlNetPipeline` and `StableDiffusionXLPipeline`.
///
/// A pipeline runs one request at a time on its model (LoRA patching mutates the model's weights).
public final class DiffusionPipeline: @unchecked Sendable {
    public let model: StableDiffusionModel
    private let patcher = LoRAPatcher()

    /// Latent parallelism (SwiftDiffusion, §4.3; `LatentParallelism`): with classifier-free guidance the
    /// unconditional and the conditional branch run at the same time, one per pool thread.
    public enum BranchParallelism: String, Sendable, CaseIterable {
        /// Two branches on two threads when the pool has exactly two threads (a wider pool keeps splitting
        /// ops, which uses all of its threads) where it pays: a small UNet (the embedded model), or latents of 2048
        /// positions and more (SD 1.5 from 384x384); `LatentParallelism.pays(weightBytes:latentPositions:)`.
        case automatic
        /// Always the two branches side by side (pools of any width; each branch runs single-threaded).
        case on
        /// One batch-2 UNet call.
        case off
    }

    /// See `BranchParallelism`; `SWIFTDIFFUSION_LATENT_PARALLEL=on|off|automatic` sets the default.
    public var branchParallelism: BranchParallelism
    /// The UNet's weights as stored (`LayerRegistry.parameterBytes`, counted once): `.automatic` reads it per request.
    private let unetWeightBytes: Int

    public init(model: StableDiffusionModel, branchParallelism: BranchParallelism? = nil) {
        self.model = model
        unetWeightBytes = model.unet.registry.parameterBytes
        self.branchParallelism =
            branchParallelism
            ?? ProcessInfo.processInfo.environment["SWIFTDIFFUSION_LATENT_PARALLEL"].flatMap(BranchParallelism.init(rawValue:))
            ?? .automatic
    }

    /// Where each step's ControlNets run: one after another before the UNet (`SequentialControlNetExecutor`, the
    /// default), or on ControlNet workers beside the UNet's down and mid blocks (`ControlNetService`).
    public var controlNetExecutor: any ControlNetExecutor = SequentialControlNetExecutor()

    /// TAESD (diffusers `AutoencoderTiny`) as the fast decoder: when set, images are decoded with it instead
    /// of the model's KL VAE (diffusers: `pipe.vae = AutoencoderTiny...`). Image-to-image still encodes with the VAE.
    public var tinyDecoder: TinyAutoencoderDecoder?

    /// How LoRAs are applied for a request.
    public enum LoRAMode: String, Sendable {
        /// Merged into the weights before the request and restored (bitwise) after it.
        case merged
        /// Added to each patched layer's output; weights untouched.
        case runtime
    }

    /// Checks a request against the model before any work starts.
    public func validate(_ request: GenerationRequest) throws {
        let multiple = model.sizeMultiple
        guard request.width > 0, request.height > 0, request.width % multiple == 0, request.height % multiple == 0 else {
            throw GenerationError.invalidRequest("width and height must be positive multiples of \(multiple), got \(request.width)x\(request.height)")
        }
        if let tinyDecoder, tinyDecoder.upscaleFactor != model.vaeScaleFactor || tinyDecoder.configuration.latentChannels != model.unet.configuration.outChannels {
            throw GenerationError.invalidRequest(
                "the TAESD decoder (\(tinyDecoder.configuration.latentChannels) latent channels, x\(tinyDecoder.upscaleFactor)) does not fit this model "
                    + "(\(model.unet.configuration.outChannels) channels, x\(model.vaeScaleFactor))")
        }
        guard request.steps >= 1 else { throw GenerationError.invalidRequest("steps must be at least 1") }
        guard request.count >= 1 else { throw GenerationError.invalidRequest("count must be at least 1") }
        guard request.guidanceScale.isFinite, request.guidanceScale >= 0 else {
            throw GenerationError.invalidRequest("guidance scale must be a non-negative number")
        }
        if let image = request.initImage, image.width != request.width || image.height != request.height {
            throw GenerationError.invalidRequest("the init image is \(image.width)x\(image.height), the request \(request.width)x\(request.height)")
        }
        if request.initImage != nil, !(request.strength > 0 && request.strength <= 1) {
            throw GenerationError.invalidRequest("strength must be in (0, 1], got \(request.strength)")
        }
        if let latents = request.initLatents {
            let expected = [request.count, model.unet.configuration.inChannels, request.height / model.vaeScaleFactor, request.width / model.vaeScaleFactor]
            guard latents.shape == expected else {
                throw GenerationError.invalidRequest("init latents have shape \(latents.shape), expected \(expected) (NCHW)")
            }
        }
        for control in request.controls {
            guard control.image.width == request.width, control.image.height == request.height else {
                throw GenerationError.invalidRequest("control images must be \(request.width)x\(request.height), got \(control.image.width)x\(control.image.height)")
            }
            guard control.start >= 0, control.end <= 1, control.start < control.end else {
                throw GenerationError.invalidRequest("control start/end must satisfy 0 <= start < end <= 1")
            }
            let controlContext = try control.model.configuration.unet.crossAttentionDim.values(count: 1, field: "cross_attention_dim")
            let unetContext = try model.unet.configuration.crossAttentionDim.values(count: 1, field: "cross_attention_dim")
            if case .shared = control.model.configuration.unet.crossAttentionDim, controlContext != unetContext {
                throw GenerationError.invalidRequest("the ControlNet was made for a different base model (context \(controlContext) vs \(unetContext))")
            }
        }
    }

    /// Runs a request. `loras` are applied for its duration (and removed after, also on error); `loraSchedule`
    /// hands over more at a step boundary (bounded asynchronous loading), also removed after.
    public func generate(
        _ request: GenerationRequest, loras: [LoRAApplication] = [], loraSchedule: (any LoRAStepSchedule)? = nil, loraMode: LoRAMode = .merged,
        hooks: GenerationHooks = GenerationHooks()
    ) throws -> GenerationResult {
        try validate(request)
        defer { patcher.reset() }
        let patchStart = DispatchTime.now().uptimeNanoseconds
        apply(loras, mode: loraMode)
        var timings: [String: Double] = [:]
        if !loras.isEmpty { timings["lora_patch"] = Double(DispatchTime.now().uptimeNanoseconds - patchStart) / 1e9 }
        func timed<T>(_ stage: GenerationStage, _ body: () throws -> T) rethrows -> T {
            hooks.stage(stage)
            let start = DispatchTime.now().uptimeNanoseconds
            defer { timings[stage.rawValue, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            return try body()
        }

        let prompt = try timed(.encodePrompt) { try PromptEncoder(model: model).encode(request) }
        // One generator for the batch (diffusers), or one per image seeded seed + i (AUTOMATIC1111).
        var noise =
            request.seedPerImage
            ? LatentNoise(generators: (0..<request.count).map { TorchGenerator(seed: request.seed &+ UInt64($0)) }, layout: .nhwc)
            : LatentNoise(generator: TorchGenerator(seed: request.seed), layout: .nhwc)
        var scheduler = try model.scheduler(request.sampler)
        let latentShape = (
            batch: request.count, channels: model.unet.configuration.inChannels, height: request.height / model.vaeScaleFactor,
            width: request.width / model.vaeScaleFactor
        )

        // Starting latents and the steps to run.
        var latents: Tensor
        var stepRange: Range<Int>
        if let image = request.initImage {
            stepRange = try scheduler.setImg2ImgTimesteps(request.steps, strength: Double(request.strength))
            guard !stepRange.isEmpty else {
                throw GenerationError.invalidRequest("strength \(request.strength) with \(request.steps) steps leaves no step to run")
            }
            let encoded = try timed(.encodeImage) { () throws -> Tensor in
                let (mean, logVariance) = try model.vae.encode(image.tensor())
                // retrieve_latents(sample_mode="sample"): mean + std * randn, drawn first from the generator(s).
                let samples = request.seedPerImage ? request.count : 1
                let draw = noise.randn(shape: [samples, mean.shape[1], mean.shape[2], mean.shape[3]])
                let std = exp(logVariance * 0.5)
                let sample = repeatBatch(mean, samples) + repeatBatch(std, samples) * draw
                return repeatBatch(sample * model.vae.scalingFactor, request.count / samples)
            }
            let initialNoise = noise.randn(shape: [latentShape.batch, latentShape.height, latentShape.width, latentShape.channels])
            latents = try scheduler.addNoise(to: encoded, noise: initialNoise, stepIndex: stepRange.lowerBound)
        } else {
            try scheduler.setTimesteps(request.steps)
            stepRange = 0..<scheduler.timesteps.count
            let initial =
                request.initLatents.map(nchwToNHWC)
                ?? noise.randn(shape: [latentShape.batch, latentShape.height, latentShape.width, latentShape.channels])
            latents = initial * scheduler.initNoiseSigma
        }

        // Guidance-distilled UNets (LCM) take the guidance as an embedding and run a single branch.
        let distilled = model.unet.configuration.timeCondProjDim != nil
        let guided = request.usesGuidance && !distilled
        var conditioning = guided ? prompt.conditioning : prompt.positive
        if let dim = model.unet.configuration.timeCondProjDim {
            conditioning.timestepCondition = repeatBatch(
                guidanceScaleEmbedding(request.guidanceScale - 1, dim: dim), conditioning.context.shape[0])
        }
        let controlImages = request.controls.map { control in
            repeatBatch(control.image.unitTensor(), control.guessMode ? request.count : (guided ? 2 : 1) * request.count)
        }

        var steps = DenoisingSteps(
            pipeline: self, request: request, hooks: hooks, loraMode: loraMode, scheduler: scheduler, latents: latents, noise: noise,
            prompt: prompt, conditioning: conditioning, guided: guided, controlImages: controlImages, stepIndices: Array(stepRange),
            branches: latentParallelism(guided: guided, latentPositions: latentShape.height * latentShape.width), loraSchedule: loraSchedule)
        try timed(.denoise) {
            try ComputePool.run(on: denoisingPool) {
                while try steps.next() {}
            }
        }
        latents = steps.latents
        let patchStep = steps.loraPatchStep
        if patchStep != nil { timings["lora_patch", default: 0] += steps.patchSeconds }
        if !request.controls.isEmpty { timings["controlnet"] = steps.controlNetClock.seconds }

        var images: [RGBImage] = []
        if request.decode {
            images = try timed(.decode) {
                if let tinyDecoder {
                    return RGBImage.images(fromSigned: try tinyDecoder.decode(latents * (1 / tinyDecoder.configuration.scalingFactor)))
                }
                // The VAE decoder's activations have sizes of their own (hundreds of MiB at 512x512), so the buffers the
                // denoising steps parked would only add to its peak: give them back first, where its activations are
                // that large.
                TensorBufferCache.trim(beforeStageOf: model.vae.decoderPeakActivationBytes(latentShape: latents.shape))
                return RGBImage.images(fromSigned: try model.vae.decodeScaled(latents))
            }
        }
        return GenerationResult(latents: nhwcToNCHW(latents), images: images, timings: timings, loraPatchStep: patchStep)
    }

    /// The pool the denoising steps run on: the executor's own (the cores its ControlNet workers leave), else the
    /// caller's.
    var denoisingPool: ComputePool { controlNetExecutor.denoisingPool ?? ComputePool.current }

    /// How the steps run the guidance branches, for the latents' positions (height x width); each half of a step
    /// decides for the pool it runs on (`LatentParallelism.splits(on:)`).
    func latentParallelism(guided: Bool, latentPositions: Int) -> LatentParallelism {
        LatentParallelism(unet: model.unet, weightBytes: unetWeightBytes, mode: branchParallelism, guided: guided, latentPositions: latentPositions)
    }

    func apply(_ loras: [LoRAApplication], mode: LoRAMode) {
        guard !loras.isEmpty else { return }
        switch mode {
        case .merged: patcher.merge(loras)
        case .runtime: patcher.attachRuntime(loras)
        }
    }

    /// The calls that give each ControlNet's scaled residuals at this step, for those active at it (their sum is
    /// diffusers' MultiControlNet). Inputs are computed here, so the calls can run on any thread.
    func controlCalls(
        _ request: GenerationRequest, scheduler: any Scheduler, images: [Tensor], input: Tensor, latents: Tensor, stepIndex: Int, position: Int, total: Int,
        timestep: [Float], conditioning: UNetConditioning, positive: UNetConditioning, guided: Bool, generationID: UUID
    ) throws -> [ControlNetCall] {
        var calls: [ControlNetCall] = []
        for (index, (control, image)) in zip(request.controls, images).enumerated() {
            let scale = control.scale * control.keep(step: position, of: total)
            if scale == 0 { continue }
            // Guess mode: the ControlNet sees only the conditional batch; the unconditional half gets zeros.
            let conditionalOnly = control.guessMode && guided
            calls.append(
                ControlNetCall(
                    model: control.model, modelID: control.modelID, generationID: generationID, controlIndex: index,
                    sample: conditionalOnly ? try scheduler.scaleModelInput(latents, stepIndex: stepIndex) : input, timesteps: timestep,
                    conditioning: conditionalOnly ? positive : conditioning, controlImage: image,
                    scaling: .init(conditioningScale: scale, guessMode: control.guessMode || control.softInjection),
                    conditionalOnly: conditionalOnly))
        }
        return calls
    }
}

/// diffusers' `get_guidance_scale_embedding`: sinusoidal features of `w * 1000`, `[1, dim]`.
func guidanceScaleEmbedding(_ w: Float, dim: Int) -> Tensor {
    let half = dim / 2
    let step = logf(10000) / Float(half - 1)
    let scaled = w * 1000
    return Tensor(shape: [1, dim]) { buffer in
        for i in 0..<half {
            let angle = scaled * expf(Float(i) * -step)
            buffer[i] = sinf(angle)
            buffer[half + i] = cosf(angle)
        }
        if dim % 2 == 1 { buffer[dim - 1] = 0 }
    }
}
