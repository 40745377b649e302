import Foundation

/// A Stable Diffusion 1.x / 2.x / XL checkpoint in one `.safetensors` file with the original (LDM /
/// CompVis / SGM) key layout, the format of most community models, seen as diffusers components.
///
/// Opening reads only the header: it detects the family, converts the key names (tensors that must be
/// split, flattened or transposed are produced when read), resolves each component's config and checks
/// it against the tensor shapes. Models are then built from `unet`, `vae`, `textEncoder`,
/// `textEncoder2` and `configData(for:)` exactly as from a `DiffusersPipelineFolder`.
///
/// Configs come from, in order: `configFolder` (a diffusers pipeline folder, like diffusers'
/// `from_single_file(config=...)`), the checkpoint's own `swiftdiffusion.<component>.config` metadata (a
/// SwiftDiffusion extension written by tools/parity/convert_diffusers_to_ldm.py), or the standard configs
/// of SD 1.5 / SD 2.1 / SDXL base (`StandardConfigs`).
///
/// Tokenizers are not in single files: every family uses the CLIP BPE vocabulary (49408 tokens) with the
/// `tokenizer` / `tokenizer_2` config's pad token.
public struct SingleFileCheckpoint: Sendable {
    /// The model family, detected from the checkpoint's keys (see `detectFamily`).
    public enum Family: String, Sendable, CaseIterable {
        /// Stable Diffusion 1.x: CLIP ViT-L text encoder under `cond_stage_model.transformer.`.
        case sd1
        /// Stable Diffusion 2.x: OpenCLIP ViT-H text encoder under `cond_stage_model.model.`.
        case sd2
        /// Stable Diffusion XL base: CLIP ViT-L and OpenCLIP ViT-bigG under `conditioner.embedders.{0,1}.`.
        case sdxl

        /// The diffusers pipeline class a folder of this family names in `model_index.json`.
        public var pipelineClass: String { self == .sdxl ? "StableDiffusionXLPipeline" : "StableDiffusionPipeline" }

        /// The model components (weights) of this family, in diffusers' component names.
        public var modelComponents: [String] {
            self == .sdxl ? ["unet", "vae", "text_encoder", "text_encoder_2"] : ["unet", "vae", "text_encoder"]
        }

        /// Every component with a config: models, scheduler and tokenizers.
        public var configComponents: [String] {
            modelComponents + ["scheduler", "tokenizer"] + (self == .sdxl ? ["tokenizer_2"] : [])
        }
    }

    /// Where a component's config came from.
    public enum ConfigOrigin: Sendable, Equatable, CustomStringConvertible {
        /// A diffusers pipeline folder passed as `configFolder` (the component's subfolder).
        case configFolder(String)
        /// The checkpoint's `swiftdiffusion.<component>.config` metadata.
        case checkpointMetadata(key: String)
        /// The reference model's config embedded in this library (`StandardConfigs`), possibly adjusted
        /// (`in_channels` from the checkpoint; prediction type).
        case standard(model: String)

        public var description: String {
            switch self {
            case .configFolder(let path): return "config from '\(path)'"
            case .checkpointMetadata(let key): return "config from the checkpoint's '\(key)' metadata"
            case .standard(let model): return "standard \(model) configuration"
            }
        }
    }

    /// Key prefixes of the original layout.
    public enum Prefix {
        public static let unet = "model.diffusion_model."
        public static let vae = "first_stage_model."
        public static let sd1TextEncoder = "cond_stage_model.transformer."
        public static let sd2TextEncoder = "cond_stage_model.model."
        public static let sdxlTextEncoder = "conditioner.embedders.0.transformer."
        public static let sdxlTextEncoder2 = "conditioner.embedders.1.model."
        /// SDXL refiner: only the OpenCLIP bigG encoder, as embedder 0.
        public static let sdxlRefinerTextEncoder = "conditioner.embedders.0.model."
    }

