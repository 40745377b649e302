import Compute
import Foundation
import Weights

/// `ControlNetModel`'s `config.json`: a UNet config (the down path's fields) plus the conditioning
/// embedding's.
public struct ControlNetConfiguration: Decodable, Sendable {
    public var unet: UNet2DConditionConfiguration
    public var conditioningChannels: Int
    public var conditioningEmbeddingOutChannels: [Int]
    public var channelOrder: String
    public var globalPoolConditions: Bool

    enum CodingKeys: String, CodingKey {
        case conditioningChannels = "conditioning_channels"
        case conditioningEmbeddingOutChannels = "conditioning_embedding_out_channels"
        case channelOrder = "controlnet_conditioning_channel_order"
        case globalPoolConditions = "global_pool_conditions"
    }

    public init(from decoder: Decoder) throws {
        unet = try UNet2DConditionConfiguration(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        conditioningChannels = try c.value(.conditioningChannels, default: 3)
        conditioningEmbeddingOutChannels = try c.value(.conditioningEmbeddingOutChannels, default: [16, 32, 96, 256])
        channelOrder = try c.value(.channelOrder, default: "rgb")
        globalPoolConditions = try c.value(.globalPoolConditions, default: false)
        // A ControlNet has no up path; keep the UNet validation from checking one.
        unet.upBlockTypes = unet.downBlockTypes.map { $0.hasPrefix("CrossAttn") ? "CrossAttnUpBlock2D" : "UpBlock2D" }
    }
}

/// diffusers `ControlNetConditioningEmbedding`: the control image (`[N, H, W, 3]` in [0, 1]) down to the
/// latent resolution with the UNet's first-block width.
final class ControlNetConditioningEmbedding: @unchecked Sendable {
    let convIn: Conv2D
    let blocks: [Conv2D]
    let convOut: Conv2D

    init(_ loader: ModuleLoader, embeddingChannels: Int, conditioningChannels: Int, blockOutChannels: [Int]) throws {
        convIn = try loader.conv2d("conv_in", in: conditioningChannels, out: blockOutChannels[0], kernel: 3)
        var convs: [Conv2D] = []
        for i in 0..<(blockOutChannels.count - 1) {
            let (channelIn, channelOut) = (blockOutChannels[i], blockOutChannels[i + 1])
            convs.append(try loader.conv2d("blocks.\(2 * i)", in: channelIn, out: channelIn, kernel: 3))
            convs.append(try loader.conv2d("blocks.\(2 * i + 1)", in: channelIn, out: channelOut, kernel: 3, stride: 2))
        }
        blocks = convs
        convOut = try loader.conv2d("conv_out", in: blockOutChannels[blockOutChannels.count - 1], out: embeddingChannels, kernel: 3)
    }

    func callAsFunction(_ condition: Tensor) -> Tensor {
        var h = silu(convIn(condition))
        for block in blocks { h = silu(block(h)) }
        return convOut(h)
    }
}

/// diffusers `ControlNetModel` (SD 1.x, SD 2.x and SDXL): a copy of the UNet's down path that reads a
/// control image and returns residuals for the UNet's skips and mid-block output.
public final class ControlNetModel: @unchecked Sendable {
    public let configuration: ControlNetConfiguration
    public let registry: LayerRegistry
    let downPath: UNetDownPath
    let conditioningEmbedding: ControlNetConditioningEmbedding
    let controlnetDownBlocks: [Conv2D]
    let controlnetMidBlock: Conv2D

    public convenience init(configData: Data, weights: any WeightSource, source: String = "controlnet/config.json") throws {
        try self.init(configuration: decodeConfig(ControlNetConfiguration.self, from: configData, source: source), weights: weights)
    }

