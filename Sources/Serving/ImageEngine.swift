import Adapters
import Compute
import Foundation
import Imaging
import Logging
import Metrics
import Models
import Pipelines
import Samplers
import Weights

/// The one code path from a request to PNG bytes, shared by every front end: `swiftdiffusion generate` and
/// `batch` call it directly (no HTTP, no job store), the server through `GenerationEngine`'s job queue, the
/// benchmarks like the CLI.
///
///     JobSpec ──prepare──▶ EngineRequest ──render──▶ RenderedImages (PNG bytes + infotext + latents)
///
/// - `prepare` is the only validation: limits, names (looked up in the `ModelRepository`, never paths), values,
///   and decoding into typed values (sampler, resize mode, preprocessor, decoded and fitted images, latents).
/// - `render` loads what the request needs through the engine's caches (base models, ControlNets, LoRA files: each
///   bounded in bytes, least recently used out first, with hit/miss/eviction counts), hands LoRAs to an
///   `AdapterSchedule` (bounded asynchronous loading, asked at every step boundary), runs the `DiffusionPipeline` on the configured ControlNet
///   executor, and encodes the PNGs with their AUTOMATIC1111 "parameters" text.
///
/// `render` runs one request at a time (LoRA patching mutates the loaded weights); `prepare` may run on any thread.
public final class ImageEngine: @unchecked Sendable {
    public let repository: ModelRepository
    public let configuration: EngineConfiguration
    let logger: Logger
    let loras: LoRALibrary
    /// Loaded base models as pipelines, by model id.
    let models: BoundedCache<String, DiffusionPipeline>
    /// Loaded ControlNets, by ControlNet id (shared by every base model).
    let controlnets: BoundedCache<String, ControlNetModel>
    /// The ControlNet worker shared by every request and every loaded model, when configured.
    let controlNetService: ControlNetService?
    private var computeThreadPinned = false
    /// Whether requests with ControlNets use the configured ControlNet worker (benchmarks turn it off to measure the
    /// sequential baseline on the same engine).
    public var usesControlNetWorker = true
    private var tinyDecoder: TinyAutoencoderDecoder?
    private var tinyDecoderLoaded = false

    public init(repository: ModelRepository, configuration: EngineConfiguration, logger: Logger) {
        self.repository = repository
        self.configuration = configuration
        self.logger = logger
        let loras = LoRALibrary(capacityBytes: configuration.loraCacheBytes, logger: logger)
        self.loras = loras
        self.models = BoundedCache(
            capacityBytes: configuration.modelCacheBytes, maximumEntries: configuration.loadedModelLimit, metric: "swiftdiffusion_model_cache_total",
            onEvict: { id, _ in
                loras.forgetModel(id)
                logger.info("unloaded model", metadata: ["model": "\(id)"])
            })
        self.controlnets = BoundedCache(
            capacityBytes: configuration.controlNetCacheBytes, metric: "swiftdiffusion_adapter_cache_total", dimensions: [("kind", "controlnet")],
            onEvict: { id, _ in logger.info("unloaded ControlNet", metadata: ["controlnet": "\(id)"]) })
        self.controlNetService =
            configuration.controlNetWorkerThreads > 0
            ? ControlNetService(
                workers: 1, threadsPerWorker: configuration.controlNetWorkerThreads, unetThreads: configuration.unetThreads,
                pinCores: configuration.pinCores) : nil
    }

    /// LoRA files and ControlNets in memory now: how many adapters a replica advertises as held (placement).
    public var cachedAdapterCount: Int { loras.statistics.entries + controlnets.statistics.entries }

    // MARK: - Validation

