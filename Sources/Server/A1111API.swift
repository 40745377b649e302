import Foundation
import HTTPTypes
import Hummingbird
import Imaging
import Logging
import Pipelines
import Samplers
import Serving

/// AUTOMATIC1111-compatible routes under `/sdapi/v1` (and the ControlNet extension's `/controlnet/*`), so A1111
/// client libraries work unmodified.
///
/// `txt2img` and `img2img` are synchronous like A1111's: the job is queued on the engine and the response waits for
/// it (a full queue is a 429 with Retry-After). Prompts are read with A1111's syntax (emphasis, 75-token chunks,
/// `BREAK`, `<lora:name:weight>` tags); image `i` of a batch uses seed `seed + i`. `progress`, `interrupt` and `skip`
/// act on whichever job is running, as A1111's do.
struct A1111API {
    let engine: GenerationEngine
    let settings = A1111Settings()

    func register(on router: Router<ServerRequestContext>) {
        let api = router.group("sdapi/v1")
        api.post("txt2img") { request, context in try await generate(.txt2img, request, context) }
        api.post("img2img") { request, context in try await generate(.img2img, request, context) }
        api.get("progress") { _, _ in try await progress() }
        api.post("interrupt") { _, _ in
            await interruptCurrent(skip: false)
            return try json([String: Any]())
        }
        api.post("skip") { _, _ in
            // No batch positions to skip to: the running job stops, as with interrupt.
            await interruptCurrent(skip: true)
            return try jsonNull()
        }
        api.get("sd-models") { _, _ in try sdModels() }
        api.get("loras") { _, _ in
            try json(
                engine.repository.list(.lora).map { entry -> [String: Any] in
                    ["name": entry.id, "alias": entry.id, "path": "\(entry.id).safetensors", "metadata": [String: Any]()]
                })
        }
        api.post("refresh-checkpoints") { _, _ in
            engine.repository.rescan()
            return try jsonNull()
        }
        api.post("refresh-loras") { _, _ in
            engine.repository.rescan()
            return try jsonNull()
        }
        api.get("samplers") { _, _ in
            try json(
                SamplerKind.allCases.map { kind -> [String: Any] in
                    ["name": kind.a1111Name, "aliases": [kind.name] + kind.aliases, "options": [String: String]()]
                })
        }
        api.get("schedulers") { _, _ in
            try json([
                ["name": "automatic", "label": "Automatic", "aliases": NSNull(), "default_rho": -1, "need_inner_model": false],
                ["name": "karras", "label": "Karras", "aliases": NSNull(), "default_rho": 7.0, "need_inner_model": false],
            ])
        }
        api.get("options") { _, _ in try json(options()) }
        api.post("options") { request, context in try await setOptions(request, context) }
        api.get("cmd-flags") { _, _ in
            try json([
                "api": true, "nowebui": true, "api_log": false, "api_auth": NSNull(), "api_server_stop": false, "listen": false,
                "port": NSNull(), "ckpt": NSNull(), "ckpt_dir": NSNull(), "lora_dir": NSNull(), "data_dir": NSNull(),
                "no_half": true, "medvram": false, "lowvram": false, "xformers": false, "skip_version_check": true,
            ])
        }
        // Listings A1111 clients probe; this server has none of these.
        for route in [
            "upscalers", "latent-upscale-modes", "sd-vae", "hypernetworks", "face-restorers", "prompt-styles", "script-info",
        ] {
            api.get(RouterPath(route)) { _, _ in try json([Any]()) }
        }
        api.get("scripts") { _, _ in try json(["txt2img": [String](), "img2img": [String]()]) }
        api.get("embeddings") { _, _ in try json(["loaded": [String: Any](), "skipped": [String: Any]()]) }
        A1111ControlNet.register(on: router, engine: engine, settings: settings)
    }

    // MARK: - Generation

