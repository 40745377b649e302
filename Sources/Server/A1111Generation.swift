import Foundation
import Imaging
import Pipelines
import Samplers
import Serving

/// An AUTOMATIC1111 `txt2img` / `img2img` body translated into a job.
///
/// Every field A1111 accepts is accepted; unknown keys are ignored, as pydantic does. Fields that would change the
/// result but have no counterpart here (hires fix, face restoration, variation seeds, styles, masks, scripts, ...)
/// are listed in `ignored` (logged once per request and reported in `info`) instead of failing the request.
struct A1111Generation {
    enum Mode: String {
        case txt2img
        case img2img
    }

    let mode: Mode
    let spec: JobSpec
    /// The prompts as sent (extra-network tags included), as A1111 reports them.
    let prompt: String
    let negativePrompt: String
    let seed: Int
    let subseed: Int
    let subseedStrength: Double
    let batchSize: Int
    let iterations: Int
    let sampler: SamplerKind
    let model: ModelEntry
    let clipSkip: Int
    let sendImages: Bool
    let denoisingStrength: Double?
    /// The request echo: A1111's defaults overlaid with the fields sent.
    let parameters: [String: Any]
    /// Settings that were sent but are not supported (each with a short reason where useful).
    let ignored: [String]

    /// What the request echo (`parameters`) shows for `sampler_index` when the request names no sampler. (The job
    /// itself uses the model's recommended sampler, as it uses the model's recommended steps and native size.)
    static let defaultSampler = "Euler"
    /// Steps shown in the request echo's defaults. (A1111's processing class defaults to 50; its UI and clients such
    /// as `webuiapi` send 20.)
    static let defaultSteps = 20

