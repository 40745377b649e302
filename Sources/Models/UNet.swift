import Foundation
import Compute
import Weights

/// What the UNet is conditioned on besides the noisy latents and the timestep.
public struct UNetConditioning: Sendable {
    /// Text encoder hidden states `[B, tokens, cross_attention_dim]`.
    public var context: Tensor
    /// SDXL: pooled text embeddings `[B, 1280]`.
    public var textEmbeds: Tensor?
    /// SDXL: `[B, 6]` (original size, crop top-left, target size).
    public var timeIds: Tensor?
    /// Guidance-distilled UNets (LCM): `[B, time_cond_proj_dim]` guidance embedding.
    public var timestepCondition: Tensor?

    public init(context: Tensor, textEmbeds: Tensor? = nil, timeIds: Tensor? = nil, timestepCondition: Tensor? = nil) {
        self.context = context
        self.textEmbeds = textEmbeds
        self.timeIds = timeIds
        self.timestepCondition = timestepCondition
    }
}

/// Residuals a ControlNet adds to the UNet's skip tensors and mid-block output.
public struct ControlResiduals: Sendable {
    public var down: [Tensor]
    public var mid: Tensor

    public init(down: [Tensor], mid: Tensor) {
        self.down = down
        self.mid = mid
    }
}

/// The first half of a UNet: time embedding, `conv_in`, down blocks and mid block. `UNet2DConditionModel`
/// and `ControlNetModel` both have it, with the same parameter names.
final class UNetDownPath: @unchecked Sendable {
    let configuration: UNet2DConditionConfiguration
    let timeProjection: Timesteps
    let timeEmbedding: TimestepEmbedding
    let addTimeProjection: Timesteps?
    let addEmbedding: TimestepEmbedding?
    let convIn: Conv2D
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock2DCrossAttn?

    init(_ loader: ModuleLoader, _ config: UNet2DConditionConfiguration, withMidBlock: Bool) throws {
        configuration = config
        let blockCount = config.blockOutChannels.count
        let channels = config.blockOutChannels
        let timeEmbedDim = channels[0] * 4
        let heads = try config.headsPerBlock()
        let layers = try config.layersPerBlock.values(count: blockCount, field: "layers_per_block")
        let contextDims = try config.crossAttentionDim.values(count: blockCount, field: "cross_attention_dim")
        let transformerLayers = try config.transformerLayersPerBlock.values(count: blockCount, field: "transformer_layers_per_block")
        let onlyCross = try config.onlyCrossAttention.values(count: blockCount, field: "only_cross_attention")
        let groups = config.normNumGroups, epsilon = config.normEps

        timeProjection = Timesteps(channels: channels[0], flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift)
        timeEmbedding = try TimestepEmbedding(
            loader.child("time_embedding"), inChannels: channels[0], embedDim: timeEmbedDim, conditionDim: config.timeCondProjDim)
        if config.additionEmbedType == "text_time", let timeDim = config.additionTimeEmbedDim,
            let inputDim = config.projectionClassEmbeddingsInputDim
        {
            addTimeProjection = Timesteps(channels: timeDim, flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift)
            addEmbedding = try TimestepEmbedding(loader.child("add_embedding"), inChannels: inputDim, embedDim: timeEmbedDim)
        } else {
            addTimeProjection = nil
            addEmbedding = nil
        }
        convIn = try loader.conv2d("conv_in", in: config.inChannels, out: channels[0], kernel: config.convInKernel)

        var down: [UNetDownBlock] = []
        var outputChannels = channels[0]
        for (i, type) in config.downBlockTypes.enumerated() {
            let inputChannels = outputChannels
            outputChannels = channels[i]
            let settings =
                type.hasPrefix("CrossAttn")
                ? CrossAttentionSettings(
                    heads: heads[i], transformerLayers: transformerLayers[i], contextDim: contextDims[i],
                    useLinearProjection: config.useLinearProjection, onlyCrossAttention: onlyCross[i]) : nil
            down.append(
                try UNetDownBlock(
                    loader.child("down_blocks", i), inChannels: inputChannels, outChannels: outputChannels, layers: layers[i],
                    timeEmbeddingChannels: timeEmbedDim, groups: groups, epsilon: epsilon, addDownsample: i < blockCount - 1,
                    downsamplePadding: config.downsamplePadding, crossAttention: settings))
        }
        downBlocks = down

        if withMidBlock {
            midBlock = try UNetMidBlock2DCrossAttn(
                loader.child("mid_block"), channels: channels[blockCount - 1], timeEmbeddingChannels: timeEmbedDim, groups: groups,
                epsilon: epsilon,
                crossAttention: CrossAttentionSettings(
                    heads: heads[blockCount - 1], transformerLayers: transformerLayers[blockCount - 1],
                    contextDim: contextDims[blockCount - 1], useLinearProjection: config.useLinearProjection))
        } else {
            midBlock = nil
        }
    }