    /// `txt2img` / `img2img`: the body is parsed and checked (prompts, images, model limits) on a request-work
    /// thread, the job queued, and the response waits for it; a client that goes away cancels it.
    private func generate(
        _ mode: A1111Generation.Mode, _ request: Request, _ context: ServerRequestContext
    ) async throws -> Response {
        // Watched from the start, so a client that leaves while its request is read, checked or run cancels it.
        let watch = await ConnectionWatch.install(on: context.channel)
        defer { watch?.remove() }
        let body = try await BodyLimits.read(request, context: context)
        let (settings, repository, limits) = (self.settings, engine.repository, engine.configuration.limits)
        let generation = try await RequestWork.run {
            Handoff(
                try A1111Generation(
                    mode: mode, fields: try A1111Fields.parse(Data(buffer: body)), settings: settings, repository: repository,
                    limits: limits))
        }.value
        if !generation.ignored.isEmpty {
            context.logger.notice(
                "A1111 request: unsupported settings ignored",
                metadata: ["route": "\(mode.rawValue)", "ignored": "\(generation.ignored.joined(separator: "; "))"])
        }
        let job = try await SynchronousJob.run(generation.spec, engine: engine, watch: watch, context: context)
        var images: [Data] = []
        switch job.status {
        case .succeeded:
            images = try await engine.outputs(job.id)
        case .cancelled:
            break  // interrupted: A1111 answers normally; there is no partial image to return
        default:
            throw APIError(.internalServerError, "generation_failed", job.error ?? "the job ended as \(job.status.rawValue)")
        }
        // The answer (base64 of up to a batch of PNGs, their infotexts) is built off the serving threads too.
        let results = Handoff((generation, job, images))
        let api = self
        return try await RequestWork.run {
            let (generation, job, images) = results.value
            let info = try api.infoText(generation, job: job, images: images)
            return Handoff(
                try json([
                    "images": generation.sendImages ? images.map { $0.base64EncodedString() } : [String](),
                    "parameters": generation.parameters,
                    "info": info,
                ]))
        }.value
    }

    /// `info`: A1111's `Processed.js()`, a JSON object serialised into a string.
    private func infoText(_ generation: A1111Generation, job: JobRecord, images: [Data]) throws -> String {
        let count = generation.spec.count  // batch_size x n_iter, checked when the request was read
        let timestamp = Self.timestamp(job.startedAt ?? job.createdAt)
        var denoisingStrength: Any = NSNull()
        if let value = generation.denoisingStrength ?? (generation.mode == .img2img ? 0.75 : nil) { denoisingStrength = value }
        var info: [String: Any] = [
            "prompt": generation.prompt, "all_prompts": Array(repeating: generation.prompt, count: count),
            "negative_prompt": generation.negativePrompt,
            "all_negative_prompts": Array(repeating: generation.negativePrompt, count: count),
            "seed": generation.seed, "all_seeds": (0..<count).map { generation.seed + $0 },
            "subseed": generation.subseed, "all_subseeds": (0..<count).map { generation.subseed + $0 },
            "subseed_strength": generation.subseedStrength, "width": generation.spec.width ?? 0,
            "height": generation.spec.height ?? 0,
            "sampler_name": generation.sampler.a1111Name, "cfg_scale": Double(generation.spec.cfg),
            "steps": generation.spec.steps,
            "batch_size": generation.batchSize, "restore_faces": false, "face_restoration_model": NSNull(),
            "sd_model_name": generation.model.id, "sd_model_hash": settings.shortHash(generation.model), "sd_vae_name": NSNull(),
            "sd_vae_hash": NSNull(), "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": denoisingStrength,
            "extra_generation_params": [String: Any](), "index_of_first_image": 0,
            "infotexts": images.map { ImageCodec.textChunks(of: $0)["parameters"] ?? "" }, "styles": [String](),
            "job_timestamp": timestamp, "clip_skip": generation.clipSkip, "is_using_inpainting_conditioning": false,
            "version": "SwiftDiffusion \(SwiftDiffusionVersion.current)",
        ]
        if !generation.ignored.isEmpty { info["ignored_settings"] = generation.ignored }
        if job.status == .cancelled { info["interrupted"] = true }
        let data = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMddHHmmss"
        return formatter.string(from: date)
    }

    // MARK: - Progress and interruption

    private func interruptCurrent(skip: Bool) async {
        if let job = await engine.currentJob { settings.markStopped(job.id, skipped: skip) }
        await engine.interruptCurrent()
    }

