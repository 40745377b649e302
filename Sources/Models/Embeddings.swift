import Compute

/// diffusers `Timesteps`: sinusoidal features of the (possibly fractional) timesteps.
public struct Timesteps: Sendable {
    public let channels: Int
    public let flipSinToCos: Bool
    public let downscaleFreqShift: Float

    public init(channels: Int, flipSinToCos: Bool, downscaleFreqShift: Float) {
        self.channels = channels
        self.flipSinToCos = flipSinToCos
        self.downscaleFreqShift = downscaleFreqShift
    }

    public func callAsFunction(_ timesteps: [Float]) -> Tensor {
        timestepEmbedding(timesteps, dim: channels, flipSinToCos: flipSinToCos, downscaleFreqShift: downscaleFreqShift)
    }
}

/// diffusers `TimestepEmbedding`: `linear_2(silu(linear_1(x + cond_proj(condition))))`.
public final class TimestepEmbedding: @unchecked Sendable {
    let linear1: Linear
    let linear2: Linear
    let conditionProjection: Linear?

    public init(_ loader: ModuleLoader, inChannels: Int, embedDim: Int, outDim: Int? = nil, conditionDim: Int? = nil) throws {
        linear1 = try loader.linear("linear_1", in: inChannels, out: embedDim)
        linear2 = try loader.linear("linear_2", in: embedDim, out: outDim ?? embedDim)
        conditionProjection = try conditionDim.map { try loader.linear("cond_proj", in: $0, out: inChannels, bias: false) }
    }

    public func callAsFunction(_ sample: Tensor, condition: Tensor? = nil) -> Tensor {
        var x = sample
        if let conditionProjection, let condition { x = x + conditionProjection(condition) }
        return linear2(silu(linear1(x)))
    }
}