    /// Number of skip tensors the down path produces (= ControlNet down residuals).
    var skipCount: Int { 1 + downBlocks.reduce(0) { $0 + $1.layerCount + ($1.downsampler == nil ? 0 : 1) } }

    /// The time embedding for a batch: `timesteps` has one value per sample or a single shared value.
    func embedTime(_ timesteps: [Float], batch: Int, conditioning: UNetConditioning) throws -> Tensor {
        guard timesteps.count == 1 || timesteps.count == batch else {
            throw ModelError.invalidInput("\(timesteps.count) timesteps for a batch of \(batch)")
        }
        let perSample = timesteps.count == 1 ? Array(repeating: timesteps[0], count: batch) : timesteps
        var embedding = timeEmbedding(timeProjection(perSample), condition: conditioning.timestepCondition)
        if let addTimeProjection, let addEmbedding {
            guard let textEmbeds = conditioning.textEmbeds, let timeIds = conditioning.timeIds else {
                throw ModelError.invalidInput("this UNet (SDXL) needs pooled text embeddings and time ids")
            }
            let timeFeatures = addTimeProjection(timeIds.scalars).reshaped([batch, -1])
            embedding = embedding + addEmbedding(concat([textEmbeds, timeFeatures], axis: 1))
        }
        return embedding
    }

    /// Runs the down path; `hint` (a ControlNet's conditioning embedding) is added after `conv_in`.
    func callAsFunction(_ sample: Tensor, timesteps: [Float], conditioning: UNetConditioning, hint: Tensor? = nil) throws
        -> UNet2DConditionModel.DownPath
    {
        guard sample.rank == 4, sample.shape[3] == configuration.inChannels else {
            throw ModelError.invalidInput("expected NHWC latents with \(configuration.inChannels) channels, got \(sample.shape)")
        }
        let batch = sample.shape[0]
        guard conditioning.context.shape[0] == batch else {
            throw ModelError.invalidInput("context batch \(conditioning.context.shape[0]) != latent batch \(batch)")
        }
        let embedding = try embedTime(timesteps, batch: batch, conditioning: conditioning)
        var h = convIn(sample)
        if let hint {
            guard hint.shape == h.shape else {
                throw ModelError.invalidInput("control hint embeds to \(hint.shape), the latents to \(h.shape)")
            }
            h = h + hint
        }
        var skips = [h]
        for block in downBlocks {
            let (output, states) = block(h, timeEmbedding: embedding, context: conditioning.context)
            h = output
            skips += states
        }
        if let midBlock { h = midBlock(h, timeEmbedding: embedding, context: conditioning.context) }
        return UNet2DConditionModel.DownPath(sample: h, skips: skips, timeEmbedding: embedding)
    }
}

/// diffusers `UNet2DConditionModel` for SD 1.x, SD 2.x and SDXL, built from its `config.json`.
///
/// The forward pass can run in two halves: `downAndMid` (time embedding, down blocks, mid block) and
/// `up` (up blocks and output head). ControlNet residuals are only needed by the second half, which is
/// what lets a ControlNet run concurrently with the first.
public final class UNet2DConditionModel: @unchecked Sendable {
    public let configuration: UNet2DConditionConfiguration
    /// Every linear and conv layer by parameter path (for LoRA).
    public let registry: LayerRegistry

    let downPath: UNetDownPath
    let upBlocks: [UNetUpBlock]
    let convNormOut: GroupNorm
    let convOut: Conv2D

    public convenience init(configData: Data, weights: any WeightSource, source: String = "unet/config.json") throws {
        try self.init(configuration: decodeConfig(UNet2DConditionConfiguration.self, from: configData, source: source), weights: weights)
    }