    /// A1111's `ProgressResponse` for the running job: one job of one batch, progress `0.01 + step / steps`.
    private func progress() async throws -> Response {
        guard let job = await engine.currentJob else {
            return try json([
                "progress": 0, "eta_relative": 0, "state": state(job: nil), "current_image": NSNull(), "textinfo": NSNull(),
            ])
        }
        let progress = 0.01 + Double(Self.samplingStep(job)) / Double(max(job.progress.total, 1))
        let elapsed = Date().timeIntervalSince(job.startedAt ?? Date())
        return try json([
            "progress": min(progress, 1), "eta_relative": max(0, elapsed / progress - elapsed), "state": state(job: job),
            "current_image": NSNull(), "textinfo": job.progress.stage,
        ])
    }

    /// A1111's `State.dict()`.
    private func state(job: JobRecord?) -> [String: Any] {
        guard let job else {
            return [
                "skipped": false, "interrupted": false, "stopping_generation": false, "job": "", "job_count": 0,
                "job_timestamp": "0",
                "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
            ]
        }
        let stopped = settings.stopped(job.id)
        return [
            "skipped": stopped == .skipped, "interrupted": stopped == .interrupted, "stopping_generation": false,
            "job": job.spec.initImage == nil ? "scripts_txt2img" : "scripts_img2img", "job_count": 1,
            "job_timestamp": Self.timestamp(job.startedAt ?? job.createdAt), "job_no": 0,
            "sampling_step": Self.samplingStep(job), "sampling_steps": job.progress.total,
        ]
    }

    /// Denoising steps done (0 while the model loads or the prompt is encoded).
    static func samplingStep(_ job: JobRecord) -> Int {
        ["denoise", "decode", "done"].contains(job.progress.stage) ? job.progress.step : 0
    }

    // MARK: - Models and options

    private func sdModels() throws -> Response {
        try json(
            engine.repository.list(.checkpoint).map { entry -> [String: Any] in
                [
                    "title": settings.title(entry), "model_name": entry.id, "hash": settings.shortHash(entry), "sha256": NSNull(),
                    "filename": entry.format == "safetensors" ? "\(entry.id).safetensors" : entry.id, "config": NSNull(),
                ]
            })
    }

    /// The A1111 options this server knows, with their defaults; `POST /options` keeps values for these keys only.
    static var knownOptions: [String: Any] {
        [
        "samples_save": false, "samples_format": "png", "grid_save": false, "return_grid": false, "enable_pnginfo": true,
        "save_txt": false, "jpeg_quality": 80, "export_for_4chan": false, "sd_vae": "Automatic",
        "emphasis": "Original", "comma_padding_backtrack": 20, "eta_ddim": 0.0, "eta_ancestral": 1.0,
        "eta_noise_seed_delta": 0,
        "randn_source": "CPU", "s_min_uncond": 0.0, "s_churn": 0.0, "s_tmin": 0.0, "s_noise": 1.0, "sdxl_crop_top": 0,
        "sdxl_crop_left": 0, "img2img_fix_steps": false, "show_progress_every_n_steps": 0, "live_previews_enable": false,
        "sd_lora": "None", "lora_add_hashes_to_infotext": false,
        ]
    }
    /// Options the server reports but a client cannot set.
    static let readOnlyOptions: Set<String> = ["sd_checkpoints_limit", "control_net_unit_count", "sd_checkpoint_hash"]
    /// The longest string value `POST /options` keeps.
    static let maximumOptionText = 256

    /// A plausible A1111 options object; known keys clients set through `POST /options` are returned as set.
    private func options() -> [String: Any] {
        let repository = engine.repository
        let checkpoint = settings.checkpointID(repository).flatMap { repository.entry(.checkpoint, $0) }
        var options = Self.knownOptions
        options["control_net_unit_count"] = engine.configuration.limits.maximumControls
        options.merge(settings.storedOptions) { $1 }
        options["sd_model_checkpoint"] = checkpoint.map(settings.title) ?? NSNull()
        options["sd_checkpoint_hash"] = NSNull()
        options["CLIP_stop_at_last_layers"] = settings.clipSkip
        options["sd_checkpoints_limit"] = engine.configuration.loadedModelLimit
        return options
    }

