/// Cross-checks a component's config against the shapes and structure of its tensors (diffusers names),
/// so that a checkpoint paired with the wrong config fails when it is opened, naming each field that
/// disagrees, instead of deep inside model construction. Absent fields take diffusers' defaults.
enum ComponentConsistency {
    /// Mismatches between a `UNet2DConditionModel` config and UNet weights, as "field: X in the checkpoint,
    /// Y in the configuration".
    static func unet(config: JSONValue, weights: any WeightSource) throws -> [String] {
        var check = Comparison()
        let names = weights.names
        let levels = distinctIndices(names, after: "down_blocks.").count
        let channels = try (0..<levels).map { try weights.shape(of: "down_blocks.\($0).resnets.0.conv1.weight")[0] }
        check.equal("block_out_channels", channels, config.configIntegers("block_out_channels") ?? [320, 640, 1280, 1280])
        let layers = (0..<levels).map { distinctIndices(names, after: "down_blocks.\($0).resnets.").count }
        check.equal(
            "layers_per_block", layers,
            config.configPerBlock("layers_per_block", count: levels) ?? Array(repeating: 2, count: levels))

        let downAttention = (0..<levels).map { level in names.contains { $0.hasPrefix("down_blocks.\(level).attentions.") } }
        let upAttention = (0..<levels).map { level in names.contains { $0.hasPrefix("up_blocks.\(level).attentions.") } }
        let defaultDown = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
        let defaultUp = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
        check.equal(
            "down_block_types", downAttention.map { $0 ? "CrossAttn..." : "DownBlock2D" },
            (config.configStrings("down_block_types") ?? defaultDown).map { $0.hasPrefix("CrossAttn") ? "CrossAttn..." : $0 })
        check.equal(
            "up_block_types", upAttention.map { $0 ? "CrossAttn..." : "UpBlock2D" },
            (config.configStrings("up_block_types") ?? defaultUp).map { $0.hasPrefix("CrossAttn") ? "CrossAttn..." : $0 })

        let convIn = try weights.shape(of: "conv_in.weight")
        check.equal("in_channels", convIn[1], config.configInteger("in_channels") ?? 4)
        check.equal("out_channels", try weights.shape(of: "conv_out.weight")[0], config.configInteger("out_channels") ?? 4)

        if let key = names.first(where: { $0.hasSuffix(".attn2.to_k.weight") }) {
            check.equal("cross_attention_dim", try weights.shape(of: key)[1], config.configInteger("cross_attention_dim") ?? 1280)
        }
        if let key = names.first(where: { $0.hasSuffix(".proj_in.weight") }) {
            check.equal(
                "use_linear_projection", try weights.shape(of: key).count == 2,
                config.configBool("use_linear_projection") ?? false)
        }
        let depths = config.configPerBlock("transformer_layers_per_block", count: levels) ?? Array(repeating: 1, count: levels)
        for level in 0..<levels where downAttention[level] {
            let depth = distinctIndices(names, after: "down_blocks.\(level).attentions.0.transformer_blocks.").count
            check.equal("transformer_layers_per_block[\(level)]", depth, depths[level])
        }
        if names.contains(where: { $0.hasPrefix("mid_block.attentions.0.") }), let last = depths.last {
            let depth = distinctIndices(names, after: "mid_block.attentions.0.transformer_blocks.").count
            check.equal("transformer_layers_per_block (mid block)", depth, last)
        }

        let added = weights.contains("add_embedding.linear_1.weight")
        check.equal("addition_embed_type", added ? "text_time" : "none", config.configString("addition_embed_type") ?? "none")
        if added, config.configString("addition_embed_type") == "text_time" {
            check.equal(
                "projection_class_embeddings_input_dim", try weights.shape(of: "add_embedding.linear_1.weight")[1],
                config.configInteger("projection_class_embeddings_input_dim") ?? -1)
        }
        return check.mismatches
    }

    /// Mismatches between an `AutoencoderKL` config and VAE weights.
    static func vae(config: JSONValue, weights: any WeightSource) throws -> [String] {
        var check = Comparison()
        let names = weights.names
        let levels = distinctIndices(names, after: "encoder.down_blocks.").count
        let channels = try (0..<levels).map { try weights.shape(of: "encoder.down_blocks.\($0).resnets.0.conv1.weight")[0] }
        check.equal("block_out_channels", channels, config.configIntegers("block_out_channels") ?? [64])
        check.equal(
            "layers_per_block", distinctIndices(names, after: "encoder.down_blocks.0.resnets.").count,
            config.configInteger("layers_per_block") ?? 1)
        check.equal("in_channels", try weights.shape(of: "encoder.conv_in.weight")[1], config.configInteger("in_channels") ?? 3)
        check.equal(
            "latent_channels", try weights.shape(of: "post_quant_conv.weight")[0], config.configInteger("latent_channels") ?? 4)
        return check.mismatches
    }

