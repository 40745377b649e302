import Compute
import Foundation
import Weights

/// `AutoencoderKL`'s `config.json`, with diffusers' defaults.
public struct AutoencoderKLConfiguration: Decodable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var downBlockTypes: [String]
    public var upBlockTypes: [String]
    public var blockOutChannels: [Int]
    public var layersPerBlock: Int
    public var actFn: String
    public var latentChannels: Int
    public var normNumGroups: Int
    public var scalingFactor: Float
    public var shiftFactor: Float?
    public var useQuantConv: Bool
    public var usePostQuantConv: Bool
    public var midBlockAddAttention: Bool

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", downBlockTypes = "down_block_types"
        case upBlockTypes = "up_block_types", blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case actFn = "act_fn", latentChannels = "latent_channels", normNumGroups = "norm_num_groups"
        case scalingFactor = "scaling_factor", shiftFactor = "shift_factor", useQuantConv = "use_quant_conv"
        case usePostQuantConv = "use_post_quant_conv", midBlockAddAttention = "mid_block_add_attention"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inChannels = try c.value(.inChannels, default: 3)
        outChannels = try c.value(.outChannels, default: 3)
        downBlockTypes = try c.value(.downBlockTypes, default: ["DownEncoderBlock2D"])
        upBlockTypes = try c.value(.upBlockTypes, default: ["UpDecoderBlock2D"])
        blockOutChannels = try c.value(.blockOutChannels, default: [64])
        layersPerBlock = try c.value(.layersPerBlock, default: 1)
        actFn = try c.value(.actFn, default: "silu")
        latentChannels = try c.value(.latentChannels, default: 4)
        normNumGroups = try c.value(.normNumGroups, default: 32)
        scalingFactor = try c.value(.scalingFactor, default: 0.18215)
        shiftFactor = try c.decodeIfPresent(Float.self, forKey: .shiftFactor)
        useQuantConv = try c.value(.useQuantConv, default: true)
        usePostQuantConv = try c.value(.usePostQuantConv, default: true)
        midBlockAddAttention = try c.value(.midBlockAddAttention, default: true)
    }

    func validate() throws {
        guard !blockOutChannels.isEmpty, downBlockTypes.count == blockOutChannels.count, upBlockTypes.count == blockOutChannels.count else {
            throw ModelError.invalidConfig("VAE block_out_channels, down_block_types and up_block_types must have the same length")
        }
        for type in downBlockTypes where type != "DownEncoderBlock2D" { throw ModelError.unsupported("VAE down block type '\(type)'") }
        for type in upBlockTypes where type != "UpDecoderBlock2D" { throw ModelError.unsupported("VAE up block type '\(type)'") }
        guard actFn == "silu" else { throw ModelError.unsupported("VAE act_fn '\(actFn)'") }
    }
}

/// The VAE encoder: images `[N, H, W, 3]` in [-1, 1] to the latent distribution's moments.
public final class VAEEncoder: @unchecked Sendable {
    let convIn: Conv2D
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock2D
    let convNormOut: GroupNorm
    let convOut: Conv2D

    init(_ loader: ModuleLoader, _ config: AutoencoderKLConfiguration) throws {
        let channels = config.blockOutChannels, groups = config.normNumGroups
        convIn = try loader.conv2d("conv_in", in: config.inChannels, out: channels[0], kernel: 3)
        var blocks: [UNetDownBlock] = []
        var output = channels[0]
        for i in channels.indices {
            let input = output
            output = channels[i]
            blocks.append(
                try UNetDownBlock(
                    loader.child("down_blocks", i), inChannels: input, outChannels: output, layers: config.layersPerBlock,
                    timeEmbeddingChannels: nil, groups: groups, epsilon: 1e-6, addDownsample: i < channels.count - 1,
                    downsamplePadding: 0, crossAttention: nil))
        }
        downBlocks = blocks
        midBlock = try UNetMidBlock2D(
            loader.child("mid_block"), channels: output, groups: groups, epsilon: 1e-6, addAttention: config.midBlockAddAttention)
        convNormOut = try loader.groupNorm("conv_norm_out", groups: groups, channels: output, epsilon: 1e-6)
        convOut = try loader.conv2d("conv_out", in: output, out: 2 * config.latentChannels, kernel: 3)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(x)
        for block in downBlocks { h = block(h, timeEmbedding: nil, context: nil).0 }
        h = midBlock(h)
        return convOut(convNormOut(h, fusedSiLU: true))
    }
}

/// The VAE decoder: latents to images `[N, H, W, 3]` in about [-1, 1].
public final class VAEDecoder: @unchecked Sendable {
    let convIn: Conv2D
    let midBlock: UNetMidBlock2D
    let upBlocks: [UpDecoderBlock2D]
    let convNormOut: GroupNorm
    let convOut: Conv2D

