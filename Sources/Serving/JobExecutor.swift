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

/// A running job's way to report progress and learn it was cancelled; shared between the engine and the
/// compute thread.
final class JobControl: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false
    let progress: AsyncStream<JobProgress>.Continuation

    init(progress: AsyncStream<JobProgress>.Continuation) {
        self.progress = progress
    }

    func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }

    var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }
}

/// What a finished job produced.
struct ExecutionResult: Sendable {
    var images: [Data]
    var infotext: String
    var timings: [String: Double]
    var loraPatchStep: Int?
    var cache: CacheUse
}

/// Turns stored job specs into pipeline runs: loads (and caches) base models and ControlNets, prepares
/// images, starts LoRA loading in the background, runs the pipeline and encodes the PNGs.
///
/// Everything but `validate` runs on the engine's compute thread, one job at a time.
final class JobExecutor: @unchecked Sendable {
    let repository: ModelRepository
    let configuration: EngineConfiguration
    let loras: LoRALibrary
    let logger: Logger
    private var pipelines: [(id: String, pipeline: DiffusionPipeline)] = []
    private var controlnets: [String: ControlNetModel] = [:]
    /// The ControlNet worker shared by every request and every loaded model, when configured.
    private let controlNetService: ControlNetService?
    private var computeThreadPinned = false

    init(repository: ModelRepository, configuration: EngineConfiguration, logger: Logger) {
        self.repository = repository
        self.configuration = configuration
        self.loras = LoRALibrary(capacityBytes: configuration.loraCacheBytes, logger: logger)
        self.controlNetService =
            configuration.controlNetWorkerThreads > 0
            ? ControlNetService(
                workers: 1, threadsPerWorker: configuration.controlNetWorkerThreads, unetThreads: configuration.unetThreads,
                pinCores: configuration.pinCores) : nil
        self.logger = logger
    }

    /// Checks a spec at submission: limits, names and values. Throws `EngineError.invalidRequest` or `.notFound`.
    func validate(_ spec: JobSpec) throws {
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
        guard spec.cfg.isFinite, (0...50).contains(spec.cfg) else { throw invalid("cfg must be between 0 and 50") }
        guard spec.strength.isFinite, spec.strength > 0, spec.strength <= 1 else { throw invalid("strength must be in (0, 1]") }
        if let deadline = spec.loraDeadlineStep, deadline < 0 { throw invalid("lora_deadline_step must not be negative") }
        guard spec.metadata.count <= limits.maximumMetadataEntries,
            spec.metadata.reduce(0, { $0 + $1.key.utf8.count + $1.value.utf8.count }) <= limits.maximumMetadataBytes
        else {
            throw invalid("metadata is limited to \(limits.maximumMetadataEntries) entries and \(limits.maximumMetadataBytes) bytes")
        }
        do { _ = try SamplerKind.named(spec.sampler) } catch { throw invalid("\(error)") }
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
        for lora in spec.loras {
            guard repository.entry(.lora, lora.name) != nil else { throw EngineError.notFound("unknown LoRA '\(lora.name)'; see /v1/loras") }
            guard lora.weight.isFinite, abs(lora.weight) <= 10, (lora.textEncoderWeight ?? 0).isFinite else {
                throw invalid("LoRA weights must be between -10 and 10")
            }
        }
        for control in spec.controls {
            guard repository.entry(.controlnet, control.model) != nil else {
                throw EngineError.notFound("unknown ControlNet '\(control.model)'; see /v1/controlnets")
            }
            guard control.weight.isFinite, abs(control.weight) <= 10 else { throw invalid("ControlNet weight must be between -10 and 10") }
            guard control.start >= 0, control.end <= 1, control.start < control.end else {
                throw invalid("ControlNet start/end must satisfy 0 <= start < end <= 1")
            }
            do { _ = try ControlPreprocessor.named(control.preprocessor) } catch { throw invalid("\(error)") }
            guard ResizeMode(name: control.resizeMode) != nil else {
                throw invalid("unknown resize mode '\(control.resizeMode)' (just_resize, crop_and_resize, resize_and_fill)")
            }
            try checkImage(control.image, what: "ControlNet image", resize: ResizeMode(name: control.resizeMode), width: width, height: height)
        }
        if let image = spec.initImage { try checkImage(image, what: "init image", resize: .justResize, width: width, height: height) }
    }

    /// Decodes an image to know it is a PNG or JPEG within the limits, and checks that fitting it to the
    /// generation size stays within bounds (an 8192x1 drawing cropped to cover 2048x2048 would need a 16M x 2048
    /// intermediate).
    private func checkImage(_ data: Data, what: String, resize: ResizeMode?, width: Int, height: Int) throws {
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
        if let resize {
            let scaled = resize.scaledSize(width: image.width, height: image.height, toWidth: width, toHeight: height)
            guard Double(scaled.width) * Double(scaled.height) <= Double(limits.maximumIntermediatePixels) else {
                throw EngineError.invalidRequest(
                    "\(what) is \(image.width)x\(image.height): \(resize.displayName) to \(width)x\(height) would scale it to "
                        + "\(scaled.width)x\(scaled.height), over the limit of \(limits.maximumIntermediatePixels) pixels")
            }
        }
    }