    /// Top-level tensors of LDM checkpoints that no diffusers component uses: the training noise schedule
    /// (the scheduler config recomputes it), loss weights, and the ComfyUI-style `v_pred` / `ztsnr` markers.
    public static let ignoredTopLevelKeys: Set<String> = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar", "lvlb_weights", "v_pred", "ztsnr",
    ]
    /// Prefixes of tensors that are deliberately not loaded: the EMA copy of the UNet (`model_ema.*`, the
    /// regular weights are used, as by diffusers without `extract_ema`).
    public static let ignoredPrefixes = ["model_ema."]

    /// The prediction types diffusers schedulers accept.
    public static let predictionTypes: Set<String> = ["epsilon", "v_prediction", "sample"]

    /// The file (or `sourceDescription` of an in-memory source).
    public let path: String
    public let family: Family
    /// The whole checkpoint, original names.
    public let source: any WeightSource
    /// The header's `__metadata__`.
    public let metadata: [String: String]

    public let unet: ConvertedWeights
    /// Absent when the checkpoint has no `first_stage_model.*` tensors (a "no-VAE" export).
    public let vae: ConvertedWeights?
    /// Absent when the checkpoint has no text-encoder tensors (a UNet-only export).
    public let textEncoder: ConvertedWeights?
    /// SDXL's second text encoder (`CLIPTextModelWithProjection`); nil for SD 1.x / 2.x.
    public let textEncoder2: ConvertedWeights?

    /// Tensors that no conversion rule understood, in original names (reported, not loaded). Empty for a
    /// well-formed checkpoint.
    public let leftoverKeys: [String]
    /// Tensors known to be unused (schedule buffers, `position_ids`, the EMA copy, the OpenCLIP layer and
    /// projection SD 2.x does not use, `logit_scale`), in original names.
    public let ignoredKeys: [String]

    private let configs: [String: (data: Data, origin: ConfigOrigin)]

    /// Opens a `.safetensors` checkpoint. Pickle checkpoints (`.ckpt`, ...) are refused.
    ///
    /// - `configFolder`: a diffusers pipeline folder whose component configs describe this checkpoint
    ///   (needed only for architectures other than SD 1.5 / 2.1 / XL base without embedded configs).
    /// - `predictionType`: `epsilon`, `v_prediction` or `sample`, overriding the scheduler config. A
    ///   checkpoint's tensors cannot tell epsilon from v-prediction; the standard SD 2.x config says
    ///   `v_prediction` (SD 2.1 768-v, as diffusers' `from_single_file` assumes), so SD 2.x 512-base
    ///   fine-tunes need `predictionType: "epsilon"`. A `v_pred` tensor in the file also selects v-prediction.
    public init(url: URL, configFolder: URL? = nil, predictionType: String? = nil) throws {
        if WeightsFile.isPickle(url) { throw WeightsError.pickleRefused(path: url.path) }
        if directoryExists(url) {
            throw WeightsError.unsupportedFormat(
                path: url.path,
                detail: "this is a folder; single-file checkpoints are .safetensors files (open diffusers folders "
                    + "with DiffusersPipelineFolder)")
        }
        let file = try SafeTensorsFile(contentsOf: url)
        try self.init(weights: file, metadata: file.metadata, configFolder: configFolder, predictionType: predictionType)
    }

    /// A checkpoint from any weight source (e.g. tensors in memory) with its header metadata.
    public init(
        weights: any WeightSource, metadata: [String: String] = [:], configFolder: URL? = nil, predictionType: String? = nil
    ) throws {
        let path = weights.sourceDescription
        let family = try Self.detectFamily(weights)
        if let predictionType, !Self.predictionTypes.contains(predictionType) {
            throw CheckpointError.invalidOption(
                "prediction type '\(predictionType)' (expected one of \(Self.predictionTypes.sorted().joined(separator: ", ")))")
        }
        let folder = try configFolder.map { try DiffusersPipelineFolder($0) }

        // Configs first: the OpenCLIP conversion needs the text encoder's layer count.
        var configs: [String: (data: Data, origin: ConfigOrigin)] = [:]
        for component in family.configComponents {
            configs[component] = try Self.resolveConfig(component, family: family, folder: folder, metadata: metadata)
        }
        func parsedConfig(_ component: String) throws -> JSONValue {
            guard let entry = configs[component] else {
                throw CheckpointError.invalidConfig(path: path, component: component, detail: "no configuration")
            }
            let value: JSONValue
            do {
                value = try JSONValue.parse(Array(entry.data))
            } catch {
                throw CheckpointError.invalidConfig(path: path, component: component, detail: "\(entry.origin): \(error)")
            }
            guard case .object = value else {
                throw CheckpointError.invalidConfig(
                    path: path, component: component, detail: "\(entry.origin) is not a JSON object")
            }
            return value
        }

        var claimed: [String] = []  // prefixes owned by a component
        var leftovers: [String] = []
        var ignored: [String] = []
        func component(
            _ name: String, prefix: String, convert: ([String]) throws -> KeyConversion
        ) throws -> ConvertedWeights? {
            claimed.append(prefix)
            let scoped = weights.scoped(to: prefix)
            guard !scoped.names.isEmpty else { return nil }
            let conversion = try convert(scoped.names)
            leftovers += conversion.unconverted.map { prefix + $0 }
            ignored += conversion.ignored.map { prefix + $0 }
            return ConvertedWeights(base: scoped, recipes: conversion.recipes, component: name)
        }
        func layerCount(_ component: String) throws -> Int {
            try parsedConfig(component).configInteger("num_hidden_layers") ?? 12
        }

        guard let unet = try component("unet", prefix: Prefix.unet, convert: { try UNetKeyConversion.convert($0, source: path) })
        else {
            throw CheckpointError.unrecognized(path: path, detail: "no UNet tensors under '\(Prefix.unet)'")
        }
        let vae = try component("vae", prefix: Prefix.vae) { try VAEKeyConversion.convert($0, source: path) }
        let textEncoder: ConvertedWeights?
        var textEncoder2: ConvertedWeights?
        switch family {
        case .sd1:
            textEncoder = try component("text_encoder", prefix: Prefix.sd1TextEncoder) {
                TextEncoderKeyConversion.convertCLIP($0)
            }
        case .sd2:
            let layers = try layerCount("text_encoder")
            textEncoder = try component("text_encoder", prefix: Prefix.sd2TextEncoder) {
                TextEncoderKeyConversion.convertOpenCLIP($0, layers: layers, projection: false)
            }
        case .sdxl:
            textEncoder = try component("text_encoder", prefix: Prefix.sdxlTextEncoder) {
                TextEncoderKeyConversion.convertCLIP($0)
            }
            let layers = try layerCount("text_encoder_2")
            textEncoder2 = try component("text_encoder_2", prefix: Prefix.sdxlTextEncoder2) {
                TextEncoderKeyConversion.convertOpenCLIP($0, layers: layers, projection: true)
            }
        }
        for name in weights.names where !claimed.contains(where: { name.hasPrefix($0) }) {
            if Self.ignoredTopLevelKeys.contains(name) || Self.ignoredPrefixes.contains(where: { name.hasPrefix($0) }) {
                ignored.append(name)
            } else {
                leftovers.append(name)
            }
        }

        // Adjust the standard configs to what the checkpoint says, then check every config against the tensors.
        if case .standard? = configs["unet"]?.origin {
            let inChannels = try unet.shape(of: "conv_in.weight")[1]
            if inChannels != 4, let entry = configs["unet"] {  // inpainting (9), instruct-pix2pix (8)
                configs["unet"] = (
                    Data(try parsedConfig("unet").setting("in_channels", to: .integer(inChannels)).serialized.utf8), entry.origin
                )
            }
        }
        let chosenPrediction = predictionType ?? (weights.contains("v_pred") ? "v_prediction" : nil)
        if chosenPrediction != nil || weights.contains("ztsnr"), let entry = configs["scheduler"] {
            var scheduler = try parsedConfig("scheduler")
            if let chosenPrediction { scheduler = scheduler.setting("prediction_type", to: .string(chosenPrediction)) }
            if weights.contains("ztsnr") { scheduler = scheduler.setting("rescale_betas_zero_snr", to: .bool(true)) }
            configs["scheduler"] = (Data(scheduler.serialized.utf8), entry.origin)
        }
        let checks: [(String, ConvertedWeights?, (JSONValue, ConvertedWeights) throws -> [String])] = [
            ("unet", unet, { try ComponentConsistency.unet(config: $0, weights: $1) }),
            ("vae", vae, { try ComponentConsistency.vae(config: $0, weights: $1) }),
            ("text_encoder", textEncoder, { try ComponentConsistency.textEncoder(config: $0, weights: $1, projection: false) }),
            ("text_encoder_2", textEncoder2, { try ComponentConsistency.textEncoder(config: $0, weights: $1, projection: true) }),
        ]
        for (name, weights, check) in checks {
            guard let weights, let origin = configs[name]?.origin else { continue }
            let mismatches: [String]
            do {
                mismatches = try check(parsedConfig(name), weights)
            } catch let error as WeightsError {
                throw CheckpointError.invalidLayout(path: path, component: name, detail: error.description)
            }
            if !mismatches.isEmpty {
                throw CheckpointError.configMismatch(
                    path: path, component: name, configOrigin: origin.description, mismatches: mismatches)
            }
        }

        self.path = path
        self.family = family
        self.source = weights
        self.metadata = metadata
        self.unet = unet
        self.vae = vae
        self.textEncoder = textEncoder
        self.textEncoder2 = textEncoder2
        self.leftoverKeys = leftovers.sorted()
        self.ignoredKeys = ignored.sorted()
        self.configs = configs
    }

    // MARK: - Components and configs

    /// The model components present, in diffusers' names (`unet`, `vae`, `text_encoder`, `text_encoder_2`).
    public var componentNames: [String] {
        [("unet", unet as ConvertedWeights?), ("vae", vae), ("text_encoder", textEncoder), ("text_encoder_2", textEncoder2)]
            .compactMap { $0.1 == nil ? nil : $0.0 }
    }

    /// A model component by its diffusers name; an error naming the available ones otherwise.
    public func component(_ name: String) throws -> ConvertedWeights {
        let found: ConvertedWeights?
        switch name {
        case "unet": found = unet
        case "vae": found = vae
        case "text_encoder": found = textEncoder
        case "text_encoder_2": found = textEncoder2
        default: found = nil
        }
        guard let found else {
            throw WeightsError.missingComponent(folder: path, component: name, available: componentNames)
        }
        return found
    }

    /// The components that have a config (`unet`, `vae`, `text_encoder`, [`text_encoder_2`], `scheduler`,
    /// `tokenizer`, [`tokenizer_2`]).
    public var configComponents: [String] { family.configComponents }

    /// The component's config as JSON bytes, like `ComponentFolder.configData` (`config.json`,
    /// `scheduler_config.json`, `tokenizer_config.json`).
    public func configData(for component: String) throws -> Data {
        guard let entry = configs[component] else {
            throw WeightsError.missingComponent(folder: path, component: component, available: configComponents)
        }
        return entry.data
    }

    /// Where the component's config came from; nil for an unknown component.
    public func configOrigin(for component: String) -> ConfigOrigin? { configs[component]?.origin }

    /// The scheduler config's `prediction_type` (`epsilon` when absent, as in diffusers).
    public var predictionType: String {
        guard let data = configs["scheduler"]?.data, let value = try? JSONValue.parse(Array(data)) else { return "epsilon" }
        return value.configString("prediction_type") ?? "epsilon"
    }

    /// The tokenizer config's pad token (`tokenizer` or `tokenizer_2`): "<|endoftext|>" for CLIP ViT-L,
    /// "!" for the OpenCLIP encoders of SD 2.x and SDXL.
    public func padToken(tokenizer: String = "tokenizer") -> String? {
        guard let data = configs[tokenizer]?.data, let value = try? JSONValue.parse(Array(data)) else { return nil }
        return value.configString("pad_token")
    }

    // MARK: - Detection

    /// The family of a checkpoint, from which text encoders it has (and, for files without one, from the
    /// UNet's context dimension). Anything else is an error that says what was expected.
    ///
    /// 1. The UNet must be present: tensors under `model.diffusion_model.input_blocks.`.
    /// 2. `conditioner.embedders.1.model.*` (OpenCLIP bigG) -> SDXL; `conditioner.embedders.0.model.*`
    ///    without it -> SDXL refiner (refused).
    /// 3. `cond_stage_model.model.*` (OpenCLIP ViT-H) -> SD 2.x.
    /// 4. `cond_stage_model.transformer.*` (CLIP ViT-L) -> SD 1.x.
    /// 5. No text encoder: `label_emb.*` (added embedding) -> SDXL; else the cross-attention width of the
    ///    first `attn2.to_k.weight`: 768 -> SD 1.x, 1024 -> SD 2.x, 2048 -> SDXL.
    public static func detectFamily(_ weights: any WeightSource) throws -> Family {
        let path = weights.sourceDescription
        let names = weights.names
        func has(_ prefix: String) -> Bool { names.contains { $0.hasPrefix(prefix) } }

        guard has(Prefix.unet + "input_blocks.") else {
            throw CheckpointError.unrecognized(path: path, detail: unrecognizedDetail(names))
        }
        if has(Prefix.sdxlTextEncoder2) { return .sdxl }
        if has(Prefix.sdxlRefinerTextEncoder) {
            throw CheckpointError.unsupportedVariant(
                path: path,
                detail: "this is an SDXL refiner (only an OpenCLIP text encoder, under '\(Prefix.sdxlRefinerTextEncoder)'); "
                    + "SD 1.x, SD 2.x and SDXL base checkpoints are supported")
        }
        if has(Prefix.sd2TextEncoder) { return .sd2 }
        if has(Prefix.sd1TextEncoder) { return .sd1 }
        if weights.contains(Prefix.unet + "label_emb.0.0.weight") { return .sdxl }
        guard let key = names.first(where: { $0.hasPrefix(Prefix.unet) && $0.hasSuffix(".attn2.to_k.weight") }) else {
            throw CheckpointError.unrecognized(
                path: path, detail: "it has no text encoder and no cross-attention layer to tell SD 1.x, 2.x and XL apart")
        }
        switch try weights.shape(of: key).last {
        case 768: return .sd1
        case 1024: return .sd2
        case 2048: return .sdxl
        case let width:
            throw CheckpointError.unrecognized(
                path: path,
                detail: "it has no text encoder, and its cross-attention width \(width.map(String.init) ?? "?") is none of "
                    + "768 (SD 1.x), 1024 (SD 2.x), 2048 (SDXL)")
        }
    }

    private static func unrecognizedDetail(_ names: [String]) -> String {
        let expected =
            "expected the UNet under '\(Prefix.unet)' (input_blocks.*, middle_block.*, output_blocks.*), "
            + "the VAE under '\(Prefix.vae)' and the text encoder under '\(Prefix.sd1TextEncoder)' (SD 1.x), "
            + "'\(Prefix.sd2TextEncoder)' (SD 2.x) or 'conditioner.embedders.0/1.' (SDXL)"
        let sample = names.prefix(3).map { "'\($0)'" }.joined(separator: ", ")
        var found = names.isEmpty ? "the file has no tensors" : "the file has \(names.count) tensors, e.g. \(sample)"
        if names.contains(where: { $0.hasPrefix("down_blocks.") || $0.hasPrefix(Prefix.unet + "down_blocks.") }) {
            found += " (diffusers-layout UNet names: open the diffusers folder or component instead)"
        } else if names.contains(where: { $0.contains("double_blocks.") || $0.contains("joint_blocks.") }) {
            found += " (a transformer model such as Flux or SD3, not a UNet model)"
        }
        return "\(expected); \(found)"
    }

    private static func resolveConfig(
        _ component: String, family: Family, folder: DiffusersPipelineFolder?, metadata: [String: String]
    ) throws -> (data: Data, origin: ConfigOrigin)? {
        if let folder, folder.components[component] != nil {
            let subfolder = try folder.component(component)
            return (try subfolder.configData, .configFolder(subfolder.url.path))
        }
        let key = "swiftdiffusion.\(component).config"
        if let text = metadata[key] { return (Data(text.utf8), .checkpointMetadata(key: key)) }
        guard let json = StandardConfigs.json(for: component, family: family) else { return nil }
        return (Data(json.utf8), .standard(model: StandardConfigs.modelName(family)))
    }
}
