import Compute

/// Cross-attention settings of a block that has transformer layers.
public struct CrossAttentionSettings: Sendable {
    public var heads: Int
    public var transformerLayers: Int
    public var contextDim: Int
    public var useLinearProjection: Bool
    public var onlyCrossAttention: Bool = false

    public init(heads: Int, transformerLayers: Int, contextDim: Int, useLinearProjection: Bool, onlyCrossAttention: Bool = false) {
        self.heads = heads
        self.transformerLayers = transformerLayers
        self.contextDim = contextDim
        self.useLinearProjection = useLinearProjection
        self.onlyCrossAttention = onlyCrossAttention
    }
}

/// diffusers `DownBlock2D` / `CrossAttnDownBlock2D` (and the VAE's `DownEncoderBlock2D`, which is a
/// `DownBlock2D` without time embedding): resnets, each followed by a transformer when cross-attention
/// is configured, then an optional stride-2 downsampler.
public final class UNetDownBlock: @unchecked Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Downsample2D?

    public init(
        _ loader: ModuleLoader, inChannels: Int, outChannels: Int, layers: Int, timeEmbeddingChannels: Int?, groups: Int,
        epsilon: Float, addDownsample: Bool, downsamplePadding: Int, crossAttention: CrossAttentionSettings?
    ) throws {
        resnets = try (0..<layers).map { i in
            try ResnetBlock2D(
                loader.child("resnets", i), inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels,
                timeEmbeddingChannels: timeEmbeddingChannels, groups: groups, epsilon: epsilon)
        }
        attentions = try crossAttention.map { settings in
            try (0..<layers).map { i in
                try Transformer2DModel(
                    loader.child("attentions", i), channels: outChannels, heads: settings.heads,
                    headDim: outChannels / settings.heads, layers: settings.transformerLayers,
                    contextDim: settings.contextDim, groups: groups, useLinearProjection: settings.useLinearProjection,
                    onlyCrossAttention: settings.onlyCrossAttention)
            }
        } ?? []
        downsampler =
            addDownsample
            ? try Downsample2D(loader.child("downsamplers", 0), channels: outChannels, padding: downsamplePadding) : nil
    }

    public var layerCount: Int { resnets.count }

    /// Returns the block output and the states the up path consumes as skips (each layer's output, then
    /// the downsampled one).
    public func callAsFunction(_ x: Tensor, timeEmbedding: Tensor?, context: Tensor?) -> (Tensor, [Tensor]) {
        var h = x
        var states: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            h = resnet(h, timeEmbedding: timeEmbedding)
            if !attentions.isEmpty, let context { h = attentions[i](h, context: context) }
            states.append(h)
        }
        if let downsampler {
            h = downsampler(h)
            states.append(h)
        }
        return (h, states)
    }
}

/// diffusers `UpBlock2D` / `CrossAttnUpBlock2D`: each resnet takes the running state concatenated with
/// one skip from the down path (popped from the end), followed by a transformer when configured, then an
/// optional upsampler.
public final class UNetUpBlock: @unchecked Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let upsampler: Upsample2D?

    public init(
        _ loader: ModuleLoader, inChannels: Int, previousOutputChannels: Int, outChannels: Int, layers: Int,
        timeEmbeddingChannels: Int?, groups: Int, epsilon: Float, addUpsample: Bool,
        crossAttention: CrossAttentionSettings?
    ) throws {
        resnets = try (0..<layers).map { i in
            let skipChannels = i == layers - 1 ? inChannels : outChannels
            let resnetIn = i == 0 ? previousOutputChannels : outChannels
            return try ResnetBlock2D(
                loader.child("resnets", i), inChannels: resnetIn + skipChannels, outChannels: outChannels,
                timeEmbeddingChannels: timeEmbeddingChannels, groups: groups, epsilon: epsilon)
        }
        attentions = try crossAttention.map { settings in
            try (0..<layers).map { i in
                try Transformer2DModel(
                    loader.child("attentions", i), channels: outChannels, heads: settings.heads,
                    headDim: outChannels / settings.heads, layers: settings.transformerLayers,
                    contextDim: settings.contextDim, groups: groups, useLinearProjection: settings.useLinearProjection,
                    onlyCrossAttention: settings.onlyCrossAttention)
            }
        } ?? []
        upsampler = addUpsample ? try Upsample2D(loader.child("upsamplers", 0), channels: outChannels) : nil
    }

    public var layerCount: Int { resnets.count }

    /// `skips` are this block's skip tensors in down-path order; the last one is used first.
    public func callAsFunction(
        _ x: Tensor, skips: [Tensor], timeEmbedding: Tensor?, context: Tensor?, upsampleSize: (height: Int, width: Int)? = nil
    ) -> Tensor {
        precondition(skips.count == resnets.count, "up block needs \(resnets.count) skips, got \(skips.count)")
        var h = x
        for (i, resnet) in resnets.enumerated() {
            h = resnet(concat([h, skips[skips.count - 1 - i]], axis: 3), timeEmbedding: timeEmbedding)
            if !attentions.isEmpty, let context { h = attentions[i](h, context: context) }
        }
        if let upsampler { h = upsampler(h, size: upsampleSize) }
        return h
    }
}