    public init(configuration config: UNet2DConditionConfiguration, weights: any WeightSource) throws {
        try config.validate()
        configuration = config
        let loader = ModuleLoader(weights: weights)
        registry = loader.registry
        downPath = try UNetDownPath(loader, config, withMidBlock: config.midBlockType != nil)

        let blockCount = config.blockOutChannels.count
        let timeEmbedDim = config.blockOutChannels[0] * 4
        let reversedChannels = Array(config.blockOutChannels.reversed())
        let reversedHeads = Array(try config.headsPerBlock().reversed())
        let reversedLayers = Array(try config.layersPerBlock.values(count: blockCount, field: "layers_per_block").reversed())
        let reversedContext = Array(try config.crossAttentionDim.values(count: blockCount, field: "cross_attention_dim").reversed())
        let reversedTransformers = Array(
            try config.transformerLayersPerBlock.values(count: blockCount, field: "transformer_layers_per_block").reversed())
        let reversedOnlyCross = Array(try config.onlyCrossAttention.values(count: blockCount, field: "only_cross_attention").reversed())
        var up: [UNetUpBlock] = []
        var outputChannels = reversedChannels[0]
        for (i, type) in config.upBlockTypes.enumerated() {
            let previousOutput = outputChannels
            outputChannels = reversedChannels[i]
            let inputChannels = reversedChannels[min(i + 1, blockCount - 1)]
            let settings =
                type.hasPrefix("CrossAttn")
                ? CrossAttentionSettings(
                    heads: reversedHeads[i], transformerLayers: reversedTransformers[i], contextDim: reversedContext[i],
                    useLinearProjection: config.useLinearProjection, onlyCrossAttention: reversedOnlyCross[i]) : nil
            up.append(
                try UNetUpBlock(
                    loader.child("up_blocks", i), inChannels: inputChannels, previousOutputChannels: previousOutput,
                    outChannels: outputChannels, layers: reversedLayers[i] + 1, timeEmbeddingChannels: timeEmbedDim,
                    groups: config.normNumGroups, epsilon: config.normEps, addUpsample: i < blockCount - 1, crossAttention: settings))
        }
        upBlocks = up
        convNormOut = try loader.groupNorm(
            "conv_norm_out", groups: config.normNumGroups, channels: config.blockOutChannels[0], epsilon: config.normEps)
        convOut = try loader.conv2d("conv_out", in: config.blockOutChannels[0], out: config.outChannels, kernel: config.convOutKernel)
    }

    /// Down path outputs: the mid-block output, the skips for the up path and the time embedding.
    public struct DownPath: Sendable {
        public var sample: Tensor
        public var skips: [Tensor]
        public var timeEmbedding: Tensor

        public init(sample: Tensor, skips: [Tensor], timeEmbedding: Tensor) {
            self.sample = sample
            self.skips = skips
            self.timeEmbedding = timeEmbedding
        }
    }

    /// Number of skip tensors the down path produces (= ControlNet down residuals expected).
    public var skipCount: Int { downPath.skipCount }

    /// Time embedding, `conv_in`, down blocks and mid block. `sample` is NHWC latents `[B, H, W, C]`.
    public func downAndMid(_ sample: Tensor, timesteps: [Float], conditioning: UNetConditioning) throws -> DownPath {
        try downPath(sample, timesteps: timesteps, conditioning: conditioning)
    }

    /// Up blocks and output head, after adding ControlNet residuals (if any) to the skips and mid output.
    public func up(_ down: DownPath, conditioning: UNetConditioning, control: ControlResiduals? = nil) throws -> Tensor {
        var skips = down.skips
        var h = down.sample
        if let control {
            guard control.down.count == skips.count else {
                throw ModelError.invalidInput("ControlNet gave \(control.down.count) down residuals, the UNet has \(skips.count) skips")
            }
            for i in skips.indices {
                guard skips[i].shape == control.down[i].shape else {
                    throw ModelError.invalidInput("ControlNet residual \(i) has shape \(control.down[i].shape), UNet skip is \(skips[i].shape)")
                }
                skips[i] = skips[i] + control.down[i]
            }
            guard control.mid.shape == h.shape else {
                throw ModelError.invalidInput("ControlNet mid residual has shape \(control.mid.shape), UNet mid output is \(h.shape)")
            }
            h = h + control.mid
        }
        for (i, block) in upBlocks.enumerated() {
            let blockSkips = Array(skips.suffix(block.layerCount))
            skips.removeLast(block.layerCount)
            // The upsampler must land on the next skip's size (odd latent sizes).
            let size = i < upBlocks.count - 1 ? skips.last.map { (height: $0.shape[1], width: $0.shape[2]) } : nil
            h = block(h, skips: blockSkips, timeEmbedding: down.timeEmbedding, context: conditioning.context, upsampleSize: size)
        }
        return convOut(convNormOut(h, fusedSiLU: true))
    }

    /// The full forward pass: predicted noise (or v) for NHWC latents.
    public func callAsFunction(
        _ sample: Tensor, timesteps: [Float], conditioning: UNetConditioning, control: ControlResiduals? = nil
    ) throws -> Tensor {
        try up(downAndMid(sample, timesteps: timesteps, conditioning: conditioning), conditioning: conditioning, control: control)
    }
}
