/// `UNet2DConditionModel`'s `config.json`, with diffusers' defaults for absent fields.
public struct UNet2DConditionConfiguration: Decodable, Sendable {
    public var sampleSize: Int?
    public var inChannels: Int
    public var outChannels: Int
    public var flipSinToCos: Bool
    public var freqShift: Float
    public var downBlockTypes: [String]
    public var midBlockType: String?
    public var upBlockTypes: [String]
    public var onlyCrossAttention: PerBlock<Bool>
    public var blockOutChannels: [Int]
    public var layersPerBlock: PerBlock<Int>
    public var downsamplePadding: Int
    public var midBlockScaleFactor: Float
    public var actFn: String
    public var normNumGroups: Int
    public var normEps: Float
    public var crossAttentionDim: PerBlock<Int>
    public var transformerLayersPerBlock: PerBlock<Int>
    public var attentionHeadDim: PerBlock<Int>
    public var numAttentionHeads: PerBlock<Int>?
    public var useLinearProjection: Bool
    public var upcastAttention: Bool
    public var classEmbedType: String?
    public var additionEmbedType: String?
    public var additionTimeEmbedDim: Int?
    public var projectionClassEmbeddingsInputDim: Int?
    public var resnetTimeScaleShift: String
    public var timeEmbeddingType: String
    public var timeCondProjDim: Int?
    public var convInKernel: Int
    public var convOutKernel: Int
    public var encoderHidDim: Int?
    public var dualCrossAttention: Bool
    public var attentionType: String
    public var centerInputSample: Bool

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift", downBlockTypes = "down_block_types"
        case midBlockType = "mid_block_type", upBlockTypes = "up_block_types", onlyCrossAttention = "only_cross_attention"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case downsamplePadding = "downsample_padding", midBlockScaleFactor = "mid_block_scale_factor", actFn = "act_fn"
        case normNumGroups = "norm_num_groups", normEps = "norm_eps", crossAttentionDim = "cross_attention_dim"
        case transformerLayersPerBlock = "transformer_layers_per_block", attentionHeadDim = "attention_head_dim"
        case numAttentionHeads = "num_attention_heads", useLinearProjection = "use_linear_projection"
        case upcastAttention = "upcast_attention", classEmbedType = "class_embed_type"
        case additionEmbedType = "addition_embed_type", additionTimeEmbedDim = "addition_time_embed_dim"
        case projectionClassEmbeddingsInputDim = "projection_class_embeddings_input_dim"
        case resnetTimeScaleShift = "resnet_time_scale_shift", timeEmbeddingType = "time_embedding_type"
        case timeCondProjDim = "time_cond_proj_dim", convInKernel = "conv_in_kernel", convOutKernel = "conv_out_kernel"
        case encoderHidDim = "encoder_hid_dim", dualCrossAttention = "dual_cross_attention", attentionType = "attention_type"
        case centerInputSample = "center_input_sample"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sampleSize = try c.decodeIfPresent(Int.self, forKey: .sampleSize)
        inChannels = try c.value(.inChannels, default: 4)
        outChannels = try c.value(.outChannels, default: 4)
        flipSinToCos = try c.value(.flipSinToCos, default: true)
        freqShift = try c.value(.freqShift, default: 0)
        downBlockTypes = try c.value(
            .downBlockTypes, default: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"])
        midBlockType = c.contains(.midBlockType) ? try c.decodeIfPresent(String.self, forKey: .midBlockType) : "UNetMidBlock2DCrossAttn"
        upBlockTypes = try c.value(.upBlockTypes, default: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
        onlyCrossAttention = try c.value(.onlyCrossAttention, default: .shared(false))
        blockOutChannels = try c.value(.blockOutChannels, default: [320, 640, 1280, 1280])
        layersPerBlock = try c.value(.layersPerBlock, default: .shared(2))
        downsamplePadding = try c.value(.downsamplePadding, default: 1)
        midBlockScaleFactor = try c.value(.midBlockScaleFactor, default: 1)
        actFn = try c.value(.actFn, default: "silu")
        normNumGroups = try c.value(.normNumGroups, default: 32)
        normEps = try c.value(.normEps, default: 1e-5)
        crossAttentionDim = try c.value(.crossAttentionDim, default: .shared(1280))
        transformerLayersPerBlock = try c.value(.transformerLayersPerBlock, default: .shared(1))
        attentionHeadDim = try c.value(.attentionHeadDim, default: .shared(8))
        numAttentionHeads = try c.decodeIfPresent(PerBlock<Int>.self, forKey: .numAttentionHeads)
        useLinearProjection = try c.value(.useLinearProjection, default: false)
        upcastAttention = try c.value(.upcastAttention, default: false)
        classEmbedType = try c.decodeIfPresent(String.self, forKey: .classEmbedType)
        additionEmbedType = try c.decodeIfPresent(String.self, forKey: .additionEmbedType)
        additionTimeEmbedDim = try c.decodeIfPresent(Int.self, forKey: .additionTimeEmbedDim)
        projectionClassEmbeddingsInputDim = try c.decodeIfPresent(Int.self, forKey: .projectionClassEmbeddingsInputDim)
        resnetTimeScaleShift = try c.value(.resnetTimeScaleShift, default: "default")
        timeEmbeddingType = try c.value(.timeEmbeddingType, default: "positional")
        timeCondProjDim = try c.decodeIfPresent(Int.self, forKey: .timeCondProjDim)
        convInKernel = try c.value(.convInKernel, default: 3)
        convOutKernel = try c.value(.convOutKernel, default: 3)
        encoderHidDim = try c.decodeIfPresent(Int.self, forKey: .encoderHidDim)
        dualCrossAttention = try c.value(.dualCrossAttention, default: false)
        attentionType = try c.value(.attentionType, default: "default")
        centerInputSample = try c.value(.centerInputSample, default: false)
    }

    /// Rejects the options this engine does not implement, with the option's name.
    func validate() throws {
        let blocks = blockOutChannels.count
        guard blocks > 0, downBlockTypes.count == blocks, upBlockTypes.count == blocks else {
            throw ModelError.invalidConfig(
                "block_out_channels (\(blocks)), down_block_types (\(downBlockTypes.count)) and up_block_types "
                    + "(\(upBlockTypes.count)) must have the same length")
        }
        for type in downBlockTypes where !["DownBlock2D", "CrossAttnDownBlock2D"].contains(type) {
            throw ModelError.unsupported("UNet down block type '\(type)'")
        }
        for type in upBlockTypes where !["UpBlock2D", "CrossAttnUpBlock2D"].contains(type) {
            throw ModelError.unsupported("UNet up block type '\(type)'")
        }
        if let midBlockType, midBlockType != "UNetMidBlock2DCrossAttn" {
            throw ModelError.unsupported("UNet mid block type '\(midBlockType)'")
        }
        let checks: [(Bool, String)] = [
            (actFn == "silu", "act_fn '\(actFn)' (only silu)"),
            (classEmbedType == nil, "class_embed_type '\(classEmbedType ?? "")'"),
            (additionEmbedType == nil || additionEmbedType == "text_time", "addition_embed_type '\(additionEmbedType ?? "")'"),
            (resnetTimeScaleShift == "default", "resnet_time_scale_shift '\(resnetTimeScaleShift)'"),
            (timeEmbeddingType == "positional", "time_embedding_type '\(timeEmbeddingType)'"),
            (encoderHidDim == nil, "encoder_hid_dim"),
            (!dualCrossAttention, "dual_cross_attention"),
            (attentionType == "default", "attention_type '\(attentionType)'"),
            (!centerInputSample, "center_input_sample"),
        ]
        for (ok, option) in checks where !ok { throw ModelError.unsupported("UNet option \(option)") }
        if additionEmbedType == "text_time" && (additionTimeEmbedDim == nil || projectionClassEmbeddingsInputDim == nil) {
            throw ModelError.invalidConfig(
                "addition_embed_type 'text_time' needs addition_time_embed_dim and projection_class_embeddings_input_dim")
        }
    }

    /// Heads per block. diffusers' historical quirk: `attention_head_dim` holds the number of heads unless
    /// `num_attention_heads` is given.
    func headsPerBlock() throws -> [Int] {
        try (numAttentionHeads ?? attentionHeadDim).values(count: blockOutChannels.count, field: "attention_head_dim")
    }
}
