/// Text-encoder keys of single-file checkpoints -> transformers `CLIPTextModel` /
/// `CLIPTextModelWithProjection` names (`text_model.*`, `text_projection.weight`), the names of every
/// Stable Diffusion repository's `text_encoder/model.safetensors`.
public enum TextEncoderKeyConversion {
    /// `CLIPTextModel` submodules under `text_model.` (module paths, `N` = any layer index).
    public static let clipModules: Set<String> = [
        "embeddings.token_embedding", "embeddings.position_embedding", "final_layer_norm",
        "encoder.layers.N.self_attn.q_proj", "encoder.layers.N.self_attn.k_proj", "encoder.layers.N.self_attn.v_proj",
        "encoder.layers.N.self_attn.out_proj", "encoder.layers.N.layer_norm1", "encoder.layers.N.layer_norm2",
        "encoder.layers.N.mlp.fc1", "encoder.layers.N.mlp.fc2",
    ]

    /// SD 1.x (`cond_stage_model.transformer.`) and SDXL's first encoder
    /// (`conditioner.embedders.0.transformer.`) store a Hugging Face `CLIPTextModel`; keys are kept,
    /// with `text_model.` added where very old exports lack it. `position_ids` buffers are ignored.
    /// Keys are given without the prefix.
    public static func convertCLIP(_ keys: [String]) -> KeyConversion {
        var result = KeyConversion()
        for key in keys {
            let name = key.hasPrefix("text_model.") ? key : "text_model." + key
            if name == "text_model.embeddings.position_ids" {
                result.ignored.append(key)
            } else if isCLIPParameter(String(name.dropFirst("text_model.".count))) {
                result.recipes[name] = .rename(key)
            } else {
                result.unconverted.append(key)
            }
        }
        result.unconverted.sort()
        result.ignored.sort()
        return result
    }

    private static func isCLIPParameter(_ name: String) -> Bool {
        guard let (module, parameter) = splitParameter(name), parameter == "weight" || parameter == "bias" else { return false }
        let parts = DottedName(module)
        if parts.parts.count > 2, parts.parts[0] == "encoder", parts.parts[1] == "layers", parts.int(at: 2) != nil {
            return clipModules.contains("encoder.layers.N." + parts.joined(from: 3))
        }
        return clipModules.contains(module)
    }

    /// OpenCLIP module path -> `CLIPTextModel` module path, per transformer layer (`transformer.resblocks.N.`
    /// -> `text_model.encoder.layers.N.`). `attn.in_proj_*` (fused q, k, v) is split separately.
    public static let openCLIPLayer: [String: String] = [
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
        "attn.out_proj": "self_attn.out_proj",
    ]

    /// OpenCLIP parameters outside the layers -> `CLIPTextModel` names.
    public static let openCLIPTopLevel: [String: String] = [
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias",
    ]

    /// SD 2.x (`cond_stage_model.model.`) and SDXL's second encoder (`conditioner.embedders.1.model.`) store
    /// an OpenCLIP text tower. Keys are given without the prefix.
    ///
    /// - `layers`: how many transformer layers the diffusers model has (its config's `num_hidden_layers`).
    ///   SD 2.x conditions on the penultimate layer, so its diffusers text encoder has 23 of OpenCLIP's 24
    ///   layers; the rest are ignored. nil converts every layer.
    /// - `projection`: whether the model is a `CLIPTextModelWithProjection` (SDXL's second encoder, whose
    ///   pooled output is projected). Without it `text_projection` is ignored.
    public static func convertOpenCLIP(_ keys: [String], layers: Int?, projection: Bool) -> KeyConversion {
        var result = KeyConversion()
        for key in keys {
            if let mapped = openCLIPTopLevel[key] {
                result.recipes[mapped] = .rename(key)
                continue
            }
            if key == "text_projection" {
                if projection { result.recipes["text_projection.weight"] = .transpose(key) } else { result.ignored.append(key) }
                continue
            }
            if key == "logit_scale" || key == "attn_mask" {  // contrastive-loss temperature; causal mask buffer
                result.ignored.append(key)
                continue
            }
            let name = DottedName(key)
            guard name.parts.count >= 5, name.parts[0] == "transformer", name.parts[1] == "resblocks",
                let layer = name.int(at: 2), let (module, parameter) = splitParameter(name.joined(from: 3))
            else {
                result.unconverted.append(key)
                continue
            }
            if let layers, layer >= layers {
                result.ignored.append(key)
                continue
            }
            let target = "text_model.encoder.layers.\(layer)"
            if module == "attn" && (parameter == "in_proj_weight" || parameter == "in_proj_bias") {
                let suffix = parameter == "in_proj_weight" ? "weight" : "bias"
                for (part, projection) in ["q_proj", "k_proj", "v_proj"].enumerated() {
                    result.recipes["\(target).self_attn.\(projection).\(suffix)"] = .rows(key, part: part, parts: 3)
                }
            } else if let mapped = openCLIPLayer[module], parameter == "weight" || parameter == "bias" {
                result.recipes["\(target).\(mapped).\(parameter)"] = .rename(key)
            } else {
                result.unconverted.append(key)
            }
        }
        result.unconverted.sort()
        result.ignored.sort()
        return result
    }
}