    /// The pipeline for a model id, loading it (and evicting the least recently used one) if needed.
    func pipeline(for modelID: String) throws -> DiffusionPipeline {
        try pipeline(for: modelID, hit: nil)
    }

    /// The pipeline for a model id; `hit` learns whether it was loaded already.
    private func pipeline(for modelID: String, hit: UnsafeMutablePointer<Bool>?) throws -> DiffusionPipeline {
        if let index = pipelines.firstIndex(where: { $0.id == modelID }) {
            hit?.pointee = true
            let entry = pipelines.remove(at: index)
            pipelines.append(entry)
            Counter(label: "swiftdiffusion_model_cache_total", dimensions: [("result", "hit")]).increment()
            return entry.pipeline
        }
        Counter(label: "swiftdiffusion_model_cache_total", dimensions: [("result", "miss")]).increment()
        guard let entry = repository.entry(.checkpoint, modelID) else { throw EngineError.notFound("unknown model '\(modelID)'") }
        while pipelines.count >= max(1, configuration.loadedModelLimit) {
            let evicted = pipelines.removeFirst()
            loras.forgetModel(evicted.id)
            logger.info("unloaded model", metadata: ["model": "\(evicted.id)"])
        }
        let tokenizer = repository.embeddedModels.map { $0.appendingPathComponent("shapes-sd/tokenizer") }
        let start = Date()
        let model = try StableDiffusionModel(
            contentsOf: URL(fileURLWithPath: entry.path), tokenizerFolder: tokenizer, precision: configuration.precision)
        Timer(label: "swiftdiffusion_model_load_seconds").recordSeconds(Date().timeIntervalSince(start))
        logger.info("loaded model", metadata: ["model": "\(modelID)", "family": "\(model.family.rawValue)"])
        let pipeline = DiffusionPipeline(model: model)
        if let controlNetService { pipeline.controlNetExecutor = controlNetService }
        pipelines.append((modelID, pipeline))
        return pipeline
    }

    private func controlnet(_ id: String, cache: inout CacheUse) throws -> ControlNetModel {
        if controlnets[id] != nil { cache.controlnetHits += 1 } else { cache.controlnetMisses += 1 }
        return try controlnet(id)
    }

    private func controlnet(_ id: String) throws -> ControlNetModel {
        if let cached = controlnets[id] {
            Counter(label: "swiftdiffusion_adapter_cache_total", dimensions: [("kind", "controlnet"), ("result", "hit")]).increment()
            return cached
        }
        Counter(label: "swiftdiffusion_adapter_cache_total", dimensions: [("kind", "controlnet"), ("result", "miss")]).increment()
        guard let entry = repository.entry(.controlnet, id) else { throw EngineError.notFound("unknown ControlNet '\(id)'") }
        let folder = try ComponentFolder(URL(fileURLWithPath: entry.path))
        let model = try ControlNetModel(configData: try folder.configData, weights: try folder.weights(), source: entry.path)
        controlnets[id] = model
        return model
    }

    /// LoRA file paths of a spec (for prefetching the next job's adapters).
    func loraPaths(_ spec: JobSpec) -> [String] {
        spec.loras.compactMap { repository.entry(.lora, $0.name)?.path }
    }

