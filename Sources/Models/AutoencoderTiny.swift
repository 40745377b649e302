import Compute
import Foundation
import Weights

/// `AutoencoderTiny`'s `config.json` (TAESD), with diffusers' defaults.
public struct AutoencoderTinyConfiguration: Decodable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var encoderBlockOutChannels: [Int]
    public var decoderBlockOutChannels: [Int]
    public var actFn: String
    public var upsampleFn: String
    public var latentChannels: Int
    public var upsamplingScalingFactor: Int
    public var numEncoderBlocks: [Int]
    public var numDecoderBlocks: [Int]
    public var scalingFactor: Float

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels"
        case encoderBlockOutChannels = "encoder_block_out_channels", decoderBlockOutChannels = "decoder_block_out_channels"
        case actFn = "act_fn", upsampleFn = "upsample_fn", latentChannels = "latent_channels"
        case upsamplingScalingFactor = "upsampling_scaling_factor", numEncoderBlocks = "num_encoder_blocks"
        case numDecoderBlocks = "num_decoder_blocks", scalingFactor = "scaling_factor"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inChannels = try c.value(.inChannels, default: 3)
        outChannels = try c.value(.outChannels, default: 3)
        encoderBlockOutChannels = try c.value(.encoderBlockOutChannels, default: [64, 64, 64, 64])
        decoderBlockOutChannels = try c.value(.decoderBlockOutChannels, default: [64, 64, 64, 64])
        actFn = try c.value(.actFn, default: "relu")
        upsampleFn = try c.value(.upsampleFn, default: "nearest")
        latentChannels = try c.value(.latentChannels, default: 4)
        upsamplingScalingFactor = try c.value(.upsamplingScalingFactor, default: 2)
        numEncoderBlocks = try c.value(.numEncoderBlocks, default: [1, 3, 3, 3])
        numDecoderBlocks = try c.value(.numDecoderBlocks, default: [3, 3, 3, 1])
        scalingFactor = try c.value(.scalingFactor, default: 1)
    }
}

/// diffusers `AutoencoderTinyBlock`: `relu(conv(relu(conv(relu(conv(x))))) + skip(x))`.
final class AutoencoderTinyBlock: @unchecked Sendable {
    let convs: [Conv2D]
    let skip: Conv2D?

    init(_ loader: ModuleLoader, inChannels: Int, outChannels: Int) throws {
        convs = try [0, 2, 4].map { index in
            try loader.conv2d("conv.\(index)", in: index == 0 ? inChannels : outChannels, out: outChannels, kernel: 3)
        }
        skip = inChannels != outChannels ? try loader.conv2d("skip", in: inChannels, out: outChannels, kernel: 1, bias: false) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = convs[2](relu(convs[1](relu(convs[0](x)))))
        return relu(h + (skip.map { $0(x) } ?? x))
    }
}

/// TAESD's decoder (diffusers `AutoencoderTiny`): a small conv-only decoder, ~50x cheaper than the KL
/// VAE's, for previews and fast drafts. It takes the UNet's (scaled) latents directly.
public final class TinyAutoencoderDecoder: @unchecked Sendable {
    public let configuration: AutoencoderTinyConfiguration
    private let layers: [(Tensor) -> Tensor]

    public convenience init(configData: Data, weights: any WeightSource, source: String = "taesd/config.json") throws {
        try self.init(configuration: decodeConfig(AutoencoderTinyConfiguration.self, from: configData, source: source), weights: weights)
    }

    public init(configuration config: AutoencoderTinyConfiguration, weights: any WeightSource) throws {
        guard config.actFn == "relu", config.upsampleFn == "nearest" else {
            throw ModelError.unsupported("TAESD act_fn '\(config.actFn)' / upsample_fn '\(config.upsampleFn)'")
        }
        let channels = config.decoderBlockOutChannels, blocks = config.numDecoderBlocks
        guard channels.count == blocks.count, !channels.isEmpty else {
            throw ModelError.invalidConfig("TAESD decoder_block_out_channels and num_decoder_blocks differ in length")
        }
        configuration = config
        // Mirrors `decoder.layers`, an nn.Sequential: parameter names are the positions in it.
        let loader = ModuleLoader(weights: weights).child("decoder.layers")
        var index = 0
        var built: [(Tensor) -> Tensor] = []
        let first = try loader.conv2d("\(index)", in: config.latentChannels, out: channels[0], kernel: 3)
        built.append { relu(first($0)) }
        index += 2
        for (i, count) in blocks.enumerated() {
            let isFinal = i == blocks.count - 1
            for _ in 0..<count {
                let block = try AutoencoderTinyBlock(loader.child("\(index)"), inChannels: channels[i], outChannels: channels[i])
                built.append { block($0) }
                index += 1
            }
            if !isFinal {
                let factor = config.upsamplingScalingFactor
                built.append { upsampleNearest($0, factor: factor) }
                index += 1
            }
            let conv = try loader.conv2d(
                "\(index)", in: channels[i], out: isFinal ? config.outChannels : channels[i], kernel: 3, bias: isFinal)
            built.append { conv($0) }
            index += 1
        }
        layers = built
    }

    /// How many times larger the image is than the latents.
    public var upscaleFactor: Int {
        (0..<max(0, configuration.numDecoderBlocks.count - 1)).reduce(1) { factor, _ in factor * configuration.upsamplingScalingFactor }
    }

    /// UNet-space latents `[N, h, w, 4]` to images `[N, H, W, 3]` in about [-1, 1].
    public func decode(_ latents: Tensor) throws -> Tensor {
        guard latents.rank == 4, latents.shape[3] == configuration.latentChannels else {
            throw ModelError.invalidInput("TAESD expects NHWC latents with \(configuration.latentChannels) channels, got \(latents.shape)")
        }
        var h = tanh(latents * (1 / 3)) * 3
        for layer in layers { h = layer(h) }
        return h * 2 - 1
    }
}
