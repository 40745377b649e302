import Adapters
import Compute
import Foundation
import Imaging
import Models
import Samplers

/// Everything one text-to-image or image-to-image generation needs, independent of how it was asked for
/// (CLI, native API, AUTOMATIC1111 or OpenAI surface).
public struct GenerationRequest: Sendable {
    public var prompt: String
    /// `nil` means "no negative prompt": an empty one for SD 1.x/2.x, zero embeddings for SDXL (diffusers'
    /// `force_zeros_for_empty_prompt`).
    public var negativePrompt: String?
    public var width: Int
    public var height: Int
    public var steps: Int
    public var sampler: SamplerKind
    /// Classifier-free guidance scale; at or below 1 the unconditional branch is skipped.
    public var guidanceScale: Float
    public var seed: UInt64
    /// Images generated from one draw of the generator (diffusers' `num_images_per_prompt`).
    public var count: Int
    public var clipSkip: Int?
    /// Image-to-image: the starting image, already at `width` x `height`.
    public var initImage: RGBImage?
    /// Image-to-image: how much of the schedule to run (1 = all, ignores most of the image).
    public var strength: Float
    /// Starting latents `[count, 4, h, w]` in diffusers' NCHW layout instead of drawing them from the seed
    /// (still multiplied by the scheduler's initial sigma, as diffusers does).
    public var initLatents: Tensor?
    /// ControlNets to apply, with their prepared conditioning images.
    public var controls: [ControlInput]
    /// Whether to decode the latents to images (off for latents-only requests).
    public var decode: Bool
    /// How the prompts are read.
    public var promptSyntax: PromptSyntax = .plain
    /// AUTOMATIC1111's seeds: image `i` of the batch draws its initial latents and its sampler noise from its own
    /// generator seeded `seed + i`, so it equals a one-image request with that seed. Off (the default), one
    /// generator seeded `seed` draws for the whole batch, as diffusers does.
    public var seedPerImage = false

    public init(
        prompt: String, negativePrompt: String? = nil, width: Int = 512, height: Int = 512, steps: Int = 20,
        sampler: SamplerKind = .eulerAncestral, guidanceScale: Float = 7.5, seed: UInt64 = 0, count: Int = 1, clipSkip: Int? = nil,
        initImage: RGBImage? = nil, strength: Float = 0.75, initLatents: Tensor? = nil, controls: [ControlInput] = [],
        decode: Bool = true
    ) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.steps = steps
        self.sampler = sampler
        self.guidanceScale = guidanceScale
        self.seed = seed
        self.count = count
        self.clipSkip = clipSkip
        self.initImage = initImage
        self.strength = strength
        self.initLatents = initLatents
        self.controls = controls
        self.decode = decode
    }

    /// True when classifier-free guidance runs an unconditional branch.
    public var usesGuidance: Bool { guidanceScale > 1 }
}

/// How prompt text is read.
public enum PromptSyntax: String, Codable, Sendable {
    /// Plain text, as diffusers reads it (truncated to the tokenizer's 77 tokens).
    case plain
    /// AUTOMATIC1111: `(word:1.2)`, `(word)`, `[word]` emphasis and prompts longer than 75 tokens, encoded in
    /// 75-token chunks.
    case a1111
}

/// One ControlNet in a request: the model, its conditioning image (already preprocessed and sized to the
/// request), and when and how strongly it acts.
public struct ControlInput: @unchecked Sendable {
    public var model: ControlNetModel
    /// The ControlNet's id in the model repository, which a remote ControlNet worker loads (nil: run it here).
    public var modelID: String?
    public var image: RGBImage
    public var scale: Float
    /// Fractions of the schedule during which the ControlNet acts (diffusers' `control_guidance_start/end`).
    public var start: Float
    public var end: Float
    public var guessMode: Bool
    /// Residuals ramped from 0.1x (first skip) to 1x (mid block) as in guess mode, but on both guidance branches:
    /// AUTOMATIC1111's "My prompt is more important" (its soft injection, `0.825 ** (12 - i)` ~ diffusers'
    /// `logspace(-1, 0, 13)`). Guess mode implies it.
    public var softInjection: Bool

    public init(
        model: ControlNetModel, image: RGBImage, scale: Float = 1, start: Float = 0, end: Float = 1, guessMode: Bool = false,
        softInjection: Bool = false, modelID: String? = nil
    ) {
        self.model = model
        self.modelID = modelID
        self.image = image
        self.scale = scale
        self.start = start
        self.end = end
        self.guessMode = guessMode
        self.softInjection = softInjection
    }

    /// diffusers' `controlnet_keep`: 0 outside [start, end] of the schedule, else 1.
    func keep(step: Int, of total: Int) -> Float {
        let begin = Float(step) / Float(total), finish = Float(step + 1) / Float(total)
        return begin < start || finish > end ? 0 : 1
    }
}

/// What a generation produced.
public struct GenerationResult: Sendable {
    /// Final latents in diffusers' NCHW layout `[count, 4, h, w]` (before VAE decoding).
    public var latents: Tensor
    public var images: [RGBImage]
    /// Seconds per stage: "encode_prompt", "denoise", "decode" (and "encode_image" for img2img, "lora_patch" with LoRAs,
    /// "controlnet" with ControlNets: their compute inside "denoise", overlapping the UNet or not).
    public var timings: [String: Double]
    /// With deferred LoRAs: the step (0-based) before which they were patched in, nil if there were none.
    public var loraPatchStep: Int?
}

/// Why a request cannot run, in words a user can act on.
public enum GenerationError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidRequest(String)
    case cancelled

    public var description: String {
        switch self {
        case .invalidRequest(let message): message
        case .cancelled: "the generation was cancelled"
        }
    }
}

/// Where a generation is, reported to observers (progress bars, server events).
public enum GenerationStage: String, Sendable {
    case encodePrompt = "encode_prompt"
    case encodeImage = "encode_image"
    case denoise
    case decode
}

/// Callbacks a caller can hook into the denoising loop.
public struct GenerationHooks: @unchecked Sendable {
    /// A stage begins.
    public var stage: (GenerationStage) -> Void
    /// Called before each denoising step (0-based) of `total`; throwing cancels the generation. This is
    /// before the loop asks its `LoRAStepSchedule` whether LoRAs are patched in at this boundary.
    public var beforeStep: (_ step: Int, _ total: Int) throws -> Void
    /// A denoising step finished.
    public var afterStep: (_ step: Int, _ total: Int) -> Void

    public init(
        stage: @escaping (GenerationStage) -> Void = { _ in }, beforeStep: @escaping (Int, Int) throws -> Void = { _, _ in },
        afterStep: @escaping (Int, Int) -> Void = { _, _ in }
    ) {
        self.stage = stage
        self.beforeStep = beforeStep
        self.afterStep = afterStep
    }
}
