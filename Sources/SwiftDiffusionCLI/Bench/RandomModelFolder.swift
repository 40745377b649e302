import Compute
import Foundation
import Models
import Weights

/// A diffusers pipeline folder (and a ControlNet folder) with random weights for a given architecture, written for
/// benchmarks that run a whole request through both SwiftDiffusion and diffusers: each component is built from its
/// config on `RandomWeights`, and every tensor it asked for is written, under its checkpoint name and shape, to
/// the component's `.safetensors` (float16), next to its config.
enum RandomModelFolder {
    /// Records every tensor a model asks `RandomWeights` for.
    final class Recorder: WeightSource, @unchecked Sendable {
        private let base: RandomWeights
        private let lock = NSLock()
        private(set) var tensors: [String: Tensor] = [:]

        init(seed: UInt64) { base = RandomWeights(seed: seed) }

        var names: [String] { [] }
        var sourceDescription: String { base.sourceDescription }
        func contains(_ name: String) -> Bool { base.contains(name) }
        func shape(of name: String) throws -> [Int] { try base.shape(of: name) }
        func tensor(_ name: String) throws -> Tensor { try base.tensor(name) }

        func tensor(_ name: String, shape: [Int]) throws -> Tensor {
            let tensor = try base.tensor(name, shape: shape)
            lock.withLock { tensors[name] = tensor }
            return tensor
        }
    }

    struct Configs {
        var unet: Data
        var textEncoder: Data
        var vae: Data
        var controlnet: Data
    }

    /// The Stable Diffusion 1.5 architectures: UNet, CLIP ViT-L/14 text encoder, the KL VAE, and a ControlNet of the
    /// UNet's down path (with lllyasviel's conditioning embedding).
    static var sd15: Configs {
        get throws {
            var controlnet = try JSONSerialization.jsonObject(with: Data(UNetBenchmarkCommand.sd15UNetConfig.utf8)) as? [String: Any] ?? [:]
            controlnet["_class_name"] = "ControlNetModel"
            controlnet["conditioning_embedding_out_channels"] = [16, 32, 96, 256]
            return Configs(
                unet: Data(UNetBenchmarkCommand.sd15UNetConfig.utf8),
                textEncoder: Data(
                    """
                    {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 49406, "eos_token_id": 49407,
                     "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0, "initializer_range": 0.02,
                     "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
                     "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 49407, "projection_dim": 768, "vocab_size": 49408}
                    """.utf8),
                vae: Data(
                    """
                    {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
                     "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
                     "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
                     "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
                     "sample_size": 512, "scaling_factor": 0.18215}
                    """.utf8),
                controlnet: try JSONSerialization.data(withJSONObject: controlnet, options: [.sortedKeys]))
        }
    }

    /// The configs of an existing pipeline folder and ControlNet folder (random weights of the same architectures).
    static func configs(model: URL, controlnet: URL) throws -> Configs {
        func read(_ url: URL) throws -> Data { try Data(contentsOf: url.appendingPathComponent("config.json")) }
        return Configs(
            unet: try read(model.appendingPathComponent("unet")), textEncoder: try read(model.appendingPathComponent("text_encoder")),
            vae: try read(model.appendingPathComponent("vae")), controlnet: try read(controlnet))
    }

    /// Writes `folder/model` (a StableDiffusionPipeline folder: the embedded model's tokenizer, scheduler config and
    /// model index) and `folder/controlnet`; returns their URLs.
    static func write(_ configs: Configs, embedded: URL, to folder: URL, seed: UInt64 = 11) throws -> (model: URL, controlnet: URL) {
        let manager = FileManager.default
        let model = folder.appendingPathComponent("model"), controlnet = folder.appendingPathComponent("controlnet")
        for sub in ["unet", "text_encoder", "vae", "scheduler"] {
            try manager.createDirectory(at: model.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        try manager.createDirectory(at: controlnet, withIntermediateDirectories: true)
        try manager.copyItem(at: embedded.appendingPathComponent("tokenizer"), to: model.appendingPathComponent("tokenizer"))
        try manager.copyItem(at: embedded.appendingPathComponent("model_index.json"), to: model.appendingPathComponent("model_index.json"))
        try manager.copyItem(
            at: embedded.appendingPathComponent("scheduler/scheduler_config.json"),
            to: model.appendingPathComponent("scheduler/scheduler_config.json"))

        func component(_ config: Data, _ url: URL, file: String, build: (Recorder) throws -> Void) throws {
            let recorder = Recorder(seed: seed &+ UInt64(file.utf8.count) &+ UInt64(url.lastPathComponent.utf8.count))
            try build(recorder)
            try config.write(to: url.appendingPathComponent("config.json"))
            try SafeTensorsWriter.write(recorder.tensors, precision: .float16, to: url.appendingPathComponent(file))
        }
        try component(configs.unet, model.appendingPathComponent("unet"), file: "diffusion_pytorch_model.safetensors") {
            _ = try UNet2DConditionModel(configData: configs.unet, weights: $0)
        }
        try component(configs.textEncoder, model.appendingPathComponent("text_encoder"), file: "model.safetensors") {
            _ = try CLIPTextModel(configData: configs.textEncoder, weights: $0)
        }
        try component(configs.vae, model.appendingPathComponent("vae"), file: "diffusion_pytorch_model.safetensors") {
            _ = try AutoencoderKL(configData: configs.vae, weights: $0)
        }
        try component(configs.controlnet, controlnet, file: "diffusion_pytorch_model.safetensors") {
            _ = try ControlNetModel(configData: configs.controlnet, weights: $0)
        }
        return (model, controlnet)
    }
}
