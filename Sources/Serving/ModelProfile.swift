import Foundation
import Pipelines
import Samplers
import Weights

/// What a base model is and what it recommends, read from its configuration files without loading any weights:
/// the defaults every front end uses when a request leaves a field out, and the facts a request is validated
/// against at submission.
///
/// - Size: the UNet's `sample_size` times the VAE's scale factor (SD 1.x 512, SD 2.x 768-v 768, SDXL 1024, the
///   embedded shapes model 128).
/// - Sampler: the class of the model's own `scheduler_config.json`, as diffusers' `from_pretrained` uses it
///   (`use_karras_sigmas` selects DPM++ 2M Karras). Scheduler classes this engine does not have map to the
///   nearest sampler it has (multistep solvers to DPM++ 2M, the rest to Euler).
/// - Steps and guidance: AUTOMATIC1111's 20 steps at CFG 7 (what the embedded model was evaluated with), LCM 4
///   steps at CFG 1.5.
public struct ModelProfile: Codable, Sendable, Equatable {
    public var family: ModelFamily
    /// Native width and height in pixels.
    public var width: Int
    public var height: Int
    /// Width and height must be multiples of this (the VAE's scale factor).
    public var sizeMultiple: Int
    /// Transformer layers of the (first) text encoder.
    public var textEncoderLayers: Int
    /// The largest AUTOMATIC1111 `CLIP_stop_at_last_layers` / `clip_skip` the model can take (1 = no skip).
    public var maximumClipSkip: Int
    /// Recommended sampler (a `SamplerKind` name), steps and guidance scale.
    public var sampler: String
    public var steps: Int
    public var cfg: Float
    /// `epsilon`, `v_prediction` or `sample`, from the scheduler config.
    public var predictionType: String

    enum CodingKeys: String, CodingKey {
        case family, width, height, sampler, steps, cfg
        case sizeMultiple = "size_multiple", textEncoderLayers = "text_encoder_layers", maximumClipSkip = "max_clip_skip"
        case predictionType = "prediction_type"
    }

    /// Reads the profile of a diffusers pipeline folder or a single-file `.safetensors` checkpoint.
    public static func read(path: String) throws -> ModelProfile {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw WeightsError.missingFile(path: path, what: "model")
        }
        if isDirectory.boolValue {
            let folder = try DiffusersPipelineFolder(url)
            func config(_ component: String) throws -> [String: Any]? {
                guard folder.components[component] != nil else { return nil }
                return try object(try folder.component(component).configData, component)
            }
            guard let unet = try config("unet"), let vae = try config("vae"), let textEncoder = try config("text_encoder") else {
                throw EngineError.invalidRequest("\(path) lacks a unet, vae or text_encoder component")
            }
            // As the pipeline decides: SDXL's UNet adds text_time embeddings, SD 2.x projects attention linearly.
            let family: ModelFamily =
                unet["addition_embed_type"] as? String == "text_time" ? .sdxl : unet["use_linear_projection"] as? Bool == true ? .sd2 : .sd1
            return try profile(family: family, unet: unet, vae: vae, textEncoder: textEncoder, scheduler: try config("scheduler") ?? [:])
        }
        let checkpoint = try SingleFileCheckpoint(url: url)
        let family: ModelFamily
        switch checkpoint.family {
        case .sd1: family = .sd1
        case .sd2: family = .sd2
        case .sdxl: family = .sdxl
        }
        func config(_ component: String) throws -> [String: Any] {
            try object(try checkpoint.configData(for: component), component)
        }
        return try profile(
            family: family, unet: try config("unet"), vae: try config("vae"), textEncoder: try config("text_encoder"),
            scheduler: (try? config("scheduler")) ?? [:])
    }

    private static func object(_ data: Data, _ component: String) throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw EngineError.invalidRequest("the \(component) configuration is not a JSON object")
        }
        return object
    }

    static func profile(
        family: ModelFamily, unet: [String: Any], vae: [String: Any], textEncoder: [String: Any], scheduler: [String: Any]
    ) throws -> ModelProfile {
        let blocks = (vae["block_out_channels"] as? [Any])?.count ?? 4
        let scale = 1 << max(0, min(blocks - 1, 6))
        let sampleSize: Int
        if let size = unet["sample_size"] as? Int {
            sampleSize = size
        } else if let sizes = unet["sample_size"] as? [Int], let first = sizes.first {
            sampleSize = first
        } else {
            sampleSize = family == .sdxl ? 128 : family == .sd2 ? 96 : 64
        }
        let layers = textEncoder["num_hidden_layers"] as? Int ?? 12
        let (sampler, steps, cfg) = recommendation(scheduler)
        return ModelProfile(
            family: family, width: sampleSize * scale, height: sampleSize * scale, sizeMultiple: scale, textEncoderLayers: layers,
            // SDXL already reads the penultimate layer, so one layer fewer can be skipped.
            maximumClipSkip: max(1, family == .sdxl ? layers - 1 : layers), sampler: sampler.name, steps: steps, cfg: cfg,
            predictionType: scheduler["prediction_type"] as? String ?? "epsilon")
    }

    /// The sampler, steps and guidance a scheduler config recommends.
    static func recommendation(_ scheduler: [String: Any]) -> (SamplerKind, Int, Float) {
        let className = scheduler["_class_name"] as? String ?? ""
        let karras = scheduler["use_karras_sigmas"] as? Bool ?? false
        let kind: SamplerKind
        switch className {
        case "DDIMScheduler": kind = .ddim
        case "PNDMScheduler": kind = .pndm
        case "EulerDiscreteScheduler", "LMSDiscreteScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler": kind = .euler
        case "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler": kind = .eulerAncestral
        case "LCMScheduler", "TCDScheduler": kind = .lcm
        case "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler":
            kind = karras ? .dpmPlusPlus2MKarras : .dpmPlusPlus2M
        default: kind = karras ? .dpmPlusPlus2MKarras : .euler
        }
        return kind == .lcm ? (kind, 4, 1.5) : (kind, 20, 7)
    }
}