    /// Reads and checks a request. Every count, size and step field is bounded before any arithmetic; prompts are
    /// checked for length before they are parsed; sizes and CLIP skip are checked against the chosen model. Fields
    /// the request leaves out take the model's own recommendation (native size, sampler, steps, guidance).
    init(
        mode: Mode, fields: A1111Fields, settings: A1111Settings, repository: ModelRepository,
        limits: RequestLimits = RequestLimits()
    ) throws {
        self.mode = mode
        var ignored: [String] = []

        // Prompts: their length first, then extra-network tags come out; LoRA tags become typed LoRAs.
        prompt = try fields.string("prompt") ?? ""
        negativePrompt = try fields.string("negative_prompt") ?? ""
        try FieldBounds.checkPrompt(prompt, field: "prompt", limits: limits)
        try FieldBounds.checkPrompt(negativePrompt, field: "negative_prompt", limits: limits)
        let positive = A1111ExtraNetworks.parse(prompt)
        let negative = A1111ExtraNetworks.parse(negativePrompt)
        let extraNetworksDisabled = try fields.bool("disable_extra_networks") ?? false
        var loras: [LoRASpec] = []
        for tag in positive.tags + negative.tags {
            let written = tag.source
            guard tag.isLoRA else {
                ignored.append("\(written) (extra network type '\(tag.type)' is not supported)")
                continue
            }
            if extraNetworksDisabled { continue }
            let lora: A1111LoRATag
            do { lora = try A1111LoRATag(tag) } catch { throw APIError.badRequest("\(written): \(error)") }
            guard let entry = repository.entry(.lora, lora.name) else {
                throw APIError.notFound("LoRA '\(lora.name)' not found (named by \(written) in the prompt); see /sdapi/v1/loras")
            }
            loras.append(
                LoRASpec(
                    name: entry.id, weight: lora.unetWeight,
                    textEncoderWeight: lora.textEncoderWeight == lora.unetWeight ? nil : lora.textEncoderWeight))
        }
        for (text, which) in [(positive.prompt, "prompt"), (negative.prompt, "negative_prompt")] {
            do { _ = try A1111PromptParser.parseAttention(text) } catch { throw APIError.badRequest("\(which): \(error)") }
        }

        // Model and CLIP skip: override_settings first, then the options set through /options.
        var requestedModel: String?
        var clipSkip = settings.clipSkip
        var clipSkipOverridden = false
        for (key, value) in (try fields.object("override_settings") ?? [:]).sorted(by: { $0.key < $1.key }) {
            let overrides = A1111Fields([key: value])
            switch key {
            case "sd_model_checkpoint":
                requestedModel = try overrides.string(key)
            case "CLIP_stop_at_last_layers":
                if let value = try overrides.int(key) {
                    clipSkip = value
                    clipSkipOverridden = true
                }
            default:
                ignored.append("override_settings.\(key)")
            }
        }
        let modelName = requestedModel ?? settings.checkpointID(repository)
        guard let modelName, let model = repository.entry(.checkpoint, modelName) else {
            throw APIError.notFound("Model not found: '\(requestedModel ?? "")'; see /sdapi/v1/sd-models")
        }
        let profile = try repository.profile(model.id)
        try FieldBounds.checkClipSkip(clipSkip, field: "CLIP_stop_at_last_layers", profile: profile, model: model.id)
        self.model = model
        self.clipSkip = clipSkip

        // Sizes, steps, guidance, seeds, batch: each bounded before it takes part in any arithmetic.
        func bounded(_ key: String, default value: Int, maximum: Int) throws -> Int {
            let number = try fields.int(key) ?? value
            guard number >= 1 else { throw APIError.badRequest("\(key) must be at least 1, got \(number)") }
            guard number <= maximum else { throw APIError.badRequest("\(key) must be at most \(maximum), got \(number)") }
            return number
        }
        var width = try bounded("width", default: profile.width, maximum: limits.maximumSide)
        var height = try bounded("height", default: profile.height, maximum: limits.maximumSide)
        // A1111 makes latents of width / 8 x height / 8: sizes are effectively rounded down to multiples of the
        // model's latent scale (8).
        let multiple = max(1, profile.sizeMultiple)
        (width, height) = (width / multiple * multiple, height / multiple * multiple)
        guard width >= multiple, height >= multiple else {
            throw APIError.badRequest("width and height must be at least \(multiple) for model '\(model.id)'")
        }
        try FieldBounds.checkSize(width: width, height: height, profile: profile, limits: limits, model: model.id)
        let steps = try bounded("steps", default: profile.steps, maximum: limits.maximumSteps)
        batchSize = try bounded("batch_size", default: 1, maximum: limits.maximumCount)
        iterations = try bounded("n_iter", default: 1, maximum: limits.maximumCount)
        let count = try FieldBounds.product(batchSize, iterations, maximum: limits.maximumCount, what: "batch_size x n_iter")
        let cfg = try fields.double("cfg_scale") ?? Double(profile.cfg)
        guard cfg.isFinite else { throw APIError.badRequest("cfg_scale must be a number") }
        seed = try Self.resolveSeed(try fields.int("seed"), count: count, field: "seed")
        subseed = try Self.resolveSeed(try fields.int("subseed"), count: count, field: "subseed")
        subseedStrength = try fields.double("subseed_strength") ?? 0
        guard subseedStrength.isFinite else { throw APIError.badRequest("subseed_strength must be a number") }

        // Sampler: sampler_name, else sampler_index (a name, or an index into the sampler list), else the model's
        // recommendation; `scheduler` "karras" turns DPM++ 2M into DPM++ 2M Karras.
        var samplerName = try fields.string("sampler_name") ?? ""
        if samplerName.isEmpty {
            if let index = fields.value("sampler_index") as? NSNumber, !A1111Fields.isBool(index) {
                let all = SamplerKind.allCases
                let position = try fields.int("sampler_index") ?? -1
                guard all.indices.contains(position) else { throw APIError.notFound("Sampler not found: index \(index)") }
                samplerName = all[position].a1111Name
            } else {
                samplerName = try fields.string("sampler_index") ?? ""
            }
        }
        if samplerName.isEmpty { samplerName = SamplerKind(name: profile.sampler)?.a1111Name ?? Self.defaultSampler }
        sampler = try Self.sampler(named: samplerName, scheduler: try fields.string("scheduler"), ignored: &ignored)

        // Images.
        var initImage: Data?
        var strength: Float = 0.75
        denoisingStrength = try fields.double("denoising_strength")
        if mode == .img2img {
            guard let images = try fields.array("init_images"), let first = images.first else {
                throw APIError.badRequest("img2img needs init_images (a list with one base64 image)")
            }
            initImage = try Self.initImage(
                first, resizeMode: try fields.int("resize_mode") ?? 0, width: width, height: height, limits: limits)
            if images.count > 1 { ignored.append("init_images[1...] (only the first init image is used)") }
            let value = denoisingStrength ?? 0.75
            guard value > 0, value <= 1 else { throw APIError.badRequest("denoising_strength must be in (0, 1], got \(value)") }
            strength = Float(value)
        }
        var controls: [ControlSpec] = []
        for (name, script) in (try fields.object("alwayson_scripts") ?? [:]).sorted(by: { $0.key < $1.key }) {
            let arguments = (script as? [String: Any])?["args"] as? [Any] ?? []
            if name.lowercased() == "controlnet" {
                controls = try A1111ControlNet.units(
                    arguments, fallbackImage: mode == .img2img ? try Self.rawInitImage(fields) : nil, repository: repository,
                    maximum: limits.maximumControls, ignored: &ignored)
            } else if let first = arguments.first {
                // `{"args": [false]}` is how clients send a script switched off.
                let switchedOff = (first as? NSNumber).map { A1111Fields.isBool($0) && !$0.boolValue } ?? false
                if !switchedOff { ignored.append("alwayson_scripts.\(name)") }
            }
        }

        ignored += try Self.unsupportedSettings(fields, mode: mode, sampler: sampler)
        sendImages = try fields.bool("send_images") ?? true
        self.ignored = ignored
        parameters = Self.echo(fields, mode: mode)

        spec = JobSpec(
            model: model.id, prompt: positive.prompt, negativePrompt: negative.prompt, width: width, height: height, steps: steps,
            sampler: sampler.name, cfg: Float(cfg), seed: UInt64(seed), count: count,
            clipSkip: clipSkip > 1 ? clipSkip : nil,
            loras: loras, controls: controls, initImage: initImage, strength: strength, promptSyntax: .a1111,
            metadata: ["api": "a1111", "mode": mode.rawValue], seedPerImage: true)

        // Only a request that passed every check changes the options later requests use.
        if try fields.bool("override_settings_restore_afterwards") == false {
            // A1111 keeps the overridden options for later requests.
            if requestedModel != nil { settings.setCheckpoint(model.id) }
            if clipSkipOverridden { settings.setClipSkip(clipSkip) }
        }
    }