    /// Mismatches between a `CLIPTextConfig` and text-encoder weights (`projection`: a
    /// `CLIPTextModelWithProjection`).
    static func textEncoder(config: JSONValue, weights: any WeightSource, projection: Bool) throws -> [String] {
        var check = Comparison()
        let names = weights.names
        let embedding = try weights.shape(of: "text_model.embeddings.token_embedding.weight")
        check.equal("hidden_size", embedding[1], config.configInteger("hidden_size") ?? 512)
        check.equal("vocab_size", embedding[0], config.configInteger("vocab_size") ?? 49408)
        check.equal(
            "max_position_embeddings", try weights.shape(of: "text_model.embeddings.position_embedding.weight")[0],
            config.configInteger("max_position_embeddings") ?? 77)
        check.equal(
            "num_hidden_layers", distinctIndices(names, after: "text_model.encoder.layers.").count,
            config.configInteger("num_hidden_layers") ?? 12)
        if weights.contains("text_model.encoder.layers.0.mlp.fc1.weight") {
            check.equal(
                "intermediate_size", try weights.shape(of: "text_model.encoder.layers.0.mlp.fc1.weight")[0],
                config.configInteger("intermediate_size") ?? 2048)
        }
        if projection {
            guard weights.contains("text_projection.weight") else {
                check.mismatches.append("text_projection: absent in the checkpoint, required by CLIPTextModelWithProjection")
                return check.mismatches
            }
            check.equal(
                "projection_dim", try weights.shape(of: "text_projection.weight")[0],
                config.configInteger("projection_dim") ?? 512)
        }
        return check.mismatches
    }

    /// The distinct integers N in names `<prefix>N.…`.
    static func distinctIndices(_ names: [String], after prefix: String) -> Set<Int> {
        var indices = Set<Int>()
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if let index = Int(rest.prefix { $0 != "." }) { indices.insert(index) }
        }
        return indices
    }

    private struct Comparison {
        var mismatches: [String] = []

        mutating func equal<T: Equatable>(_ field: String, _ checkpoint: T, _ configured: T) {
            if checkpoint != configured {
                mismatches.append("\(field) is \(checkpoint) in the checkpoint but \(configured) in the configuration")
            }
        }
    }
}

/// Reading the few config fields the checks need; diffusers writes numbers as integers or floats, and
/// per-block fields as one value or a list.
extension JSONValue {
    func configInteger(_ key: String) -> Int? {
        switch self[key] {
        case .integer(let value)?: return value
        case .number(let value)? where value.rounded() == value: return Int(value)
        default: return nil
        }
    }

    func configIntegers(_ key: String) -> [Int]? {
        guard case .array(let elements)? = self[key] else { return nil }
        let values = elements.compactMap { element -> Int? in
            if case .integer(let value) = element { return value }
            return nil
        }
        return values.count == elements.count ? values : nil
    }

    /// One integer for every block, or a list with one per block.
    func configPerBlock(_ key: String, count: Int) -> [Int]? {
        if let single = configInteger(key) { return Array(repeating: single, count: count) }
        return configIntegers(key)
    }

    func configString(_ key: String) -> String? {
        if case .string(let value)? = self[key] { return value }
        return nil
    }

    func configStrings(_ key: String) -> [String]? {
        guard case .array(let elements)? = self[key] else { return nil }
        let values = elements.compactMap { element -> String? in
            if case .string(let value) = element { return value }
            return nil
        }
        return values.count == elements.count ? values : nil
    }

    func configBool(_ key: String) -> Bool? {
        if case .bool(let value)? = self[key] { return value }
        return nil
    }

    /// A copy of this object with `key` set to `value` (replaced in place, or appended).
    func setting(_ key: String, to value: JSONValue) -> JSONValue {
        guard case .object(var members) = self else { return self }
        if let index = members.firstIndex(where: { $0.key == key }) {
            members[index].value = value
        } else {
            members.append((key, value))
        }
        return .object(members)
    }
}