    public init(configuration config: ControlNetConfiguration, weights: any WeightSource) throws {
        try config.unet.validate()
        guard config.unet.midBlockType != nil else { throw ModelError.unsupported("ControlNet without a mid block") }
        guard !config.globalPoolConditions else { throw ModelError.unsupported("ControlNet global_pool_conditions") }
        guard config.channelOrder == "rgb" || config.channelOrder == "bgr" else {
            throw ModelError.invalidConfig("controlnet_conditioning_channel_order '\(config.channelOrder)'")
        }
        configuration = config
        let loader = ModuleLoader(weights: weights)
        registry = loader.registry
        downPath = try UNetDownPath(loader, config.unet, withMidBlock: true)
        let channels = config.unet.blockOutChannels
        conditioningEmbedding = try ControlNetConditioningEmbedding(
            loader.child("controlnet_cond_embedding"), embeddingChannels: channels[0],
            conditioningChannels: config.conditioningChannels, blockOutChannels: config.conditioningEmbeddingOutChannels)
        // One zero-initialised 1x1 conv per skip: conv_in's output, each resnet layer, each downsampler.
        var skipChannels = [channels[0]]
        for (i, block) in downPath.downBlocks.enumerated() {
            skipChannels += Array(repeating: channels[i], count: block.layerCount + (block.downsampler == nil ? 0 : 1))
        }
        controlnetDownBlocks = try skipChannels.enumerated().map { index, width in
            try loader.conv2d("controlnet_down_blocks.\(index)", in: width, out: width, kernel: 1)
        }
        controlnetMidBlock = try loader.conv2d("controlnet_mid_block", in: channels[channels.count - 1], out: channels[channels.count - 1], kernel: 1)
    }

    /// How the residuals are scaled.
    public struct Scaling: Sendable {
        public var conditioningScale: Float
        /// Guess mode: residuals ramp from 0.1x (first skip) to 1x (mid block), as diffusers does.
        public var guessMode: Bool

        public init(conditioningScale: Float = 1, guessMode: Bool = false) {
            self.conditioningScale = conditioningScale
            self.guessMode = guessMode
        }
    }

    /// Residuals for `sample` (NHWC latents) given the control image `[N, H, W, 3]` in [0, 1] at 8x the
    /// latent size.
    public func callAsFunction(
        _ sample: Tensor, timesteps: [Float], conditioning: UNetConditioning, controlImage: Tensor, scaling: Scaling = Scaling()
    ) throws -> ControlResiduals {
        guard controlImage.rank == 4, controlImage.shape[3] == configuration.conditioningChannels else {
            throw ModelError.invalidInput("control image must be NHWC with \(configuration.conditioningChannels) channels, got \(controlImage.shape)")
        }
        var image = controlImage
        if configuration.channelOrder == "bgr" { image = concat(chunk(image, 3, axis: 3).reversed(), axis: 3) }
        let hint = conditioningEmbedding(image)
        let path = try downPath(sample, timesteps: timesteps, conditioning: conditioning, hint: hint)
        var down = zip(path.skips, controlnetDownBlocks).map { skip, block in block(skip) }
        var mid = controlnetMidBlock(path.sample)
        if scaling.guessMode {
            // torch.logspace(-1, 0, n + 1): 10^(-1 + i / n).
            let n = down.count
            for i in down.indices { down[i] = down[i] * (powf(10, -1 + Float(i) / Float(n)) * scaling.conditioningScale) }
            mid = mid * scaling.conditioningScale
        } else if scaling.conditioningScale != 1 {
            down = down.map { $0 * scaling.conditioningScale }
            mid = mid * scaling.conditioningScale
        }
        return ControlResiduals(down: down, mid: mid)
    }
}

extension ControlResiduals {
    /// The residuals of several calls on consecutive parts of one batch, as the one call's (batch order).
    public static func concatenated(_ parts: [ControlResiduals]) -> ControlResiduals {
        ControlResiduals(
            down: parts[0].down.indices.map { index in concat(parts.map { $0.down[index] }, axis: 0) }, mid: concat(parts.map(\.mid), axis: 0))
    }

    /// The sum of several ControlNets' residuals (diffusers' MultiControlNet semantics).
    public static func sum(_ all: [ControlResiduals]) -> ControlResiduals? {
        guard var total = all.first else { return nil }
        for next in all.dropFirst() {
            total.down = zip(total.down, next.down).map { $0 + $1 }
            total.mid = total.mid + next.mid
        }
        return total
    }
}
