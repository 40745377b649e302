import Compute
import Foundation
import Pipelines

/// Limits on what one request may ask for; checked before a job is queued.
public struct RequestLimits: Codable, Sendable, Equatable {
    public var maximumSide = 2048
    public var maximumPixels = 2048 * 2048
    public var maximumSteps = 150
    public var maximumCount = 8
    public var maximumLoRAs = 8
    public var maximumControls = 4
    public var maximumPromptCharacters = 8000
    public var maximumImageBytes = 20 << 20
    /// Decoded control and init images: per side, in pixels, and the longer side over the shorter.
    public var maximumImageSide = 8192
    public var maximumImagePixels = 4096 * 4096
    public var maximumAspectRatio: Double = 32
    /// Pixels an image may be scaled to while it is fitted to the generation size (before cropping).
    public var maximumIntermediatePixels = 4 * 2048 * 2048
    /// Client-chosen `metadata` echoed with a job: entries, and bytes of keys and values together.
    public var maximumMetadataEntries = 16
    public var maximumMetadataBytes = 4096
    /// Classifier-free guidance scale (`cfg`, `--cfg`).
    public var maximumGuidance: Float = 50

    public init() {}

    enum CodingKeys: String, CodingKey {
        case maximumSide = "max_side", maximumPixels = "max_pixels", maximumSteps = "max_steps", maximumCount = "max_images"
        case maximumLoRAs = "max_loras", maximumControls = "max_controls", maximumPromptCharacters = "max_prompt_characters"
        case maximumImageBytes = "max_image_bytes", maximumImageSide = "max_image_side", maximumImagePixels = "max_image_pixels"
        case maximumAspectRatio = "max_aspect_ratio", maximumIntermediatePixels = "max_intermediate_pixels"
        case maximumMetadataEntries = "max_metadata_entries", maximumMetadataBytes = "max_metadata_bytes", maximumGuidance = "max_cfg"
    }
}

/// How the engine runs jobs.
public struct EngineConfiguration: Sendable {
    /// Queued jobs beyond this are refused with "queue full" (HTTP 429).
    public var queueCapacity = 32
    /// A queued job that has waited this long runs next, whatever the grouping by adapters prefers.
    public var maximumGroupingWait: TimeInterval = 30
    /// With a shared store: how replicas pick jobs (`serve --placement`, `--locality-wait`).
    public var placement = PlacementSettings()
    /// Bounded asynchronous LoRA loading: LoRAs must be patched in by this fraction of the steps (step
    /// floor(fraction x steps)). 0 turns it off (LoRAs load before denoising starts). The default, 0.05, is the largest
    /// deadline at which the BAL quality study's worst case (the LoRA landing exactly at the deadline) keeps mean SSIM
    /// >= 0.95 against synchronous patching and the LoRA-effect rate within 5 points, for both embedded LoRAs
    /// (docs/bal-study.md; the paper's K = 20 of 50 steps, 0.4, gives SSIM 0.93 and loses 14-26 points).
    public var loraDeadlineFraction: Double = 0.05
    /// How LoRAs are applied: merged into the weights (restored after) or added at run time.
    public var loraMode = "merged"
    /// ControlNet-as-a-Service in process: threads of one ControlNet worker that runs every request's ControlNets
    /// beside the UNet's down and mid blocks (the UNet gets the remaining cores). 0 runs them one after another before
    /// each UNet call on all cores, which is faster for one request at a time on a machine of few cores (measured
    /// with `bench controlnet`, docs/benchmarks.md).
    public var controlNetWorkerThreads = 0
    /// A ControlNet executor every loaded model uses instead of the above (`serve --controlnet-worker`: the
    /// `RemoteControlNetExecutor`, ControlNet workers in other processes or hosts).
    public var controlNetExecutor: (any ControlNetExecutor)?
    /// With a ControlNet worker: the UNet's threads (nil: the cores the worker leaves).
    public var unetThreads: Int?
    /// With a ControlNet worker: pin the UNet's threads to the first cores and the worker's to the next ones.
    public var pinCores = false
    /// Base models kept loaded at once.
    public var loadedModelLimit = 1
    /// Loaded base models, in bytes (float32 weights; least recently used out first, one always stays).
    public var modelCacheBytes = 16 << 30
    /// Loaded ControlNets, in bytes (least recently used out first, one always stays).
    public var controlNetCacheBytes = 4 << 30
    /// Precision the models' linear and conv layers are loaded in (`serve --precision`).
    public var precision: ComputePrecision = .fp32
    /// Parsed LoRA files kept in memory, in bytes. Factors stay in their file's format, so a LoRA takes about its file's
    /// size (an fp16 file is not widened to twice that).
    public var loraCacheBytes = 2 << 30
    /// TAESD (a diffusers AutoencoderTiny folder): decode with it instead of each model's VAE where it fits.
    public var taesdFolder: String?
    /// A CLIP tokenizer folder for checkpoints without one (nil: the embedded model's).
    public var tokenizerFolder: String?
    /// Latent parallelism (the two guidance branches side by side); nil: `SWIFTDIFFUSION_LATENT_PARALLEL` or automatic.
    public var branchParallelism: DiffusionPipeline.BranchParallelism?
    /// Finished jobs and their images are deleted after this many seconds.
    public var retention: TimeInterval = 24 * 3600
    /// A job that was running when the process ended this many times is not run again: it is failed as a poison
    /// job, so a request that kills the process cannot put the server into a restart loop.
    public var maximumJobAttempts = 3
    public var limits = RequestLimits()

    public init() {}
}

/// Why the engine refused or could not find something; the HTTP layer maps each case to a status code.
public enum EngineError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The request is malformed or out of limits (400).
    case invalidRequest(String)
    /// A named model, LoRA, ControlNet or job does not exist (404).
    case notFound(String)
    /// The queue is full; retry after the given seconds (429).
    case queueFull(retryAfter: Int)
    /// The job is already finished (409).
    case conflict(String)
    /// The engine is not running (503).
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalidRequest(let message), .notFound(let message), .conflict(let message), .unavailable(let message): message
        case .queueFull(let retryAfter): "the queue is full; retry in about \(retryAfter) s"
        }
    }
}