    /// Checks a request against the limits and the models and turns it into typed values. Throws
    /// `EngineError.invalidRequest` (400) or `.notFound` (404) with a message a user can act on.
    public func prepare(_ spec: JobSpec) throws -> EngineRequest {
        let limits = configuration.limits
        func invalid(_ message: String) -> EngineError { .invalidRequest(message) }
        // AUTOMATIC1111 generates from an empty prompt (or one that was only `<lora:...>` tags).
        guard !spec.prompt.isEmpty || !spec.controls.isEmpty || spec.initImage != nil || spec.promptSyntax == .a1111 else {
            throw invalid("prompt must not be empty")
        }
        guard spec.prompt.count <= limits.maximumPromptCharacters, (spec.negativePrompt?.count ?? 0) <= limits.maximumPromptCharacters else {
            throw invalid("prompts are limited to \(limits.maximumPromptCharacters) characters")
        }
        if let width = spec.width { guard (8...limits.maximumSide).contains(width) else { throw invalid("width must be between 8 and \(limits.maximumSide)") } }
        if let height = spec.height {
            guard (8...limits.maximumSide).contains(height) else { throw invalid("height must be between 8 and \(limits.maximumSide)") }
        }
        if let width = spec.width, let height = spec.height, width * height > limits.maximumPixels {
            throw invalid("width x height must be at most \(limits.maximumPixels) pixels")
        }
        guard (1...limits.maximumSteps).contains(spec.steps) else { throw invalid("steps must be between 1 and \(limits.maximumSteps)") }
        guard (1...limits.maximumCount).contains(spec.count) else { throw invalid("the number of images must be between 1 and \(limits.maximumCount)") }
        guard spec.cfg.isFinite, spec.cfg >= 0, spec.cfg <= limits.maximumGuidance else {
            throw invalid("cfg must be between 0 and \(limits.maximumGuidance.formatted())")
        }
        guard spec.strength.isFinite, spec.strength > 0, spec.strength <= 1 else { throw invalid("strength must be in (0, 1]") }
        if let deadline = spec.loraDeadlineStep, deadline < 0 { throw invalid("lora_deadline_step must not be negative") }
        guard spec.metadata.count <= limits.maximumMetadataEntries,
            spec.metadata.reduce(0, { $0 + $1.key.utf8.count + $1.value.utf8.count }) <= limits.maximumMetadataBytes
        else {
            throw invalid("metadata is limited to \(limits.maximumMetadataEntries) entries and \(limits.maximumMetadataBytes) bytes")
        }
        let sampler: SamplerKind
        do { sampler = try SamplerKind.named(spec.sampler) } catch { throw invalid("\(error)") }
        if spec.promptSyntax == .a1111 {
            for text in [spec.prompt, spec.negativePrompt ?? ""] {
                do { _ = try A1111PromptParser.parseAttention(text) } catch { throw invalid("\(error)") }
            }
        }
        guard spec.loras.count <= limits.maximumLoRAs else { throw invalid("at most \(limits.maximumLoRAs) LoRAs per request") }
        guard spec.controls.count <= limits.maximumControls else { throw invalid("at most \(limits.maximumControls) ControlNets per request") }
        let modelID = spec.model ?? repository.defaultModel
        guard let modelID, repository.entry(.checkpoint, modelID) != nil else {
            throw EngineError.notFound("unknown model '\(spec.model ?? "")'; see /v1/models")
        }
        // What the chosen model can take: sizes in its VAE's multiples, no more CLIP layers skipped than it has.
        let profile = try repository.profile(modelID)
        for (name, value) in [("width", spec.width), ("height", spec.height)] {
            if let value, value % profile.sizeMultiple != 0 {
                throw invalid(
                    "\(name) must be a multiple of \(profile.sizeMultiple) for model '\(modelID)', got \(value) "
                        + "(its native size is \(profile.width)x\(profile.height))")
            }
        }
        if let clipSkip = spec.clipSkip, !(1...profile.maximumClipSkip).contains(clipSkip) {
            throw invalid(
                "clip_skip must be between 1 and \(profile.maximumClipSkip) for model '\(modelID)' "
                    + "(its text encoder has \(profile.textEncoderLayers) layers), got \(clipSkip)")
        }
        let width = spec.width ?? profile.width, height = spec.height ?? profile.height
        guard width.multipliedReportingOverflow(by: height).partialValue <= limits.maximumPixels,
            width <= limits.maximumSide, height <= limits.maximumSide
        else {
            throw invalid("width x height must be at most \(limits.maximumPixels) pixels")
        }
        let loraInputs = try spec.loras.map { lora -> EngineRequest.LoRA in
            guard let entry = repository.entry(.lora, lora.name) else { throw EngineError.notFound("unknown LoRA '\(lora.name)'; see /v1/loras") }
            guard lora.weight.isFinite, abs(lora.weight) <= 10, (lora.textEncoderWeight ?? 0).isFinite, abs(lora.textEncoderWeight ?? 0) <= 10 else {
                throw invalid("LoRA weights must be between -10 and 10")
            }
            return EngineRequest.LoRA(name: lora.name, path: entry.path, unetWeight: lora.weight, textEncoderWeight: lora.textEncoderWeight ?? lora.weight)
        }
        let controlInputs = try spec.controls.map { control -> EngineRequest.Control in
            guard repository.entry(.controlnet, control.model) != nil else {
                throw EngineError.notFound("unknown ControlNet '\(control.model)'; see /v1/controlnets")
            }
            guard control.weight.isFinite, abs(control.weight) <= 10 else { throw invalid("ControlNet weight must be between -10 and 10") }
            guard control.start >= 0, control.end <= 1, control.start < control.end else {
                throw invalid("ControlNet start/end must satisfy 0 <= start < end <= 1")
            }
            let preprocessor: ControlPreprocessor
            do {
                preprocessor = try ControlPreprocessor.named(control.preprocessor, thresholdA: control.thresholdA, thresholdB: control.thresholdB)
            } catch { throw invalid("\(error)") }
            guard let resize = ResizeMode(name: control.resizeMode) else {
                throw invalid("unknown resize mode '\(control.resizeMode)' (just_resize, crop_and_resize, resize_and_fill)")
            }
            let image = try decodeImage(control.image, what: "ControlNet image", resize: resize, width: width, height: height)
            return EngineRequest.Control(
                model: control.model, preprocessor: preprocessor, resize: resize, image: image, weight: control.weight, start: control.start,
                end: control.end, guessMode: control.guessMode, softInjection: control.softInjection ?? false)
        }
        let initImage = try spec.initImage.map { data in
            try decodeImage(data, what: "init image", resize: .justResize, width: width, height: height)
        }
        var initLatents: Tensor?
        if let data = spec.initLatents {
            guard data.count <= limits.maximumImageBytes else { throw invalid("init latents are larger than \(limits.maximumImageBytes) bytes") }
            do { initLatents = try NumPy.decode(data, label: "init latents") } catch { throw invalid("init latents: \(error)") }
            let expected = [spec.count, height / profile.sizeMultiple, width / profile.sizeMultiple]
            if let shape = initLatents?.shape, shape.count != 4 || [shape[0], shape[2], shape[3]] != expected {
                throw invalid("init latents have shape \(shape), expected [\(spec.count), channels, \(expected[1]), \(expected[2])] (NCHW)")
            }
        }
        // A nonzero deadline fraction leaves at least one step of overlap (5 % of 10 steps is step 1, not 0: synchronous).
        let fraction = configuration.loraDeadlineFraction
        let deadline = spec.loraDeadlineStep ?? (fraction > 0 ? max(1, Int((fraction * Double(spec.steps)).rounded(.down))) : 0)
        return EngineRequest(
            spec: spec, modelID: modelID, width: width, height: height, sampler: sampler, seed: spec.seed ?? 0, loras: loraInputs,
            controls: controlInputs, initImage: initImage, initLatents: initLatents, loraDeadlineStep: deadline)
    }