    /// -1 (or any negative) draws a seed, as A1111's `get_fixed_seed` does for -1. Image `i` of the batch uses
    /// `seed + i`, which must not overflow.
    static func resolveSeed(_ value: Int?, count: Int, field: String) throws -> Int {
        guard let value, value >= 0 else { return Int.random(in: 0..<4_294_967_294) }
        guard !value.addingReportingOverflow(max(0, count - 1)).overflow else {
            throw APIError.badRequest("\(field) must be at most \(Int.max - max(0, count - 1)) for \(count) images, got \(value)")
        }
        return value
    }

    /// The sampler for an A1111 sampler name and scheduler; unknown names are a 404, as in A1111.
    static func sampler(named name: String, scheduler: String?, ignored: inout [String]) throws -> SamplerKind {
        guard var kind = SamplerKind(name: name) else {
            throw APIError.notFound(
                "Sampler not found: '\(name)'; available: \(SamplerKind.allCases.map(\.a1111Name).joined(separator: ", ")) (see /sdapi/v1/samplers)"
            )
        }
        switch scheduler?.trimmingCharacters(in: .whitespaces).lowercased() ?? "" {
        case "", "automatic":
            break
        case "karras":
            if kind == .dpmPlusPlus2M {
                kind = .dpmPlusPlus2MKarras
            } else if kind != .dpmPlusPlus2MKarras {
                ignored.append("scheduler \"\(scheduler ?? "")\" (only DPM++ 2M has a Karras schedule here)")
            }
        default:
            ignored.append("scheduler \"\(scheduler ?? "")\" (supported: automatic, karras)")
        }
        return kind
    }

