import Foundation
import Pipelines

/// A generation job as submitted: names and bytes only (no paths, no loaded objects), so it can be stored,
/// validated against the model folders, and run again after a restart.
public struct JobSpec: Codable, Sendable, Equatable {
    /// Model id from `/v1/models`; nil means the server's default model.
    public var model: String?
    public var prompt: String
    public var negativePrompt: String?
    /// nil: the model's native size.
    public var width: Int?
    public var height: Int?
    public var steps: Int
    public var sampler: String
    public var cfg: Float
    /// nil: drawn at submission and stored, so a restarted job gives the same image.
    public var seed: UInt64?
    public var count: Int
    /// A1111 convention: 1 = no skip.
    public var clipSkip: Int?
    public var loras: [LoRASpec]
    public var controls: [ControlSpec]
    /// Image-to-image: the starting image (PNG or JPEG bytes).
    public var initImage: Data?
    public var strength: Float
    /// How the prompt is read: diffusers' plain text, or AUTOMATIC1111's `(emphasis:1.2)` syntax and 75-token chunks.
    public var promptSyntax: PromptSyntax
    /// AUTOMATIC1111's seeds: image `i` uses seed `seed + i` (its own generator); nil or false: one generator for
    /// the batch (diffusers). Optional so records stored before the field existed still decode.
    public var seedPerImage: Bool?
    /// Bounded asynchronous LoRA loading: the latest step at which LoRAs must be patched in; nil uses the
    /// server's default, 0 loads them before denoising starts.
    public var loraDeadlineStep: Int?
    /// Echoed back with the job.
    public var metadata: [String: String]
    /// Starting latents (a float32 `.npy`, NCHW as diffusers) instead of drawing them from the seed (`generate
    /// --init-latents`). Optional so records stored before the field existed still decode.
    public var initLatents: Data?

    public init(
        model: String? = nil, prompt: String, negativePrompt: String? = nil, width: Int? = nil, height: Int? = nil, steps: Int = 20,
        sampler: String = "euler_a", cfg: Float = 7, seed: UInt64? = nil, count: Int = 1, clipSkip: Int? = nil,
        loras: [LoRASpec] = [], controls: [ControlSpec] = [], initImage: Data? = nil, strength: Float = 0.75,
        promptSyntax: PromptSyntax = .plain, loraDeadlineStep: Int? = nil, metadata: [String: String] = [:], seedPerImage: Bool? = nil,
        initLatents: Data? = nil
    ) {
        self.initLatents = initLatents
        self.model = model
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.steps = steps
        self.sampler = sampler
        self.cfg = cfg
        self.seed = seed
        self.count = count
        self.clipSkip = clipSkip
        self.loras = loras
        self.controls = controls
        self.initImage = initImage
        self.strength = strength
        self.promptSyntax = promptSyntax
        self.loraDeadlineStep = loraDeadlineStep
        self.metadata = metadata
        self.seedPerImage = seedPerImage
    }

    /// Jobs with equal keys run on the same loaded model with the same adapters: the queue groups them.
    public var groupKey: String {
        let loraPart = loras.map { "\($0.name)@\($0.weight)/\($0.textEncoderWeight ?? $0.weight)" }.sorted().joined(separator: ",")
        let controlPart = controls.map(\.model).sorted().joined(separator: ",")
        return "\(model ?? "")|\(loraPart)|\(controlPart)"
    }
}

/// A LoRA by its registry name.
public struct LoRASpec: Codable, Sendable, Equatable {
    public var name: String
    public var weight: Float
    /// A separate strength for the text encoder(s); nil uses `weight`.
    public var textEncoderWeight: Float?

    public init(name: String, weight: Float = 1, textEncoderWeight: Float? = nil) {
        self.name = name
        self.weight = weight
        self.textEncoderWeight = textEncoderWeight
    }
}

/// A ControlNet unit.
public struct ControlSpec: Codable, Sendable, Equatable {
    /// ControlNet id from `/v1/controlnets`.
    public var model: String
    /// The control image (PNG or JPEG bytes).
    public var image: Data
    /// Preprocessor module ("none", "canny", "threshold", "scribble", "invert").
    public var preprocessor: String
    public var thresholdA: Double?
    public var thresholdB: Double?
    /// "just_resize", "crop_and_resize" or "resize_and_fill" (A1111's display names accepted too).
    public var resizeMode: String
    public var weight: Float
    public var start: Float
    public var end: Float
    public var guessMode: Bool
    /// AUTOMATIC1111's "My prompt is more important": residuals ramped down toward the first skips on both guidance
    /// branches. Optional so records stored before the field existed still decode.
    public var softInjection: Bool?

    public init(
        model: String, image: Data, preprocessor: String = "none", thresholdA: Double? = nil, thresholdB: Double? = nil,
        resizeMode: String = "crop_and_resize", weight: Float = 1, start: Float = 0, end: Float = 1, guessMode: Bool = false,
        softInjection: Bool? = nil
    ) {
        self.model = model
        self.image = image
        self.preprocessor = preprocessor
        self.thresholdA = thresholdA
        self.thresholdB = thresholdB
        self.resizeMode = resizeMode
        self.weight = weight
        self.start = start
        self.end = end
        self.guessMode = guessMode
        self.softInjection = softInjection
    }
}