    /// Decodes an image to know it is a PNG or JPEG within the limits, and checks that fitting it to the
    /// generation size stays within bounds (an 8192x1 drawing cropped to cover 2048x2048 would need a 16M x 2048
    /// intermediate).
    private func decodeImage(_ data: Data, what: String, resize: ResizeMode, width: Int, height: Int) throws -> RGBImage {
        let limits = configuration.limits
        guard data.count <= limits.maximumImageBytes else {
            throw EngineError.invalidRequest("\(what) is larger than \(limits.maximumImageBytes) bytes")
        }
        let image: RGBImage
        do {
            image = try ImageCodec.decode(
                data, limits: ImageLimits(maximumBytes: limits.maximumImageBytes, maximumSide: limits.maximumImageSide,
                    maximumPixels: limits.maximumImagePixels))
        } catch {
            throw EngineError.invalidRequest("\(what): \(error)")
        }
        let ratio = Double(max(image.width, image.height)) / Double(min(image.width, image.height))
        guard ratio <= limits.maximumAspectRatio else {
            throw EngineError.invalidRequest(
                "\(what) is \(image.width)x\(image.height): its aspect ratio is beyond \(Int(limits.maximumAspectRatio)):1")
        }
        let scaled = resize.scaledSize(width: image.width, height: image.height, toWidth: width, toHeight: height)
        guard Double(scaled.width) * Double(scaled.height) <= Double(limits.maximumIntermediatePixels) else {
            throw EngineError.invalidRequest(
                "\(what) is \(image.width)x\(image.height): \(resize.displayName) to \(width)x\(height) would scale it to "
                    + "\(scaled.width)x\(scaled.height), over the limit of \(limits.maximumIntermediatePixels) pixels")
        }
        return image
    }