    init(_ loader: ModuleLoader, _ config: AutoencoderKLConfiguration) throws {
        let reversed = Array(config.blockOutChannels.reversed()), groups = config.normNumGroups
        convIn = try loader.conv2d("conv_in", in: config.latentChannels, out: reversed[0], kernel: 3)
        midBlock = try UNetMidBlock2D(
            loader.child("mid_block"), channels: reversed[0], groups: groups, epsilon: 1e-6, addAttention: config.midBlockAddAttention)
        var blocks: [UpDecoderBlock2D] = []
        var output = reversed[0]
        for i in reversed.indices {
            let previous = output
            output = reversed[i]
            blocks.append(
                try UpDecoderBlock2D(
                    loader.child("up_blocks", i), inChannels: previous, outChannels: output, layers: config.layersPerBlock + 1,
                    groups: groups, epsilon: 1e-6, addUpsample: i < reversed.count - 1))
        }
        upBlocks = blocks
        convNormOut = try loader.groupNorm("conv_norm_out", groups: groups, channels: config.blockOutChannels[0], epsilon: 1e-6)
        convOut = try loader.conv2d("conv_out", in: config.blockOutChannels[0], out: config.outChannels, kernel: 3)
    }

    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = midBlock(convIn(z))
        for block in upBlocks { h = block(consume h) }
        return convOut(convNormOut(h, fusedSiLU: true))
    }
}

/// diffusers `AutoencoderKL`: the Stable Diffusion VAE (factor 8 per three downsamplers).
///
/// `encode` returns the posterior's mean and log-variance; `decode` takes unscaled latents (divide the
/// denoised latents by `scalingFactor` first, as the pipelines do; `decodeScaled` does both).
public final class AutoencoderKL: @unchecked Sendable {
    public let configuration: AutoencoderKLConfiguration
    public let registry: LayerRegistry
    let encoder: VAEEncoder?
    let decoder: VAEDecoder
    let quantConv: Conv2D?
    let postQuantConv: Conv2D?

    public convenience init(configData: Data, weights: any WeightSource, source: String = "vae/config.json", decoderOnly: Bool = false) throws {
        try self.init(
            configuration: decodeConfig(AutoencoderKLConfiguration.self, from: configData, source: source), weights: weights,
            decoderOnly: decoderOnly)
    }

    /// `decoderOnly` skips the encoder (text-to-image never uses it).
    public init(configuration config: AutoencoderKLConfiguration, weights: any WeightSource, decoderOnly: Bool = false) throws {
        try config.validate()
        configuration = config
        let loader = ModuleLoader(weights: weights)
        registry = loader.registry
        let latent = config.latentChannels
        encoder = decoderOnly ? nil : try VAEEncoder(loader.child("encoder"), config)
        quantConv = !decoderOnly && config.useQuantConv ? try loader.conv2d("quant_conv", in: 2 * latent, out: 2 * latent, kernel: 1) : nil
        decoder = try VAEDecoder(loader.child("decoder"), config)
        postQuantConv = config.usePostQuantConv ? try loader.conv2d("post_quant_conv", in: latent, out: latent, kernel: 1) : nil
    }

    public var scalingFactor: Float { configuration.scalingFactor }
    public var hasEncoder: Bool { encoder != nil }
    /// Pixels per latent cell along each axis.
    public var downscaleFactor: Int { 1 << (configuration.blockOutChannels.count - 1) }

    /// The posterior `(mean, logVariance)` for images `[N, H, W, C]` in [-1, 1], each `[N, h, w, latent]`.
    public func encode(_ images: Tensor) throws -> (mean: Tensor, logVariance: Tensor) {
        guard let encoder else { throw ModelError.invalidInput("this VAE was loaded without its encoder") }
        guard images.rank == 4, images.shape[3] == configuration.inChannels else {
            throw ModelError.invalidInput("VAE encoder expects NHWC images with \(configuration.inChannels) channels, got \(images.shape)")
        }
        var moments = encoder(images)
        if let quantConv { moments = quantConv(moments) }
        let parts = chunk(moments, 2, axis: 3)
        return (parts[0], clamp(parts[1], -30, 20))
    }

    /// Unscaled latents `[N, h, w, latent]` to images `[N, H, W, C]` (about [-1, 1]).
    public func decode(_ latents: Tensor) throws -> Tensor {
        guard latents.rank == 4, latents.shape[3] == configuration.latentChannels else {
            throw ModelError.invalidInput("VAE decoder expects NHWC latents with \(configuration.latentChannels) channels, got \(latents.shape)")
        }
        var z = latents
        if let postQuantConv { z = postQuantConv(z) }
        return decoder(z)
    }

    /// Bytes of the decoder's widest activation for latents of `shape` `[N, h, w, latent]`: full resolution with the
    /// channels of the second-to-last up block, whose upsampler outputs full resolution (`blockOutChannels[1]`;
    /// `[0]` for a one-block decoder). Callers size memory decisions by it (`DiffusionPipeline`'s trim before a decode).
    public func decoderPeakActivationBytes(latentShape shape: [Int]) -> Int {
        let pixels = shape[0] * shape[1] * downscaleFactor * shape[2] * downscaleFactor
        return pixels * (configuration.blockOutChannels.prefix(2).max() ?? 1) * MemoryLayout<Float>.stride
    }

    /// Denoised (scaled) latents to images: `decode(latents / scaling_factor + shift_factor)`.
    public func decodeScaled(_ latents: Tensor) throws -> Tensor {
        let shift = configuration.shiftFactor ?? 0
        return try decode(latents * (1 / scalingFactor) + shift)
    }
}
