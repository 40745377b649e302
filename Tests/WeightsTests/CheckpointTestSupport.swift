import Compute
import Foundation
import Weights

/// A weight source that knows names and shapes but holds no data: enough to open a full-size checkpoint
/// layout (detection, key conversion, config checks read only shapes) without gigabytes of memory.
struct ShapeOnlyWeights: WeightSource {
    let shapes: [String: [Int]]
    let names: [String]
    let sourceDescription: String

    init(_ shapes: [String: [Int]], description: String = "<shapes>") {
        self.shapes = shapes
        self.names = shapes.keys.sorted()
        self.sourceDescription = description
    }

    func contains(_ name: String) -> Bool { shapes[name] != nil }

    func shape(of name: String) throws -> [Int] {
        guard let shape = shapes[name] else { throw WeightsError.tensorNotFound(source: sourceDescription, tensor: name) }
        return shape
    }

    func tensor(_ name: String) throws -> Tensor {
        throw WeightsError.unsupportedFormat(path: sourceDescription, detail: "shape-only test source has no data for '\(name)'")
    }
}

/// Original-layout key -> shape maps of the full-size reference models (SD 1.5, SD 2.1, SDXL base), built
/// from their architecture numbers the way the original code (ldm `openaimodel.UNetModel`,
/// `autoencoder.AutoencoderKL`, HF CLIP, OpenCLIP) names parameters, including the tensors real files
/// carry that diffusers does not use. `SWIFTDIFFUSION_LDM_LAYOUTS` compares them with diffusers' own
/// layouts (see `CheckpointStandardLayoutTests`).
enum LDMLayouts {
    static func sd15() -> [String: [Int]] {
        var keys = unet(
            channels: [320, 640, 1280, 1280], attention: [true, true, true, false], depth: [1, 1, 1, 1],
            context: 768, linear: false, addedInput: nil)
        keys.merge(vae()) { a, _ in a }
        keys.merge(clip(prefix: "cond_stage_model.transformer.")) { a, _ in a }
        for buffer in ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "posterior_variance"] {
            keys[buffer] = [1000]
        }
        keys["model_ema.decay"] = []
        keys["model_ema.num_updates"] = []
        return keys
    }

    static func sd21() -> [String: [Int]] {
        var keys = unet(
            channels: [320, 640, 1280, 1280], attention: [true, true, true, false], depth: [1, 1, 1, 1],
            context: 1024, linear: true, addedInput: nil)
        keys.merge(vae()) { a, _ in a }
        keys.merge(openCLIP(prefix: "cond_stage_model.model.", width: 1024, layers: 24, mlp: 4096, projection: 1024)) { a, _ in a
        }
        keys["alphas_cumprod"] = [1000]
        return keys
    }

    static func sdxlBase() -> [String: [Int]] {
        var keys = unet(
            channels: [320, 640, 1280], attention: [false, true, true], depth: [1, 2, 10],
            context: 2048, linear: true, addedInput: 2816)
        keys.merge(vae()) { a, _ in a }
        keys.merge(clip(prefix: "conditioner.embedders.0.transformer.")) { a, _ in a }
        keys.merge(openCLIP(prefix: "conditioner.embedders.1.model.", width: 1280, layers: 32, mlp: 5120, projection: 1280)) {
            a, _ in a
        }
        return keys
    }

    /// The tensors an original checkpoint has that diffusers' models do not (for comparison with diffusers).
    static func extras(_ family: SingleFileCheckpoint.Family) -> Set<String> {
        switch family {
        case .sd1:
            return [
                "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "posterior_variance",
                "model_ema.decay", "model_ema.num_updates",
            ]
        case .sd2:
            let layer = [
                "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
                "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                "mlp.c_proj.weight", "mlp.c_proj.bias",
            ]
            return Set(
                layer.map { "cond_stage_model.model.transformer.resblocks.23.\($0)" }
                    + ["cond_stage_model.model.text_projection", "cond_stage_model.model.logit_scale", "alphas_cumprod"])
        case .sdxl:
            return ["conditioner.embedders.1.model.logit_scale"]
        }
    }

    static func unet(
        channels: [Int], attention: [Bool], depth: [Int], context: Int, linear: Bool, addedInput: Int?
    ) -> [String: [Int]] {
        let prefix = "model.diffusion_model."
        let timeDim = 4 * channels[0]
        var keys: [String: [Int]] = [:]
        func parameters(_ module: String, _ weight: [Int], bias: Bool = true) {
            keys[prefix + module + ".weight"] = weight
            if bias { keys[prefix + module + ".bias"] = [weight[0]] }
        }
        func norm(_ module: String, _ c: Int) { parameters(module, [c]) }
        func resnet(_ module: String, _ input: Int, _ output: Int) {
            norm("\(module).in_layers.0", input)
            parameters("\(module).in_layers.2", [output, input, 3, 3])
            parameters("\(module).emb_layers.1", [output, timeDim])
            norm("\(module).out_layers.0", output)
            parameters("\(module).out_layers.3", [output, output, 3, 3])
            if input != output { parameters("\(module).skip_connection", [output, input, 1, 1]) }
        }
        func transformer(_ module: String, _ c: Int, _ blocks: Int) {
            norm("\(module).norm", c)
            parameters("\(module).proj_in", linear ? [c, c] : [c, c, 1, 1])
            parameters("\(module).proj_out", linear ? [c, c] : [c, c, 1, 1])
            for block in 0..<blocks {
                let b = "\(module).transformer_blocks.\(block)"
                for attention in ["attn1", "attn2"] {
                    let source = attention == "attn1" ? c : context
                    parameters("\(b).\(attention).to_q", [c, c], bias: false)
                    parameters("\(b).\(attention).to_k", [c, source], bias: false)
                    parameters("\(b).\(attention).to_v", [c, source], bias: false)
                    parameters("\(b).\(attention).to_out.0", [c, c])
                }
                parameters("\(b).ff.net.0.proj", [8 * c, c])
                parameters("\(b).ff.net.2", [c, 4 * c])
                for n in ["norm1", "norm2", "norm3"] { norm("\(b).\(n)", c) }
            }
        }

        parameters("time_embed.0", [timeDim, channels[0]])
        parameters("time_embed.2", [timeDim, timeDim])
        if let addedInput {
            parameters("label_emb.0.0", [timeDim, addedInput])
            parameters("label_emb.0.2", [timeDim, timeDim])
        }
        parameters("input_blocks.0.0", [channels[0], 4, 3, 3])
        var index = 1
        var current = channels[0]
        var skips = [current]
        for (level, width) in channels.enumerated() {
            for _ in 0..<2 {
                resnet("input_blocks.\(index).0", current, width)
                if attention[level] { transformer("input_blocks.\(index).1", width, depth[level]) }
                current = width
                skips.append(current)
                index += 1
            }
            if level != channels.count - 1 {
                parameters("input_blocks.\(index).0.op", [current, current, 3, 3])
                skips.append(current)
                index += 1
            }
        }
        resnet("middle_block.0", current, current)
        transformer("middle_block.1", current, depth[depth.count - 1])
        resnet("middle_block.2", current, current)
        index = 0
        for level in channels.indices.reversed() {
            let width = channels[level]
            for layer in 0..<3 {
                resnet("output_blocks.\(index).0", current + skips.removeLast(), width)
                current = width
                if attention[level] { transformer("output_blocks.\(index).1", width, depth[level]) }
                if layer == 2 && level != 0 {
                    parameters("output_blocks.\(index).\(attention[level] ? 2 : 1).conv", [width, width, 3, 3])
                }
                index += 1
            }
        }
        norm("out.0", channels[0])
        parameters("out.2", [4, channels[0], 3, 3])
        return keys
    }

    static func vae() -> [String: [Int]] {
        let prefix = "first_stage_model."
        let channels = [128, 256, 512, 512]
        var keys: [String: [Int]] = [:]
        func parameters(_ module: String, _ weight: [Int]) {
            keys[prefix + module + ".weight"] = weight
            keys[prefix + module + ".bias"] = [weight[0]]
        }
        func resnet(_ module: String, _ input: Int, _ output: Int) {
            parameters("\(module).norm1", [input])
            parameters("\(module).conv1", [output, input, 3, 3])
            parameters("\(module).norm2", [output])
            parameters("\(module).conv2", [output, output, 3, 3])
            if input != output { parameters("\(module).nin_shortcut", [output, input, 1, 1]) }
        }
        func mid(_ side: String, _ c: Int) {
            resnet("\(side).mid.block_1", c, c)
            parameters("\(side).mid.attn_1.norm", [c])
            for conv in ["q", "k", "v", "proj_out"] { parameters("\(side).mid.attn_1.\(conv)", [c, c, 1, 1]) }
            resnet("\(side).mid.block_2", c, c)
        }
        parameters("encoder.conv_in", [128, 3, 3, 3])
        var current = 128
        for (level, width) in channels.enumerated() {
            for block in 0..<2 {
                resnet("encoder.down.\(level).block.\(block)", current, width)
                current = width
            }
            if level != channels.count - 1 { parameters("encoder.down.\(level).downsample.conv", [width, width, 3, 3]) }
        }
        mid("encoder", 512)
        parameters("encoder.norm_out", [512])
        parameters("encoder.conv_out", [8, 512, 3, 3])
        parameters("quant_conv", [8, 8, 1, 1])
        parameters("post_quant_conv", [4, 4, 1, 1])
        parameters("decoder.conv_in", [512, 4, 3, 3])
        mid("decoder", 512)
        current = 512
        for level in channels.indices.reversed() {
            let width = channels[level]
            for block in 0..<3 {
                resnet("decoder.up.\(level).block.\(block)", current, width)
                current = width
            }
            if level != 0 { parameters("decoder.up.\(level).upsample.conv", [width, width, 3, 3]) }
        }
        parameters("decoder.norm_out", [128])
        parameters("decoder.conv_out", [3, 128, 3, 3])
        return keys
    }

    /// OpenAI CLIP ViT-L/14's text model in Hugging Face names (SD 1.x, SDXL embedder 0).
    static func clip(prefix: String) -> [String: [Int]] {
        let p = prefix + "text_model."
        var keys: [String: [Int]] = [
            p + "embeddings.token_embedding.weight": [49408, 768],
            p + "embeddings.position_embedding.weight": [77, 768],
            p + "embeddings.position_ids": [1, 77],
            p + "final_layer_norm.weight": [768], p + "final_layer_norm.bias": [768],
        ]
        for layer in 0..<12 {
            let l = "\(p)encoder.layers.\(layer)."
            for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                keys[l + "self_attn.\(projection).weight"] = [768, 768]
                keys[l + "self_attn.\(projection).bias"] = [768]
            }
            for norm in ["layer_norm1", "layer_norm2"] {
                keys[l + "\(norm).weight"] = [768]
                keys[l + "\(norm).bias"] = [768]
            }
            keys[l + "mlp.fc1.weight"] = [3072, 768]
            keys[l + "mlp.fc1.bias"] = [3072]
            keys[l + "mlp.fc2.weight"] = [768, 3072]
            keys[l + "mlp.fc2.bias"] = [768]
        }
        return keys
    }

    /// An OpenCLIP text tower (SD 2.x ViT-H, SDXL ViT-bigG).
    static func openCLIP(prefix: String, width: Int, layers: Int, mlp: Int, projection: Int) -> [String: [Int]] {
        var keys: [String: [Int]] = [
            prefix + "token_embedding.weight": [49408, width],
            prefix + "positional_embedding": [77, width],
            prefix + "ln_final.weight": [width], prefix + "ln_final.bias": [width],
            prefix + "text_projection": [width, projection],
            prefix + "logit_scale": [],
        ]
        for layer in 0..<layers {
            let l = "\(prefix)transformer.resblocks.\(layer)."
            keys[l + "attn.in_proj_weight"] = [3 * width, width]
            keys[l + "attn.in_proj_bias"] = [3 * width]
            keys[l + "attn.out_proj.weight"] = [width, width]
            keys[l + "attn.out_proj.bias"] = [width]
            for norm in ["ln_1", "ln_2"] {
                keys[l + "\(norm).weight"] = [width]
                keys[l + "\(norm).bias"] = [width]
            }
            keys[l + "mlp.c_fc.weight"] = [mlp, width]
            keys[l + "mlp.c_fc.bias"] = [mlp]
            keys[l + "mlp.c_proj.weight"] = [width, mlp]
            keys[l + "mlp.c_proj.bias"] = [width]
        }
        return keys
    }
}