    // MARK: - Caches

    /// The pipeline for a model id, loading it (and evicting the least recently used ones beyond the budget) if needed.
    public func pipeline(for modelID: String) throws -> DiffusionPipeline {
        try pipeline(for: modelID, hit: nil)
    }

    private func pipeline(for modelID: String, hit: UnsafeMutablePointer<Bool>?) throws -> DiffusionPipeline {
        try models.value(for: modelID, hit: hit) {
            guard let entry = repository.entry(.checkpoint, modelID) else { throw EngineError.notFound("unknown model '\(modelID)'") }
            // The models this one replaces are unloaded before it loads (its file size is the estimate until it is loaded).
            models.makeRoom(forBytes: entry.sizeBytes)
            let tokenizer =
                configuration.tokenizerFolder.map { URL(fileURLWithPath: $0) }
                ?? repository.embeddedModels.map { $0.appendingPathComponent("shapes-sd/tokenizer") }
            let start = Date()
            let model = try StableDiffusionModel(
                contentsOf: URL(fileURLWithPath: entry.path), tokenizerFolder: tokenizer, precision: configuration.precision)
            Timer(label: "swiftdiffusion_model_load_seconds").recordSeconds(Date().timeIntervalSince(start))
            logger.info("loaded model", metadata: ["model": "\(modelID)", "family": "\(model.family.rawValue)"])
            let pipeline = DiffusionPipeline(model: model, branchParallelism: configuration.branchParallelism)
            if let decoder = try tinyDecoderIfConfigured() {
                if decoder.upscaleFactor == model.vaeScaleFactor, decoder.configuration.latentChannels == model.unet.configuration.outChannels {
                    pipeline.tinyDecoder = decoder
                } else {
                    logger.warning(
                        "the TAESD decoder does not fit this model; it decodes with its VAE",
                        metadata: ["model": "\(modelID)", "taesd": "\(configuration.taesdFolder ?? "")"])
                }
            }
            let registries = [model.unet.registry, model.textEncoder.registry] + (model.textEncoder2.map { [$0.registry] } ?? [])
            return (pipeline, max(entry.sizeBytes, registries.reduce(0) { $0 + $1.parameterBytes }))
        }
    }

    private func tinyDecoderIfConfigured() throws -> TinyAutoencoderDecoder? {
        guard let path = configuration.taesdFolder else { return nil }
        if !tinyDecoderLoaded {
            let folder = try ComponentFolder(URL(fileURLWithPath: path))
            tinyDecoder = try TinyAutoencoderDecoder(configData: try folder.configData, weights: try folder.weights(), source: path)
            tinyDecoderLoaded = true
        }
        return tinyDecoder
    }

    private func controlnet(_ id: String, cache: inout CacheUse) throws -> ControlNetModel {
        var hit = false
        let model = try controlnets.value(for: id, hit: &hit) { try repository.loadControlNet(id) }
        if hit { cache.controlnetHits += 1 } else { cache.controlnetMisses += 1 }
        return model
    }

    /// LoRA file paths of a spec (for prefetching the next job's adapters).
    func loraPaths(_ spec: JobSpec) -> [String] {
        spec.loras.compactMap { repository.entry(.lora, $0.name)?.path }
    }

    /// Reads LoRA files on the loader thread ahead of need (the next queued job's).
    public func prefetch(_ spec: JobSpec) {
        loras.prefetch(loraPaths(spec))
    }

    /// Forgets every parsed LoRA file (benchmarks measure LoRAs "not yet cached"; operators free the memory).
    public func dropCachedLoRAs() {
        loras.dropAll()
    }