/// diffusers `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
public final class UNetMidBlock2DCrossAttn: @unchecked Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]

    public init(
        _ loader: ModuleLoader, channels: Int, timeEmbeddingChannels: Int, groups: Int, epsilon: Float, layers: Int = 1,
        crossAttention: CrossAttentionSettings
    ) throws {
        resnets = try (0...layers).map { i in
            try ResnetBlock2D(
                loader.child("resnets", i), inChannels: channels, outChannels: channels,
                timeEmbeddingChannels: timeEmbeddingChannels, groups: groups, epsilon: epsilon)
        }
        attentions = try (0..<layers).map { i in
            try Transformer2DModel(
                loader.child("attentions", i), channels: channels, heads: crossAttention.heads,
                headDim: channels / crossAttention.heads, layers: crossAttention.transformerLayers,
                contextDim: crossAttention.contextDim, groups: groups, useLinearProjection: crossAttention.useLinearProjection,
                onlyCrossAttention: crossAttention.onlyCrossAttention)
        }
    }

    public func callAsFunction(_ x: Tensor, timeEmbedding: Tensor, context: Tensor) -> Tensor {
        var h = resnets[0](x, timeEmbedding: timeEmbedding)
        for (attention, resnet) in zip(attentions, resnets.dropFirst()) {
            h = resnet(attention(h, context: context), timeEmbedding: timeEmbedding)
        }
        return h
    }
}

/// diffusers `UNetMidBlock2D` as the VAE uses it: resnet, single-head self-attention with group norm and
/// residual, resnet; no time embedding.
public final class UNetMidBlock2D: @unchecked Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Attention]

    public init(_ loader: ModuleLoader, channels: Int, groups: Int, epsilon: Float, attentionHeadDim: Int? = nil, addAttention: Bool = true) throws {
        resnets = try (0...1).map { i in
            try ResnetBlock2D(
                loader.child("resnets", i), inChannels: channels, outChannels: channels, timeEmbeddingChannels: nil,
                groups: groups, epsilon: epsilon)
        }
        let headDim = attentionHeadDim ?? channels
        attentions =
            addAttention
            ? [
                try Attention(
                    loader.child("attentions", 0), queryDim: channels, heads: channels / headDim, headDim: headDim, bias: true,
                    groupNormGroups: groups, groupNormEpsilon: epsilon, residualConnection: true)
            ] : []
    }

    public func callAsFunction(_ x: consuming Tensor) -> Tensor {
        var h = resnets[0](consume x, timeEmbedding: nil)
        if let attention = attentions.first { h = attention(h) }
        return resnets[1](consume h, timeEmbedding: nil)
    }
}

/// diffusers `UpDecoderBlock2D` (VAE decoder): resnets without skips, then an optional upsampler.
public final class UpDecoderBlock2D: @unchecked Sendable {
    let resnets: [ResnetBlock2D]
    let upsampler: Upsample2D?

    public init(_ loader: ModuleLoader, inChannels: Int, outChannels: Int, layers: Int, groups: Int, epsilon: Float, addUpsample: Bool) throws {
        resnets = try (0..<layers).map { i in
            try ResnetBlock2D(
                loader.child("resnets", i), inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels,
                timeEmbeddingChannels: nil, groups: groups, epsilon: epsilon)
        }
        upsampler = addUpsample ? try Upsample2D(loader.child("upsamplers", 0), channels: outChannels) : nil
    }

    /// Gives each resnet its input (`consume`), so they reuse it (`ResnetBlock2D`): the decoder's largest activations
    /// are not copied.
    public func callAsFunction(_ x: consuming Tensor) -> Tensor {
        var h = consume x
        for resnet in resnets { h = resnet(consume h, timeEmbedding: nil) }
        if let upsampler { h = upsampler(h) }
        return h
    }
}