    /// Runs one job to completion (or cancellation) on the calling (compute) thread.
    func execute(_ job: JobRecord, control: JobControl) throws -> ExecutionResult {
        let spec = job.spec
        guard let modelID = spec.model ?? repository.defaultModel else { throw EngineError.notFound("no model is available") }
        control.progress.yield(JobProgress(stage: "load_model", step: 0, total: spec.steps))
        var cache = CacheUse()
        var modelHit = false
        let pipeline = try pipeline(for: modelID, hit: &modelHit)
        cache.modelHit = modelHit
        let model = pipeline.model
        let nativeSize = (model.unet.configuration.sampleSize ?? 64) * model.vaeScaleFactor
        let width = spec.width ?? nativeSize, height = spec.height ?? nativeSize
        let multiple = model.sizeMultiple
        guard width % multiple == 0, height % multiple == 0 else {
            throw EngineError.invalidRequest("width and height must be multiples of \(multiple) for this model")
        }
        var request = GenerationRequest(
            prompt: spec.prompt, negativePrompt: spec.negativePrompt, width: width, height: height, steps: spec.steps,
            sampler: try SamplerKind.named(spec.sampler), guidanceScale: spec.cfg, seed: spec.seed ?? 0, count: spec.count,
            clipSkip: spec.clipSkip.map { $0 - 1 }, strength: spec.strength)
        request.promptSyntax = spec.promptSyntax == .a1111 ? .a1111 : .plain
        request.seedPerImage = spec.seedPerImage ?? false
        if let data = spec.initImage {
            request.initImage = try ImageCodec.decode(data).resized(width: width, height: height)
        }
        if !spec.controls.isEmpty { control.progress.yield(JobProgress(stage: "control_preprocess", step: 0, total: spec.steps)) }
        for unit in spec.controls {
            let preprocessor = try ControlPreprocessor.named(unit.preprocessor, thresholdA: unit.thresholdA, thresholdB: unit.thresholdB)
            let resize = ResizeMode(name: unit.resizeMode) ?? .cropAndResize
            let image = preprocessor(resize.apply(to: try ImageCodec.decode(unit.image), width: width, height: height))
            request.controls.append(
                ControlInput(
                    model: try controlnet(unit.model, cache: &cache), image: image, scale: unit.weight, start: unit.start, end: unit.end, guessMode: unit.guessMode,
                    softInjection: unit.softInjection ?? false))
        }

        // LoRAs: already cached ones are applied up front; otherwise they load in the background and are
        // patched in by the deadline step (bounded asynchronous loading).
        var immediate: [LoRAApplication] = []
        var deferred: DeferredLoRAs?
        let loraSpecs = try spec.loras.map { lora -> (path: String, unetWeight: Float, textEncoderWeight: Float) in
            guard let entry = repository.entry(.lora, lora.name) else { throw EngineError.notFound("unknown LoRA '\(lora.name)'") }
            return (entry.path, lora.weight, lora.textEncoderWeight ?? lora.weight)
        }
        if !loraSpecs.isEmpty {
            let allCached = loraSpecs.allSatisfy { loras.isCached($0.path) }
            for spec in loraSpecs {
                let cached = loras.isCached(spec.path)
                if cached { cache.loraHits += 1 } else { cache.loraMisses += 1 }
                Counter(label: "swiftdiffusion_adapter_cache_total", dimensions: [("kind", "lora"), ("result", cached ? "hit" : "miss")]).increment()
            }
            let deadline = spec.loraDeadlineStep ?? Int((configuration.loraDeadlineFraction * Double(spec.steps)).rounded(.down))
            if allCached || deadline == 0 {
                immediate = try loraSpecs.map { spec in
                    LoRAApplication(
                        try loras.resolve(path: spec.path, modelKey: modelID, targets: model.loraTargets), unetWeight: spec.unetWeight,
                        textEncoderWeight: spec.textEncoderWeight)
                }
            } else {
                let pending = loras.load(loraSpecs, modelKey: modelID, targets: model.loraTargets)
                deferred = DeferredLoRAs(deadlineStep: deadline, poll: { try pending.poll() }, wait: { try pending.wait() })
            }
        }

        let started = Date()
        let hooks = GenerationHooks(
            stage: { stage in control.progress.yield(JobProgress(stage: stage.rawValue, step: 0, total: spec.steps)) },
            beforeStep: { _, _ in if control.isCancelled { throw GenerationError.cancelled } },
            afterStep: { step, total in control.progress.yield(JobProgress(stage: "denoise", step: step + 1, total: total)) })
        let loraMode = DiffusionPipeline.LoRAMode(rawValue: configuration.loraMode) ?? .merged
        if let cores = controlNetService?.unetCores, !computeThreadPinned, let first = cores.first {
            // This (compute) thread is the UNet pool's first thread.
            computeThreadPinned = CorePinning.pinCurrentThread(to: [first])
        }
        // With a ControlNet worker the UNet runs on the cores the worker leaves free.
        let result = try ComputePool.run(on: controlNetService?.unetPool ?? ComputePool.current) {
            try pipeline.generate(request, loras: immediate, deferredLoRAs: deferred, loraMode: loraMode, hooks: hooks)
        }
        for (stage, seconds) in result.timings {
            Timer(label: "swiftdiffusion_stage_seconds", dimensions: [("stage", stage)]).recordSeconds(seconds)
        }
        // With seeds per image each PNG names its own seed.
        func imageInfotext(_ index: Int) -> String {
            var imageRequest = request
            if request.seedPerImage { imageRequest.seed = request.seed &+ UInt64(index) }
            return Infotext(
                request: imageRequest, modelName: modelID, loras: spec.loras.map { ($0.name, $0.weight) },
                controls: spec.controls.map { "\($0.model), \($0.preprocessor), weight \($0.weight)" }
            ).text
        }
        let infotext = imageInfotext(0)
        let images = try result.images.enumerated().map { index, image in
            try ImageCodec.encodePNG(image, textChunks: [("parameters", request.seedPerImage ? imageInfotext(index) : infotext)])
        }
        var timings = result.timings
        timings["generate"] = Date().timeIntervalSince(started)
        return ExecutionResult(images: images, infotext: infotext, timings: timings, loraPatchStep: result.loraPatchStep, cache: cache)
    }
}

extension Timer {
    func recordSeconds(_ seconds: Double) { recordNanoseconds(Int64(seconds * 1e9)) }
}