    /// The first init image, decoded to check it and fitted to the size by `resize_mode` (0 just resize, 1 crop and
    /// resize, 2 resize and fill, 3 latent upscale, done here as just resize).
    static func initImage(_ value: Any, resizeMode: Int, width: Int, height: Int, limits: RequestLimits) throws -> Data {
        guard let text = value as? String else { throw APIError.badRequest("init_images[0] is not a base64-encoded image") }
        // Base64 takes 4 characters for 3 bytes: a longer text cannot hold an image within the limit.
        guard text.utf8.count <= (limits.maximumImageBytes / 3 + 2) * 4 + 1024 else {
            throw APIError.badRequest("init_images[0] is larger than \(limits.maximumImageBytes) bytes")
        }
        guard let data = Base64.decodeImage(text), !data.isEmpty else {
            throw APIError.badRequest("init_images[0] is not a base64-encoded image")
        }
        guard data.count <= limits.maximumImageBytes else {
            throw APIError.badRequest("init_images[0] is larger than \(limits.maximumImageBytes) bytes")
        }
        guard (0...3).contains(resizeMode) else {
            throw APIError.badRequest(
                "resize_mode must be 0 (just resize), 1 (crop and resize), 2 (resize and fill) or 3, got \(resizeMode)")
        }
        let image: RGBImage
        let decodeLimits = ImageLimits(
            maximumBytes: limits.maximumImageBytes, maximumSide: limits.maximumImageSide, maximumPixels: limits.maximumImagePixels)
        do { image = try ImageCodec.decode(data, limits: decodeLimits) } catch {
            throw APIError.badRequest("init_images[0] is not a readable PNG or JPEG: \(error)")
        }
        switch resizeMode {
        case 0, 3:
            return data  // the engine stretches it to width x height
        case 1, 2:
            // Crop and resize first scales the image to cover the target: an extreme aspect ratio would ask for a
            // huge intermediate image. Bound it (the size `apply` would allocate) before any pixel is touched.
            let mode: ResizeMode = resizeMode == 1 ? .cropAndResize : .resizeAndFill
            let scaled = mode.scaledSize(width: image.width, height: image.height, toWidth: width, toHeight: height)
            let intermediate = Double(scaled.width) * Double(scaled.height)
            let aspect = Double(max(image.width, image.height)) / Double(max(1, min(image.width, image.height)))
            if aspect > limits.maximumAspectRatio || intermediate > Double(limits.maximumIntermediatePixels) {
                throw APIError.badRequest(
                    "init_images[0] is \(image.width)x\(image.height): fitting it to \(width)x\(height) needs an aspect ratio of at most \(limits.maximumAspectRatio) and at most \(limits.maximumIntermediatePixels) intermediate pixels (use resize_mode 0)"
                )
            }
            return try ImageCodec.encodePNG(mode.apply(to: image, width: width, height: height))
        default:
            throw APIError.badRequest(
                "resize_mode must be 0 (just resize), 1 (crop and resize), 2 (resize and fill) or 3, got \(resizeMode)")
        }
    }

    /// The first init image as sent (ControlNet units without an image use it, as the extension does in img2img).
    static func rawInitImage(_ fields: A1111Fields) throws -> Data? {
        guard let first = try fields.array("init_images")?.first as? String else { return nil }
        return Base64.decodeImage(first)
    }