    /// Hits, misses, evictions and bytes of the model ("model"), ControlNet ("controlnet") and LoRA-file ("lora") caches.
    public var cacheStatistics: [String: CacheStatistics] {
        ["model": models.statistics, "controlnet": controlnets.statistics, "lora": loras.statistics]
    }

    // MARK: - Rendering

    /// Runs a prepared request to completion (or cancellation) on the calling thread.
    public func render(_ request: EngineRequest, observer: RenderObserver = RenderObserver()) throws -> RenderedImages {
        let spec = request.spec
        let total = spec.steps
        observer.progress(JobProgress(stage: "load_model", step: 0, total: total))
        var cache = CacheUse()
        var modelHit = false
        let pipeline = try pipeline(for: request.modelID, hit: &modelHit)
        cache.modelHit = modelHit
        let model = pipeline.model
        var generation = GenerationRequest(
            prompt: spec.prompt, negativePrompt: spec.negativePrompt, width: request.width, height: request.height, steps: spec.steps,
            sampler: request.sampler, guidanceScale: spec.cfg, seed: request.seed, count: spec.count, clipSkip: spec.clipSkip.map { $0 - 1 },
            strength: spec.strength)
        generation.promptSyntax = spec.promptSyntax
        generation.seedPerImage = spec.seedPerImage ?? false
        generation.initImage = request.initImage?.resized(width: request.width, height: request.height)
        generation.initLatents = request.initLatents
        if !request.controls.isEmpty { observer.progress(JobProgress(stage: "control_preprocess", step: 0, total: total)) }
        for unit in request.controls {
            let image = unit.preprocessor(unit.resize.apply(to: unit.image, width: request.width, height: request.height))
            generation.controls.append(
                ControlInput(
                    model: try controlnet(unit.model, cache: &cache), image: image, scale: unit.weight, start: unit.start, end: unit.end,
                    guessMode: unit.guessMode, softInjection: unit.softInjection, modelID: unit.model))
        }

        // LoRAs: the adapter schedule admits them (cached ones patched up front, others loading beside denoising
        // and patched in by the deadline step).
        var cachedLoRAs: [Bool] = []
        let admission = DispatchTime.now().uptimeNanoseconds
        let schedule = try AdapterSchedule(
            admitting: request.loras, modelKey: request.modelID, targets: model.loraTargets, library: loras,
            deadlineStep: request.loraDeadlineStep, landing: request.loraLanding, cached: &cachedLoRAs)
        for cached in cachedLoRAs {
            if cached { cache.loraHits += 1 } else { cache.loraMisses += 1 }
            Counter(label: "swiftdiffusion_adapter_cache_total", dimensions: [("kind", "lora"), ("result", cached ? "hit" : "miss")]).increment()
        }

        let started = Date()
        let hooks = GenerationHooks(
            stage: { stage in observer.progress(JobProgress(stage: stage.rawValue, step: 0, total: total)) },
            beforeStep: { _, _ in if observer.isCancelled() { throw GenerationError.cancelled } },
            afterStep: { step, steps in observer.progress(JobProgress(stage: "denoise", step: step + 1, total: steps)) })
        let loraMode = DiffusionPipeline.LoRAMode(rawValue: configuration.loraMode) ?? .merged
        let admissionSeconds = Double(DispatchTime.now().uptimeNanoseconds - admission) / 1e9
        // A request with ControlNets runs them on the ControlNet worker (when one is configured) while the UNet's steps run
        // on the cores the worker leaves free; a request without keeps every core for the UNet.
        // A configured executor in other processes (`serve --controlnet-worker`) takes precedence over the in-process worker.
        let worker: (any ControlNetExecutor)? =
            generation.controls.isEmpty || !usesControlNetWorker ? nil : (configuration.controlNetExecutor ?? controlNetService)
        let service = worker as? ControlNetService
        pipeline.controlNetExecutor = worker ?? SequentialControlNetExecutor()
        if let cores = service?.unetCores, !computeThreadPinned, let first = cores.first {
            // This (compute) thread is the UNet pool's first thread.
            computeThreadPinned = CorePinning.pinCurrentThread(to: [first])
        }
        // The denoising steps run on the service's UNet pool (`ControlNetExecutor.denoisingPool`); prompt encoding and the
        // decode keep every core of this thread's pool, the worker's included, which sits idle then.
        let result = try pipeline.generate(
            generation, loras: schedule.upfront, loraSchedule: schedule.isPending ? schedule : nil, loraMode: loraMode, hooks: hooks)
        for (stage, seconds) in result.timings {
            Timer(label: "swiftdiffusion_stage_seconds", dimensions: [("stage", stage)]).recordSeconds(seconds)
        }
        // With seeds per image each PNG names its own seed.
        func imageInfotext(_ index: Int) -> String {
            var imageRequest = generation
            if generation.seedPerImage { imageRequest.seed = generation.seed &+ UInt64(index) }
            return Infotext(
                request: imageRequest, modelName: request.modelID, loras: spec.loras.map { ($0.name, $0.weight) },
                controls: request.controls.map { "\($0.model), \($0.preprocessor.name), weight \($0.weight)" }
            ).text
        }
        let infotext = imageInfotext(0)
        let images = try result.images.enumerated().map { index, image in
            try ImageCodec.encodePNG(image, textChunks: [("parameters", generation.seedPerImage ? imageInfotext(index) : infotext)])
        }
        var timings = result.timings
        timings["generate"] = Date().timeIntervalSince(started)
        if !request.loras.isEmpty {
            // Reading and resolving LoRAs before denoising (all of it when synchronous), and waiting at the deadline.
            timings["lora_load"] = admissionSeconds
            if schedule.isPending { timings["lora_wait"] = schedule.waitedSeconds }
        }
        return RenderedImages(
            images: images, infotext: infotext, latents: result.latents, timings: timings, loraPatchStep: schedule.landedStep, cache: cache)
    }
}