    /// `POST /options`: `sd_model_checkpoint` switches the model later A1111 requests use, `CLIP_stop_at_last_layers`
    /// their CLIP skip (checked against that model); the other known options are kept (GET returns them) and have no
    /// effect. Unknown and read-only keys are ignored: logged, and listed in the `X-Ignored-Options` response header.
    /// Every value is checked before any is applied.
    private func setOptions(_ request: Request, _ context: ServerRequestContext) async throws -> Response {
        let body = try await BodyLimits.read(request, context: context)
        let fields = try await RequestWork.run { Handoff(try A1111Fields.parse(Data(buffer: body))) }.value
        var checkpoint: String?
        if fields.has("sd_model_checkpoint") {
            let name = try fields.string("sd_model_checkpoint") ?? ""
            guard let entry = engine.repository.entry(.checkpoint, name) else {
                throw APIError.notFound("model '\(name.prefix(200))' not found; see /sdapi/v1/sd-models")
            }
            checkpoint = entry.id
        }
        var clipSkip: Int?
        if fields.has("CLIP_stop_at_last_layers") {
            let value = try fields.int("CLIP_stop_at_last_layers") ?? 1
            let model = checkpoint ?? settings.checkpointID(engine.repository)
            let profile = try engine.repository.profile(model)
            try FieldBounds.checkClipSkip(value, field: "CLIP_stop_at_last_layers", profile: profile, model: model ?? "default")
            clipSkip = value
        }
        var kept: [(String, Any)] = []
        var ignored: [String] = []
        for key in fields.values.keys.sorted() where key != "sd_model_checkpoint" && key != "CLIP_stop_at_last_layers" {
            guard let known = Self.knownOptions[key], !Self.readOnlyOptions.contains(key) else {
                ignored.append(key)
                continue
            }
            kept.append((key, try Self.optionValue(fields.values[key] ?? NSNull(), key: key, like: known)))
        }
        if let checkpoint {
            settings.setCheckpoint(checkpoint)
            context.logger.info("A1111 options: default checkpoint switched", metadata: ["model": "\(checkpoint)"])
        }
        if let clipSkip { settings.setClipSkip(clipSkip) }
        for (key, value) in kept { settings.store(key, value) }
        var response = try jsonNull()
        if !ignored.isEmpty {
            // Names as sent can be anything: the header and the log show a bounded, printable summary.
            let shown = ignored.prefix(32).map { String($0.unicodeScalars.filter { $0.isASCII && $0.value >= 0x20 }.prefix(64)) }
            let summary = shown.joined(separator: ", ") + (ignored.count > shown.count ? ", ... (\(ignored.count) in all)" : "")
            context.logger.notice("A1111 options: unknown or read-only keys ignored", metadata: ["keys": "\(summary)"])
            response.headers[Self.ignoredOptionsHeader] = summary
        }
        return response
    }

    static let ignoredOptionsHeader = HTTPField.Name("X-Ignored-Options")!

    /// A value for a known option: the same JSON kind as its default (a boolean, a number, a short string), or null
    /// to restore the default.
    static func optionValue(_ value: Any, key: String, like known: Any) throws -> Any {
        if value is NSNull { return known }
        func refuse(_ expected: String) -> APIError {
            APIError(.unprocessableContent, "invalid_request", "option \(key) must be \(expected), got \(A1111Fields.describe(value))")
        }
        switch known {
        case is Bool:
            guard let flag = value as? NSNumber, A1111Fields.isBool(flag) else { throw refuse("a boolean") }
            return flag.boolValue
        case is Int, is Double:
            guard let number = value as? NSNumber, !A1111Fields.isBool(number), number.doubleValue.isFinite else {
                throw refuse("a number")
            }
            return number
        default:
            guard let text = value as? String else { throw refuse("a string") }
            guard text.count <= maximumOptionText else { throw refuse("at most \(maximumOptionText) characters") }
            return text
        }
    }
}

/// The JSON `null` body FastAPI sends for a route that returns nothing.
func jsonNull() throws -> Response {
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "null")))
}