    /// Fields that were set to something this server cannot do; each is ignored.
    static func unsupportedSettings(_ fields: A1111Fields, mode: Mode, sampler: SamplerKind) throws -> [String] {
        var ignored: [String] = []
        func note(_ key: String, _ condition: Bool) {
            if condition { ignored.append(key) }
        }
        note("styles", !(try fields.array("styles") ?? []).isEmpty)
        note("subseed_strength (variation seeds)", (try fields.double("subseed_strength") ?? 0) > 0)
        let seedResize = max(try fields.int("seed_resize_from_w") ?? -1, try fields.int("seed_resize_from_h") ?? -1)
        note("seed_resize_from_w/h", seedResize > 0)
        note("restore_faces", try fields.bool("restore_faces") ?? false)
        note("tiling", try fields.bool("tiling") ?? false)
        note("enable_hr (hires fix)", try fields.bool("enable_hr") ?? false)
        let refiner = try fields.string("refiner_checkpoint") ?? ""
        note("refiner_checkpoint", !refiner.isEmpty && refiner.lowercased() != "none")
        note("s_min_uncond", (try fields.double("s_min_uncond") ?? 0) > 0)
        note("s_churn", (try fields.double("s_churn") ?? 0) > 0)
        note("s_noise", (try fields.double("s_noise")).map { $0 != 1 } ?? false)
        if let eta = try fields.double("eta") {
            // Only DDIM and ancestral samplers use eta; here DDIM runs with 0 and Euler a with 1.
            note("eta", (sampler == .ddim && eta != 0) || (sampler == .eulerAncestral && eta != 1))
        }
        note("script_name", !(try fields.string("script_name") ?? "").isEmpty)
        note("infotext", !(try fields.string("infotext") ?? "").isEmpty)
        note("firstpass_image", fields.has("firstpass_image"))
        note("save_images (results stay in the job store)", try fields.bool("save_images") ?? false)
        if mode == .img2img {
            note("mask (inpainting)", fields.has("mask"))
            note("latent_mask", fields.has("latent_mask"))
            note("initial_noise_multiplier", (try fields.double("initial_noise_multiplier")).map { $0 != 1 } ?? false)
        }
        return ignored
    }

    /// The request as A1111 echoes it: every field of its request model with its default, overlaid with what was
    /// sent; img2img drops the images unless `include_init_images`.
    static func echo(_ fields: A1111Fields, mode: Mode) -> [String: Any] {
        var echo = mode == .txt2img ? txt2imgDefaults : img2imgDefaults
        for (key, value) in fields.values where echo[key] != nil { echo[key] = value }
        let includeInitImages = (try? fields.bool("include_init_images")) ?? false
        if mode == .img2img, includeInitImages != true {
            echo["init_images"] = NSNull()
            echo["mask"] = NSNull()
        }
        return echo
    }

    static var commonDefaults: [String: Any] {
        [
            "prompt": "", "negative_prompt": "", "styles": NSNull(), "seed": -1, "subseed": -1, "subseed_strength": 0,
            "seed_resize_from_h": -1, "seed_resize_from_w": -1, "sampler_name": NSNull(), "scheduler": NSNull(), "batch_size": 1,
            "n_iter": 1,
            "steps": defaultSteps, "cfg_scale": 7.0, "width": 512, "height": 512, "restore_faces": NSNull(), "tiling": NSNull(),
            "do_not_save_samples": false, "do_not_save_grid": false, "eta": NSNull(), "denoising_strength": 0.75,
            "s_min_uncond": NSNull(),
            "s_churn": NSNull(), "s_tmax": NSNull(), "s_tmin": NSNull(), "s_noise": NSNull(), "override_settings": NSNull(),
            "override_settings_restore_afterwards": true, "refiner_checkpoint": NSNull(), "refiner_switch_at": NSNull(),
            "disable_extra_networks": false, "firstpass_image": NSNull(), "comments": NSNull(), "force_task_id": NSNull(),
            "sampler_index": defaultSampler, "script_name": NSNull(), "script_args": [Any](), "send_images": true,
            "save_images": false,
            "alwayson_scripts": [String: Any](), "infotext": NSNull(),
        ]
    }

    static var txt2imgDefaults: [String: Any] {
        commonDefaults.merging(
            [
                "enable_hr": false, "firstphase_width": 0, "firstphase_height": 0, "hr_scale": 2.0, "hr_upscaler": NSNull(),
                "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": NSNull(),
                "hr_sampler_name": NSNull(),
                "hr_scheduler": NSNull(), "hr_prompt": "", "hr_negative_prompt": "",
            ], uniquingKeysWith: { $1 })
    }

    static var img2imgDefaults: [String: Any] {
        commonDefaults.merging(
            [
                "init_images": NSNull(), "resize_mode": 0, "image_cfg_scale": NSNull(), "mask": NSNull(), "mask_blur_x": 4,
                "mask_blur_y": 4,
                "mask_blur": NSNull(), "mask_round": true, "inpainting_fill": 0, "inpaint_full_res": true,
                "inpaint_full_res_padding": 0,
                "inpainting_mask_invert": 0, "initial_noise_multiplier": NSNull(), "latent_mask": NSNull(),
                "include_init_images": false,
            ], uniquingKeysWith: { $1 })
    }
}
