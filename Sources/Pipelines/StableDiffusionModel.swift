import Adapters
import Compute
import Foundation
import Models
import Samplers
import Weights

/// Which Stable Diffusion generation a model belongs to.
public enum ModelFamily: String, Sendable, Codable {
    case sd1 = "sd1"
    case sd2 = "sd2"
    case sdxl = "sdxl"

    public var displayName: String {
        switch self {
        case .sd1: "SD 1.x"
        case .sd2: "SD 2.x"
        case .sdxl: "SDXL"
        }
    }
}

/// Why a model could not be loaded.
public enum ModelLoadError: Error, CustomStringConvertible, Sendable {
    case missingComponent(String, path: String)
    case mismatch(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case .missingComponent(let component, let path): "'\(path)' has no \(component) component"
        case .mismatch(let detail): "the model's components do not fit together: \(detail)"
        case .unsupported(let detail): "unsupported model: \(detail)"
        }
    }
}

/// A loaded Stable Diffusion model: tokenizer(s), text encoder(s), UNet, VAE and its scheduler config.
///
/// Loads diffusers folders and single-file (original layout) `.safetensors` checkpoints; one code path
/// serves SD 1.x, SD 2.x and SDXL, full-size or tiny.
public final class StableDiffusionModel: @unchecked Sendable {
    public let name: String
    public let source: URL
    public let family: ModelFamily
    public let tokenizer: CLIPTokenizer
    public let tokenizer2: CLIPTokenizer?
    public let textEncoder: CLIPTextModel
    public let textEncoder2: CLIPTextModelWithProjection?
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let schedulerConfiguration: SchedulerConfiguration
    /// SDXL: zero unconditional embeddings when no negative prompt is given (diffusers' default).
    public let forceZerosForEmptyPrompt: Bool
    /// The precision of the linear and conv weights (and so of their GEMMs); see `ComputePrecision`.
    public let precision: ComputePrecision