/// A request after `ImageEngine.prepare`: every name found, every value checked, typed and decoded.
public struct EngineRequest: @unchecked Sendable {
    public struct LoRA: Sendable {
        public var name: String
        public var path: String
        public var unetWeight: Float
        public var textEncoderWeight: Float
    }

    public struct Control: @unchecked Sendable {
        /// ControlNet id.
        public var model: String
        public var preprocessor: ControlPreprocessor
        public var resize: ResizeMode
        /// The decoded image, before fitting and preprocessing.
        public var image: RGBImage
        public var weight: Float
        public var start: Float
        public var end: Float
        public var guessMode: Bool
        public var softInjection: Bool
    }

    /// The request as submitted (names, for infotext and the job record).
    public var spec: JobSpec
    public var modelID: String
    /// The size to generate (the model's native size where the request left it open).
    public var width: Int
    public var height: Int
    public var sampler: SamplerKind
    public var seed: UInt64
    public var loras: [LoRA]
    public var controls: [Control]
    /// Decoded, not yet fitted to the size.
    public var initImage: RGBImage?
    public var initLatents: Tensor?
    /// Bounded asynchronous LoRA loading: LoRAs not cached yet are patched in by this step (0: before denoising).
    public var loraDeadlineStep: Int
    /// When LoRAs loading in the background are patched in: `.whenReady` (serving) or `.atDeadline` (exactly at
    /// `loraDeadlineStep`, the worst case the BAL quality study measures; set after `prepare`).
    public var loraLanding: LoRALanding = .whenReady
}

/// Where a render reports progress and learns it was cancelled.
public struct RenderObserver: Sendable {
    public var progress: @Sendable (JobProgress) -> Void
    public var isCancelled: @Sendable () -> Bool

    public init(progress: @escaping @Sendable (JobProgress) -> Void = { _ in }, isCancelled: @escaping @Sendable () -> Bool = { false }) {
        self.progress = progress
        self.isCancelled = isCancelled
    }
}

/// What a render produced.
public struct RenderedImages: @unchecked Sendable {
    /// PNG files, each with AUTOMATIC1111's "parameters" text chunk.
    public var images: [Data]
    public var infotext: String
    /// Final latents, NCHW as diffusers.
    public var latents: Tensor
    /// Seconds per stage ("encode_prompt", "denoise", "decode", ...) and "generate" for the whole run.
    public var timings: [String: Double]
    /// With LoRAs loaded in the background: the step before which they were patched in.
    public var loraPatchStep: Int?
    public var cache: CacheUse
}

extension Timer {
    func recordSeconds(_ seconds: Double) { recordNanoseconds(Int64(seconds * 1e9)) }
}