    /// Opens a diffusers folder or a single-file checkpoint. `tokenizerFolder` supplies the CLIP vocabulary
    /// for single-file checkpoints, which carry none.
    /// `precision` bf16 stores every linear and conv weight as bf16, rounding each as it is read (fp16 and bf16
    /// files are widened one tensor at a time, never whole).
    public convenience init(contentsOf url: URL, tokenizerFolder: URL? = nil, predictionType: String? = nil, precision: ComputePrecision = .fp32) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw WeightsError.missingFile(path: url.path, what: "model")
        }
        if isDirectory.boolValue {
            try self.init(folder: url, precision: precision)
        } else {
            try self.init(checkpoint: url, tokenizerFolder: tokenizerFolder, predictionType: predictionType, precision: precision)
        }
    }

    /// The Stable Diffusion 1.5 architecture (`StandardConfigs`) with random weights (`RandomWeights`): what the
    /// benchmarks run, no download needed. `tokenizerFolder` supplies the CLIP vocabulary (the embedded model's).
    public init(randomStandardSD15 tokenizerFolder: URL, seed: UInt64 = 7, precision: ComputePrecision = .fp32) throws {
        func config(_ component: String) throws -> Data {
            guard let json = StandardConfigs.json(for: component, family: .sd1) else {
                throw ModelLoadError.missingComponent(component, path: "<standard SD 1.5 configs>")
            }
            return Data(json.utf8)
        }
        let weights = RandomWeights(seed: seed)
        name = "random-sd15"
        source = URL(fileURLWithPath: "/dev/null")
        self.precision = precision
        tokenizer = try CLIPTokenizer(folder: tokenizerFolder, padToken: "<|endoftext|>")
        tokenizer2 = nil
        textEncoder2 = nil
        textEncoder = try Self.loading(precision) { try CLIPTextModel(configData: try config("text_encoder"), weights: weights) }
        unet = try Self.loading(precision) { try UNet2DConditionModel(configData: try config("unet"), weights: weights) }
        vae = try Self.loading(precision) { try AutoencoderKL(configData: try config("vae"), weights: weights) }
        schedulerConfiguration = try SchedulerConfiguration(jsonData: try config("scheduler"))
        forceZerosForEmptyPrompt = false
        family = .sd1
        try validate()
    }

    /// Builds a component with its linear and conv weights stored in `precision`.
    /// bf16: the fp32 values each weight was rounded from are freed as the component is built; the buffer cache
    /// is trimmed after it so they do not stay resident. Then the cache is sized to what the process now holds.
    private static func loading<T>(_ precision: ComputePrecision, _ body: () throws -> T) rethrows -> T {
        defer {
            if precision == .bf16 { TensorBufferCache.trim() }
            TensorBufferCache.fitLimitToResidentSet()
        }
        return try ModuleLoader.$weightPrecision.withValue(precision) { try body() }
    }

    /// A diffusers pipeline folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, ...).
    public init(folder url: URL, precision: ComputePrecision = .fp32) throws {
        let folder = try DiffusersPipelineFolder(url)
        func component(_ name: String) throws -> ComponentFolder {
            guard folder.components[name] != nil else { throw ModelLoadError.missingComponent(name, path: url.path) }
            return try folder.component(name)
        }
        let hasSecondEncoder = folder.components["text_encoder_2"] != nil
        name = url.lastPathComponent
        source = url
        self.precision = precision
        tokenizer = try CLIPTokenizer(folder: try component("tokenizer").url)
        textEncoder = try Self.loading(precision) { try CLIPTextModel(component: try component("text_encoder")) }
        if hasSecondEncoder {
            tokenizer2 = try CLIPTokenizer(folder: try component("tokenizer_2").url)
            textEncoder2 = try Self.loading(precision) { try CLIPTextModelWithProjection(component: try component("text_encoder_2")) }
        } else {
            tokenizer2 = nil
            textEncoder2 = nil
        }
        let unetFolder = try component("unet")
        unet = try Self.loading(precision) {
            try UNet2DConditionModel(configData: try unetFolder.configData, weights: try unetFolder.weights(), source: unetFolder.url.path)
        }
        let vaeFolder = try component("vae")
        vae = try Self.loading(precision) {
            try AutoencoderKL(configData: try vaeFolder.configData, weights: try vaeFolder.weights(), source: vaeFolder.url.path)
        }
        schedulerConfiguration = try SchedulerConfiguration(jsonData: try component("scheduler").configData)
        forceZerosForEmptyPrompt = Self.readForceZeros(url)
        family = try Self.family(unet: unet, textEncoder2: textEncoder2)
        try validate()
    }

    /// A single `.safetensors` checkpoint in the original (LDM/SGM) layout.
    public init(checkpoint url: URL, tokenizerFolder: URL?, predictionType: String? = nil, precision: ComputePrecision = .fp32) throws {
        let checkpoint = try SingleFileCheckpoint(url: url, predictionType: predictionType)
        guard let tokenizerFolder else {
            throw ModelLoadError.unsupported("'\(url.path)' is a single-file checkpoint and carries no tokenizer; a CLIP tokenizer folder is needed")
        }
        guard let textWeights = checkpoint.textEncoder else { throw ModelLoadError.missingComponent("text encoder", path: url.path) }
        guard let vaeWeights = checkpoint.vae else { throw ModelLoadError.missingComponent("VAE", path: url.path) }
        name = url.deletingPathExtension().lastPathComponent
        source = url
        self.precision = precision
        tokenizer = try CLIPTokenizer(folder: tokenizerFolder, padToken: checkpoint.padToken(tokenizer: "tokenizer") ?? "<|endoftext|>")
        textEncoder = try Self.loading(precision) { try CLIPTextModel(configData: try checkpoint.configData(for: "text_encoder"), weights: textWeights) }
        if let second = checkpoint.textEncoder2 {
            tokenizer2 = try CLIPTokenizer(folder: tokenizerFolder, padToken: checkpoint.padToken(tokenizer: "tokenizer_2") ?? "!")
            textEncoder2 = try Self.loading(precision) {
                try CLIPTextModelWithProjection(configData: try checkpoint.configData(for: "text_encoder_2"), weights: second)
            }
        } else {
            tokenizer2 = nil
            textEncoder2 = nil
        }
        unet = try Self.loading(precision) { try UNet2DConditionModel(configData: try checkpoint.configData(for: "unet"), weights: checkpoint.unet) }
        vae = try Self.loading(precision) { try AutoencoderKL(configData: try checkpoint.configData(for: "vae"), weights: vaeWeights) }
        schedulerConfiguration = try SchedulerConfiguration(jsonData: try checkpoint.configData(for: "scheduler"))
        forceZerosForEmptyPrompt = checkpoint.family == .sdxl
        family = try Self.family(unet: unet, textEncoder2: textEncoder2)
        try validate()
    }

    private static func readForceZeros(_ url: URL) -> Bool {
        guard let data = try? Data(contentsOf: url.appendingPathComponent("model_index.json")),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return false }
        return (object["force_zeros_for_empty_prompt"] as? Bool) ?? false
    }

    private static func family(unet: UNet2DConditionModel, textEncoder2: CLIPTextModelWithProjection?) throws -> ModelFamily {
        if unet.configuration.additionEmbedType == "text_time" {
            guard textEncoder2 != nil else { throw ModelLoadError.mismatch("an SDXL UNet needs a second text encoder (text_encoder_2)") }
            return .sdxl
        }
        return unet.configuration.useLinearProjection ? .sd2 : .sd1
    }

    private func validate() throws {
        let contextWidth = textEncoder.configuration.hiddenSize + (textEncoder2?.configuration.hiddenSize ?? 0)
        let dims = try unet.configuration.crossAttentionDim.values(
            count: unet.configuration.blockOutChannels.count, field: "cross_attention_dim")
        if let dim = dims.first, dim != contextWidth {
            throw ModelLoadError.mismatch("the UNet cross-attends to \(dim) features, the text encoder(s) produce \(contextWidth)")
        }
        guard unet.configuration.inChannels == vae.configuration.latentChannels else {
            throw ModelLoadError.unsupported(
                "UNet takes \(unet.configuration.inChannels) channels, the VAE makes \(vae.configuration.latentChannels) (inpainting models are not supported)")
        }
    }

    /// Pixels per latent cell.
    public var vaeScaleFactor: Int { vae.downscaleFactor }

    /// Width and height must be multiples of this.
    public var sizeMultiple: Int { vaeScaleFactor }

    /// The layers LoRAs patch, by component.
    public var loraTargets: LoRATargets {
        var registries: [LoRAComponent: LayerRegistry] = [.unet: unet.registry, .textEncoder: textEncoder.registry]
        if let textEncoder2 { registries[.textEncoder2] = textEncoder2.registry }
        let layers = (try? unet.configuration.layersPerBlock.values(count: unet.configuration.blockOutChannels.count, field: ""))?.first ?? 2
        return LoRATargets(registries: registries, unetLayersPerBlock: layers)
    }

    /// The scheduler for a sampler, configured from this model's `scheduler_config.json` as diffusers'
    /// `from_config` would.
    public func scheduler(_ sampler: SamplerKind) throws -> any Scheduler {
        try sampler.makeScheduler(configuration: schedulerConfiguration)
    }
}
